"""aflqueue.stats permutation tests: the exact Spearman p-value against brute force over every
pairing, its critical values against the published table, the 10^6-draw p-values against the exact
ones within their Monte-Carlo error, and the confirmatory regime map's primary recomputed from its
committed records (docs/theory.md section 10, "Permutation p-values")."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import aflqueue.stats as stats
from aflqueue.stats import (PERMUTATION_DRAWS, SPEARMAN_EXACT_MAX, spearman, spearman_critical_value,
                            spearman_permutation_test, stratified_spearman_permutation_test)

ROOT = Path(__file__).resolve().parents[1]
ALTERNATIVES = ("greater", "less", "two-sided")


def brute_force_p(x, y, alternative: str) -> float:
    """The share of all n! pairings (``itertools.permutations``) whose Spearman correlation -- the
    Pearson correlation of scipy's average ranks, in floating point -- is at least as extreme as the
    observed one, ties within 1e-12 counted against it."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    perms = np.array(list(itertools.permutations(range(len(y)))))
    r = (ry[perms] @ rx) / (np.linalg.norm(rx) * np.linalg.norm(ry))
    rho = spearman(x, y)
    hits = {"greater": r >= rho - 1e-12, "less": r <= rho + 1e-12, "two-sided": np.abs(r) >= abs(rho) - 1e-12}
    return float(np.mean(hits[alternative]))


def _cases():
    rng = np.random.default_rng(7)
    out = []
    for n in range(3, 8):
        out.append((rng.normal(size=n), rng.normal(size=n)))  # untied
        out.append((rng.integers(0, 3, n).astype(float), rng.normal(size=n)))  # ties in x
        out.append((rng.integers(0, 3, n).astype(float), rng.integers(0, 2, n).astype(float)))  # ties in both
    out.append((np.arange(6.0), np.arange(6.0)))  # perfect association: p = 1/n!
    return out


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_exact_p_equals_brute_force_over_every_pairing(alternative):
    checked = 0
    for x, y in _cases():
        if not math.isfinite(spearman(x, y)):
            continue
        res = spearman_permutation_test(x, y, alternative=alternative)
        assert res.exact and res.resamples == math.factorial(len(x)) and res.n == len(x)
        assert res.p_value == pytest.approx(brute_force_p(x, y, alternative), abs=1e-15)
        checked += 1
    assert checked >= 12
    assert spearman_permutation_test(np.arange(6.0), np.arange(6.0)).p_value == pytest.approx(1 / 720, abs=1e-15)


def test_exact_and_drawn_results_say_which():
    x, y = np.arange(8.0), np.array([2, 1, 4, 3, 6, 5, 8, 7.0])
    exact = spearman_permutation_test(x, y)
    drawn = spearman_permutation_test(x, y, resamples=999, seed=3)  # an explicit count draws that many
    assert exact.exact and exact.resamples == math.factorial(8) and exact.to_dict()["exact"] is True
    assert not drawn.exact and drawn.resamples == 999 and drawn.to_dict()["exact"] is False
    assert drawn.statistic == exact.statistic
    big = spearman_permutation_test(np.arange(SPEARMAN_EXACT_MAX + 1.0), np.arange(SPEARMAN_EXACT_MAX + 1.0))
    assert not big.exact and big.resamples == PERMUTATION_DRAWS
    assert big.p_value == pytest.approx(1 / (1 + PERMUTATION_DRAWS))  # no draw reaches +1 by chance here
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError):
            spearman_permutation_test(x, y, resamples=bad)


def test_drawn_p_value_agrees_with_the_exact_one_within_its_error():
    rng = np.random.default_rng(11)
    x = rng.normal(size=9)
    y = x + rng.normal(0, 1.5, 9)
    for alternative in ALTERNATIVES:
        exact = spearman_permutation_test(x, y, alternative=alternative)
        drawn = spearman_permutation_test(x, y, resamples=10**6, seed=5, alternative=alternative)
        se = math.sqrt(exact.p_value * (1 - exact.p_value) / 10**6)
        assert exact.exact and not drawn.exact
        assert abs(drawn.p_value - exact.p_value) <= 4 * se + 1e-6, (alternative, drawn.p_value, exact.p_value)


def test_draws_do_not_depend_on_the_block_size(monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=15), rng.normal(size=15)
    groups = [(rng.normal(size=5), rng.normal(size=5)) for _ in range(3)]
    a = spearman_permutation_test(x, y, resamples=5000, seed=1)
    b = stratified_spearman_permutation_test(groups, resamples=5000, seed=1)
    monkeypatch.setattr(stats, "_BLOCK_VALUES", 37)  # many small blocks, a row split nowhere
    assert spearman_permutation_test(x, y, resamples=5000, seed=1) == a
    assert stratified_spearman_permutation_test(groups, resamples=5000, seed=1) == b


# one-sided critical values of Spearman's rho, alpha = 0.05 / 0.025 / 0.01 (Zar, Biostatistical
# Analysis, table B.20; Ramsey 1989): the published values are rounded to 3 decimals
PUBLISHED = {0.05: {5: 0.900, 6: 0.829, 7: 0.714, 8: 0.643, 9: 0.600, 10: 0.564, 11: 0.536, 12: 0.503},
             0.025: {6: 0.886, 7: 0.786, 8: 0.738, 9: 0.700, 10: 0.648, 11: 0.618, 12: 0.587},
             0.01: {7: 0.893, 8: 0.833, 9: 0.783, 10: 0.745, 11: 0.709, 12: 0.678}}


