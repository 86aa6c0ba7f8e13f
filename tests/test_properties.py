"""Property-based tests of the exact analysis (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aflqueue import System
from aflqueue.queueing import analyze

rates_st = st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=8)


@st.composite
def systems(draw, multistage=None):
    rates = draw(rates_st)
    n = len(rates)
    w = np.array(draw(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=n, max_size=n)))
    m = draw(st.integers(min_value=1, max_value=40))
    ms = draw(st.booleans()) if multistage is None else multistage
    kw = {}
    if ms:
        kw = dict(downlink_rates=draw(st.floats(0.1, 100)), uplink_rates=draw(st.floats(0.1, 100)),
                  uplink_discipline=draw(st.sampled_from(["fifo", "delay"])),
                  server_rate=draw(st.one_of(st.none(), st.floats(0.5, 100))))
    return System.from_rates(rates, w / w.sum(), m, **kw)


@settings(max_examples=60, deadline=None)
@given(systems())
def test_conservation_laws(s):
    a = analyze(s)
    total = a.stations.mean_queue_length.sum()
    assert abs(total - s.concurrency) < 1e-9 * s.concurrency
    assert abs(np.sum(s.routing * a.relative_delay) - (s.concurrency - 1)) < 1e-9 * max(1, s.concurrency)
    assert np.all(a.relative_delay >= -1e-12)
    fifo = ~a.stations.visit.astype(bool) | (np.array(a.stations.discipline) == "fifo")
    assert np.all(a.stations.utilization[fifo] <= 1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(systems(), st.randoms(use_true_random=False))
def test_permutation_symmetry(s, rnd):
    perm = list(range(s.n))
    rnd.shuffle(perm)
    perm = np.array(perm)
    t = System(tuple(s.clients[i] for i in perm), s.routing[perm], s.concurrency, s.server)
    a, b = analyze(s), analyze(t)
    assert abs(a.throughput - b.throughput) <= 1e-11 * a.throughput
    np.testing.assert_allclose(b.mean_queue_lengths, a.mean_queue_lengths[perm], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.relative_delay, a.relative_delay[perm], rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(systems())
def test_throughput_nondecreasing_in_concurrency_and_bounded(s):
    lam = [analyze(s.with_concurrency(k)).throughput for k in range(1, s.concurrency + 2)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(lam, lam[1:]))
    # bottleneck bound: lambda <= min over FIFO stations of mu_s / v_s
    a = analyze(s)
    st_ = a.stations
    fifo = np.array(st_.discipline) == "fifo"
    if fifo.any():
        assert a.throughput <= np.min(st_.rate[fifo] / st_.visit[fifo]) * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(systems())
def test_mva_equals_convolution(s):
    a, b = analyze(s, "mva"), analyze(s, "convolution")
    assert abs(a.throughput - b.throughput) <= 1e-10 * a.throughput
    assert abs(a.log_normalizing_constant - b.log_normalizing_constant) <= 1e-10 * max(1, abs(a.log_normalizing_constant))
    np.testing.assert_allclose(a.stations.mean_queue_length, b.stations.mean_queue_length, rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(systems(multistage=False), st.floats(0.1, 10))
def test_scale_invariance_of_delays(s, c):
    # multiplying every rate by c rescales time: throughput x c, queues and delays unchanged
    t = System.from_rates(s.rates * c, s.routing, s.concurrency)
    a, b = analyze(s), analyze(t)
    assert abs(b.throughput - c * a.throughput) <= 1e-10 * b.throughput
    np.testing.assert_allclose(b.relative_delay, a.relative_delay, rtol=1e-9, atol=1e-12)
