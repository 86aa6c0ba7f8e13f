"""The oracle test of the approximation's delay formula (validation/approx/delay_oracle.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from validation.approx.experiment import Point, grid
from validation.approx.delay_oracle import (
    marie_rates,
    oracle_delays,
    oracle_jobs,
    run_oracle_point,
    summarize_oracle,
)
from aflqueue.queueing import analyze


def _type_delays(pt: Point) -> np.ndarray:
    """Product-form per-type delays (task-weighted), from exact MVA."""
    s, types = pt.system(), pt.types()
    res = analyze(s)
    w = s.routing
    return np.array([np.sum(w[types == g] * res.relative_delay[types == g]) / w[types == g].sum()
                     for g in range(types.max() + 1)])


@pytest.mark.parametrize("n,m,routing", [(5, 4, "uniform"), (10, 7, "proportional"), (3, 2, "uniform")])
def test_oracle_formula_is_exact_for_exponential_service(n, m, routing):
    # exponential service: the arrival theorem holds, so the formula fed the exact queues at m - 1
    # (exact MVA of the smaller network) must give exact MVA's delays at m
    pt = Point("x", "hetero", n, m, 1.0, "exponential", routing)
    smaller = dataclasses.replace(pt, m=m - 1)
    types = pt.types()
    q = np.bincount(types, weights=analyze(smaller.system()).mean_queue_lengths) if m > 2 else None
    np.testing.assert_allclose(oracle_delays(pt, q), _type_delays(pt), rtol=1e-12)


def test_oracle_at_m2_needs_no_simulation_and_matches_the_one_task_network():
    pt = next(p for p in grid() if p.m == 2 and p.cv == 3.0 and p.family == "hetero")
    # the one-task network does not depend on the law: exponential MVA is exact there
    np.testing.assert_allclose(oracle_delays(pt, None), _type_delays(dataclasses.replace(pt, law="exponential")),
                               rtol=1e-12)
    with pytest.raises(ValueError):
        oracle_delays(dataclasses.replace(pt, m=3), None)


def test_jobs_cover_every_delay_judged_point():
    jobs = oracle_jobs()
    judged = [p for p in grid() if p.family == "hetero" and not p.multistage and not p.id.startswith("other")
              and p.m >= 2]
    assert len(judged) == 240
    for kind, smallest_m in (("oracle", 3), ("marie", 2)):
        mine = [(i, a) for i, a in jobs if a[0] == kind]
        assert {i.removeprefix(kind + "_") for i, _ in mine} == {p.id for p in judged if p.m >= smallest_m}
        assert len({a[1] for _, a in mine}) == len(mine)  # one grid index (hence one seed) per job


def test_marie_rates_fill_sparse_states_from_below():
    deps = np.array([[0.0, 500, 300, 20, 150], [0.0, 50, 10, 0, 0]])
    time = np.array([[9.0, 250, 100, 5, 30], [9.0, 10, 10, 1, 1]])
    r = marie_rates(deps, time)
    np.testing.assert_allclose(r[0, 1:], [2.0, 3.0, 3.0, 5.0])  # k = 3 has 20 < 100 departures
    np.testing.assert_allclose(r[1, 1:], 60 / 22)  # no state has enough: the overall rate


def test_simulated_queues_at_m_minus_1_conserve_tasks():
    k = next(i for i, p in enumerate(grid()) if p.id == "hetero_n3_m3_uniform_cv3")
    rec = run_oracle_point((k, 60_000))
    q = np.array([e["mean"] for e in rec["queue_m_minus_1"]])
    assert rec["m"] == 3
    assert q.sum() == pytest.approx(2.0, abs=1e-9)  # single stage: every task is at a client
    assert np.all(q > 0)


def _fake(pt: Point, delays) -> dict:
    est = [{"mean": float(d), "ci": [float(d), float(d)], "n": 20} for d in delays]
    return {"id": pt.id, "kind": "point", "simulation": {"delay": est},
            "approx": {"delay": list(delays)}, "product_form": {"delay": [2 * d for d in delays]}}


def test_summary_scores_against_the_saved_simulation_and_counts_missing_points():
    m2 = [p for p in grid() if p.family == "hetero" and not p.multistage and p.m == 2][:3]
    # simulated delays equal to the oracle's: the oracle and the approximation pass, PF (x2) fails
    approx_records = [_fake(p, oracle_delays(p, None)) for p in m2]
    out = summarize_oracle([], approx_records)
    assert out["all"]["points"] == 3
    assert out["all"]["oracle"]["within_3pct"] == 1.0
    assert out["all"]["product_form"]["within_3pct"] == 0.0
    assert out["all"]["product_form"]["max"] == pytest.approx(1.0)
    assert out["missing"] == 240 - 3


def test_queue_state_projection_is_exact_for_exponential_service():
    # memoryless service: the stochastic intensity of client l is mu_l 1{Y_l >= 1}, a function of
    # its own queue, so the projection loses nothing and must reproduce the simulated delays
    from aflqueue import System
    from validation.approx.delay_oracle import projected_delays
    from aflqueue.sim import simulate
    from aflqueue.sim.estimate import departure_rates_by_queue

    mu = np.array([3.0, 1.0, 0.3, 0.1] * 2)
    tr = simulate(System.from_rates(mu.tolist(), None, 8), 300_000, seed=12)
    deps, held = departure_rates_by_queue(tr, warmup=0.1)
    up = tr.updates()
    out = projected_delays(tr, marie_rates(deps, held), float(up["time"][int(0.1 * up["time"].size) - 1]))
    for i in range(mu.size):
        # per task, updates minus the integrated intensity is a martingale increment: mean zero;
        # sojourns of one client barely overlap, so the plain standard error is a fair scale
        d = (out["simulated"] - out["projected"])[out["client"] == i]
        assert abs(d.mean()) < 4.5 * d.std() / np.sqrt(d.size)
        assert abs(d.mean()) < 0.03 * max(out["simulated"][out["client"] == i].mean(), 1.0)
        c = (out["simulated"] - out["cross_projected"])[out["client"] == i]
        assert abs(c.mean()) < 4.5 * c.std() / np.sqrt(c.size)


def test_perfect_pass_probability_matches_a_simulated_perfect_analysis():
    # independent truth: draw estimates around a known true value and count passes
    from validation.approx.delay_oracle import perfect_pass_probability
    from aflqueue.stats import t_interval

    rng = np.random.default_rng(5)
    truth, sd, batches = np.array([1.0, 0.2]), np.array([0.02, 0.004]), 20
    passes, probs = [], []
    for _ in range(3000):
        est = [t_interval(rng.normal(mu, s_ * np.sqrt(batches), batches)).to_dict() for mu, s_ in zip(truth, sd)]
        passes.append(all(abs(mu - e["mean"]) <= 0.03 * e["mean"] for mu, e in zip(truth, est)))
        probs.append(perfect_pass_probability(est))
    assert np.mean(probs) == pytest.approx(np.mean(passes), abs=0.03)
    assert 0.5 < np.mean(passes) < 0.9  # an informative regime, not a trivial 0 or 1


# --------------------------------------------------------------------------- run, resume, script
def _script_main():
    """``main`` of the oracle's command, validation/approx/oracle.py."""
    from validation.approx.oracle import main

    return main


