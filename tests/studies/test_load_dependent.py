"""Closed networks of load-dependent stations (validation/approx/load_dependent.py: the delay-oracle study's)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aflqueue import System
from aflqueue.queueing import analyze
from validation.approx.load_dependent import load_dependent_mean_queues


def _brute_force(p: np.ndarray, r: np.ndarray, m: int) -> tuple[float, np.ndarray]:
    """Stationary distribution of the CTMC (a departure from s at rate r_s(x_s), routed to j w.p. p_j)."""
    S = p.size
    states = [x for x in itertools.product(range(m + 1), repeat=S) if sum(x) == m]
    index = {x: i for i, x in enumerate(states)}
    A = np.zeros((len(states), len(states)))
    for x in states:
        for s in range(S):
            if x[s] == 0:
                continue
            for j in range(S):
                y = list(x)
                y[s] -= 1
                y[j] += 1
                A[index[x], index[tuple(y)]] += r[s, x[s]] * p[j]
    np.fill_diagonal(A, A.diagonal() - A.sum(axis=1))
    M = np.vstack([A.T, np.ones(len(states))])
    pi = np.linalg.lstsq(M, np.r_[np.zeros(len(states)), 1.0], rcond=None)[0]
    X = np.array(states, dtype=float)
    lam = sum(pi[i] * sum(r[s, x[s]] for s in range(S) if x[s]) for i, x in enumerate(states))
    return float(lam), pi @ X


def test_matches_brute_force_chain_with_queue_dependent_rates():
    rng = np.random.default_rng(3)
    p = np.array([0.5, 0.3, 0.2])
    m = 5
    r = rng.uniform(0.2, 3.0, (3, m + 1))
    lam, Q = load_dependent_mean_queues(p, r, m)
    lam_bf, Q_bf = _brute_force(p, r, m)
    assert lam == pytest.approx(lam_bf, rel=1e-10)
    np.testing.assert_allclose(Q, Q_bf, rtol=1e-9)
    assert Q.sum() == pytest.approx(m, rel=1e-12)


@pytest.mark.parametrize("n,m", [(4, 1), (10, 7), (30, 60)])
def test_constant_rates_give_exact_mva(n, m):
    rng = np.random.default_rng(n)
    mu = rng.uniform(0.1, 2.0, n)
    p = rng.dirichlet(np.ones(n))
    res = analyze(System.from_rates(mu.tolist(), p.tolist(), m))
    lam, Q = load_dependent_mean_queues(p, np.tile(mu[:, None], (1, m + 1)), m)
    assert lam == pytest.approx(res.throughput, rel=1e-10)
    np.testing.assert_allclose(Q, res.mean_queue_lengths, rtol=1e-9, atol=1e-12)


def test_zero_visit_station_holds_nothing_and_bad_input_is_refused():
    lam, Q = load_dependent_mean_queues(np.array([0.0, 1.0]), np.ones((2, 4)), 3)
    assert Q[0] == 0.0 and Q[1] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        load_dependent_mean_queues(np.array([0.5, 0.5]), np.ones((2, 3)), 3)
    with pytest.raises(ValueError):
        load_dependent_mean_queues(np.array([0.5, 0.5]), np.zeros((2, 4)), 3)


def test_departure_rates_by_queue_are_the_service_rates_when_exponential():
    from aflqueue.sim import simulate
    from aflqueue.sim.estimate import departure_rates_by_queue

    mu = np.array([2.0, 1.0, 0.5])
    tr = simulate(System.from_rates(mu.tolist(), [0.5, 0.3, 0.2], 4), 200_000, seed=4)
    deps, held = departure_rates_by_queue(tr, warmup=0.1)
    up = tr.updates()
    k0 = int(round(0.1 * up["time"].size))
    window = up["time"][-1] - up["time"][k0 - 1]
    np.testing.assert_allclose(held.sum(axis=1), window, rtol=1e-12)  # every instant counted once
    np.testing.assert_array_equal(deps.sum(axis=1), np.bincount(up["client"][k0:], minlength=3))
    assert np.all(deps[:, 0] == 0)
    # memoryless service: the departure rate does not depend on the queue (Poisson counts, z < 4)
    expected = mu[:, None] * held[:, 1:]
    ok = expected > 200
    z = (deps[:, 1:][ok] - expected[ok]) / np.sqrt(expected[ok])
    assert ok.sum() >= 8 and np.max(np.abs(z)) < 4.0
