"""Approximate analysis for general service (aflqueue.queueing.approx) against independent truth
(its validation study, validation/approx, is tested in tests/studies/test_approx.py).

Truth used here: the exact product form (exponential service; delay stations under any law),
hand-computed cases (m = 1; one client), the Pollaczek-Khinchine limit of many symmetric
clients, numerical integration and Monte Carlo for the law functionals, central finite
differences for the gradients, and simulation with confidence intervals on small systems.
"""

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.optimize import brentq

from aflqueue import System
from aflqueue.cli import main
from aflqueue.errors import ValidationError
from aflqueue.laws import (
    Deterministic,
    Empirical,
    Exponential,
    Gamma,
    LogNormal,
    Mixture,
    Pareto,
    Weibull,
    law_from_spec,
)
from aflqueue.optimization import OptimizationProblem, optimize
from aflqueue.queueing import analyze
from aflqueue.queueing.approx import (
    _KNOTS,
    _residual_at,
    _solve,
    approx_analyze,
    approx_delay_objective,
    approx_metrics_vjp,
    partial_moments,
    residual_table,
    truncated_residual,
)
from aflqueue.sim import simulate
from aflqueue.system import Client, Stage

LAWS = ["deterministic", "lognormal:cv=0.5", "lognormal:cv=3", "gamma:cv=2", "weibull:shape=0.6", "pareto:shape=1.8"]


def exp_systems():
    return [
        System.from_rates([1.0, 2.0, 0.3, 0.7], [0.4, 0.2, 0.3, 0.1], 5),
        System.from_rates([5.0, 0.05, 1.0], [0.2, 0.3, 0.5], 12),
        System.from_rates([1.0, 0.5, 0.2], [0.5, 0.0, 0.5], 7),  # a client with p_i = 0
        System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4, downlink_rates=[3, 1, 2], uplink_rates=2.0,
                          uplink_discipline="delay", server_rate=4.0),
        System.from_rates([1.0, 0.1], None, 6, downlink_rates=2.0, uplink_rates=[1.0, 0.25], server_rate=0.5,
                          server_discipline="delay"),
    ]


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("k", range(5))
def test_exponential_reduces_to_product_form(k):
    s = exp_systems()[k]
    a, b = analyze(s, backend="numpy"), approx_analyze(s)
    assert b.exact and b.approximated == ()
    assert abs(b.throughput - a.throughput) <= 1e-12 * a.throughput
    for key in ("mean_queue_lengths", "utilization", "mean_response_times", "mean_round_trip_times",
                "relative_delay", "queue_lengths_prev", "client_throughput"):
        x, y = getattr(a, key), getattr(b, key)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        ok = ~np.isnan(x)
        np.testing.assert_allclose(y[ok], x[ok], rtol=1e-12, atol=0, err_msg=key)
    np.testing.assert_allclose(b.stations.mean_queue_length, a.stations.mean_queue_length, rtol=1e-12)
    if a.server is not None:
        for key, v in a.server.items():
            assert b.server[key] == pytest.approx(v, rel=1e-12)


def test_delay_stations_are_insensitive():
    """Non-exponential laws at delay (infinite-server) stations leave the result exact."""
    lg = law_from_spec("lognormal:cv=3")
    clients = tuple(Client(compute=Stage.exponential(r), uplink=Stage(lg.with_mean(1 / u), "delay"),
                           downlink=Stage(Deterministic(0.3), "delay")) for r, u in ((1.0, 2.0), (0.2, 0.5), (3.0, 1.0)))
    s = System(clients, np.array([0.3, 0.3, 0.4]), 7, Stage(Gamma(0.2, 0.25), "delay"))
    a, b = analyze(s), approx_analyze(s)
    assert b.exact
    assert b.throughput == pytest.approx(a.throughput, rel=1e-12)
    np.testing.assert_allclose(b.relative_delay, a.relative_delay, rtol=1e-12)


