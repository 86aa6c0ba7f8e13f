"""The recommendation (docs/theory.md section 12): successive halving finds the best operating
point of a world whose answer is known in closed form, spends what it says, never stops at an
edge, keeps AsyncSGD when nothing is faster; the conformal interval covers at its rate and widens
with the pilots' disagreement; end to end with real training, pilots are resumable jobs keyed by
their content."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aflqueue.config import load_config
from aflqueue.errors import ValidationError
from aflqueue.recommendation import (Calibration, Candidate, PilotPlan, conformal_quantile, plan_cost,
                                prediction_interval, recommend)
from aflqueue.tuning import score_curves

N = 10
ACC = 0.9  # every arm's accuracy plateau


def config(**extra):
    sets = ['data.dataset="synthetic"', f"data.clients={N}", "data.validation_fraction=0.2",
            'data.options={"num_samples": 1000, "num_features": 8, "num_classes": 3}', 'system.profile="five-types"',
            "system.spread=30", "run.updates=300", "local.lr=0.1"]
    return load_config(None, sets + [f"{k}={json.dumps(v)}" for k, v in extra.items()])


def point(name, throughput):
    p = np.full(N, 1.0 / N) if name == "asyncsgd" else np.linspace(1, 2, N) / np.linspace(1, 2, N).sum()
    return Candidate(name, p, N, None, 1.0, throughput)


class World:
    """Accuracy ``ACC (1 - exp(-v g(lr) t / tau))`` with ``g`` peaked at the arm's best rate: the
    time to a target is known in closed form. ``noise[seed]`` scales a candidate's speed per seed."""

    def __init__(self, speed, best_lr, budget, noise=None):
        self.speed, self.best_lr, self.budget, self.noise = speed, best_lr, budget, noise or {}
        self.calls = 0

    def g(self, name, lr):
        return math.exp(-math.log(lr / self.best_lr[name]) ** 2 / (2 * 0.7 ** 2))

    def rate(self, name, lr, seed):
        return self.speed[name] * self.g(name, lr) * self.noise.get((name, seed), 1.0) / self.budget

    def __call__(self, jobs):
        self.calls += len(jobs)
        out = []
        for job_id, conf in jobs:
            name, lr, seed = job_id.split("__")[0], conf["local"]["lr"], conf["seed"]
            horizon, k = conf["run"]["time_budget"], conf["run"]["eval_times"]
            t = horizon * (np.arange(k) + 1) / k
            acc = ACC * (1 - np.exp(-self.rate(name, lr, seed) * t))
            curves = {"time": t.tolist(), "test_accuracy": acc.tolist()}
            out.append({"score": score_curves(curves, horizon), "curves": curves, "arrivals": int(horizon),  # throughput 1, as the points say
                        "diverged": False, "final_accuracy": float(acc[-1])})
        return out


def expected(tau):
    """The fake world's schedules apply one update per time unit."""
    return lambda c, fraction, seed: c.throughput * fraction * tau


def budget_of(cfg):
    from aflqueue.pipeline import build_system
    from aflqueue.protocol import time_budget

    return time_budget(build_system(cfg, cfg.data.clients), cfg.run.updates)


def true_ratio(world, name, lr_c, lr_a, target):
    """Closed form: T = -log(1 - target / ACC) / rate, so the ratio is rate_a / rate_c."""
    return world.rate("asyncsgd", lr_a, 0) / world.rate(name, lr_c, 0)


def test_halving_finds_the_fastest_candidate_and_its_ratio():
    cfg = config()
    tau = budget_of(cfg)
    speed = {"asyncsgd": 3.0, "a": 3.5, "b": 6.0, "c": 4.0}
    best = {"asyncsgd": 0.1, "a": 0.05, "b": 0.7, "c": 0.02}  # b's best rate is far above its first grid
    world = World(speed, best, tau)
    cands = [point("asyncsgd", 1.0), point("a", 1.0), point("b", 1.0), point("c", 1.0)]
    plan = PilotPlan(evaluations=400, seeds=(5, 6), pilot_fraction=0.2)  # four candidates: room to extend
    rec = recommend(cfg, candidates=cands, runner=world, plan=plan, updates_of=expected(tau),
                    calibration=Calibration(quantile=2.0, regimes=10, source="test"))
    assert rec.candidate == "b" and not rec.keep_asyncsgd
    # the chosen rates are within one halving step of the truth: the grid was extended past 0.3
    assert abs(math.log(rec.lr / 0.7)) <= math.log(3) / 2 + 1e-9
    assert abs(math.log(rec.asyncsgd_lr / 0.1)) <= math.log(3) / 2 + 1e-9
    want = true_ratio(world, "b", rec.lr, rec.asyncsgd_lr, rec.target)
    assert rec.predicted_ratio == pytest.approx(want, rel=0.02)
    assert rec.at_edge == [] and max(r["lr"] for r in rec.arms if r["candidate"] == "b") > 0.7
    # identical seeds: no disagreement, the interval is the floor's
    assert rec.sigma == pytest.approx(0.1) and rec.interval == pytest.approx(
        (rec.predicted_ratio * math.exp(-0.2), rec.predicted_ratio * math.exp(0.2)))
    assert rec.pilot_updates == sum(r["updates"] for r in rec.arms) <= 0.2 * rec.comparison_updates
    assert "b: predicted time to target" in repr(rec).splitlines()[0]


