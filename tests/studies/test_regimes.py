"""The regime map's machinery end to end on its tiny preset: frozen stages (predictions before any
tuning run, a regime's selection before its evaluation), the held-out split, resumption, the
statistics, the report and the figures, and the study's command (validation/regimes/run.py)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from aflqueue.jobs import code_version
from validation.regimes.experiment import (CODE, REGIME_PRESETS, pool_regime_maps, run_order, run_regimes,
                                           summarize_regimes)
from validation.regimes.report import write_regimes_pooled_report, write_regimes_report
from validation.regimes.run import main

TINY = REGIME_PRESETS["regimes-tiny"]


@pytest.fixture(scope="module", autouse=True)
def fewer_draws():
    """The study passes no draw count, so its stratified tests draw ``aflqueue.stats.PERMUTATION_DRAWS``
    (10^6, tested in tests/test_permutation.py); 2 x 10^4 here keep these tests of the machinery
    quick."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("aflqueue.stats.PERMUTATION_DRAWS", 20_000)
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("regimes")
    early = run_regimes(TINY, out, stage="predict", progress=None)
    full = run_regimes(TINY, out, stage="all", progress=None)
    return out, early, full


def test_stages_are_frozen_in_order(tiny):
    out, early, full = tiny
    # after the predict stage: predictions exist, and no tuning or evaluation run does
    assert early["predictions"] is not None and not early["tuning"] and not early["evaluation"]
    assert json.loads((out / "predictions.json").read_text()) == full["predictions"]  # never recomputed
    regs = TINY.regimes()
    n_routings = 4 + len(TINY.interpolations)  # uniform, interpolations, P2, P3, P1
    assert len(full["tuning"]) == len(regs) * n_routings * len(TINY.tuning_lrs)
    assert len(full["evaluation"]) == len(regs) * (n_routings + 1) * len(TINY.eval_seeds)
    assert set(full["selection"]["targets"]) == {r.id for r in regs}
    assert [r.id for r in run_order(TINY)] and len(run_order(TINY)) == len(regs)
    again = run_regimes(TINY, out, stage="all", progress=None)  # nothing left to run
    assert len(again["evaluation"]) == len(full["evaluation"])
    versions = {json.dumps(r["code_version"]) for r in [*full["pilots"], *full["tuning"], *full["evaluation"]]}
    assert versions == {json.dumps(code_version(CODE))}  # the package's and the study's code
    assert full["design"]["code_version"] == full["predictions"]["code_version"] == code_version(CODE)


def test_the_split_keeps_regimes_held_out(tiny):
    _, _, full = tiny
    pilots, tuning, ev = full["pilots"], full["tuning"], full["evaluation"]
    transfer = [r for r in pilots if r["tags"]["kind"] == "transfer"]
    assert transfer and len(transfer) == len(TINY.partitions) * len(TINY.pilot_routings) * len(TINY.pilot_lrs)
    # pilots: their own seed, validation split, shorter budgets than any evaluation of the same system
    assert {r["seed"] for r in pilots} == {TINY.pilot_seed}
    assert not {r["seed"] for r in pilots} & {r["seed"] for r in ev} and not {r["seed"] for r in tuning} & {
        r["seed"] for r in ev}
    assert all(r["evaluate_on"] == "validation" for r in [*pilots, *tuning])
    assert all(r["evaluate_on"] == "test" for r in ev)
    budgets = {r["tags"]["regime"]: r["time_budget"] for r in ev}
    for r in pilots:
        if r["tags"]["kind"] == "local":
            assert r["time_budget"] < budgets[r["tags"]["regime"]]
    # transfer pilots run on a system that is not a regime of the map
    assert TINY.pilot_spread not in TINY.spreads
    des = full["design"]
    assert all(d["spread"] != TINY.pilot_spread for d in des["regimes"].values())