def test_run_resume_and_report_on_one_point(tmp_path):
    from pathlib import Path

    from aflqueue.jobs import code_version
    from validation.approx.delay_oracle import CODE, run_delay_oracle
    from validation.approx.experiment import load_records
    from validation.approx.report import write_delay_oracle_report

    committed = Path(__file__).resolve().parents[2] / "validation" / "approx" / "results"
    approx_records = [r for r in load_records(committed) if r.get("kind") == "point"]
    first, second = [], []
    out = run_delay_oracle(tmp_path, approx_records, only=["hetero_n3_m3_proportional_cv1"], progress=first.append)
    run_delay_oracle(tmp_path, approx_records, only=["hetero_n3_m3_proportional_cv1"], progress=second.append)
    assert any("2 job(s) to run" in s for s in first) and any("0 job(s) to run" in s for s in second)
    row = next(r for r in out["rows"] if r["point"] == "hetero_n3_m3_proportional_cv1")
    assert all(row[k] is not None for k in ("oracle", "marie", "projection", "cross_projection"))
    assert out["meta"]["simulated_by_kind"] == {"oracle": 1, "marie": 1}
    assert out["meta"]["code_versions"] == [code_version(CODE)]
    # the 48 m = 2 points need no simulation; every other point lacks its records here
    assert out["all"]["points"] == 49 and out["missing"] == 240 - 49
    text = write_delay_oracle_report(out, tmp_path / "oracle.md", "## Reading\n\nmine").read_text()
    assert "hetero_n3_m3_proportional_cv1" in text and "## Reading" in text


@pytest.mark.parametrize("argv,field", [(["--workers", "0"], "--workers"), (["--backend", "ray"], "arguments"),
                                        (["--report-only"], "--out"), (["--approx", "."], "--approx")])
def test_script_rejects_bad_input_with_one_line(argv, field, tmp_path, capsys):
    code = _script_main()(["--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and field in err
