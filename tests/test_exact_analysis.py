"""Exact analysis against independent truth: brute-force CTMC, a second algorithm, hand cases."""

import numpy as np
import pytest

from aflqueue import System
from aflqueue.queueing import analyze, marginal_distribution, network_of
from aflqueue.queueing import convolution as conv
from aflqueue.queueing import ctmc
from aflqueue.queueing.mva import mva

TOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


SINGLE = [
    System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4),
    System.from_rates([1.0, 0.1, 0.1, 5.0], [0.1, 0.4, 0.2, 0.3], 6),
    System.from_rates([3.0], [1.0], 3),
    System.from_rates([1.0, 1.0], [0.5, 0.5], 1),
]
MULTI = [
    System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 3, downlink_rates=[3, 1, 2], uplink_rates=2.0,
                      uplink_discipline="delay", server_rate=4.0),
    System.from_rates([1.0, 0.5], [0.7, 0.3], 4, downlink_rates=1.0, downlink_discipline="delay", server_rate=2.0),
    System.from_rates([1.0, 0.5], [0.6, 0.4], 3, uplink_rates=[0.8, 3.0]),
    System.from_rates([1.0, 0.5, 2.0], [0.2, 0.3, 0.5], 3, server_rate=1.5, server_discipline="delay"),
]


@pytest.mark.parametrize("system", SINGLE + MULTI)
def test_against_brute_force_ctmc(system):
    bf = ctmc.stationary(system)
    for method in ("mva", "convolution"):
        a = analyze(system, method=method)
        assert rel(a.throughput, bf.throughput) < TOL
        assert rel(a.stations.mean_queue_length + 1e-300, bf.queue_lengths + 1e-300) < TOL
    # utilisation of FIFO stations = P(X_s >= 1) in the brute-force chain
    a = analyze(system)
    for s in range(bf.network.size):
        if not bf.network.is_delay[s]:
            assert abs(a.stations.utilization[s] - bf.tail(s, 1)) < TOL


@pytest.mark.parametrize("system", SINGLE + MULTI)
def test_tails_and_marginals_against_brute_force(system):
    bf = ctmc.stationary(system)
    net = network_of(system)
    m = system.concurrency
    lg = conv.log_normalizing_constants(net.demands, net.is_delay, m)
    for s in range(net.size):
        pmf_bf = np.array([bf.pi[bf.states[:, s] == k].sum() for k in range(m + 1)])
        pmf = marginal_distribution(net.demands, net.is_delay, m, s)
        np.testing.assert_allclose(pmf, pmf_bf, atol=1e-12)
        if not net.is_delay[s]:
            tails = conv.fifo_tail_probabilities(np.log(net.demands[s]), lg, m)
            np.testing.assert_allclose(tails, [bf.tail(s, k) for k in range(m + 1)], atol=1e-12)


@pytest.mark.parametrize("system", SINGLE + MULTI)
def test_relative_delay_against_tagged_task_chain(system):
    """E[D_i] formula (docs/theory.md sections 3-4) vs the exact law of D from a tagged-task CTMC built on the
    brute-force stationary distribution (no arrival theorem, no Little's law)."""
    dist = ctmc.relative_delay_distribution(system, max_delay=600)
    assert np.allclose(dist.sum(axis=1), 1.0, atol=1e-9)  # truncation negligible
    exact_mean = (dist * np.arange(dist.shape[1])).sum(axis=1)
    a = analyze(system)
    np.testing.assert_allclose(a.relative_delay, exact_mean, rtol=1e-8, atol=1e-10)
    assert a.mean_relative_delay == pytest.approx(system.concurrency - 1, abs=1e-10)


def test_mva_response_time_and_little_law():
    s = MULTI[0]
    a = analyze(s)
    st = a.stations
    np.testing.assert_allclose(st.mean_queue_length, a.throughput * st.visit * st.mean_response_time, rtol=1e-12)


def test_hand_computed_two_client_m1():
    # m = 1: one task; lambda = 1 / sum_i p_i / mu_i, E[X_i] = lambda p_i / mu_i, E[D_i] = 0
    s = System.from_rates([1.0, 4.0], [0.25, 0.75], 1)
    a = analyze(s)
    lam = 1.0 / (0.25 / 1.0 + 0.75 / 4.0)
    assert a.throughput == pytest.approx(lam, rel=1e-14)
    np.testing.assert_allclose(a.mean_queue_lengths, [lam * 0.25, lam * 0.75 / 4.0], rtol=1e-14)
    np.testing.assert_allclose(a.relative_delay, [0.0, 0.0], atol=1e-15)


def test_hand_computed_symmetric():
    # n identical clients, uniform routing: rho = 1/(n mu), G(k) = rho^k C(n+k-1, k), so
    # lambda = G(m-1)/G(m) = n mu m / (n + m - 1), E[X_i] = m / n, E[D_i] = (m-1)/n / (1/n) = m - 1
    n, m, mu = 4, 7, 2.0
    a = analyze(System.from_rates([mu] * n, concurrency=m))
    np.testing.assert_allclose(a.mean_queue_lengths, m / n, rtol=1e-13)
    np.testing.assert_allclose(a.relative_delay, m - 1, rtol=1e-13)
    assert a.throughput == pytest.approx(n * mu * m / (n + m - 1), rel=1e-13)


def test_zero_routing_client_is_undefined_not_a_number():
    s = System.from_rates([1.0, 2.0, 0.5], [0.6, 0.4, 0.0], 4)
    a = analyze(s)
    assert np.isnan(a.relative_delay[2]) and np.isnan(a.mean_response_times[2])
    assert a.mean_queue_lengths[2] == 0 and a.utilization[2] == 0
    ref = analyze(System.from_rates([1.0, 2.0], [0.6, 0.4], 4))
    np.testing.assert_allclose(a.relative_delay[:2], ref.relative_delay, rtol=1e-14)
    d = a.to_dict()
    assert d["relative_delay"][2] is None
    assert a.mean_relative_delay == pytest.approx(3.0)


def test_delay_only_network_is_poisson():
    # only delay stations: X is multinomial(m, rho / sum rho); lambda = m / sum rho
    s = System.from_rates([1.0, 2.0], [0.5, 0.5], 5, downlink_rates=[1.0, 3.0], downlink_discipline="delay")
    # compute stages are FIFO; build an all-delay network directly
    rho = np.array([0.3, 0.5, 0.2])
    r = mva(rho, np.ones(3, bool), 6)
    np.testing.assert_allclose(r.queue_lengths, 6 * rho / rho.sum(), rtol=1e-14)
    lg = conv.log_normalizing_constants(rho, np.ones(3, bool), 6)
    assert lg[6] == pytest.approx(6 * np.log(rho.sum()) - np.log(720.0), rel=1e-14)
    assert analyze(s).throughput == pytest.approx(analyze(s, "convolution").throughput, rel=1e-12)
