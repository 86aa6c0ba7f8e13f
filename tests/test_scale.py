"""No overflow, underflow or NaN at scale; MVA and log-space convolution agree (issue 2 acceptance)."""

import numpy as np
import pytest

from aflqueue import System
from aflqueue.queueing import analyze, metrics_vjp
from aflqueue.queueing import convolution as conv
from aflqueue.queueing.mva import mva


def random_system(n, m, lo, hi, seed):
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    p = rng.dirichlet(np.ones(n))
    return System.from_rates(rates, p, m)


@pytest.mark.parametrize(
    "n, m, lo, hi",
    [
        (700, 700, 0.1, 10.0),        # where naive solvers overflow
        (1000, 1000, 1e-6, 1e6),      # rates over 12 decades
        (100, 100_000, 0.1, 10.0),    # m >> n
        (100, 100_000, 1e-6, 1e6),
        pytest.param(10_000, 10_000, 1e-6, 1e6, marks=pytest.mark.slow),
    ],
)
def test_mva_vs_log_convolution_at_scale(n, m, lo, hi):
    s = random_system(n, m, lo, hi, seed=n + m)
    a = analyze(s, "mva")
    b = analyze(s, "convolution")
    for x in (a, b):
        assert np.isfinite(x.throughput) and np.isfinite(x.log_normalizing_constant)
        assert np.all(np.isfinite(x.mean_queue_lengths)) and np.all(np.isfinite(x.relative_delay))
        assert abs(x.mean_queue_lengths.sum() - m) < 1e-9 * m
    assert abs(a.throughput - b.throughput) <= 1e-10 * a.throughput
    assert abs(a.log_normalizing_constant - b.log_normalizing_constant) <= 1e-10 * abs(a.log_normalizing_constant)
    np.testing.assert_allclose(a.mean_queue_lengths, b.mean_queue_lengths, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(a.relative_delay, b.relative_delay, rtol=1e-10)


def test_linear_space_would_overflow_but_log_space_does_not():
    # the normalising constant itself is far outside float64 range
    s = System.from_rates(np.full(2000, 1e-3), concurrency=2000)
    a = analyze(s)
    assert a.log_normalizing_constant > np.log(np.finfo(float).max)  # G(m) unrepresentable in float64
    assert a.throughput == pytest.approx(2000 * 1e-3 * 2000 / 3999, rel=1e-12)


def test_bottleneck_limit_m_much_larger_than_n():
    # as m -> inf the slowest station saturates: lambda -> mu_b / p_b, its queue ~ m
    rates = np.array([1.0, 2.0, 0.5, 4.0])
    p = np.full(4, 0.25)
    a = analyze(System.from_rates(rates, p, 100_000))
    assert a.throughput == pytest.approx(0.5 / 0.25, rel=1e-4)
    assert a.utilization[2] == pytest.approx(1.0, rel=1e-4)
    assert a.mean_queue_lengths[2] == pytest.approx(100_000 - a.mean_queue_lengths[[0, 1, 3]].sum(), rel=1e-12)


def test_gradient_finite_at_scale():
    s = random_system(1000, 1000, 1e-6, 1e6, seed=1)
    g = metrics_vjp(s, d_throughput=1.0, d_relative_delay=s.routing)
    assert np.all(np.isfinite(g))


def test_mva_with_history_matches_convolution_everywhere():
    rng = np.random.default_rng(5)
    rho = rng.uniform(0.01, 1.0, 30)
    r = mva(rho, None, 200, history=True)
    lg = conv.log_normalizing_constants(rho, None, 200)
    np.testing.assert_allclose(r.log_normalizing_constants, lg, rtol=1e-12, atol=1e-12)
    for k in (1, 17, 200):
        np.testing.assert_allclose(r.history[k], conv.mean_queue_lengths(rho, None, lg, k), rtol=1e-10)
