"""The protocol formulas (aflqueue.protocol) give, bit for bit, the budgets, P3 targets and largest
importance weights stored in the committed records, which the studies' former copies of these
formulas computed: moving them to one home changed no result (the superseded grid's P3 targets
differ in the last bit, as they already did from the grid's code before the move)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aflqueue.bounds import ProxyConstants
from aflqueue.protocol import largest_importance_weight, target_epsilon, time_budget

VALIDATION = Path(__file__).resolve().parents[2] / "validation"


def _some(folder: Path, pattern: str, k: int) -> list[dict]:
    files = sorted(folder.glob(pattern))
    return [json.loads(p.read_text()) for p in files[:: max(1, len(files) // k)]][:k]


@pytest.mark.skipif(not (VALIDATION / "paper" / "results" / "cells").is_dir(), reason="no committed records")
def test_paper_records():
    from aflqueue.config import TrainConfig
    from aflqueue.pipeline import build_system
    from validation.paper.experiment import DATASETS, PAPER_PRESETS, Scenario, config_of

    preset = PAPER_PRESETS["paper"]
    recs = _some(VALIDATION / "paper" / "results" / "cells" / "cells", "*.json", 12)
    recs += _some(VALIDATION / "paper" / "results" / "tuning" / "cells", "*.json", 6)
    for r in recs:
        sc = Scenario(**r["scenario"])
        cfg = TrainConfig.from_dict(config_of(sc, DATASETS[sc.dataset], preset, r["seed"]))
        system = build_system(cfg, cfg.data.clients)
        updates = DATASETS[sc.dataset].updates
        assert time_budget(system, updates) == r["time_budget"], r["id"]
        assert target_epsilon(system, ProxyConstants.from_dict(r["constants"]), updates) == r["epsilon"], r["id"]
        assert largest_importance_weight(r["routing"]) == r["max_importance_weight"], r["id"]


@pytest.mark.skipif(not (VALIDATION / "grid" / "results" / "default" / "cells").is_dir(), reason="no committed records")
def test_grid_records():
    from aflqueue.pipeline import build_system
    from validation.grid.experiment import DATASETS, PRESETS, Cell, cell_config

    for r in _some(VALIDATION / "grid" / "results" / "default" / "cells", "*.json", 12):
        cell = Cell(**r["cell"])
        cfg = cell_config(cell, DATASETS[cell.dataset], PRESETS[r["preset"]], None, "cpu", "unused")
        system = build_system(cfg, cfg.data.clients)
        updates = DATASETS[cell.dataset].updates
        assert time_budget(system, updates) == r["time_budget"], r["id"]
        # these cells predate the grid's use of bounds.s2 (S2 was then summed as sum(D / p) / n^2 inline):
        # the same value up to the last bit, which the committed cells keep
        assert target_epsilon(system, ProxyConstants.from_dict(r["constants"]), updates) == pytest.approx(
            r["epsilon"], rel=1e-15, abs=0), r["id"]


@pytest.mark.parametrize("name", ["regimes", "regimes-confirm"])
def test_regime_designs_and_operating_points(name):
    from validation.regimes.experiment import REGIME_PRESETS, system_of

    folder = VALIDATION / "regimes" / "results" / name
    if not (folder / "design.json").is_file():
        pytest.skip("no committed design")
    preset = REGIME_PRESETS[name]
    des = json.loads((folder / "design.json").read_text())
    pred = json.loads((folder / "predictions.json").read_text())
    for rg in preset.regimes()[:6]:
        d = des["regimes"][rg.id]
        system = system_of(preset, rg.spread, rg.concurrency)
        c0 = ProxyConstants.from_dict(des["partitions"][rg.partition]["initial_constants"])
        assert time_budget(system, preset.updates) == d["time_budget"], rg.id
        assert target_epsilon(system, c0, preset.updates) == d["epsilon"], rg.id
        op = pred["regimes"][rg.id]["op_fit"]
        assert largest_importance_weight(op["routing"]) == op["max_importance_weight"], rg.id
        assert np.min(op["routing"]) > 0  # the case where the former copies (p_i = 0 left out or not) agree
