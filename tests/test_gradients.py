"""Exact gradients against central finite differences and against the brute-force covariance."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aflqueue import System
from aflqueue.queueing import analyze, metrics_vjp, network_of, routing_gradients, routing_jacobians
from aflqueue.queueing import ctmc
from aflqueue.queueing.delay import relative_delay_from_queues
from aflqueue.queueing.mva import mva

SYSTEMS = [
    System.from_rates([1.0, 2.0, 0.3, 0.7], [0.4, 0.2, 0.3, 0.1], 5),
    System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4, downlink_rates=[3, 1, 2], uplink_rates=2.0,
                      uplink_discipline="delay", server_rate=4.0),
    System.from_rates([5.0, 0.05, 1.0], [0.2, 0.3, 0.5], 12),
]


def metrics_at(system, p):
    """Metrics with an arbitrary (unnormalised) routing vector: the functions being differentiated."""
    net = network_of(system, p)
    r = mva(net.demands, net.is_delay, system.concurrency)
    m = system.concurrency
    return (r.throughput[m], r.log_normalizing_constants[m], net.per_client(r.queue_lengths),
            relative_delay_from_queues(net, r.queue_lengths_prev, p))


def finite_differences(system, h=1e-6):
    p = system.routing
    n = system.n
    out = [np.zeros(n), np.zeros(n), np.zeros((n, n)), np.zeros((n, n))]
    for j in range(n):
        e = np.zeros(n)
        e[j] = h * p[j]
        a, b = metrics_at(system, p + e), metrics_at(system, p - e)
        for k in range(4):
            d = (np.asarray(a[k]) - np.asarray(b[k])) / (2 * e[j])
            if k < 2:
                out[k][j] = d
            else:
                out[k][:, j] = d
    return out


@pytest.mark.parametrize("system", SYSTEMS)
def test_against_finite_differences(system):
    fd_lam, fd_lg, fd_q, fd_d = finite_differences(system)
    g = routing_gradients(system)
    J = routing_jacobians(system)
    scale = lambda x: np.max(np.abs(x)) + 1e-12
    assert np.max(np.abs(g.d_throughput - fd_lam)) < 1e-6 * scale(fd_lam)
    assert np.max(np.abs(g.d_log_normalizing_constant - fd_lg)) < 1e-6 * scale(fd_lg)
    assert np.max(np.abs(J.queue_lengths - fd_q)) < 1e-6 * scale(fd_q)
    assert np.max(np.abs(J.relative_delay - fd_d)) < 1e-6 * scale(fd_d)
    tiny = 1e-12 * scale(g.d_throughput)  # entries ~1e-15 differ between backends' summation orders
    np.testing.assert_allclose(J.throughput, g.d_throughput, rtol=1e-11, atol=tiny)
    # analyze(gradient=True) reuses the same pass
    ga = analyze(system, gradient=True).gradients
    np.testing.assert_allclose(ga.d_throughput, g.d_throughput, rtol=1e-11, atol=tiny)
    gc = analyze(system, method="convolution", gradient=True).gradients
    np.testing.assert_allclose(gc.d_throughput, g.d_throughput, rtol=1e-8, atol=1e-10 * scale(g.d_throughput))


@pytest.mark.parametrize("system", SYSTEMS)
def test_vjp_matches_jacobian(system):
    rng = np.random.default_rng(3)
    n = system.n
    c, b = rng.normal(size=n), rng.normal(size=n)
    J = routing_jacobians(system)
    g = routing_gradients(system)
    v = metrics_vjp(system, d_throughput=0.7, d_log_normalizing_constant=-0.3, d_queue_lengths=c, d_relative_delay=b)
    ref = 0.7 * g.d_throughput - 0.3 * g.d_log_normalizing_constant + c @ J.queue_lengths + b @ J.relative_delay
    np.testing.assert_allclose(v, ref, rtol=1e-10, atol=1e-12)


def test_covariance_against_brute_force():
    """d E[X_s] / d log rho_t = Cov(X_s, X_t), checked on the enumerated stationary distribution."""
    system = SYSTEMS[1]
    net = network_of(system)
    bf = ctmc.stationary(system)
    x = bf.states.astype(float)
    mean = bf.pi @ x
    cov = (x - mean).T @ (bf.pi[:, None] * (x - mean))
    r = mva(net.demands, net.is_delay, system.concurrency, cotangents=np.eye(net.size))
    m = system.concurrency
    cov_mva = r.cross_moments - r.cotangent_dots[:, m:m + 1] * r.queue_lengths[None, :]
    np.testing.assert_allclose(cov_mva, cov, atol=1e-11)
    np.testing.assert_allclose(cov_mva, cov_mva.T, atol=1e-11)


def test_log_rate_gradient_is_negative_log_demand_gradient():
    system = SYSTEMS[0]
    g = routing_gradients(system)
    np.testing.assert_allclose(g.d_log_normalizing_constant_d_log_rates, -analyze(system).stations.mean_queue_length)
    # finite difference in log mu_0
    h = 1e-6
    def lam(c):
        return analyze(System.from_rates(system.rates * np.exp(np.r_[c, 0, 0, 0]), system.routing, system.concurrency)).throughput
    fd = (lam(h) - lam(-h)) / (2 * h)
    assert g.d_throughput_d_log_rates[0] == pytest.approx(fd, rel=1e-6)


def test_inactive_client_gradients_are_nan():
    s = System.from_rates([1.0, 2.0, 0.5], [0.6, 0.4, 0.0], 4)
    g = routing_gradients(s)
    assert np.isnan(g.d_throughput[2]) and np.all(np.isfinite(g.d_throughput[:2]))
    J = routing_jacobians(s)
    assert np.all(np.isnan(J.relative_delay[2])) and np.all(np.isfinite(J.relative_delay[:2, :2]))


MVA_FIELDS = ("throughput", "log_normalizing_constants", "queue_lengths", "queue_lengths_prev",
              "cotangent_dots", "cross_moments", "cross_moments_prev")


def assert_same_bits(a, b):
    for k in MVA_FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), f"{k}: backends differ in the last bits"


@pytest.mark.parametrize("system", SYSTEMS)
def test_numba_and_numpy_backends_give_identical_bits(system):
    """One numeric path: the compiled kernel and the numpy loop perform the same operations in
    the same order, so results never depend on which one ran (or on import order)."""
    net = network_of(system)
    C = np.random.default_rng(0).normal(size=(3, net.size))
    a = mva(net.demands, net.is_delay, system.concurrency, cotangents=C, backend="numpy")
    b = mva(net.demands, net.is_delay, system.concurrency, cotangents=C, backend="numba")
    assert_same_bits(a, b)
    g1 = metrics_vjp(system, d_relative_delay=np.ones(system.n), backend="numpy")
    g2 = metrics_vjp(system, d_relative_delay=np.ones(system.n), backend="numba")
    assert g1.tobytes() == g2.tobytes()
    # the same call repeated gives the same bits (no fastmath / SIMD reassociation)
    assert all(mva(net.demands, net.is_delay, system.concurrency, backend="numba").throughput.tobytes()
               == b.throughput.tobytes() for _ in range(50))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_backends_identical_on_random_networks(S, m, q, seed):
    rng = np.random.default_rng(seed)
    demands = np.exp(rng.uniform(-8, 8, S))
    is_delay = rng.random(S) < 0.3
    C = rng.normal(size=(q, S)) if q else None
    a = mva(demands, is_delay, m, cotangents=C, backend="numpy")
    b = mva(demands, is_delay, m, cotangents=C, backend="numba")
    if C is None:
        for k in MVA_FIELDS[:4]:
            assert getattr(a, k).tobytes() == getattr(b, k).tobytes(), k
    else:
        assert_same_bits(a, b)


@pytest.mark.parametrize("system", SYSTEMS)
def test_log_rate_jacobians_against_finite_differences(system):
    J = routing_jacobians(system)
    net = J.network
    h = 1e-6
    fd_q = np.zeros((system.n, net.size))
    fd_d = np.zeros((system.n, net.size))
    for s in range(net.size):
        outs = []
        for sign in (1, -1):
            rates = net.rates.copy()
            rates[s] *= np.exp(sign * h)
            dem = net.visits / rates
            r = mva(dem, net.is_delay, system.concurrency)
            q_prev = r.queue_lengths_prev
            y = net.per_client(r.queue_lengths)
            cs = net.server_index
            d = net.per_client(q_prev) / system.routing + (q_prev[cs] if cs is not None else 0.0)
            outs.append((y, d))
        fd_q[:, s] = (outs[0][0] - outs[1][0]) / (2 * h)
        fd_d[:, s] = (outs[0][1] - outs[1][1]) / (2 * h)
    np.testing.assert_allclose(J.queue_lengths_log_rates, fd_q, atol=1e-6 * np.abs(fd_q).max())
    np.testing.assert_allclose(J.relative_delay_log_rates, fd_d, atol=1e-6 * np.abs(fd_d).max())
