"""Proxies and optimisers against independent truth: a reference implementation of the proxies
(scalar minimisation over eta, bisection over K), brute-force grids on n = 2 and 3 (including
the boundary faces), hand-solved convex cases, KKT conditions on larger cases."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

sys.path.insert(0, str(Path(__file__).parent))
import reference_proxies as R  # noqa: E402

from aflqueue import System, ValidationError  # noqa: E402
from aflqueue.bounds import ProxyConstants, optimal_eta_per_update, time_to_accuracy_updates  # noqa: E402
from aflqueue.cli import main  # noqa: E402
from aflqueue.optimization import (OptimizationProblem, _objective_for, evaluate, kkt_residual, optimize,  # noqa: E402
                               pareto_front, project_capped_simplex)

C = ProxyConstants()


@pytest.mark.parametrize("seed", range(20))
def test_optimal_eta_against_scalar_minimisation(seed):
    rng = np.random.default_rng(seed)
    aK, B, Cc = 10 ** rng.uniform(-6, 1), 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-3, 3) * (seed % 5 != 0)
    eta_max = 10 ** rng.uniform(-2, 1)
    f = lambda e: aK / e + B * e + Cc * e * e  # noqa: E731
    eta = optimal_eta_per_update(aK, B, Cc, eta_max)
    ref = minimize_scalar(f, bounds=(1e-12, eta_max), method="bounded", options={"xatol": 1e-15})
    assert f(eta) <= min(ref.fun, f(eta_max)) * (1 + 1e-10)


@pytest.mark.parametrize("seed", range(10))
def test_time_to_accuracy_against_bisection(seed):
    rng = np.random.default_rng(seed)
    c = ProxyConstants(Delta=rng.uniform(0.5, 3), L=rng.uniform(0.2, 3), sigma2=rng.uniform(0, 2), M2=rng.uniform(0, 2),
                       G2=rng.uniform(0, 2))
    S1, S2, eps = rng.uniform(1, 5), rng.uniform(0, 50), rng.uniform(0.01, 0.5)
    K, eta = time_to_accuracy_updates(c, S1, S2, eps)
    from scipy.optimize import brentq
    g = lambda lk: R.min_over_eta(lambda e: R.U(c, S1, S2, math.exp(lk), e), c.eta_max)[0] - eps  # noqa: E731
    assert K == pytest.approx(math.exp(brentq(g, -5, 80, xtol=1e-14)), rel=1e-8)
    assert R.U(c, S1, S2, K, eta) == pytest.approx(eps, rel=1e-10)


def _brute(f, n, lo, hi=1.0):
    """Global minimum over the capped simplex: dense grid, every face p_i = lo, then SLSQP polish."""
    cands = []
    if n == 2:
        grid = np.linspace(lo, 1 - lo, 801)
        vals = [f(np.array([x, 1 - x])) for x in grid]
        k = int(np.argmin(vals))
        a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
        r = minimize_scalar(lambda x: f(np.array([x, 1 - x])), bounds=(a, b), method="bounded", options={"xatol": 1e-13})
        cands += [vals[k], r.fun]
    else:
        g = np.linspace(lo, 1 - 2 * lo, 90)
        pts = [np.array([x, y, 1 - x - y]) for x in g for y in g if 1 - x - y >= lo - 1e-15]
        vals = [f(p) for p in pts]
        order = np.argsort(vals)[:3]
        cands.append(vals[order[0]])
        cons = [{"type": "eq", "fun": lambda p: p.sum() - 1}]
        for k in order:
            r = minimize(f, pts[k], method="SLSQP", bounds=[(lo, hi)] * 3, constraints=cons,
                         options={"ftol": 1e-15, "maxiter": 500})
            if r.success:
                cands.append(f(project_capped_simplex(r.x, lo, hi)))
        for i in range(3):  # faces p_i = lo (1-D problems)
            j, k = [x for x in range(3) if x != i]
            def face(t, i=i, j=j, k=k):
                p = np.empty(3); p[i] = lo; p[j] = t; p[k] = 1 - lo - t
                return f(p)
            r = minimize_scalar(face, bounds=(lo, 1 - 2 * lo), method="bounded", options={"xatol": 1e-13})
            cands.append(r.fun)
    return min(cands)


KINDS = ["per-update", "wallclock", "time-to-accuracy", "energy", "max-throughput", "tradeoff"]


def _reference(kind, s, m, res, pb):
    """The independent reference objective (sign: minimised) with the result's budget/references."""
    en = (pb.energy.busy_power, pb.energy.idle_power)
    sign = -1.0 if kind == "max-throughput" else 1.0
    tau, ref = res.problem["time_budget"], res.problem["reference"]
    return lambda p: sign * R.objective(kind, s, p, m, C, tau=tau, energy=en, ref=ref)


