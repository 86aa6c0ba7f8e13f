"""Paired sign-flip test and Holm's adjustment against brute force and hand-computed cases."""

import itertools
import math

import numpy as np
import pytest

from aflqueue.stats import holm, sign_flip_test


def brute_force_p(x, alternative):
    obs = np.mean(x)
    stats = [np.mean(np.array(s) * x) for s in itertools.product((-1, 1), repeat=len(x))]
    if alternative == "greater":
        return np.mean([s >= obs - 1e-12 for s in stats])
    if alternative == "less":
        return np.mean([s <= obs + 1e-12 for s in stats])
    return np.mean([abs(s) >= abs(obs) - 1e-12 for s in stats])


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_sign_flip_is_exact_enumeration(alternative):
    rng = np.random.default_rng(5)
    for n in (3, 6, 10):
        x = rng.normal(0.3, 1.0, size=n)
        t = sign_flip_test(x, alternative)
        assert t.p_value == pytest.approx(brute_force_p(x, alternative), abs=1e-12)
        assert t.resamples == 2 ** n and t.n == n and t.statistic == pytest.approx(x.mean())


def test_sign_flip_smallest_p_and_nonfinite_values():
    # all ten positive: only the observed vector is as extreme, p = 1/1024 exactly
    assert sign_flip_test(np.arange(1, 11)).p_value == pytest.approx(1 / 1024)
    t = sign_flip_test([1.0, float("nan"), 2.0, float("inf")])
    assert t.n == 2 and t.p_value == pytest.approx(0.25)
    assert math.isnan(sign_flip_test([]).p_value)


def test_holm_by_hand():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
    got = holm([0.03, 0.01, 0.5, 0.02])
    assert got.tolist() == pytest.approx([0.06, 0.04, 0.5, 0.06])
    got = holm([0.2, float("nan"), 0.9])
    assert got[0] == pytest.approx(0.4) and math.isnan(got[1]) and got[2] == pytest.approx(0.9)
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
