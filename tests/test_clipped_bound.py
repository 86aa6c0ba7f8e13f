"""docs/theory.md section 11 (clipped importance weights and mixes) against independent truth.

* the bias factor against the linear programme it is the value of;
* the exact moments of clipped Generalized AsyncSGD on 1-D quadratics (``exact_clipped_sgd``, its
  own Markov chain, checked against a direct simulation): the bound of Theorem 11.1 holds at every
  ``K`` on a grid of routings, caps, steps and concurrencies, its bias term is needed, and its
  floor constant is attained as ``eta -> 0`` on worst-case data;
* the per-dispatch staleness weight of the chain in steady state equals ``S2_c`` computed from
  aflqueue's exact delays (discrete Little's law);
* ``c = inf`` is today's proxy bit for bit; every new gradient against central finite differences;
* the bias-constant fit recovers a known constant.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

sys.path.insert(0, str(Path(__file__).parent))
from exact_clipped_sgd import ExactChain, Quadratic, stationary_grad2_m1, weights  # noqa: E402

from aflqueue import System, ValidationError  # noqa: E402
from aflqueue.bounds import (ProxyConstants, bias_factor, clip_factors, effective_mass, mixed_routing,  # noqa: E402
                             per_update, per_update_proxy, s1, s2, s2_gradient, s2_weights,
                             time_to_accuracy_proxy, time_to_accuracy_updates, wallclock_proxy)
from aflqueue.calibration import fit_bias_constant  # noqa: E402
from aflqueue.optimization import OptimizationProblem, _objective_for, optimize  # noqa: E402
from aflqueue.queueing import analyze  # noqa: E402

RATES = np.array([1.0, 0.4, 0.1])
ROUTINGS = [np.full(3, 1 / 3), np.array([0.6, 0.3, 0.1]), np.array([0.8, 0.17, 0.03])]
CAPS = [math.inf, 4.0, 1.5]
QUAD = Quadratic(a=1.0, b=np.array([1.0, -0.5, 0.3]), x0=3.0, sigma2=0.5)


def cap_arg(c):
    return None if c == math.inf else c


# --------------------------------------------------------------------------- the bias factor
def beta_lp(q):
    """``sup ||sum_i (q_i/Q - 1/n) v_i|| / M`` over ``||v_i|| <= M``, ``sum_i v_i = 0``: a linear
    programme in one dimension (``v_i = x_i e``; any vector configuration projects onto one)."""
    Q, n = q.sum(), q.size
    r = linprog(-(q / Q - 1 / n), A_eq=np.ones((1, n)), b_eq=[0.0], bounds=[(-1, 1)] * n, method="highs")
    assert r.status == 0
    return -r.fun


@pytest.mark.parametrize("seed", range(12))
def test_bias_factor_is_the_linear_programme(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    p = rng.dirichlet(np.full(n, 0.5))
    p = np.maximum(p, 1e-6)
    p /= p.sum()
    c = float(rng.uniform(1.0, 6.0))
    q = np.minimum(1 / n, c * p)
    Q = q.sum()
    b2, _ = bias_factor(p, c)
    assert math.sqrt(b2) == pytest.approx(beta_lp(q), rel=1e-9, abs=1e-12)
    # beta <= (1 - Q)/Q, with equality when at least half the clients are unclipped
    assert math.sqrt(b2) <= (1 - Q) / Q * (1 + 1e-12)
    if np.sum(c * p >= 1 / n) >= n / 2:
        assert math.sqrt(b2) == pytest.approx((1 - Q) / Q, rel=1e-9, abs=1e-15)
    # the sketch's sum_i |q_i/Q - 1/n| is an upper bound, not the supremum
    assert np.sum(np.abs(q / Q - 1 / n)) >= math.sqrt(b2) * (1 - 1e-12)


def test_sketch_constant_is_loose_by_two_n_minus_one_over_n():
    # one client clipped among n: sketch / exact = 2 (n - 1) / n
    for n in (2, 3, 10):
        p = np.full(n, (1 - 0.01) / (n - 1))
        p[0] = 0.01
        c = 2.0
        q = np.minimum(1 / n, c * p)
        b = math.sqrt(bias_factor(p, c)[0])
        assert np.sum(np.abs(q / q.sum() - 1 / n)) / b == pytest.approx(2 * (n - 1) / n, rel=1e-12)


# --------------------------------------------------------------------------- the exact chain
def simulate(rates, p, m, quad, cap, eta, K, reps, seed):
    """Direct simulation of the same process (events, FIFO queues): per-task ``f'(z_j)^2`` and
    ``sum_{O_j} w^2`` for ``j = 1..K+m-1``."""
    rng = np.random.default_rng(seed)
    n = p.size
    w = weights(p, cap)
    N = K + m - 1
    g2, A = np.zeros((reps, N)), np.zeros((reps, N))
    bbar = quad.b.mean()
    for r in range(reps):
        x = quad.x0
        queues = [[] for _ in range(n)]
        tasks = []
        for j in range(m):
            c = rng.choice(n, p=p)
            queues[c].append(j)
            tasks.append([c, x])
            A[r, j] = sum(w[tasks[t][0]] ** 2 for t in range(j))
            g2[r, j] = (quad.a * (x - bbar)) ** 2
        for k in range(1, K):
            busy = [i for i in range(n) if queues[i]]
            rt = rates[busy]
            i = busy[rng.choice(len(busy), p=rt / rt.sum())]
            s = queues[i].pop(0)
            c, z = tasks[s]
            x = x - eta * w[c] * (quad.a * (z - quad.b[c]) + rng.normal() * math.sqrt(quad.sigma2))
            A[r, m + k - 1] = sum(w[tasks[t][0]] ** 2 for t in range(m) if t != s)
            g2[r, m + k - 1] = (quad.a * (x - bbar)) ** 2
            cn = rng.choice(n, p=p)
            queues[cn].append(s)
            tasks[s] = [cn, x]
    return g2, A


def test_exact_chain_against_simulation():
    p, m, cap, eta, K = ROUTINGS[1], 2, 1.5, 0.2, 12
    g2, A = simulate(RATES, p, m, QUAD, cap, eta, K, 3000, seed=1)
    ex = ExactChain(RATES, p, m).run(QUAD, cap, eta, K)
    for sim, exact in ((g2, ex["grad2"]), (A, ex["A"])):
        se = sim.std(0, ddof=1) / math.sqrt(sim.shape[0])
        det = se < 1e-9 * (np.abs(exact) + 1)  # deterministic entries (the first tasks): equal exactly
        np.testing.assert_allclose(sim.mean(0)[det], exact[det], rtol=1e-12)
        z = (sim.mean(0)[~det] - exact[~det]) / se[~det]
        assert np.max(np.abs(z)) < 3.9  # family-wise over <= 13 entries at about 1e-3


@pytest.mark.parametrize("m", [2, 3])
def test_steady_state_staleness_weight_is_S2c(m):
    """Per dispatch in steady state, ``E sum_{i in O} w_{J_i}^2 = sum_i p_i w_i^2 E[D_i] = S2_c``:
    the chain's stationary law against aflqueue's delay formula."""
    for p in ROUTINGS[1:]:
        ch = ExactChain(RATES, p, m)
        pi = ch.stationary()
        delays = analyze(System.from_rates(RATES, routing=p, concurrency=m)).relative_delay
        for c in CAPS:
            assert ch.staleness_weight(pi, c) == pytest.approx(s2(delays, p, cap_arg(c)), rel=1e-10)


def theorem_rhs(quad, p, c, eta, theta, m, res, N, bias=True):
    """Right-hand side of Theorem 11.1 with the trajectory's own staleness sums (see the docs:
    ``Gamma`` replaces ``(m - 1) G^2 S2hat``, since no quadratic has bounded gradients)."""
    Q, _ = effective_mass(p, cap_arg(c))
    S1c, _ = s1(p, cap_arg(c))
    b2, _ = bias_factor(p, cap_arg(c))
    A, G = res["A"][:N].mean(), res["Gamma"][:N].mean()
    L = quad.L
    inner = (2 * quad.Delta / (Q * eta * N) + L * eta * (quad.sigma2 + 2 * quad.M2) * S1c / Q
             + L * L * eta * eta * (quad.sigma2 * A + G) + (b2 * quad.M2 if bias else 0.0))
    return inner / (1 - theta)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_theorem_holds_at_every_K(m):
    K = 250 if m < 3 else 120
    worst = math.inf
    for p in ROUTINGS:
        ch = ExactChain(RATES, p, m)
        for c in CAPS:
            Q, _ = effective_mass(p, cap_arg(c))
            S1c, _ = s1(p, cap_arg(c))
            for theta in (0.1, 0.5, 0.9):
                eta = theta * Q / (2 * QUAD.L * S1c)  # the largest step the theorem allows
                res = ch.run(QUAD, c, eta, K)
                for N in range(1, K + m):
                    lhs = res["grad2"][:N].mean()
                    rhs = theorem_rhs(QUAD, p, c, eta, theta, m, res, N)
                    assert lhs <= rhs
                    worst = min(worst, rhs / lhs)
    assert worst > 1.0


def worst_case_quadratic(p, c, M=0.8, shift=0.2):
    """Client minimisers ``b_i`` at which ``|f'_q - f'| = beta M`` exactly (the linear programme's
    extreme point: +M above the median of ``q``, -M below), started at the biased fixed point."""
    n = p.size
    q = np.minimum(1 / n, c * p)
    order = np.argsort(q, kind="stable")
    x = np.zeros(n)
    x[order[n - n // 2:]] = 1.0
    x[order[: n // 2]] = -1.0
    b = shift - x * M
    return Quadratic(a=1.0, b=b, x0=float(q @ b / q.sum()), sigma2=0.5)


def test_bias_term_is_needed():
    """Without ``beta^2 M^2`` the bound fails once the clipped run sits at its biased fixed point."""
    p, c, theta = ROUTINGS[2], 1.5, 0.02
    quad = worst_case_quadratic(p, c)
    Q, _ = effective_mass(p, c)
    S1c, _ = s1(p, c)
    eta = theta * Q / (2 * quad.L * S1c)
    res = ExactChain(RATES, p, 1).run(quad, c, eta, 3000)
    lhs = res["grad2"].mean()
    assert lhs > 5 * theorem_rhs(quad, p, c, eta, theta, 1, res, 3000, bias=False)
    assert lhs <= theorem_rhs(quad, p, c, eta, theta, 1, res, 3000)


@pytest.mark.parametrize("p, c", [(ROUTINGS[2], 1.5), (ROUTINGS[1], 1.5), (np.array([0.9, 0.1]), 3.0),
                                  (np.array([0.7, 0.2, 0.06, 0.04]), 2.0)])
def test_floor_constant_is_attained(p, c):
    """``lim_{eta -> 0} lim_K E f'(x_K)^2 = (f'_q - f')^2``, which is ``beta^2 M^2`` on worst-case data:
    the bound's floor ``beta^2 M^2 / (1 - theta)`` has the right constant as ``theta -> 0``."""
    quad = worst_case_quadratic(p, c)
    b2, _ = bias_factor(p, c)
    q = p * weights(p, c)
    exact_bias2 = quad.a**2 * (q @ quad.b / q.sum() - quad.b.mean()) ** 2
    assert exact_bias2 == pytest.approx(b2 * quad.M2, rel=1e-12)
    assert stationary_grad2_m1(quad, p, c, 1e-9) == pytest.approx(exact_bias2, rel=1e-7)
    # other data: the floor is below beta^2 M^2
    other = Quadratic(a=1.0, b=np.linspace(-1, 1, p.size) ** 3, x0=0.0, sigma2=0.5)
    ob = other.a**2 * (q @ other.b / q.sum() - other.b.mean()) ** 2
    assert ob <= b2 * other.M2 * (1 + 1e-12)


