"""Learning-rate tuning (aflqueue.tuning): the log grid, the pre-registered score, the choice of
the best rate, and `aflqueue tune`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from aflqueue import ValidationError
from aflqueue.cli import main
from aflqueue.tuning import best_learning_rate, log_grid, score_curves

CURVES = {"time": [1.0, 2.0], "updates": [1, 2], "test_accuracy": [0.4, 0.5], "test_loss": [1.2, None]}


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
                "final_accuracy": 0.5, "diverged": False, "arrivals": 1, "lr_used": lr, "curves": CURVES}

    monkeypatch.setattr(tuning, "tuning_run", fake)
    cfg = load_config(None, ["data.validation_fraction=0.1"])
    res = tuning.tune(cfg, [0.01, 0.02], [1, 2], tmp_path / "a", progress=None)
    lrs = [row["lr"] for row in res.table]
    assert res.best_lr == 0.32 and not res.at_edge and res.extensions == 5 and lrs[-1] == 0.64
    short = tuning.tune(cfg, [0.01, 0.02], [1, 2], tmp_path / "b", progress=None, max_extensions=2)
    assert short.at_edge and short.best_lr == 0.08 and short.extensions == 2
    down = tuning.tune(cfg, [3.0, 6.0], [1], tmp_path / "c", progress=None)  # from above: extends downward
    assert not down.at_edge and down.best_lr == pytest.approx(0.375, rel=1e-3)


def _fake_run(calls):
    def fake(args):
        config, lr, seed = args
        calls.append((lr, seed))
        n = config["data"]["options"].get("num_samples", 0)  # the score depends on the configuration
        return {"lr": float(lr), "seed": int(seed), "score": 0.5 + 0.1 * lr + 1e-5 * n, "final_accuracy": 0.5,
                "diverged": False, "arrivals": 3, "lr_used": lr, "curves": CURVES}
    return fake


def test_saved_tuning_records_are_checked_and_belong_to_their_configuration(tmp_path, monkeypatch):
    """Records are files: one edited into nonsense (a score of 5) is refused in one line naming
    the file and the field, and nothing runs; once it is deleted, only its run is done again;
    records of another configuration tuned into the same folder are not reused; a record of
    another experiment in the folder is left alone."""
    from aflqueue import tuning
    from aflqueue.config import load_config

    calls: list = []
    monkeypatch.setattr(tuning, "tuning_run", _fake_run(calls))
    cfg = load_config(None, ["data.validation_fraction=0.1", 'data.options={"num_samples": 300}'])
    first = tuning.tune(cfg, [0.1, 0.2], [1], tmp_path, progress=None, max_extensions=0)
    assert len(calls) == 2
    cell = next((tmp_path / "cells").glob("tune__lr0.1__s1.json"))
    rec = json.loads(cell.read_text())
    (tmp_path / "cells" / "other__x.json").write_text(json.dumps({"id": "other__x", "what": "another experiment"}))
    cell.write_text(json.dumps({**rec, "score": 5.0}))
    with pytest.raises(ValidationError) as e:
        tuning.tune(cfg, [0.1, 0.2], [1], tmp_path, progress=None, max_extensions=0)
    assert e.value.field == "score" and str(cell) in str(e.value) and "[0, 1]" in str(e.value)
    assert len(calls) == 2 and json.loads(cell.read_text())["score"] == 5.0  # nothing ran, nothing moved
    cell.unlink()
    again = tuning.tune(cfg, [0.1, 0.2], [1], tmp_path, progress=None, max_extensions=0)
    assert calls[2:] == [(0.1, 1)] and again.table == first.table  # only the deleted record ran again
    other = load_config(None, ["data.validation_fraction=0.1", 'data.options={"num_samples": 900}'])
    res = tuning.tune(other, [0.1, 0.2], [1], tmp_path, progress=None, max_extensions=0)
    assert len(calls) == 5 and res.table[0]["score"] == pytest.approx(first.table[0]["score"] + 6e-3)
    # where runs are written is not what they compute: a moved folder resumes, runs nothing
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    tmp_path.rename(moved)
    again = tuning.tune(replace(other, output=str(moved / "elsewhere")), [0.1, 0.2], [1], moved, progress=None,
                        max_extensions=0)
    assert len(calls) == 5 and again.table == res.table


@pytest.mark.parametrize("field, bad", [("score", 5.0), ("score", "abc"), ("lr", [1]), ("lr", None), ("seed", "x"),
                                        ("diverged", {"a": 1}), ("final_accuracy", 7.0), ("curves", 3)])
def test_check_tuning_record_names_the_bad_field(field, bad):
    from aflqueue.tuning import check_tuning_record

    good = {"lr": 0.1, "seed": 1, "score": 0.5, "final_accuracy": 0.5, "diverged": False, "arrivals": 3,
            "lr_used": 0.1, "curves": CURVES}
    check_tuning_record(good)
    with pytest.raises(ValidationError, match=field):
        check_tuning_record({**good, field: bad})


@pytest.mark.parametrize("field, bad", [("routing_kind", "bogus"), ("final_accuracy", 7.0), ("final_accuracy", "abc"),
                                        ("curves", 3), ("seed", None), ("arrivals", -5), ("simulated_throughput", 1)])
def test_check_validation_record_names_the_bad_field(field, bad):
    from aflqueue.comparison import check_validation_record

    good = {"routing_kind": "uniform", "seed": 0, "final_accuracy": 0.7, "diverged": False, "arrivals": 10, "lr": 0.1,
            "predicted": {"throughput": 1.0, "wallclock": None}, "simulated_throughput": {"mean": 1.1},
            "curves": CURVES}
    check_validation_record(good)
    with pytest.raises(ValidationError, match=field):
        check_validation_record({**good, field: bad})