@pytest.mark.parametrize("kind", KINDS)
def test_objective_formulas_against_reference(kind):
    """aflqueue's closed-form proxies equal the reference (scalar minimisation over eta, bisection
    over K) at random routings, single- and multi-stage."""
    rng = np.random.default_rng(7)
    for s in (System.from_rates([1.0, 0.3, 0.05, 2.0], concurrency=6),
              System.from_rates([1.0, 0.3, 0.05], concurrency=4, downlink_rates=2.0, uplink_rates=[1, 3, 2],
                                uplink_discipline="delay", server_rate=5.0)):
        pb = OptimizationProblem(s, kind, p_min=0.01)
        res = optimize(pb, starts=1)
        ref = _reference(kind, s, s.concurrency, res, pb)
        pb_ref = OptimizationProblem(s, kind, p_min=0.01, time_budget=res.problem["time_budget"],
                                     reference=None if res.problem["reference"] is None else tuple(res.problem["reference"]))
        for _ in range(4):  # (both are -lambda for max-throughput)
            p = rng.dirichlet(np.ones(s.n))
            assert evaluate(pb_ref, p).value == pytest.approx(ref(p), rel=1e-8)


def _fast(pb, m):
    """The (verified) objective, minimised form, for brute-force scans."""
    sign = -1.0 if pb.objective == "max-throughput" else 1.0
    fun = _objective_for(pb)
    return lambda p: sign * (-fun(np.asarray(p, float), m).value if pb.objective == "max-throughput"
                             else fun(np.asarray(p, float), m).value)


@pytest.mark.parametrize("rates, m", [([1.0, 0.1], 4), ([1.0, 0.3, 0.05], 5)])
@pytest.mark.parametrize("kind", KINDS)
def test_optimum_against_brute_force(rates, m, kind):
    s = System.from_rates(rates, concurrency=m)
    lo = 0.02
    pb = OptimizationProblem(s, kind, p_min=lo)
    res = optimize(pb)
    sign = -1.0 if kind == "max-throughput" else 1.0
    # the reported value is the independent reference objective at the reported routing ...
    assert res.objective_value == pytest.approx(sign * _reference(kind, s, m, res, pb)(res.routing), rel=1e-9)
    # ... and a brute-force search finds no better point
    fixed = OptimizationProblem(s, kind, p_min=lo, time_budget=res.problem["time_budget"],
                                reference=None if res.problem["reference"] is None else tuple(res.problem["reference"]))
    best = sign * _brute(_fast(fixed, m), s.n, lo)
    assert abs(res.objective_value - best) <= 1e-6 * abs(best)
    assert res.success and res.kkt_residual < 1e-6


