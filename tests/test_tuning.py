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
    assert d["best_lr"] in (0.02, 0.2) and len(d["table"]) == 2
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["best_lr"] == d["best_lr"] and saved["seeds"] == [1]
    assert main(["tune", "--dataset", "synthetic", "--updates", "50", "-o", str(tmp_path / "x")]) == 2
    assert "validation_fraction" in capsys.readouterr().err