@pytest.mark.parametrize("alpha", sorted(PUBLISHED))
def test_critical_values_match_the_published_table(alpha):
    for n, value in PUBLISHED[alpha].items():
        assert abs(spearman_critical_value(n, alpha) - value) <= 0.0005 + 1e-12, (n, alpha)
    assert math.isnan(spearman_critical_value(4, 0.01))  # 1/24 > 0.01: no correlation is significant
    with pytest.raises(ValueError):
        spearman_critical_value(SPEARMAN_EXACT_MAX + 1)


def test_critical_value_is_where_the_exact_p_crosses_alpha():
    # at n = 12, rho = 1 - sum d^2 / 286: sum d^2 = 142 gives 0.5035 (significant), 144 gives 0.4965 (not)
    rng = np.random.default_rng(0)
    x = np.arange(12.0)
    found = {}
    while len(found) < 2:
        perm = rng.permutation(12)
        d2 = int(np.sum((perm - x) ** 2))
        if d2 in (142, 144):
            found[d2] = perm.astype(float)
    inside, outside = (spearman_permutation_test(x, found[k]) for k in (142, 144))
    cv = spearman_critical_value(12, 0.05)
    assert inside.statistic == pytest.approx(cv) and inside.p_value <= 0.05
    assert outside.statistic < cv and outside.p_value > 0.05


def test_stratified_draws_against_the_exact_product_of_pairings():
    # two groups (4 and 5 pairs): the mean of their correlations over all 24 x 120 joint pairings
    rng = np.random.default_rng(4)
    groups = [(rng.normal(size=4), rng.normal(size=4)), (rng.integers(0, 3, 5).astype(float), rng.normal(size=5))]
    observed = np.mean([spearman(a, b) for a, b in groups])
    per = [np.array([spearman(a, np.array(p)) for p in itertools.permutations(b)]) for a, b in groups]
    means = (per[0][:, None] + per[1][None, :]) / 2
    exact = float(np.mean(means >= observed - 1e-12))
    res = stratified_spearman_permutation_test(groups, seed=9)
    assert res.resamples == PERMUTATION_DRAWS and not res.exact and res.n == 2
    assert res.statistic == pytest.approx(observed, abs=1e-15)
    assert abs(res.p_value - exact) <= 4 * math.sqrt(exact * (1 - exact) / PERMUTATION_DRAWS) + 1e-6


def _confirmatory_primary():
    """The confirmatory regime map's primary pairs, recomputed from the committed records: the
    no-staleness fit's predicted P2 time ratio, and the geometric mean over seeds of the measured
    paired ratio t(P2) / t(AsyncSGD) to the regime's target (a run that never reaches it: the budget)."""
    from aflqueue.io import read_json
    from aflqueue.jobs import JobStore
    from aflqueue.outcomes import run_times

    out = ROOT / "validation/regimes/results/regimes-confirm"
    pred, sel = read_json(out / "predictions.json"), read_json(out / "selection.json")
    runs = {(r["tags"]["regime"], r["tags"]["routing"], r["seed"]): r for r in JobStore(out / "cells").load()
            if r["tags"]["routing"] in ("p2", "uniform")}
    xs, ys = [], []
    for regime, p in pred["regimes"].items():
        logs = []
        for seed in (100, 101, 102, 103, 104):
            t2, _ = run_times(runs[(regime, "p2", seed)], sel["targets"][regime])
            t0, _ = run_times(runs[(regime, "uniform", seed)], sel["targets"][regime])
            logs.append(math.log(t2 / t0))
        xs.append(p["predicted"]["transfer-opt+var"]["p2"]["time_ratio"]["point"])
        ys.append(math.exp(np.mean(logs)))
    return xs, ys


@pytest.mark.slow
def test_confirmatory_primary_is_not_significant():
    xs, ys = _confirmatory_primary()
    assert len(xs) == 12
    exact = spearman_permutation_test(xs, ys)
    assert exact.exact and exact.statistic == pytest.approx(0.497, abs=5e-4)
    assert round(exact.p_value, 3) == 0.052 and exact.p_value > 0.05
    assert exact.statistic < spearman_critical_value(12, 0.05)
    # the protocol's 9,999 seeded draws reproduce the committed report's p = 0.0473
    assert spearman_permutation_test(xs, ys, resamples=9999, seed=0).p_value == pytest.approx(0.0473, abs=5e-5)


def test_stratified_draws_follow_the_argsort_of_one_stream():
    # the compiled block reads each row of uniforms as numpy's argsort does, small groups and large
    from scipy.stats import rankdata

    rng = np.random.default_rng(8)
    groups = [(rng.normal(size=k), rng.normal(size=k)) for k in (3, 6, 20)]
    res = stratified_spearman_permutation_test(groups, resamples=3000, seed=4)
    draw = np.random.default_rng(4)
    total = np.zeros(3000)
    for a, b in groups:
        ra, rb = rankdata(a), rankdata(b)
        ra = (ra - ra.mean()) / np.linalg.norm(ra - ra.mean())
        rb = rb - rb.mean()
        pb = rb[np.argsort(draw.random((3000, rb.size)), axis=1)]
        total += (pb @ ra) / np.linalg.norm(pb, axis=1)
    observed = np.mean([spearman(a, b) for a, b in groups])
    assert res.p_value == (1 + np.sum(total / 3 >= observed - 1e-12)) / 3001