@pytest.mark.parametrize("kind", ["wallclock", "time-to-accuracy"])
def test_joint_concurrency_against_exhaustive_search(kind):
    s = System.from_rates([1.0, 0.1], concurrency=2)
    pb = OptimizationProblem(s, kind, p_min=0.01, concurrency=(1, 12))
    res = optimize(pb)
    fixed = OptimizationProblem(s, kind, p_min=0.01, time_budget=res.problem["time_budget"])
    per_m = [_brute(_fast(fixed, m), 2, 0.01) for m in range(1, 13)]
    assert res.concurrency == int(np.argmin(per_m)) + 1
    assert res.objective_value == pytest.approx(min(per_m), rel=1e-6)
    prof = dict(res.concurrency_profile)
    np.testing.assert_allclose([prof[m] for m in range(1, 13)], per_m, rtol=1e-6)


def test_convex_cases_at_m1_hand_solved():
    s = System.from_rates([1.0, 3.0, 0.2], concurrency=1)
    # P5 at m = 1 is the LP min sum p_i / mu_i: fill the fastest up to p_max, then the next
    r = optimize(OptimizationProblem(s, "max-throughput", p_max=0.6))
    np.testing.assert_allclose(r.routing, [0.4, 0.6, 0.0], atol=1e-7)
    assert r.method == "cvxpy" and r.throughput == pytest.approx(1 / (0.4 / 1 + 0.6 / 3), rel=1e-7)
    # P1 at m = 1: only S1 = sum 1/p matters -> uniform
    r = optimize(OptimizationProblem(s, "per-update"))
    np.testing.assert_allclose(r.routing, [1 / 3] * 3, atol=1e-6)


@pytest.mark.parametrize("kind", ["per-update", "wallclock", "time-to-accuracy", "energy"])
def test_kkt_and_local_optimality_on_larger_case(kind):
    rng = np.random.default_rng(1)
    s = System.from_rates(np.exp(rng.uniform(np.log(0.05), np.log(5), 25)), concurrency=15)
    pb = OptimizationProblem(s, kind, p_min=1e-3)
    r = optimize(pb)
    assert r.success and r.kkt_residual < 1e-6
    ev = evaluate(pb, r.routing, r.concurrency)
    assert kkt_residual(r.routing, ev.grad / ev.value, pb.p_min, pb.p_max) < 1e-6
    for _ in range(20):  # no feasible random neighbour is better
        q = project_capped_simplex(r.routing + 1e-3 * rng.normal(size=s.n), pb.p_min, pb.p_max)
        assert evaluate(pb, q, r.concurrency).value >= r.objective_value * (1 - 1e-12)


def test_theory_section6_qualitative_behaviour():
    s = System.from_rates([1.0] * 5 + [0.1] * 5, concurrency=10)
    p1 = optimize(OptimizationProblem(s, "per-update"))
    p2 = optimize(OptimizationProblem(s, "wallclock"))
    # per-update: stays near uniform, lowers throughput somewhat
    assert np.max(np.abs(p1.routing - 0.1)) < 0.1
    assert p1.throughput < p1.baseline["throughput"]
    # wall-clock: mass to fast clients, throughput up several-fold
    assert p2.routing[:5].min() > p2.routing[5:].max()
    assert p2.throughput > 2.5 * p2.baseline["throughput"]
    assert p2.objective_value < p2.baseline["objective_value"]


def test_max_throughput_starves_slow_clients():
    s = System.from_rates([1.0] * 3 + [0.1] * 3, concurrency=6)
    r = optimize(OptimizationProblem(s, "max-throughput"))
    assert np.all(r.routing[3:] < 1e-6) and r.throughput > 3 * r.baseline["throughput"]
    # the variance term S1 = (1/n^2) sum 1/p_i explodes at that routing (the proxy's reason to avoid it)
    assert np.sum(1 / np.maximum(r.routing, 1e-300)) > 1e6 * np.sum(1 / np.full(6, 1 / 6))


def test_pareto_front_is_monotone():
    s = System.from_rates([2.0, 1.0, 0.5, 0.25], concurrency=4)
    front = pareto_front(OptimizationProblem(s, "tradeoff"), weights=[0.0, 0.25, 0.5, 0.75, 1.0])
    T = [r.proxies["time_to_accuracy"] for r in front]
    E = [r.proxies["energy"] for r in front]
    assert all(b >= a * (1 - 1e-6) for a, b in zip(T, T[1:]))  # more weight on energy: slower ...
    assert all(b <= a * (1 + 1e-6) for a, b in zip(E, E[1:]))  # ... and cheaper


