"""``aflqueue plot`` and ``aflqueue compare`` on a researcher's own run folders: seeds of one
configuration become one band, the legend names the setting that differs, the table's numbers
are the runs' own numbers recomputed here by hand."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue.cli import main
from aflqueue.runs import flatten, group_runs, load_runs

sys.path.insert(0, str(Path(__file__).parent))
from figure_checks import captured  # noqa: E402

LRS = (0.05, 0.3)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for lr in LRS:
        for s in SEEDS:
            out = root / f"lr{lr}_s{s}"
            aq.train(output=str(out), seed=s,
                     data={"dataset": "synthetic", "clients": 4,
                           "options": {"num_samples": 300, "num_features": 8, "num_classes": 3}},
                     system={"profile": "custom", "rates": [1, 1, 0.2, 0.2]}, local={"lr": lr},
                     run={"updates": 80, "eval_every": 10})
            dirs[(lr, s)] = out
    return dirs


def results(d: Path) -> dict:
    return json.loads((d / "results.json").read_text())


def acc_at(res: dict, t: float) -> float:
    """Accuracy of the model that stood at time t: the last evaluation at or before t."""
    k = max(i for i, x in enumerate(res["time"]) if x <= t)
    return res["test_accuracy"][k]


def time_to(res: dict, target: float) -> float | None:
    """First crossing of the target, linearly interpolated between evaluations."""
    prev = None
    for t, a in zip(res["time"], res["test_accuracy"]):
        if a >= target:
            return t if prev is None or prev[1] == a else prev[0] + (target - prev[1]) * (t - prev[0]) / (a - prev[1])
        prev = (t, a)
    return None


def test_plot_three_seeds_of_two_configs(run_dirs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "plot"
    with captured(monkeypatch) as figs:
        assert main(["plot", *map(str, run_dirs.values()), "-o", str(out)]) == 0
    assert list(figs) == ["runs_curves"]  # one figure
    fig = figs["runs_curves"]
    assert sorted(t for t in fig["legend"] if t.startswith("local.lr")) == ["local.lr = 0.05", "local.lr = 0.3"]
    assert list(fig["bands"].values()) == [2, 2, 2, 2]  # two bands in each panel
    assert {p.name for p in out.iterdir()} == {"runs_curves.png", "runs_curves.pdf", "runs_curves.json"}
    data = json.loads((out / "runs_curves.json").read_text())
    assert data["differing_keys"] == ["local.lr"]
    assert [g["seeds"] for g in data["groups"]] == [list(SEEDS), list(SEEDS)]
    assert "local.lr = 0.05: 3 run(s)" in capsys.readouterr().out


def test_bands_are_means_over_the_seeds(run_dirs, tmp_path):
    out = tmp_path / "plot"
    assert main(["plot", *map(str, run_dirs.values()), "-o", str(out)]) == 0
    data = json.loads((out / "runs_curves.json").read_text())
    for g, lr in zip(data["groups"], LRS):
        res = [results(run_dirs[(lr, s)]) for s in SEEDS]
        # against updates: every seed was evaluated at the same update counts
        assert g["updates"]["x"] == res[0]["updates"]
        np.testing.assert_allclose(g["updates"]["accuracy"]["mean"],
                                   np.mean([r["test_accuracy"] for r in res], axis=0), rtol=1e-12)
        np.testing.assert_allclose(g["updates"]["loss"]["mean"], np.mean([r["test_loss"] for r in res], axis=0),
                                   rtol=1e-12)
        # against time: the seeds' evaluation times differ, each is read as the model standing at t
        for t, mean, lo, hi in zip(g["time"]["x"], g["time"]["accuracy"]["mean"], g["time"]["accuracy"]["lo"],
                                   g["time"]["accuracy"]["hi"]):
            vals = [acc_at(r, t) for r in res]
            assert math.isclose(mean, np.mean(vals), rel_tol=1e-12)
            assert min(vals) - 1e-12 <= lo <= mean <= hi <= max(vals) + 1e-12


def test_compare_is_the_paired_table(run_dirs, capsys):
    T, target = 60.0, 0.6
    dirs = [str(d) for d in run_dirs.values()]
    assert main(["compare", *dirs, "--json", "--time", str(T), "--target", str(target)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["time"] == T and res["target"] == target and res["differing_keys"] == ["local.lr"]
    ref, other = res["rows"]
    assert ref["reference"] and ref["legend"] == "local.lr = 0.05" and other["legend"] == "local.lr = 0.3"
    a = {lr: [acc_at(results(run_dirs[(lr, s)]), T) for s in SEEDS] for lr in LRS}
    assert math.isclose(ref["accuracy"]["mean"], np.mean(a[0.05]), rel_tol=1e-12)
    assert math.isclose(other["accuracy"]["mean"], np.mean(a[0.3]), rel_tol=1e-12)
    assert math.isclose(other["accuracy_difference"]["mean"], np.mean(np.subtract(a[0.3], a[0.05])), abs_tol=1e-12)
    t = {lr: [time_to(results(run_dirs[(lr, s)]), target) for s in SEEDS] for lr in LRS}
    pairs = [(x, y) for x, y in zip(t[0.3], t[0.05]) if x is not None and y is not None]
    assert other["time_ratio_pairs"] == len(pairs) >= 1
    assert math.isclose(other["time_ratio"]["mean"], math.exp(np.mean([math.log(x / y) for x, y in pairs])),
                        rel_tol=1e-9)
    assert ref["reached"] == sum(x is not None for x in t[0.05])
    # another reference: the pairing is the other way round
    assert main(["compare", *dirs, "--json", "--time", str(T), "--target", str(target),
                 "--reference", dirs[-1]]) == 0
    res2 = json.loads(capsys.readouterr().out)
    assert res2["rows"][1]["reference"] and math.isclose(res2["rows"][0]["accuracy_difference"]["mean"],
                                                         -other["accuracy_difference"]["mean"], abs_tol=1e-12)
    assert main(["compare", *dirs]) == 0  # the table, with the default target and time
    text = capsys.readouterr().out
    assert "* local.lr = 0.05" in text and "local.lr = 0.3" in text


def test_grouping_and_legends(run_dirs, tmp_path):
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    # a third configuration differing in two keys: every differing key is named
    src = run_dirs[(0.05, 0)]
    third = tmp_path / "third"
    shutil.copytree(src, third)
    cfg = json.loads((third / "config.json").read_text())
    cfg["algorithm"]["name"] = "fedbuff"
    cfg["local"]["lr"] = 0.1
    (third / "config.json").write_text(json.dumps(cfg))
    groups = group_runs(load_runs([src, run_dirs[(0.3, 0)], third]))
    assert [g.legend for g in groups] == ["algorithm.name = generalized-asyncsgd, local.lr = 0.05",
                                          "algorithm.name = generalized-asyncsgd, local.lr = 0.3",
                                          "algorithm.name = fedbuff, local.lr = 0.1"]
    one = group_runs(load_runs([run_dirs[(0.05, s)] for s in SEEDS]))
    assert len(one) == 1 and one[0].seeds == list(SEEDS) and "algorithm.name = generalized-asyncsgd" in one[0].legend
    # a folder of run folders stands for all of them
    parent = src.parent
    assert len(load_runs([parent])) == len(run_dirs)


def test_bad_run_folders_are_one_line(run_dirs, tmp_path, capsys):
    d = str(run_dirs[(0.05, 0)])
    empty = tmp_path / "empty"
    empty.mkdir()
    f = tmp_path / "file.txt"
    f.write_text("x")
    twin = tmp_path / "twin"
    shutil.copytree(d, twin)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    for argv, what in [(["plot", "/nonexistent/run"], "no such folder"), (["plot", str(f)], "not a folder"),
                       (["plot", str(empty)], "no results.json"), (["compare", d, d], "given twice"),
                       (["compare", d, str(twin)], "same configuration and seed"),
                       (["plot", str(bad)], "cannot read"), (["plot", d, "--target", "2"], "target"),
                       (["compare", d, "--time", "-1"], "time"),
                       (["compare", d, "--reference", str(twin)], "reference")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err, (argv, err)


def test_no_interval_below_three_seeds(run_dirs, tmp_path, capsys):
    """Two seeds' bootstrap "95% interval" is their minimum and maximum: below three seeds (or
    pairs) compare reports the values themselves, and says how many, next to every number."""
    T, target = 60.0, 0.6
    two = [str(run_dirs[(lr, s)]) for lr in LRS for s in SEEDS[:2]]
    assert main(["compare", *two, "--json", "--time", str(T), "--target", str(target)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["min_seeds_for_interval"] == 3
    ref, other = res["rows"]
    a = {lr: [acc_at(results(run_dirs[(lr, s)]), T) for s in SEEDS[:2]] for lr in LRS}
    assert ref["accuracy"] == {"mean": pytest.approx(np.mean(a[0.05])), "ci": None, "n": 2, "values": a[0.05]}
    assert other["accuracy_difference"]["ci"] is None and other["accuracy_difference"]["n"] == 2
    assert other["accuracy_difference"]["values"] == pytest.approx(np.subtract(a[0.3], a[0.05]).tolist())
    assert other["time_ratio"] is None or other["time_ratio"]["ci"] is None
    assert main(["compare", *two, "--time", str(T), "--target", str(target)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("* local.lr = 0.05"))
    assert f"{100 * a[0.05][0]:.1f}, {100 * a[0.05][1]:.1f} (2 seeds, no interval)" in row and "[" not in row
    # three seeds: an interval, with its count
    three = [str(d) for d in run_dirs.values()]
    assert main(["compare", *three, "--time", str(T), "--target", str(target)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("* local.lr = 0.05"))
    assert "] (3 seeds)" in row
    # the figure's data: no band below three seeds
    assert main(["plot", *two, "-o", str(tmp_path / "p2")]) == 0
    data = json.loads((tmp_path / "p2" / "runs_curves.json").read_text())
    assert all(g[ax][m]["lo"] is None and g[ax][m]["hi"] is None for g in data["groups"]
               for ax in ("time", "updates") for m in ("accuracy", "loss"))
    assert main(["plot", *three, "-o", str(tmp_path / "p3")]) == 0
    data = json.loads((tmp_path / "p3" / "runs_curves.json").read_text())
    assert all(g["time"]["accuracy"]["lo"] is not None for g in data["groups"])
