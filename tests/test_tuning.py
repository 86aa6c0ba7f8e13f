"""Learning-rate tuning (aflqueue.tuning): the log grid, the pre-registered score, the choice of
the best rate, and `aflqueue tune`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aflqueue import ValidationError
from aflqueue.cli import main
from aflqueue.tuning import best_learning_rate, log_grid, score_curves


def test_tuning_helpers():
    g = log_grid(0.01, 0.5, 6)
    assert g[0] == 0.01 and g[-1] == 0.5 and len(g) == 6 and g[-1] / g[0] >= 30
    assert np.allclose(np.diff(np.log(g)), np.log(50) / 5, rtol=0.01)
    curves = {"time": [25.0, 50.0, 75.0, 100.0], "test_accuracy": [0.2, 0.4, 0.6, 0.8]}
    # accuracy at 50 equally spaced times in (0, 100], each the last evaluation before it
    expect = np.mean([0.0] * 12 + [0.2] * 12 + [0.4] * 13 + [0.6] * 12 + [0.8] * 1)  # grid 2, 4, ..., 100
    assert score_curves(curves, 100.0) == pytest.approx(expect)
    recs = [{"lr": lr, "seed": s, "score": sc, "diverged": False} for lr, s, sc in
            [(0.1, 0, 0.5), (0.1, 1, 0.7), (0.3, 0, 0.65), (0.3, 1, 0.55), (1.0, 0, 0.1), (1.0, 1, 0.1)]]
    res = best_learning_rate(recs)  # 0.1 and 0.3 tie at 0.6: the smaller rate wins
    assert res.best_lr == 0.1 and res.at_edge and [row["score"] for row in res.table] == pytest.approx([0.6, 0.6, 0.1])
    with pytest.raises(ValidationError, match="lr-grid"):
        log_grid(0.5, 0.1, 3)


def test_tune_cli(tmp_path, capsys):
    argv = ["tune", "--dataset", "synthetic", "--clients", "4", "--updates", "120", "--set",
            "data.validation_fraction=0.1", "--set",
            'data.options={"num_samples": 300, "num_features": 6, "num_classes": 3}', "--lr-grid", "0.02,0.2",
            "--pilot-seeds", "1", "-o", str(tmp_path), "--quiet", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["table"]) == 2 + d["extensions"]  # rates added out of an edge, if the best was at one
    assert not d["at_edge"] or d["extensions"] == 6
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["best_lr"] == d["best_lr"] and saved["seeds"] == [1]
    assert main(["tune", "--dataset", "synthetic", "--updates", "50", "-o", str(tmp_path / "x")]) == 2
    assert "validation_fraction" in capsys.readouterr().err


def test_tuning_extends_the_grid_until_the_best_rate_is_interior(tmp_path, monkeypatch):
    """A score peaked at 0.3 and a first grid far below it: rates are added one step out (the
    grid's spacing, x2) until the best is interior; with too few extensions allowed it is flagged."""
    from aflqueue import tuning
    from aflqueue.config import load_config

    def fake(args):
        config, lr, seed = args
        return {"lr": float(lr), "seed": int(seed), "score": float(np.exp(-np.log(lr / 0.3) ** 2)),
                "final_accuracy": 0.5, "diverged": False, "arrivals": 1, "lr_used": lr, "curves": {}}

    monkeypatch.setattr(tuning, "tuning_run", fake)
    cfg = load_config(None, ["data.validation_fraction=0.1"])
    res = tuning.tune(cfg, [0.01, 0.02], [1, 2], tmp_path / "a", progress=None)
    lrs = [row["lr"] for row in res.table]
    assert res.best_lr == 0.32 and not res.at_edge and res.extensions == 5 and lrs[-1] == 0.64
    short = tuning.tune(cfg, [0.01, 0.02], [1, 2], tmp_path / "b", progress=None, max_extensions=2)
    assert short.at_edge and short.best_lr == 0.08 and short.extensions == 2
    down = tuning.tune(cfg, [3.0, 6.0], [1], tmp_path / "c", progress=None)  # from above: extends downward
    assert not down.at_edge and down.best_lr == pytest.approx(0.375, rel=1e-3)