def test_fixed_step_and_infeasible_target():
    s = System.from_rates([1.0, 0.2], concurrency=3)
    r = optimize(OptimizationProblem(s, "wallclock", constants=ProxyConstants(eta=0.01)))
    assert r.eta == 0.01
    with pytest.raises(ValidationError, match="eta"):
        ProxyConstants(eta=2.0, L=1.0)


@pytest.mark.parametrize("kwargs, field", [
    (dict(objective="fastest"), "objective"),
    (dict(p_min=0.6), "p_min"),
    (dict(p_max=0.3), "p_max"),
    (dict(p_min=0.3, p_max=0.2), "p_min"),
    (dict(concurrency=(5, 2)), "concurrency"),
    (dict(concurrency=(0, 2)), "concurrency"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(time_budget=0.0), "time_budget"),
    (dict(weight=1.5), "weight"),
])
def test_bad_problems(kwargs, field):
    s = System.from_rates([1.0, 0.2], concurrency=2)
    with pytest.raises(ValidationError) as e:
        OptimizationProblem(s, **kwargs)
    assert e.value.field == field


@pytest.mark.parametrize("name, value", [("Delta", 0.0), ("L", -1.0), ("sigma2", -0.1), ("G2", float("nan"))])
def test_bad_constants(name, value):
    with pytest.raises(ValidationError) as e:
        ProxyConstants(**{name: value})
    assert e.value.field == name