@pytest.mark.parametrize("law", LAWS)
def test_one_task_is_exact_for_any_law(law):
    """m = 1: one task visits every station in turn, throughput = 1 / sum_s v_s E[S_s], no staleness."""
    rates, p = [1.0, 0.25, 3.0], [0.5, 0.3, 0.2]
    s = System.from_rates(rates, p, 1, service=law, downlink_rates=2.0, uplink_rates=[1.0, 0.5, 4.0],
                          uplink_discipline="delay", server_rate=5.0)
    cycle = sum(pi * (1 / r + 1 / 2.0 + 1 / u) for pi, r, u in zip(p, rates, [1.0, 0.5, 4.0])) + 1 / 5.0
    res = approx_analyze(s)
    assert res.throughput == pytest.approx(1 / cycle, rel=1e-13)
    np.testing.assert_allclose(res.relative_delay, 0.0, atol=1e-15)


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("m", [1, 2, 7])
def test_single_client_is_always_busy(law, m):
    """One client: the station is never idle, so it completes mu tasks per time unit for any law."""
    res = approx_analyze(System.from_rates([0.4], None, m, service=law))
    assert res.throughput == pytest.approx(0.4, rel=1e-12)
    assert res.relative_delay[0] == pytest.approx(m - 1, rel=1e-12)


@pytest.mark.parametrize("law, scv", [("deterministic", 0.0), ("lognormal:cv=3", 9.0), ("gamma:cv=0.5", 0.25)])
def test_many_symmetric_clients_reach_pollaczek_khinchine(law, scv):
    """n symmetric clients, m = n, uniform routing: as n grows each client is an M/G/1 queue
    at load rho with mean queue m/n = 1 = rho + rho^2 (1 + scv) / (2 (1 - rho))."""
    rho = brentq(lambda r: r + r * r * (1 + scv) / (2 * (1 - r)) - 1, 1e-9, 1 - 1e-9)
    n = 1000
    res = approx_analyze(System.from_rates(np.ones(n), None, n, service=law))
    assert res.throughput / n == pytest.approx(rho, rel=1.5e-3)


def test_bounds_and_conservation_hold():
    rng = np.random.default_rng(3)
    for _ in range(60):
        n, m = int(rng.integers(1, 7)), int(rng.integers(1, 25))
        rates, p = np.exp(rng.uniform(-3, 2, n)), rng.dirichlet(np.ones(n))
        s = System.from_rates(rates, p, m, service=LAWS[int(rng.integers(len(LAWS)))])
        res = approx_analyze(s)
        d = p / rates
        assert res.throughput <= min(m / d.sum(), 1 / d.max()) * (1 + 1e-5)
        assert np.nansum(p * res.relative_delay) == pytest.approx(m - 1, rel=1e-10, abs=1e-12)
        assert res.mean_queue_lengths.sum() == pytest.approx(m, rel=1e-10)


# --------------------------------------------------------------------------- law functionals
def _pdf(law):
    if isinstance(law, LogNormal):
        s2 = math.log1p(law.cv**2)
        return stats.lognorm(s=math.sqrt(s2), scale=law.mean * math.exp(-s2 / 2)).pdf
    if isinstance(law, Gamma):
        return stats.gamma(law.shape, scale=law.mean / law.shape).pdf
    if isinstance(law, Weibull):
        return stats.weibull_min(law.shape, scale=law.scale).pdf
    if isinstance(law, Pareto):
        return stats.pareto(law.shape, scale=law.minimum).pdf
    return stats.expon(scale=law.mean).pdf


@pytest.mark.parametrize("law", [LogNormal(2.0, 1.5), Gamma(0.5, 0.3), Weibull(3.0, 0.7), Pareto(1.5, 2.5),
                                 Exponential(0.7)])
def test_partial_moments_match_numerical_integration(law):
    pdf = _pdf(law)
    for t in (0.05 * law.mean, law.mean, 7.0 * law.mean):
        tail, e1, e1_up, e2 = partial_moments(law, np.array([t]))
        lo = 0.0 if not isinstance(law, Pareto) else law.minimum
        F = integrate.quad(pdf, lo, t, limit=200)[0] if t > lo else 0.0
        m1 = integrate.quad(lambda x: x * pdf(x), lo, t, limit=200)[0] if t > lo else 0.0
        m2 = integrate.quad(lambda x: x * x * pdf(x), lo, t, limit=200)[0] if t > lo else 0.0
        assert tail[0] == pytest.approx(1 - F, rel=1e-6, abs=1e-9)
        assert e1[0] == pytest.approx(m1, rel=1e-6, abs=1e-9)
        assert e1_up[0] == pytest.approx(law.mean - m1, rel=1e-6, abs=1e-9)
        assert e2[0] == pytest.approx(m2, rel=1e-6, abs=1e-9)