def test_summary_report_and_figures(tiny, tmp_path):
    out, _, full = tiny
    s = summarize_regimes(TINY, full)
    assert len(s["regimes"]) == len(TINY.regimes())
    key = "p2|time_ratio|transfer"
    assert key in s["across"] and s["across"][key]["n"] == len(TINY.regimes())
    assert -1 <= s["across"][key]["statistic"] <= 1 and 0 < s["across"][key]["p_value"] <= 1
    assert {"nontrivial|transfer", "with_p1|transfer", "nontrivial|initial"} <= set(s["within"])
    assert s["cost"]["transfer_pilots"]["runs"] == 6 and s["cost"]["evaluation"]["runs"] == len(full["evaluation"])
    ceil = s["noise_ceiling"]["p2"]
    assert ceil["n"] == len(TINY.regimes()) and 0 <= ceil["reliability"] <= 1 and -1 <= ceil["mean"] <= 1
    for v in s["verdicts"].values():  # the counts behind each agreement add up
        assert v["agree"] >= v["total"] - v["predicted_pays"] - v["measured_pays"] and v["agree"] <= v["total"]
    for sc in s["regimes"]:
        row = sc["rows"]["p2"]
        assert row["time_ratio"]["n"] == len(TINY.eval_seeds)
        assert {"transfer", "local", "initial", "initial-sim"} <= set(row["predicted"])
    md = write_regimes_report(TINY, full, tmp_path / "report.md", tmp_path / "fig")
    text = md.read_text()
    assert "Held-out rank correlations" in text and "Which term fails" in text and "Cost of the pilots" in text
    assert "noise ceiling" in text and "predicted 'pays' in" in text
    assert (tmp_path / "fig" / "regimes_map_p2.png").is_file()
    assert (tmp_path / "fig" / "regimes_predicted_vs_measured_p2.pdf").is_file()
    # figures two folders away from the report: every image link is relative and resolves from the report
    deep = tmp_path / "a" / "b" / "report.md"
    deep.parent.mkdir(parents=True)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", write_regimes_report(TINY, full, deep, tmp_path / "fig").read_text())
    assert links and all(not Path(u).is_absolute() and (deep.parent / u).is_file() for u in links)


def test_pooled_maps_agree_with_each_map(tiny, tmp_path):
    _, _, full = tiny
    s = summarize_regimes(TINY, full)
    one = pool_regime_maps([s])
    for p, r in one["across"].items():  # one map pooled alone is that map's across-regime test
        assert r["statistic"] == pytest.approx(s["across"][f"p2|time_ratio|{p}"]["statistic"], abs=1e-12)
    two = pool_regime_maps([s, s])
    assert two["regimes"] == 2 * len(TINY.regimes())
    text = write_regimes_pooled_report([(TINY, full), (TINY, full)], tmp_path / "pooled.md").read_text()
    assert f"Spearman over {2 * len(TINY.regimes())} regimes" in text


def test_run_report_only(tiny, tmp_path, capsys):
    out, _, _ = tiny
    rep = tmp_path / "r.md"
    assert main(["--preset", "regimes-tiny", "--output", str(out), "--report-only", "--report", str(rep),
                 "--figures", str(tmp_path / "f")]) == 0
    assert rep.is_file() and "report:" in capsys.readouterr().out
    assert (tmp_path / "f" / "regimes_map_p2.png").is_file()
    assert main(["--preset", "regimes-tiny", "--seeds", "3"]) == 2  # the preset fixes its seeds: no such flag
    err = capsys.readouterr().err
    assert "unrecognized arguments: --seeds 3" in err and err.count("\n") == 1
    assert main(["--preset", "regimes-huge", "--report-only"]) == 2
    assert "preset" in capsys.readouterr().err


def test_p_values_are_exact_with_the_protocols_draws_beside(tiny):
    """Across regimes (3 here) the p-value is exact over all 3! pairings; within regimes it rests on
    10^6 draws; beside each pre-registered one, the protocol's seeded draws (the preset's count)."""
    from aflqueue.stats import PERMUTATION_DRAWS, spearman_permutation_test

    _, _, full = tiny
    s = summarize_regimes(TINY, full)
    n = len(TINY.regimes())
    for key, st in s["across"].items():
        if st["statistic"] is None:  # one side constant: no correlation, no p-value
            assert st["p_value"] is None and st["protocol"]["p_value"] is None
            continue
        assert st["exact"] and st["resamples"] == math.factorial(st["n"]) and 3 <= st["n"] <= n, key
        assert st["protocol"]["resamples"] == TINY.permutations
    for key, st in s["within"].items():
        assert not st["exact"] and st["resamples"] == PERMUTATION_DRAWS, key
        assert ("protocol" in st) == (not key.startswith("loss|"))  # the additional ones were not pre-registered
    # the across-regime test is the stats function on the summary's own pairs
    rows = [sc["rows"]["p2"] for sc in s["regimes"]]
    xs = [r["predicted"]["transfer"]["time_ratio"]["point"] for r in rows]
    ys = [r["time_ratio"]["mean"] for r in rows]
    st = s["across"]["p2|time_ratio|transfer"]
    assert st["p_value"] == spearman_permutation_test(xs, ys).p_value
    assert st["protocol"]["p_value"] == spearman_permutation_test(xs, ys, resamples=TINY.permutations).p_value


