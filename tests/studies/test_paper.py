"""The paper study (validation/paper): tuning, selection before evaluation, the pre-registered
statistics (checked by hand on synthetic records), the report and its command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aflqueue import ValidationError
from aflqueue.jobs import code_version
from validation.paper.experiment import (CODE, PAPER_PRESETS, PaperPreset, load_paper, run_paper, select,
                                         summarize_paper)
from validation.paper.report import write_paper_report
from validation.paper.run import main

TINY = PAPER_PRESETS["paper-tiny"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    first = run_paper(TINY, out, stage="tune", progress=None)
    return out, first


def test_stages_selection_and_resume(tiny_run):
    out, first = tiny_run
    assert len(first["tuning"]) == 3 * 2 * 1 and not first["evaluation"]  # 3 tuned treatments x 2 rates x 1 seed
    sel = json.loads((out / "selection.json").read_text())  # written before any evaluation run
    assert set(sel["learning_rates"]["synthetic__n6__iid"]) == {"asyncsgd", "p2", "p3"}
    assert 0 < sel["targets"]["synthetic"] < 1
    # the target follows the pre-registered rule from the pilot runs alone
    best = sel["learning_rates"]["synthetic__n6__iid"]["asyncsgd"]["best_lr"]
    pilot = [r["measured"]["final_accuracy"] for r in first["tuning"]
             if r["treatment"] == "asyncsgd" and r["lr_base"] == best]
    assert sel["targets"]["synthetic"] == math.floor(100 * 0.9 * np.mean(pilot)) / 100
    for r in first["tuning"]:  # tuning never looks at the test set
        assert r["stage"] == "tune" and r["measured"]["tuning_score"] is not None
    done = run_paper(TINY, out, stage="all", progress=None)
    ev = done["evaluation"]
    assert len(ev) == 4 * 2 + 2  # 4 treatments + one safeguard, 2 seeds each
    assert {r["seed"] for r in ev} == {0, 1} and all(r["stage"] == "eval" for r in ev)
    op = [r for r in ev if r["treatment"] == "op"]
    p3 = {r["seed"]: r for r in ev if r["treatment"] == "p3"}
    for r in op:  # the operating point: P3's routing and m, the rule's rate from tuned AsyncSGD
        assert r["lr_base"] == best and r["step_size"]["rule"] == "optimal"
        assert r["lr"] == pytest.approx(best * r["step_size"]["ratio"])
        assert r["routing"] == p3[r["seed"]]["routing"] and r["concurrency"] == p3[r["seed"]]["concurrency"]
    capped = [r for r in ev if r["treatment"] == "p2-pmin4"]
    assert all(r["max_importance_weight"] <= 4 + 1e-9 for r in capped)
    assert {json.dumps(r["code_version"]) for r in [*done["tuning"], *ev]} == {json.dumps(code_version(CODE))}
    again = run_paper(TINY, out, stage="all", progress=None)  # nothing left to run
    assert len(again["evaluation"]) == len(ev)


def test_report_from_saved_runs(tiny_run, tmp_path):
    out, _ = tiny_run
    run_paper(TINY, out, stage="all", progress=None)
    md = write_paper_report(TINY, load_paper(out), tmp_path / "report.md", tmp_path / "fig").read_text()
    assert "one code version" in md and "Primary criterion" in md and "geometric mean" in md
    assert "## Multiplicity" in md and "**Tuned rates at an edge of their grid**" in md
    assert (tmp_path / "fig" / "paper-tiny_accuracy.png").is_file()
    assert (tmp_path / "fig" / "paper-tiny_time_ratios.pdf").is_file()


def _rec(treatment, seed, t_reach, acc, tau=100.0, diverged=False, pred=10.0):
    """A synthetic evaluation record whose accuracy crosses 0.5 at ``t_reach`` (None: never)."""
    times = list(np.linspace(10, tau, 10))
    curve = [0.0 if t_reach is None or t < t_reach else 1.0 for t in times]
    return {"scenario": {"dataset": "synthetic", "partition": "iid", "clients": 6, "spread": 30.0},
            "treatment": treatment, "seed": seed, "lr": 0.1, "concurrency": 6, "max_importance_weight": 1.0,
            "time_budget": tau, "predicted": {"time_to_accuracy": pred},
            "measured": {"final_accuracy": acc, "diverged": diverged, "diverged_at_time": None,
                         "curves": {"time": times, "test_accuracy": curve}}}


def test_criterion_by_hand():
    preset = PaperPreset("hand", ("synthetic",), partitions=("iid",), clients=6, treatments=("asyncsgd", "p2"))
    sel = {"targets": {"synthetic": 0.5}}
    # interpolation: the accuracy jumps 0 -> 1 between two evaluations; t = first time + half a step
    base = [_rec("asyncsgd", s, 55.0, 0.8) for s in range(4)]
    fast = [_rec("p2", s, 25.0, 0.9, pred=5.0) for s in range(4)]
    rows = summarize_paper(preset, sel, base + fast)["scenarios"][0]["rows"]
    p2 = next(r for r in rows if r["treatment"] == "p2")
    # evaluations at 10, 20, ..., 100: crossings interpolated at 25 (20 -> 30) and 55 (50 -> 60)
    assert p2["time_ratio"]["mean"] == pytest.approx(25 / 55)
    assert p2["time_ratio"]["ci"] == pytest.approx([25 / 55, 25 / 55])  # no spread: a point
    assert p2["criterion_met"] and p2["accuracy_difference"]["mean"] == pytest.approx(0.1)
    assert p2["predicted_time_ratio"]["mean"] == pytest.approx(0.5)
    # one censored treatment run: never met, whatever the ratio
    cens = fast[:3] + [_rec("p2", 3, None, 0.2)]
    p2c = next(r for r in summarize_paper(preset, sel, base + cens)["scenarios"][0]["rows"] if r["treatment"] == "p2")
    assert p2c["censored_treatment"] == 1 and not p2c["criterion_met"] and p2c["reached"] == 3
    # log-scale interval by hand: ratios 0.4, 0.5, 0.6, 0.45
    spread = [_rec("p2", s, t, 0.9) for s, t in enumerate([22.0, 27.5, 33.0, 24.75])]
    r = next(r for r in summarize_paper(preset, sel, base + spread)["scenarios"][0]["rows"] if r["treatment"] == "p2")
    from scipy.stats import t as student

    logs = np.log([_ratio(22.0), _ratio(27.5), _ratio(33.0), _ratio(24.75)])
    h = student.ppf(0.975, 3) * logs.std(ddof=1) / 2
    assert r["time_ratio"]["ci"] == pytest.approx([math.exp(logs.mean() - h), math.exp(logs.mean() + h)])


def _ratio(t_reach: float) -> float:
    from aflqueue.outcomes import time_to_target

    times = list(np.linspace(10, 100.0, 10))
    t = time_to_target({"time": times, "test_accuracy": [0.0 if x < t_reach else 1.0 for x in times]}, 0.5)
    return t / 55.0


def test_selection_refuses_incomplete_tuning(tiny_run):
    out, first = tiny_run
    with pytest.raises(ValidationError, match="tuning runs finished"):
        select(TINY, first["tuning"][:-1])


def _row(treatment, met=False, strict=False, acc=0.5, diff=None):
    return {"treatment": treatment, "criterion_met": met, "criterion_met_familywise": strict,
            "accuracy": {"mean": acc, "ci": [acc - 0.01, acc + 0.01], "n": 10},
            "accuracy_difference": diff,
            "time_ratio": {"mean": 0.5, "ci": [0.4, 0.6], "n": 10} if met else {"mean": 0.9, "ci": [0.8, 1.1], "n": 10}}


def test_claim_verdicts_follow_the_criteria():
    """Hand-built summary: one comparison meets the time criterion (partly reproduced); the +10%
    accuracy reading is testable only where AsyncSGD is below 1/1.1 and met only when the paired
    interval's lower end clears +10% of AsyncSGD's accuracy."""
    from validation.paper import report

    preset = PAPER_PRESETS["paper-tiny"]
    low = {"scenario": "a", "rows": [_row("asyncsgd", acc=0.50), _row("p2", met=True, acc=0.60,
                                                                       diff={"mean": 0.1, "ci": [0.06, 0.14], "n": 10}),
                                     _row("p3", acc=0.56, diff={"mean": 0.06, "ci": [0.04, 0.08], "n": 10})]}
    high = {"scenario": "b", "rows": [_row("asyncsgd", acc=0.95), _row("p2", acc=0.96,
                                                                        diff={"mean": 0.01, "ci": [0.0, 0.02], "n": 10})]}
    summary = {"scenarios": [low, high], "comparisons": 3}
    rows = [(sc, r) for sc in summary["scenarios"] for r in sc["rows"] if r["treatment"] != "asyncsgd"]
    text = "\n".join(report._paper_claims(summary, preset, rows))
    assert "**Partly reproduced**. The pre-registered criterion" in text and "holds in 1 of 3" in text
    assert "0 survive the Bonferroni" in text
    assert "speed-up of any size (95% interval of the time ratio below 1) in 1 of 3 comparisons: p2 in a (0.50)" in text
    # scenario a: 0.06 >= 0.10 * 0.50 -> met for p2; p3's 0.04 < 0.05 -> not met; scenario b untestable
    assert "Testable in 2 of 3 comparisons" in text and "met in 1 (p2 in a)" in text


def test_data_root_puts_the_paper_preset_on_the_torchvision_sets(tmp_path, capsys):
    """--data-root swaps the offline data sets for the torchvision sets found there (never the
    others), keeps seeds, grids and criterion, and refuses a folder that holds none of them."""
    from validation.paper.experiment import TORCHVISION_DATASETS, tuning_jobs, with_torchvision

    base = PAPER_PRESETS["paper"]
    p = with_torchvision(base, ["cifar10", "kmnist", "mnist"])
    assert p.datasets == ("mnist", "kmnist") and p.name == "paper-mnist-kmnist" and not p.safeguards
    assert (p.eval_seeds, p.pilot_seeds, p.criterion_ratio, p.partitions) == \
        (base.eval_seeds, base.pilot_seeds, base.criterion_ratio, base.partitions)
    jobs = tuning_jobs(p, data_root=str(tmp_path))
    assert {a[0]["dataset"] for _, a in jobs} == {"mnist", "kmnist"}
    assert {a[2]["model"] for _, a in jobs} == {"cnn28"} and {a[-1] for _, a in jobs} == {str(tmp_path)}
    assert set(TORCHVISION_DATASETS) >= set(p.datasets)
    with pytest.raises(ValidationError, match="data-root"):
        with_torchvision(base, ["cifar10"])
    # the command line: a folder with only CIFAR-10 is refused; one with KMNIST runs the preset on it
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert main(["--preset", "paper", "--data-root", str(tmp_path), "--report-only"]) == 2
    assert "data-root" in capsys.readouterr().err
    (tmp_path / "KMNIST").mkdir()
    out = tmp_path / "results"
    assert main(["--preset", "paper", "--data-root", str(tmp_path), "--report-only",
                 "--output", str(out)]) == 2
    assert "no finished runs under" in capsys.readouterr().err


def _tuned(best, grid=(0.01, 0.0234, 0.0548, 0.128, 0.3), **extra):
    return {"best_lr": best, "at_edge": best in (min(grid), max(grid)),
            "table": [{"lr": lr, "score": 0.5} for lr in grid], **extra}


def test_rates_at_an_edge_are_flagged_and_counted():
    from validation.paper import report

    sel = {"learning_rates": {"a": {"asyncsgd": _tuned(0.3), "p2": _tuned(0.0548), "p3": _tuned(0.01)},
                              "b": {"asyncsgd": _tuned(0.128), "p2": _tuned(0.01, extensions=[0.0043]),
                                    "p3": _tuned(0.0234)}}}
    assert report._edge_mark(sel["learning_rates"]["a"]["asyncsgd"]) == " (top of the grid, not extended)"
    assert report._edge_mark(sel["learning_rates"]["a"]["p3"]) == " (floor of the grid, not extended)"
    assert report._edge_mark(sel["learning_rates"]["b"]["p2"]) == " (floor of the grid, extended)"
    assert report._edge_mark(sel["learning_rates"]["a"]["p2"]) == ""
    line = report._edges_line(sel)
    assert "asyncsgd: 1 of 2 (top 0.3 in a); p2: 1 of 2 (floor 0.01 in b); p3: 1 of 2 (floor 0.01 in a)" in line
    assert "under-tuned" in line


def test_multiplicity_by_hand():
    """Three comparisons and one safeguard: the per-comparison, the family-wise (over all four, from
    the summary) and the protocol's family (the three main ones, the t-interval at its Bonferroni
    level) counts of intervals below 1, against intervals computed from the ratios themselves."""
    from scipy.stats import t as student

    from aflqueue.stats import familywise_confidence, log_ratio_interval
    from validation.paper import report

    preset = PaperPreset("hand", ("synthetic",), partitions=("iid",), clients=6,
                         treatments=("asyncsgd", "p2", "p3", "op"), safeguards=("p2-pmin4",))
    noise = np.array([-0.1, 0.05, 0.1, -0.05, 0.0, 0.08, -0.08, 0.02, -0.02, 0.0])
    sd = noise.std(ddof=1) / math.sqrt(noise.size)
    t3, t4 = (student.ppf(0.5 + familywise_confidence(0.95, k) / 2, 9) for k in (3, 4))
    means = {"p2": -0.5 * (t3 + t4) * sd,  # below 1 over the family of 3, not over 4
             "p3": -1.5 * t4 * sd,  # below 1 at every level
             "op": -0.5 * student.ppf(0.975, 9) * sd,  # not below 1 even per comparison
             "p2-pmin4": -3 * t4 * sd}

    def row(name):
        ratios = np.exp(means[name] + noise)
        return {"treatment": name, "criterion_met": False, "criterion_met_familywise": False,
                "time_ratio": log_ratio_interval(ratios).to_dict(),
                "time_ratio_familywise": log_ratio_interval(ratios, familywise_confidence(0.95, 4)).to_dict()}

    summary = {"scenarios": [{"scenario": "a", "rows": [{"treatment": "asyncsgd"}, *map(row, means)]}],
               "comparisons": 4, "confidence": 0.95}
    sel = {"learning_rates": {"a": {"asyncsgd": _tuned(0.3), "p2": _tuned(0.0548), "p3": _tuned(0.0548)}}}
    text = "\n".join(report._multiplicity(summary, preset, sel))
    assert "Comparisons: 3 on the pre-registered criterion (3 treatments x 1 scenarios), and 1 safeguard" in text
    assert "2 of 3 per comparison; 1 of them survive Bonferroni over 4 and 2 over the protocol's 3" in text
    assert "2 of the 2 are in a, where tuned AsyncSGD's rate is the top of its grid" in text
    assert "met in 0 of 3" in text and "no verdict of the criterion depends on it" in text
