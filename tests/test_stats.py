"""aflqueue.stats: the family-wise level and quantile, and the Spearman correlation's missing-value
rule (the reports' former private copies now call these)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aflqueue.stats import bonferroni_threshold, familywise_confidence, log_ratio_interval, spearman, t_quantile


def test_familywise_confidence_by_hand():
    assert familywise_confidence(0.95, 5) == pytest.approx(0.99, abs=1e-15)
    assert familywise_confidence(0.95, 1) == familywise_confidence(0.95, 0) == pytest.approx(0.95, abs=1e-15)


@pytest.mark.parametrize("k, dof", [(1, 4), (6, 9), (30, 19)])
def test_bonferroni_threshold_is_the_familywise_t_quantile(k, dof):
    # the |t| threshold of a level-alpha Bonferroni test and the half-width factor of the family-wise
    # intervals are one quantile
    assert bonferroni_threshold(k, 0.05, dof) == pytest.approx(t_quantile(familywise_confidence(0.95, k), dof),
                                                               rel=1e-10)


def test_familywise_intervals_cover_jointly():
    # 8 log ratios of mean 0, 5 seeds each: the 8 family-wise intervals all contain 1 in >= 95% of
    # repetitions (Bonferroni is conservative), the plain 95% ones far less often
    rng = np.random.default_rng(3)
    joint = plain = 0
    reps = 2000
    level = familywise_confidence(0.95, 8)
    for _ in range(reps):
        ratios = np.exp(rng.normal(0.0, 0.3, (8, 5)))
        joint += all(log_ratio_interval(r, level).contains(1.0) for r in ratios)
        plain += all(log_ratio_interval(r, 0.95).contains(1.0) for r in ratios)
    assert joint / reps >= 0.94 and plain / reps < 0.75


def test_spearman_against_scipy_and_its_missing_value_rule():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, 9).astype(float)  # ties
        y = x + rng.normal(0, 2, 9)
        if len(set(x)) > 1:
            assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    # a missing value drops its pair (scipy would return NaN for the whole correlation)
    assert spearman([1.0, 2.0, math.nan, 4.0, 5.0], [2.0, 1.0, 7.0, 4.0, 6.0]) == pytest.approx(
        spearmanr([1.0, 2.0, 4.0, 5.0], [2.0, 1.0, 4.0, 6.0]).statistic, abs=1e-12)
    assert math.isnan(spearman([1.0, 2.0, math.nan], [1.0, 2.0, 3.0]))  # fewer than 3 pairs left
    assert math.isnan(spearman([3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0]))  # a constant side