def test_floor_at_m1_closed_form_and_m2_limit():
    p, c = ROUTINGS[2], 1.5
    quad = worst_case_quadratic(p, c)
    b2, _ = bias_factor(p, c)
    floor = b2 * quad.M2
    # the chain's long run equals the closed form at m = 1 ...
    r = ExactChain(RATES, p, 1).run(quad, c, 0.02, 1500)
    assert r["grad2"][-1] == pytest.approx(stationary_grad2_m1(quad, p, c, 0.02), rel=1e-10)
    # ... and at m = 2 the limit eta -> 0 (Richardson from eta and eta/2) is the same floor
    ch = ExactChain(RATES, p, 2)
    f1 = ch.run(quad, c, 0.02, 1500)["grad2"][-1]
    f2 = ch.run(quad, c, 0.01, 2500)["grad2"][-1]
    assert f2 > floor and f1 > f2
    assert 2 * f2 - f1 == pytest.approx(floor, rel=3e-3)


# --------------------------------------------------------------------------- c = inf is today's proxy
def test_no_cap_is_todays_proxy_bit_for_bit():
    rng = np.random.default_rng(3)
    const = ProxyConstants(Delta=1.7, L=0.6, sigma2=0.3, M2=0.9, G2=0.4)
    for _ in range(5):
        p = rng.dirichlet(np.ones(4))
        d = rng.uniform(0, 5, 4)
        dwd = rng.normal(size=4)
        for cap in (None, math.inf):
            assert s1(p, cap)[0] == s1(p)[0] and np.array_equal(s1(p, cap)[1], s1(p)[1])
            assert np.array_equal(s2_weights(p, cap), s2_weights(p)) and s2(d, p, cap) == s2(d, p)
            assert np.array_equal(s2_gradient(d, p, dwd, cap), s2_gradient(d, p, dwd))
            assert effective_mass(p, cap)[0] == 1.0 and bias_factor(p, cap)[0] == 0.0
            assert clip_factors(p, cap, 1.0) is None
        # a cap above every weight clips nothing: the same values as no cap (other operations)
        big = 2.0 / (4 * p.min())
        assert s1(p, big)[0] == pytest.approx(s1(p)[0], rel=1e-14)
        assert effective_mass(p, big)[0] == pytest.approx(1.0, rel=1e-15) and bias_factor(p, big)[0] < 1e-30