def test_cli_optimize_json(capsys, tmp_path):
    rc = main(["optimize", "--rates", "1,1,0.1", "--objective", "wallclock", "--concurrency-range", "1:12",
               "--p-min", "0.01", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("routing", "concurrency", "eta", "objective", "objective_value", "constants", "throughput",
              "relative_delay", "baseline"):
        assert k in d
    assert set(("Delta", "L", "sigma2", "M2", "G2")) <= set(d["constants"])
    for k in ("routing", "concurrency", "objective_value", "throughput", "relative_delay"):
        assert k in d["baseline"]
    assert 1 <= d["concurrency"] <= 12 and abs(sum(d["routing"]) - 1) < 1e-12
    (tmp_path / "c.json").write_text(json.dumps({"constants": {"Delta": 2.0, "L": 0.5}}))
    assert main(["optimize", "--rates", "1,0.5", "--constants", str(tmp_path / "c.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["constants"]["Delta"] == 2.0
    assert main(["optimize", "--rates", "1,1", "--updates", "10", "--time-budget", "5"]) == 2
    assert main(["optimize", "--rates", "1,1", "--concurrency-range", "3"]) == 2
    assert main(["optimize", "--rates", "1,1", "--constants", "Delta=abc"]) == 2


# --------------------------------------------------------------------------- caps and mixes (section 11)
CLIP_KINDS = ["per-update", "wallclock", "time-to-accuracy", "energy"]
CLIP_CASES = [([1.0, 0.1], 4, 2.0), ([1.0, 0.3, 0.05], 5, 3.0)]
CLIP_CONSTANTS = ProxyConstants(M2=0.3)


@pytest.mark.parametrize("rates, m, cap", CLIP_CASES)
@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_clipped_optimum_against_brute_force(rates, m, cap, kind):
    """A fixed cap, routing free: no point of a brute-force grid (every face included) is better."""
    s = System.from_rates(rates, concurrency=m)
    lo = 0.01
    pb = OptimizationProblem(s, kind, p_min=lo, cap=cap, constants=CLIP_CONSTANTS, epsilon=0.3)
    res = optimize(pb)
    assert res.cap == cap and res.mix == 1.0
    fixed = OptimizationProblem(s, kind, p_min=lo, cap=cap, constants=CLIP_CONSTANTS, epsilon=0.3,
                                time_budget=res.problem["time_budget"])
    best = _brute(_fast(fixed, m), s.n, lo)
    assert res.objective_value <= best * (1 + 1e-6)
    assert res.objective_value == pytest.approx(_fast(fixed, m)(res.routing), rel=1e-12)


@pytest.mark.parametrize("rates, m, cap", CLIP_CASES)
def test_choose_cap_against_brute_force(rates, m, cap):
    s = System.from_rates(rates, concurrency=m)
    caps = (1.5, cap, math.inf)
    pb = OptimizationProblem(s, "wallclock", p_min=0.01, choose_cap=True, caps=caps, constants=CLIP_CONSTANTS)
    res = optimize(pb)
    per_cap = {}
    for c in caps:
        fixed = OptimizationProblem(s, "wallclock", p_min=0.01, cap=c, constants=CLIP_CONSTANTS,
                                    time_budget=res.problem["time_budget"])
        per_cap[c] = _brute(_fast(fixed, m), s.n, 0.01)
    assert res.objective_value <= min(per_cap.values()) * (1 + 1e-6)
    assert per_cap[res.cap] <= min(per_cap.values()) * (1 + 1e-6)
    assert sorted(c for c, _, _ in res.operating_profile) == sorted(caps)
    prof = {c: v for c, _, v in res.operating_profile}
    for c in caps:
        assert prof[c] <= per_cap[c] * (1 + 1e-6)


@pytest.mark.parametrize("rates, m", [([1.0, 0.1], 4), ([1.0, 0.3, 0.05], 5)])
@pytest.mark.parametrize("kind", ["wallclock", "time-to-accuracy"])
def test_choose_mix_against_dense_search(rates, m, kind):
    """The mix is searched on the segment from uniform routing to today's optimum p*; a dense grid
    of (cap, lam, m) finds nothing better, and p* is today's answer exactly."""
    s = System.from_rates(rates, concurrency=m)
    caps = (1.5, 4.0, math.inf)
    kw = dict(p_min=0.01, concurrency=(1, 8), constants=CLIP_CONSTANTS, epsilon=0.3)
    today = optimize(OptimizationProblem(s, kind, **kw))
    res = optimize(OptimizationProblem(s, kind, choose_cap=True, choose_mix=True, caps=caps, **kw))
    np.testing.assert_array_equal(res.anchor_routing, today.routing)
    assert res.routing == pytest.approx(res.mix * today.routing + (1 - res.mix) / s.n, abs=1e-15)
    best = math.inf
    for c in caps:
        fixed = OptimizationProblem(s, kind, cap=c, time_budget=res.problem["time_budget"], **kw)
        fun = _objective_for(fixed)
        for lam in np.linspace(0, 1, 401):
            r = lam * today.routing + (1 - lam) / s.n
            best = min(best, min(fun(r, mm).value for mm in range(1, 9)))
    assert res.objective_value <= best * (1 + 1e-9)
    fixed = OptimizationProblem(s, kind, cap=res.cap, time_budget=res.problem["time_budget"], **kw)
    assert res.objective_value == _objective_for(fixed)(res.routing, res.concurrency).value
    # the baseline stays AsyncSGD (no cap, no mix)
    assert res.baseline == today.baseline


def test_fixed_mix_is_a_floor_on_the_routing():
    """mix = lam with p free equals the problem with p_i >= (1 - lam)/n: the same optimum."""
    s = System.from_rates([1.0] * 3 + [0.1] * 3, concurrency=6)
    lam = 0.6
    a = optimize(OptimizationProblem(s, "wallclock", mix=lam))
    b = optimize(OptimizationProblem(s, "wallclock", p_min=(1 - lam) / s.n, time_budget=a.problem["time_budget"]))
    assert a.mix == lam and a.objective_value == pytest.approx(b.objective_value, rel=1e-8)
    np.testing.assert_allclose(a.routing, b.routing, atol=1e-6)
    np.testing.assert_allclose(a.routing, lam * a.anchor_routing + (1 - lam) / s.n, atol=1e-15)


def test_bias_constant_steers_the_cap():
    """Half the clients 10x slower: with no bias cost a cap pays (it removes variance); with a huge
    one the chosen cap clips nothing."""
    s = System.from_rates([1.0] * 4 + [0.1] * 4, concurrency=8)
    free = optimize(OptimizationProblem(s, "wallclock", choose_cap=True, bias_constant=0.0))
    assert math.isfinite(free.cap) and free.objective_value < free.operating_profile[0][2]
    assert free.proxies["beta2"] > 0
    costly = optimize(OptimizationProblem(s, "wallclock", choose_cap=True, bias_constant=1e6))
    assert costly.proxies.get("beta2", 0.0) == 0.0
    assert costly.objective_value == pytest.approx(min(v for _, _, v in costly.operating_profile), rel=1e-12)


def test_cli_style_result_reports_cap_and_mix():
    s = System.from_rates([1.0, 0.3, 0.05], concurrency=3)
    r = optimize(OptimizationProblem(s, "wallclock", cap=2.0, mix=0.8))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["cap"] == 2.0 and d["mix"] == 0.8 and len(d["anchor_routing"]) == 3
    assert d["problem"]["cap"] == 2.0 and d["problem"]["choose_cap"] is False
    assert json.loads(json.dumps(optimize(OptimizationProblem(s, "wallclock")).to_dict()))["cap"] is None


def test_each_objective_reads_exactly_the_options_the_cli_lets_through():
    """aflqueue.options.PROXY_OPTIONS against the optimiser itself: an option an objective is said
    to read changes its result (optimum, value or a reported proxy); any other leaves the result
    bit for bit unchanged, so the CLI is right to refuse it as ignored."""
    from aflqueue.bounds import EnergyModel, ProxyConstants
    from aflqueue.optimization import OptimizationProblem, optimize
    from aflqueue.options import PROXY_OPTIONS
    from aflqueue.system import System

    sysm = System.from_rates([1.0, 0.5, 0.1], concurrency=3)
    change = {"updates": {"updates": 50.0}, "time_budget": {"time_budget": 7.0}, "dispersion": {"dispersion": 3.0},
              "epsilon": {"epsilon": 0.5}, "weight": {"weight": 0.2},
              "constants": {"constants": ProxyConstants(Delta=3.0, sigma2=0.2)},
              "eta": {"constants": ProxyConstants(eta=0.01)}, "eta_max": {"constants": ProxyConstants(eta_max=0.005)},
              "kappa": {"energy": EnergyModel.dvfs(sysm.rates, kappa=2.0)},
              "idle_power": {"energy": EnergyModel.dvfs(sysm.rates, idle_fraction=0.5)}}
    assert set(change) == set().union(*PROXY_OPTIONS.values())

    def outcome(objective, **kw):
        r = optimize(OptimizationProblem(sysm, objective, **kw), starts=1, seed=0)
        return repr((r.objective_value, tuple(map(float, r.routing)), r.concurrency, r.eta,  # repr: nan == nan
                     tuple(sorted(r.proxies.items())), (r.baseline or {}).get("objective_value")))

    for objective, reads in PROXY_OPTIONS.items():
        base = outcome(objective)
        for name, kw in change.items():
            if name in reads:
                assert outcome(objective, **kw) != base, (objective, name)
            else:
                assert outcome(objective, **kw) == base, (objective, name)


def test_optimize_refuses_an_option_its_objective_ignores(capsys):
    from aflqueue.cli import main

    assert main(["optimize", "--rates", "1,0.1", "--objective", "energy", "--dispersion", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dispersion: the energy objective does not use it" in err[0]
    assert main(["optimize", "--rates", "1,0.1", "--objective", "wall-clock", "--dispersion", "3", "--json"]) == 0