def test_nothing_faster_keeps_asyncsgd(capsys):
    cfg = config()
    tau = budget_of(cfg)
    world = World({"asyncsgd": 5.0, "a": 3.0, "b": 4.0}, {"asyncsgd": 0.1, "a": 0.1, "b": 0.1}, tau)
    rec = recommend(cfg, candidates=[point("asyncsgd", 1.0), point("a", 1.0), point("b", 1.0)], runner=world,
                    plan=PilotPlan(evaluations=400, pilot_fraction=0.2), updates_of=expected(tau))
    assert rec.keep_asyncsgd and rec.candidate == "asyncsgd" and rec.predicted_ratio > 1
    assert np.allclose(rec.routing, 1.0 / N) and rec.lr == rec.asyncsgd_lr
    assert rec.interval is None and rec.verdict().startswith("keep AsyncSGD")
    # keeping AsyncSGD does not hand over the pilots' short-run rate as if it were tuned
    assert "tuned for the full budget" in rec.verdict()
    from aflqueue.console import recommendation_report

    recommendation_report(rec)
    out = capsys.readouterr().out
    assert "not a tuned rate" in out and "operating point:" not in out


def test_the_interval_widens_when_the_pilots_disagree():
    cal = Calibration(quantile=1.5)
    widths = []
    for spread in (0.0, 0.1, 0.3, 0.6):
        sigma, (lo, hi) = prediction_interval([0.7 * math.exp(spread), 0.7 * math.exp(-spread)], cal)
        assert lo < 0.7 < hi and math.sqrt(lo * hi) == pytest.approx(0.7)
        # sigma^2 = var(log r) / S + floor^2 with the sample variance of two logs
        assert sigma == pytest.approx(math.sqrt((2 * spread ** 2) / 2 + 0.01))
        widths.append(math.log(hi / lo))
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert prediction_interval([0.7, math.inf], cal) == (math.inf, None)  # a seed never reached the target


def test_conformal_quantile_by_hand_and_its_coverage():
    assert conformal_quantile([0.3, 0.1, 0.2, 0.5, 0.4, 0.9, 0.8, 0.7, 0.6, 1.0], 0.9) == 1.0  # ceil(9.9) = 10th
    assert conformal_quantile(list(range(1, 20)), 0.9) == 18  # ceil(0.9 * 20) = 18th of 19
    assert conformal_quantile([0.1] * 8, 0.9) is None  # ceil(8.1) = 9 > 8: no finite quantile
    # coverage on exchangeable errors, simulated: at least the nominal 90% on average
    rng = np.random.default_rng(3)
    hits = []
    for _ in range(4000):
        e = np.abs(rng.standard_t(3, size=13))
        q = conformal_quantile(e[:12], 0.9)
        hits.append(e[12] <= q)
    assert 0.9 <= np.mean(hits) <= 0.95


def test_the_pilot_budget_is_stated_and_enforced():
    """Six candidates of the study's throughputs fit in 10% of the comparison they replace
    (every candidate tuned on 5 rates x 2 seeds and evaluated on 10 seeds); a plan over its limit
    first drops a finalist, then is refused before any run."""
    lams = {"asyncsgd": 1.0, "a": 3.0, "b": 3.0, "c": 2.0, "d": 2.5, "e": 3.0}
    cands = [point(k, v) for k, v in lams.items()]
    cost = plan_cost(cands, 100.0, PilotPlan())
    assert cost["comparison"] == pytest.approx(sum(lams.values()) * 100 * (5 * 2 + 10))
    assert cost["planned"] <= cost["limit"] == pytest.approx(0.1 * cost["comparison"])
    ran = []
    with pytest.raises(ValidationError, match="plan"):
        recommend(config(), candidates=cands[:3], runner=lambda jobs: ran.append(jobs),
                  plan=PilotPlan(pilot_fraction=0.01), updates_of=expected(100.0))
    assert ran == []