def test_no_cap_no_mix_optimiser_is_todays_answer_bit_for_bit():
    s = System.from_rates([1.0, 0.3, 0.05, 2.0], concurrency=5)
    for kind in ("wall-clock", "time-to-accuracy"):
        ref = optimize(OptimizationProblem(s, kind, p_min=0.01, concurrency=(1, 8)), starts=2)
        for kw in (dict(cap=math.inf, mix=1.0), dict(choose_cap=True, caps=(math.inf,)),
                   dict(choose_cap=True, choose_mix=True, caps=(math.inf,))):
            r = optimize(OptimizationProblem(s, kind, p_min=0.01, concurrency=(1, 8), **kw), starts=2)
            if not kw.get("choose_mix"):
                assert np.array_equal(r.routing, ref.routing) and r.objective_value == ref.objective_value
                assert r.concurrency == ref.concurrency and r.eta == ref.eta
            else:  # the mix search keeps lam = 1 (p* itself) when nothing is clipped
                assert r.mix == 1.0 and np.array_equal(r.routing, ref.routing)
                assert r.objective_value == ref.objective_value
            assert r.cap == math.inf and r.baseline == ref.baseline


# --------------------------------------------------------------------------- gradients
def fd(f, p, h=1e-6):
    g = np.zeros(p.size)
    for j in range(p.size):
        e = np.zeros(p.size)
        e[j] = h * p[j]
        g[j] = (f(p + e) - f(p - e)) / (2 * e[j])
    return g


