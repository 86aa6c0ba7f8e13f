"""The protocol formulas (aflqueue.protocol) against hand-computed cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from aflqueue import System, ValidationError
from aflqueue.bounds import ProxyConstants
from aflqueue.protocol import largest_importance_weight, step_ratio, target_epsilon, time_budget, uniform_routing


def test_time_budget_one_task_in_flight():
    # m = 1, uniform routing over rates 1 and 0.5: a cycle is one service, mean 0.5 * 1 + 0.5 * 2 = 1.5,
    # so lambda = 2/3 and 10 updates take 15 time units; the system's own routing does not matter
    s = System.from_rates([1.0, 0.5], [0.9, 0.1], 1)
    assert time_budget(s, 10) == pytest.approx(15.0, rel=1e-12)
    assert time_budget(s.with_routing([0.5, 0.5]), 10) == time_budget(s, 10)


def test_time_budget_two_equal_clients_two_tasks():
    # n = 2 equal rates 1, m = 2: states (2,0), (1,1), (0,2) equally likely, each client busy 2/3 of
    # the time, lambda = 4/3: 8 updates take 6 time units
    assert time_budget(System.from_rates([1.0, 1.0], None, 2), 8) == pytest.approx(6.0, rel=1e-12)


def test_target_epsilon_without_staleness():
    # m = 1: no task overtakes another (S2 = 0), S1 = 1 under uniform routing; Delta = L = sigma2 = 1,
    # M2 = 0: a = 2, B = 1, so eta* = sqrt(a / (K B)) = 0.1 at K = 200 and U = a/(eta K) + B eta = 0.2
    s = System.from_rates([1.0, 0.5], None, 1)
    c = ProxyConstants(Delta=1.0, L=1.0, sigma2=1.0, M2=0.0, G2=5.0)
    assert target_epsilon(s, c, 200) == pytest.approx(0.2, rel=1e-9)
    # a larger budget of updates is a stricter target: U falls as 1/sqrt(K)
    assert target_epsilon(s, c, 800) == pytest.approx(0.1, rel=1e-9)


def test_step_ratio_and_its_guards():
    assert step_ratio(SimpleNamespace(eta=0.02, baseline={"eta": 0.08})) == pytest.approx(0.25, rel=1e-15)
    for eta, base in ((math.nan, {"eta": 0.1}), (0.1, {"eta": 0.0}), (0.1, {"eta": math.inf}), (0.1, None),
                      (None, {"eta": 0.1}), (0.1, {})):
        assert step_ratio(SimpleNamespace(eta=eta, baseline=base)) is None


def test_step_ratio_of_an_optimisation_result():
    from aflqueue.optimization import OptimizationProblem, optimize

    s = System.from_rates([1.0] * 3 + [0.1] * 3, None, 6)
    res = optimize(OptimizationProblem(s, "wall-clock", constants=ProxyConstants(), p_min=1e-3))
    assert step_ratio(res) == pytest.approx(res.eta / res.baseline["eta"], rel=1e-15)
    assert 0 < step_ratio(res) < 1  # P2 routes more tasks to fast clients: more staleness, a smaller step


def test_largest_importance_weight():
    assert largest_importance_weight(uniform_routing(7)) == pytest.approx(1.0, rel=1e-15)
    assert largest_importance_weight([0.7, 0.2, 0.1]) == pytest.approx(1 / 0.3, rel=1e-15)
    # a client that is never sent a task has no update to weight: left out
    assert largest_importance_weight([0.5, 0.25, 0.25, 0.0]) == pytest.approx(1.0, rel=1e-15)
    for bad in ([], [0.0, 0.0], [0.5, -0.1], [np.nan, 1.0]):
        with pytest.raises(ValidationError, match="routing"):
            largest_importance_weight(bad)