def test_tuned_rates_at_an_edge_are_counted_and_marked(tiny, tmp_path):
    _, _, full = tiny
    s = summarize_regimes(TINY, full)
    lo, hi = min(TINY.tuning_lrs), max(TINY.tuning_lrs)
    for name, e in s["tuning_edges"].items():  # against the selection file, rate by rate
        chosen = {rg: per[name]["best_lr"] for rg, per in full["selection"]["learning_rates"].items()}
        assert sorted(e["floor"]) == sorted(rg for rg, lr in chosen.items() if lr == lo)
        assert sorted(e["top"]) == sorted(rg for rg, lr in chosen.items() if lr == hi)
        assert e["tuned"] == len(TINY.regimes())
    text = write_regimes_report(TINY, full, tmp_path / "report.md").read_text()
    assert "**Tuned rates at an edge of the grid**" in text
    table = text[text.index("Tuned learning rate of every routing"):text.index("**Tuned rates at an edge")]
    marks = len(re.findall(r"\((?:floor|top)\)", table))
    assert marks == sum(len(e["floor"]) + len(e["top"]) for e in s["tuning_edges"].values())
    slow = [sc["regime"] for sc in s["regimes"] if sc["rows"]["p2"]["time_ratio"]["ci"][0] > 1]
    assert f"in {len(slow)} regime" in text
    pooled = pool_regime_maps([s, s])
    assert pooled["tuning_edges"]["p2"] == {"floor": 2 * len(s["tuning_edges"]["p2"]["floor"]),
                                            "top": 2 * len(s["tuning_edges"]["p2"]["top"]),
                                            "tuned": 2 * len(TINY.regimes())}
    ptext = write_regimes_pooled_report([(TINY, full), (TINY, full)], tmp_path / "pooled.md").read_text()
    assert "Tuned rates at an edge of the grid" in ptext and "protocol's 9,999 draws" in ptext


def test_the_primary_rule_rests_on_the_exact_p(tiny, tmp_path):
    """A preset with a pre-registered significance rule: passed only when the exact p-value is below
    it, whatever the protocol's draws said (with 3 regimes the exact p is at least 1/6)."""
    _, _, full = tiny
    preset = replace(TINY, primary_alpha=0.05)
    prim = summarize_regimes(preset, full)["across"][f"p2|time_ratio|{preset.primary}"]
    text = write_regimes_report(preset, full, tmp_path / "report.md").read_text()
    verdict = "passed" if prim["p_value"] < 0.05 else "NOT passed"
    assert f"**Pre-registered rule (confirmed if p < 0.05): {verdict}.**" in text
    assert prim["p_value"] >= 1 / 6 and verdict == "NOT passed"
    assert "Pre-registered rule" not in write_regimes_report(TINY, full, tmp_path / "plain.md").read_text()


def test_the_regime_studies_verdict_rule_is_kept_unchanged():
    """validation/regimes/gain.py keeps the rule the regime studies ran with (the library's
    aflqueue.pilot.predict is stricter): intervals decide, and a point below 1 without an interval
    "pays"; the prediction carries the point fit's ratio, losses and steps."""
    import numpy as np

    from aflqueue.pilot_fit import AccuracyMap, OperatingPoint, PilotFit
    from validation.regimes.gain import predict_gain, verdict

    assert verdict({"point": 0.8, "lo": 0.7, "hi": 0.95}) == "pays"
    assert verdict({"point": 0.8, "lo": 0.7, "hi": 1.05}) == "not expected to pay"
    assert verdict({"point": 1.2, "lo": 1.1, "hi": 1.3}) == "not expected to pay: expected to lose"
    assert verdict({"point": 0.8, "lo": None, "hi": None}) == "pays"
    assert verdict({"point": 1.2, "lo": None, "hi": None}) == "not expected to pay"

    def op(lam: float) -> OperatingPoint:
        t = np.linspace(0, 1000, 101)
        return OperatingPoint(np.ones(2) / 2, 2, lam, 1.0, 0.0, t, lam * t)

    # only throughput matters (no variance or staleness term): the time ratio is 1/3, by hand
    fit = PilotFit(np.array([0.1, 5.0, 0.0, 0.0]), 0.2, np.zeros((0, 4)), AccuracyMap(2.0, 2.0))
    g = predict_gain(fit, op(3.0), op(1.0), time_budget=100.0)
    assert g.time_ratio["point"] == pytest.approx(1 / 3, rel=1e-9)
    assert g.time_ratio["lo"] is None and g.verdict == "pays" and g.eta == {"routing": 0.2, "baseline": 0.2}
    assert g.loss["baseline"] == pytest.approx(0.1 + 5.0 / (0.2 * 100.0))