def _residual_from_samples(x, tau):
    c = np.minimum(x, tau)
    return np.mean(x * c - 0.5 * c * c) / np.mean(c) / np.mean(x)


@pytest.mark.parametrize("law", [LogNormal(1.0, 2.0), Gamma(1.0, 0.5), Weibull(1.0, 0.8), Pareto(1.0, 3.0),
                                 Mixture((Exponential(0.2), Deterministic(3.0)), np.array([0.8, 0.2]))])
def test_truncated_residual_matches_its_definition_on_samples(law):
    """r(tau) = E[S c - c^2/2] / E[c], c = min(S, tau), by Monte Carlo; exact on an empirical law."""
    x = law.sample(np.random.default_rng(11), 400_000)
    for tau in (0.3, 1.0, 4.0):
        X, _ = truncated_residual(law, np.array([tau / law.mean]))
        assert X[0] == pytest.approx(_residual_from_samples(x, tau), rel=0.02)
        emp = Empirical(x[:2000])
        Xe, _ = truncated_residual(emp, np.array([tau / emp.mean]))
        assert Xe[0] == pytest.approx(_residual_from_samples(x[:2000], tau), rel=1e-10)


@pytest.mark.parametrize("law", [Deterministic(1.0), LogNormal(1.0, 3.0), Gamma(1.0, 1 / 9), Weibull(1.0, 0.5)])
def test_truncated_residual_limits_and_derivative(law):
    X, _ = truncated_residual(law, np.array([0.0, 1e-7, 1e9]))
    assert X[0] == 1.0
    # X -> 1 as x -> 0; slowly for laws with much mass near 0 (X ~ E[S | S > tau] / E[S] there)
    near = truncated_residual(law, np.array([1e-12, 1e-9, 1e-7]))[0]
    assert np.all(np.diff(np.abs(near - 1.0)) >= 0) and abs(near[0] - 1.0) < 0.1
    assert X[2] == pytest.approx((1 + law.cv**2) / 2, rel=1e-4)  # untruncated: E[S^2] / (2 E[S]^2)
    xs = np.array([0.13, 0.7, 2.9, 11.0])
    _, d = truncated_residual(law, xs)
    h = 1e-6 * xs
    fd = (truncated_residual(law, xs + h)[0] - truncated_residual(law, xs - h)[0]) / (2 * h)
    np.testing.assert_allclose(d, fd, rtol=1e-5, atol=1e-8)
    assert np.all(truncated_residual(Exponential(2.0), xs)[0] == 1.0)


@pytest.mark.parametrize("law", [LogNormal(1.0, 1.5), Gamma(1.0, 0.3), Deterministic(1.0)])
def test_interpolated_table_matches_the_functional(law):
    tab = residual_table(law)[None]
    rng = np.random.default_rng(0)
    xs = 10 ** rng.uniform(-5.5, 5.5, 300)
    exact, dexact = truncated_residual(law, xs)
    got = np.array([_residual_at(tab, 0, x) for x in xs])
    np.testing.assert_allclose(got[:, 0], exact, rtol=2e-6)
    assert np.all(np.abs(got[:, 1] - dexact) <= 1e-3 * np.abs(dexact) + 1e-6 / xs)
    knots = np.array([_residual_at(tab, 0, x)[0] for x in _KNOTS[::37]])
    np.testing.assert_allclose(knots, truncated_residual(law, _KNOTS[::37])[0], rtol=1e-12)


# --------------------------------------------------------------------------- gradients
def _fd(fun, p, h=1e-6):
    out = []
    for j in range(p.size):
        e = np.zeros(p.size)
        e[j] = h * max(p[j], 1e-3)
        out.append((fun(p + e) - fun(p - e)) / (2 * e[j]))
    return np.array(out)


GRAD_SYSTEMS = [
    System.from_rates([1.0, 2.0, 0.3, 0.7], [0.4, 0.2, 0.3, 0.1], 6, service="deterministic"),
    System.from_rates([1.0, 2.0, 0.3, 0.7], [0.4, 0.2, 0.3, 0.1], 9, service="lognormal:cv=3"),
    System.from_rates([0.5, 3.0, 1.0], [0.3, 0.3, 0.4], 5,
                      service={"law": "empirical", "samples": [0.2, 0.5, 0.9, 1.3, 4.0, 7.5]}),
    System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 7, service="gamma:cv=2", downlink_rates=[3, 1, 2],
                      uplink_rates=2.0, uplink_discipline="delay", server_rate=4.0),
]