def away_from_kinks(p, c, gap=1e-3):
    n = p.size
    q = np.minimum(1 / n, c * p)
    qs = np.sort(q)
    return np.all(np.abs(c * p - 1 / n) > gap / n) and np.all(np.diff(qs)[np.diff(qs) > 0] > gap / n)


@pytest.mark.parametrize("seed", range(8))
def test_routing_factor_gradients(seed):
    rng = np.random.default_rng(seed)
    n = 5
    while True:
        p = rng.dirichlet(np.ones(n))
        c = float(rng.uniform(1.2, 4))
        if away_from_kinks(p, c) and np.any(c * p < 1 / n):
            break
    for fun in (lambda x: s1(x, c), lambda x: effective_mass(x, c), lambda x: bias_factor(x, c)):
        g = fun(p)[1]
        num = fd(lambda x: fun(x)[0], p)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8 * np.max(np.abs(num)))


SYSTEMS = [System.from_rates([1.0, 0.3, 0.05, 2.0], concurrency=6),
           System.from_rates([1.0, 0.3, 0.05], concurrency=4, downlink_rates=2.0, uplink_rates=[1, 3, 2],
                             uplink_discipline="delay", server_rate=5.0)]


@pytest.mark.parametrize("kind", ["per-update", "wall-clock", "time-to-accuracy", "energy", "tradeoff"])
@pytest.mark.parametrize("si", [0, 1])
def test_clipped_objective_gradients(kind, si):
    s = SYSTEMS[si]
    n = s.n
    p = np.array([0.5, 0.3, 0.02, 0.18])[:n] if n == 4 else np.array([0.6, 0.35, 0.05])
    p = p / p.sum()
    for kw in (dict(cap=3.0), dict(cap=3.0, mix=0.7), dict(mix=0.4), dict(cap=3.0, bias_constant=0.2)):
        assert away_from_kinks(mixed_routing(p, kw.get("mix", 1.0)), 3.0)
        pb = OptimizationProblem(s, kind, epsilon=0.5, time_budget=400.0, reference=(1.0, 1.0), **kw)
        f = _objective_for(pb)
        ev = f(p, s.concurrency)
        assert math.isfinite(ev.value)
        num = fd(lambda x: f(x, s.concurrency).value, p)
        np.testing.assert_allclose(ev.grad, num, rtol=2e-6, atol=1e-7 * np.max(np.abs(num)))