def test_a_plan_just_over_its_limit_shortens_its_halving_rounds():
    """A plan a little over its limit (the recommendation study's n = 500 regimes: 10.2% of the
    comparison against 10%) keeps its candidates, shortens every halving round by 2/3 at a time,
    spends within the limit, and still finds the fastest candidate; far over, it is refused."""
    cfg = config()
    tau = budget_of(cfg)
    speed = {"asyncsgd": 3.0, "a": 3.5, "b": 6.0, "c": 4.0}
    world = World(speed, {"asyncsgd": 0.1, "a": 0.1, "b": 0.1, "c": 0.1}, tau)
    cands = [point("asyncsgd", 1.0), point("a", 1.0), point("b", 1.0), point("c", 1.0)]
    free = plan_cost(cands, tau, PilotPlan(finalists=1, evaluations=50))
    shorter = plan_cost(cands, tau, PilotPlan(finalists=1, evaluations=50, fractions=(2 / 27, 2 / 9)))
    assert shorter["planned"] < free["planned"]
    # a limit between the two: one shortening fits, the unshortened plan (even with 1 finalist) does not
    tight = PilotPlan(evaluations=50, pilot_fraction=(shorter["planned"] + free["planned"]) / 2 / free["comparison"])
    rec = recommend(cfg, candidates=cands, runner=world, plan=tight, updates_of=expected(tau))
    assert rec.candidate == "b"
    assert max(r["fraction"] for r in rec.arms if r["round"] == 0) == pytest.approx(2 / 27)
    assert rec.pilot_updates <= tight.pilot_fraction * free["comparison"] + 1e-9
    final_only = plan_cost(cands, tau, PilotPlan(finalists=1, fractions=(1e-9,)))["final"]
    with pytest.raises(ValidationError, match="plan"):
        recommend(cfg, candidates=cands, runner=world, updates_of=expected(tau),
                  plan=PilotPlan(evaluations=50, pilot_fraction=0.99 * final_only / free["comparison"]))


def test_calibration_files_are_checked_field_by_field(tmp_path):
    f = tmp_path / "cal.json"
    good = {"quantile": 1.7, "confidence": 0.9, "sigma_floor": 0.1, "regimes": 10, "source": "held-in"}
    f.write_text(json.dumps(good))
    assert Calibration.load(f).quantile == 1.7
    for field, bad in [("quantile", "x"), ("quantile", -1), ("confidence", 1.5), ("sigma_floor", 0), ("regimes", 2.5)]:
        f.write_text(json.dumps({**good, field: bad}))
        with pytest.raises(ValidationError) as e:
            Calibration.load(f)
        assert e.value.field == f"calibration.{field}"
    f.write_text("[1, 2]")
    with pytest.raises(ValidationError, match="calibration"):
        Calibration.load(f)


def test_end_to_end_pilots_are_resumable_jobs_keyed_by_content(tmp_path):
    cfg = config(**{"run.updates": 200})
    plan = PilotPlan(lr_factors=(0.5, 2.0), evaluations=10, fractions=(1 / 3,), seeds=(7,))
    names = ("asyncsgd", "p2")
    first = recommend(cfg, names=names, plan=plan, output=tmp_path / "pilots")
    runs = sorted(p.name for p in (tmp_path / "pilots" / "cells").glob("*.json"))
    assert len(runs) == len(first.arms) and first.candidate in names
    again = recommend(cfg, names=names, plan=plan, output=tmp_path / "pilots")
    assert sorted(p.name for p in (tmp_path / "pilots" / "cells").glob("*.json")) == runs  # nothing retrained
    assert again.to_dict() | {"wall_time": 0} == first.to_dict() | {"wall_time": 0}
    other = recommend(config(**{"run.updates": 200, "local.lr": 0.05}), names=names, plan=plan,
                      output=tmp_path / "pilots")
    assert len(list((tmp_path / "pilots" / "cells").glob("*.json"))) > len(runs)  # other settings: other runs
    assert other.to_frame().shape == (N, 1)


def test_a_rate_left_at_an_edge_for_want_of_budget_is_flagged():
    """When the pilot budget leaves no room to extend, the rate stays at an edge and says so."""
    cfg = config()
    tau = budget_of(cfg)
    world = World({"asyncsgd": 3.0, "a": 4.0}, {"asyncsgd": 30.0, "a": 0.1}, tau)  # AsyncSGD's best is far above
    cands = [point("asyncsgd", 1.0), point("a", 1.0)]
    free = plan_cost(cands, tau, PilotPlan(evaluations=50))
    tight = PilotPlan(evaluations=50, pilot_fraction=(free["planned"] + tau / 18) / free["comparison"])
    cost = plan_cost(cands, tau, tight)
    assert cost["planned"] <= cost["limit"] < cost["planned"] + tau / 9  # not one extension fits
    rec = recommend(cfg, candidates=cands, runner=world, plan=tight, updates_of=expected(tau))
    assert "asyncsgd" in rec.at_edge
    roomy = recommend(cfg, candidates=cands, runner=World(world.speed, world.best_lr, tau), plan=PilotPlan(
        evaluations=50, pilot_fraction=1.0), updates_of=expected(tau))
    assert "asyncsgd" not in roomy.at_edge and roomy.asyncsgd_lr > 10


@pytest.mark.parametrize("field, bad", [("score", 5.0), ("score", "abc"), ("score", None), ("arrivals", -5),
                                        ("final_accuracy", "x"), ("curves", 3), ("diverged", None)])
def test_saved_pilot_records_are_checked(field, bad):
    from aflqueue.recommendation import check_pilot_score_record

    good = {"score": 0.5, "final_accuracy": 0.6, "arrivals": 10, "diverged": False,
            "curves": {"time": [1.0], "updates": [3], "test_accuracy": [0.6], "test_loss": [0.9]}}
    check_pilot_score_record(good)
    with pytest.raises(ValidationError, match=field):
        check_pilot_score_record({**good, field: bad})