@pytest.mark.parametrize("k", range(len(GRAD_SYSTEMS)))
def test_gradients_match_finite_differences(k):
    s = GRAD_SYSTEMS[k]
    n, m, p = s.n, s.concurrency, s.routing
    a, c, b = 0.7, np.linspace(-1.0, 2.0, n), np.linspace(1.5, 0.2, n)

    def F(q):
        st, res = _solve(s, q, m, False)
        own = st.owner >= 0
        y = np.bincount(st.owner[own], weights=res.queue_lengths[own], minlength=n)
        y_prev = np.bincount(st.owner[own], weights=res.queue_lengths_prev[own], minlength=n)
        cs = res.queue_lengths_prev[~own].sum()
        return a * res.throughput[m] + c @ y + b @ (y_prev / q + cs)

    g = approx_metrics_vjp(s, d_throughput=a, d_queue_lengths=c, d_relative_delay=b)
    fd = _fd(F, p)
    np.testing.assert_allclose(g, fd, rtol=2e-6, atol=2e-7 * np.abs(fd).max())
    w = 1.0 / (n * n * p)
    obj = approx_delay_objective(s, p, m, w)
    for got, fun in ((obj.d_throughput, lambda q: approx_delay_objective(s, q, m, None).throughput),
                     (obj.d_weighted_delay, lambda q: approx_delay_objective(s, q, m, w).weighted_delay)):
        fd = _fd(fun, p)
        np.testing.assert_allclose(got, fd, rtol=2e-6, atol=2e-7 * np.abs(fd).max())


def test_one_sided_derivative_at_zero_routing():
    s = System.from_rates([1.0, 0.3, 2.0], [0.6, 0.0, 0.4], 5, service="lognormal:cv=2")
    p = s.routing
    obj = approx_delay_objective(s, p, 5, None)
    h = 1e-7
    e = np.array([0.0, h, 0.0])
    fwd = (approx_delay_objective(s, p + e, 5, None).throughput - obj.throughput) / h
    assert obj.d_throughput[1] == pytest.approx(fwd, rel=1e-4)