@pytest.mark.parametrize("seed", range(6))
def test_clipped_proxies_against_reference(seed):
    """The proxies at a cap against a direct evaluation: scalar minimisation over eta of
    ``a/(Q eta K) + b S1_c/Q eta + c S2_c eta^2 + H beta^2`` and bisection over K."""
    from scipy.optimize import brentq, minimize_scalar

    rng = np.random.default_rng(seed)
    const = ProxyConstants(Delta=rng.uniform(0.5, 3), L=rng.uniform(0.2, 3), sigma2=rng.uniform(0, 2),
                           M2=rng.uniform(0, 2), G2=rng.uniform(0, 2))
    n = 4
    while True:  # at least one client clipped
        p = rng.dirichlet(np.ones(n))
        c = float(rng.uniform(1, 4))
        if c * p.min() < 1 / n:
            break
    d = rng.uniform(0, 6, n)
    w = np.minimum(1 / (n * p), c)
    S1c, S2c = float(np.sum(p * w * w)), float(np.sum(p * w * w * d))
    q = p * w
    Q = q.sum()
    beta2 = beta_lp(q) ** 2
    H = rng.uniform(0, 0.05)
    clip = clip_factors(p, c, H)
    K = 10 ** rng.uniform(1, 4)

    def U(eta, K):
        return (const.c_opt * const.Delta / (Q * eta * K)
                + const.c_var * const.L * (const.sigma2 + const.M2) * S1c / Q * eta
                + const.c_stale * const.L**2 * (const.sigma2 + const.G2) * S2c * eta**2 + H * beta2)

    def min_eta(K):
        r = minimize_scalar(lambda e: U(e, K), bounds=(1e-12, const.eta_max), method="bounded",
                            options={"xatol": 1e-14})
        return min(r.fun, U(const.eta_max, K))

    assert per_update(const, s1(p, c)[0], s2(d, p, c), K, clip=clip).total == pytest.approx(min_eta(K), rel=1e-9)
    eps = H * beta2 + 0.3
    Ke, eta = time_to_accuracy_updates(const, s1(p, c)[0], s2(d, p, c), eps, clip=clip)
    assert Ke == pytest.approx(math.exp(brentq(lambda lk: min_eta(math.exp(lk)) - eps, -5, 80, xtol=1e-13)), rel=1e-7)
    # at or below the bias floor no K reaches eps
    assert beta2 > 0
    assert time_to_accuracy_updates(const, s1(p, c)[0], s2(d, p, c), clip.bias, clip=clip)[0] == math.inf