def test_exponential_gradients_equal_product_form():
    from aflqueue.queueing.gradients import delay_objective

    for s in exp_systems():
        w = np.linspace(0.5, 2.0, s.n)
        a, b = delay_objective(s, s.routing, s.concurrency, w, backend="numpy"), approx_delay_objective(
            s, s.routing, s.concurrency, w)
        ok = s.routing > 0
        np.testing.assert_allclose(b.d_throughput[ok], a.d_throughput[ok], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b.d_weighted_delay[ok], a.d_weighted_delay[ok], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- simulation
def _sim_throughput(system, updates, seed):
    tr = simulate(system, updates, seed=seed)
    t = tr.updates()["time"]
    k0 = t.size // 10
    edges = np.linspace(t[k0 - 1], t[-1], 21)
    x = np.histogram(t[k0:], bins=edges)[0] / (edges[1] - edges[0])
    return x.mean(), stats.t.ppf(0.975, 19) * x.std(ddof=1) / math.sqrt(20), tr


@pytest.mark.parametrize("rates, routing, m, law", [
    ([3.0, 1.34, 0.61, 0.27, 0.1], "sqrt", 5, "deterministic"),
    ([1.05, 0.97, 1.02, 0.95, 1.1], "uniform", 10, "lognormal:cv=3"),
    ([1.0, 0.5, 0.25, 0.5, 1.0, 0.3], "uniform", 6, "lognormal:cv=2"),
    ([1.0, 0.9, 1.1, 0.95], "uniform", 4, "lognormal:cv=0.5"),
])
def test_throughput_against_simulation(rates, routing, m, law):
    """The approximation is within 3% of a simulation (1.5M updates) where the product form is not."""
    r = np.asarray(rates)
    p = np.sqrt(r) / np.sqrt(r).sum() if routing == "sqrt" else None
    s = System.from_rates(rates, p, m, service=law)
    mean, hw, _ = _sim_throughput(s, 1_500_000, seed=5)
    assert hw < 0.01 * mean
    err_approx = abs(approx_analyze(s).throughput - mean)
    err_pf = abs(analyze(s).throughput - mean)
    assert err_approx <= 0.03 * mean
    assert err_pf > 0.04 * mean and err_pf > 2 * err_approx


def test_delay_identity_at_update_epochs():
    """p_i E[D_i] equals the mean number of client-i tasks (other than the updating one) in flight at
    update epochs, counted from the timestamps: the identity the delay estimate rests on."""
    s = System.from_rates([1.0, 0.4, 0.15], None, 5, service="lognormal:cv=2")
    _, _, tr = _sim_throughput(s, 200_000, seed=2)
    up = tr.updates()
    times, tasks = up["time"], up["task"]
    k0 = times.size // 10
    sel = slice(k0, times.size - 1000)
    for i in range(s.n):
        mine = np.flatnonzero(tr.client == i)
        start, end = np.sort(tr.dispatch_time[mine]), np.sort(tr.completion_time[mine])  # FIFO: same order
        t = times[sel]
        seen = np.searchsorted(start, t, side="left") - np.searchsorted(end, t, side="right")
        lhs = seen.mean()  # the updating task has completion_time == t: not counted
        d = up["relative_delay"][sel][up["client"][sel] == i]
        rhs = d.sum() / t.size
        assert lhs == pytest.approx(rhs, rel=0.02)
    assert tasks.size == times.size


# --------------------------------------------------------------------------- optimiser and CLI
def test_optimization_problem_validates_analysis():
    s = System.from_rates([1.0, 0.1], None, 2)
    with pytest.raises(ValidationError) as e:
        OptimizationProblem(system=s, analysis="exact")
    assert e.value.field == "analysis"


def test_optimizer_with_approx():
    s = System.from_rates([1, 1, 1, 0.1, 0.1, 0.1], None, 6)
    a = optimize(OptimizationProblem(system=s, objective="wallclock"))
    b = optimize(OptimizationProblem(system=s, objective="wallclock", analysis="approx"))
    np.testing.assert_allclose(b.routing, a.routing, atol=1e-6)  # exponential: the same problem
    g = optimize(OptimizationProblem(system=System.from_rates([1, 1, 1, 0.1, 0.1, 0.1], None, 6,
                                                              service="lognormal:cv=3"),
                                     objective="wallclock", analysis="approx"))
    assert g.success and g.kkt_residual < 1e-6
    assert g.objective_value > a.objective_value  # heavy tails cost throughput: a worse optimum


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_analyze_approx(capsys):
    base = ["analyze", "--rates", "1,1,0.1", "--routing", "0.3,0.3,0.4", "--concurrency", "5"]
    code, out, _ = run_cli(capsys, *base, "--analysis", "approx", "--json", "--gradient")
    assert code == 0
    d = json.loads(out)
    assert d["method"] == "approx" and d["exact"] is True and d["approximated"] == []
    assert d["throughput"] == pytest.approx(analyze(System.from_rates([1, 1, 0.1], [0.3, 0.3, 0.4], 5)).throughput,
                                            rel=1e-12)
    assert len(d["gradient"]["d_throughput_d_routing"]) == 3
    code, out, _ = run_cli(capsys, *base, "--service", "lognormal:cv=2", "--analysis", "approx")
    assert code == 0 and "approximation for general service at 3 FIFO station(s)" in out
    assert "accuracy: throughput within 3%" in out and "delays E[D_i] are approximate" in out
    code, out, _ = run_cli(capsys, *base, "--analysis", "approx")  # exponential: exact, no caveat
    assert code == 0 and "exact: every FIFO station is exponential" in out and "accuracy:" not in out
    for bad in (["--analysis", "exact"], ["--analysis", "approx", "--method", "convolution"]):
        code, out, err = run_cli(capsys, *base, *bad)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_cli_optimize_approx(capsys):
    code, out, _ = run_cli(capsys, "optimize", "--rates", "1,1,0.1", "--service", "deterministic", "--analysis",
                           "approx", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["analysis"] == "approx" and d["success"]
    code, out, _ = run_cli(capsys, "optimize", "--rates", "1,1,0.1", "--service", "deterministic", "--analysis",
                           "approx")
    assert code == 0 and "delays E[D_i] are approximate" in out
    code, out, err = run_cli(capsys, "optimize", "--rates", "1,1,0.1", "--analysis", "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1