def test_proxy_value_gradients_at_fixed_inputs():
    """The proxies' gradient formulas (envelope theorem) against finite differences of the proxies
    themselves with S1_c, S2_c and lambda as smooth functions of p."""
    rng = np.random.default_rng(0)
    n = 4
    p0 = np.array([0.45, 0.3, 0.2, 0.05])
    c = 3.0
    D = rng.uniform(0.5, 4, n)
    lam_w = rng.uniform(0.5, 2, n)
    const = ProxyConstants(Delta=2.0, L=0.7, sigma2=0.4, M2=0.8, G2=0.5)

    def parts(p):
        S1c, dS1 = s1(p, c)
        S2c = s2(D, p, c)
        dS2 = s2_gradient(D, p, np.zeros(n), c)
        lam, dlam = float(p @ lam_w), lam_w
        return S1c, dS1, S2c, dS2, lam, dlam, clip_factors(p, c, 0.3)

    for name, call in [
        ("U", lambda a: per_update_proxy(const, a[0], a[1], a[2], a[3], 500.0, clip=a[6])),
        ("W", lambda a: wallclock_proxy(const, a[0], a[1], a[2], a[3], a[4], a[5], 300.0, 2.0, clip=a[6])),
        ("T", lambda a: time_to_accuracy_proxy(const, a[0], a[1], a[2], a[3], a[4], a[5], 0.6, clip=a[6])),
    ]:
        v = call(parts(p0))
        num = fd(lambda x: call(parts(x)).value, p0)
        np.testing.assert_allclose(v.gradient, num, rtol=1e-6, err_msg=name)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, field", [
    (dict(cap=0.0), "cap"), (dict(cap=-1.0), "cap"), (dict(cap=float("nan")), "cap"), (dict(cap="4"), "cap"),
    (dict(mix=1.5), "mix"), (dict(mix=-0.1), "mix"), (dict(mix=True), "mix"),
    (dict(choose_cap=1), "choose_cap"), (dict(caps=()), "caps"), (dict(caps=(2.0, 0.0)), "caps"),
    (dict(bias_constant=-1.0), "bias_constant"), (dict(bias_constant=float("inf")), "bias_constant"),
])
def test_bad_clipping_options(kwargs, field):
    s = System.from_rates([1.0, 0.2], concurrency=2)
    with pytest.raises(ValidationError) as e:
        OptimizationProblem(s, **kwargs)
    assert e.value.field == field


def test_cap_refused_for_max_throughput():
    s = System.from_rates([1.0, 0.2], concurrency=2)
    with pytest.raises(ValidationError) as e:
        OptimizationProblem(s, "max-throughput", cap=4.0)
    assert e.value.field == "cap"


# --------------------------------------------------------------------------- calibration of H
def test_bias_fit_recovers_a_known_constant_exactly_on_exact_floors():
    """Exact floors (eta -> 0, K -> inf) of clipped runs on a 2-client quadratic, where every data
    set is worst case: the fit returns M^2 of the problem to rounding."""
    quad = Quadratic(a=1.3, b=np.array([0.4, -0.9]), x0=0.0, sigma2=0.5)
    floors, b2s = [], []
    for p1 in (0.6, 0.75, 0.9, 0.95):
        p = np.array([p1, 1 - p1])
        for c in (1.2, 2.0, 4.0):
            b2s.append(bias_factor(p, c)[0])
            floors.append(stationary_grad2_m1(quad, p, c, 1e-10) - stationary_grad2_m1(quad, p, math.inf, 1e-10))
    fit = fit_bias_constant(np.array(floors), np.array(b2s))
    assert fit.H == pytest.approx(quad.M2, rel=1e-6)
    assert fit.residual_rms < 1e-6 * quad.M2


def test_bias_fit_on_noisy_synthetic_pilots():
    """Excess losses ``H beta^2 + noise`` (the runs' losses minus the unbiased fit's prediction):
    the estimate is unbiased, and its 95% interval covers the truth at about the nominal rate."""
    H = 0.37
    b2 = np.array([0.0, 0.01, 0.03, 0.08, 0.15, 0.2, 0.3, 0.45])
    covered, est = 0, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        y = H * b2 + rng.normal(scale=0.01, size=b2.size)
        fit = fit_bias_constant(y, b2)
        est.append(fit.H)
        covered += fit.interval[0] <= H <= fit.interval[1]
    assert abs(np.mean(est) - H) < 3 * np.std(est) / math.sqrt(len(est))
    assert 0.9 <= covered / 200 <= 0.99


@pytest.mark.parametrize("args, field", [
    ((np.array([0.1, 0.2]), np.array([0.1])), "beta2"),
    ((np.array([0.1, np.nan]), np.array([0.1, 0.2])), "excess"),
    ((np.array([0.1, 0.2]), np.array([-0.1, 0.2])), "beta2"),
    ((np.array([0.1, 0.2]), np.array([0.0, 0.0])), "beta2"),
])
def test_bias_fit_bad_input(args, field):
    with pytest.raises(ValidationError) as e:
        fit_bias_constant(*args)
    assert e.value.field == field
