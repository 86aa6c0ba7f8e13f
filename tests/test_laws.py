"""Service-time laws: sample moments match the stated mean and CV (statistical tolerance)."""

import math

import numpy as np
import pytest

from aflqueue import ValidationError
from aflqueue.laws import Empirical, Mixture, law_from_spec

SPECS = ["exponential", "deterministic", "lognormal:cv=1.5", "gamma:shape=2", "gamma:cv=0.5",
         "weibull:shape=0.7", "weibull:shape=3", "pareto:shape=4.5"]


@pytest.mark.parametrize("spec", SPECS)
def test_moments(spec):
    law = law_from_spec(spec, mean=2.5)
    x = law.sample(np.random.default_rng(1), 400_000)
    assert np.all(x > 0)
    # mean: 5 standard errors; cv: loose relative tolerance (heavy tails converge slowly)
    se = law.mean * law.cv / math.sqrt(x.size)
    assert abs(x.mean() - 2.5) <= 5 * se + 1e-12
    assert x.std() / x.mean() == pytest.approx(law.cv, rel=0.05, abs=1e-9)


def test_same_seed_same_samples():
    law = law_from_spec("lognormal:cv=2", mean=1.0)
    a = law.sample(np.random.default_rng(7), 100)
    b = law.sample(np.random.default_rng(7), 100)
    np.testing.assert_array_equal(a, b)


def test_mixture_mean_and_rescale():
    mix = law_from_spec({"law": "mixture", "weights": [3, 1],
                         "components": [{"law": "exponential", "mean": 1.0}, {"law": "deterministic", "mean": 5.0}]})
    assert isinstance(mix, Mixture)
    assert mix.mean == pytest.approx(0.75 * 1 + 0.25 * 5)
    scaled = mix.with_mean(4.0)
    assert scaled.mean == pytest.approx(4.0) and scaled.cv == pytest.approx(mix.cv)
    x = scaled.sample(np.random.default_rng(0), 200_000)
    assert x.mean() == pytest.approx(4.0, rel=0.02)


def test_empirical_from_csv(tmp_path):
    f = tmp_path / "durations.csv"
    f.write_text("device,seconds\na,1.0\nb,2.0\nc,6.0\n")
    law = law_from_spec({"law": "empirical", "file": str(f), "column": "seconds"})
    assert isinstance(law, Empirical) and law.mean == pytest.approx(3.0)
    x = law.sample(np.random.default_rng(0), 1000)
    assert set(np.unique(x)) <= {1.0, 2.0, 6.0}
    assert law.with_mean(1.5).samples.tolist() == [0.5, 1.0, 3.0]
    with pytest.raises(ValidationError, match="not found"):
        law_from_spec({"law": "empirical", "file": str(tmp_path / "missing.csv")})
    (tmp_path / "neg.csv").write_text("1\n-2\n")
    with pytest.raises(ValidationError, match="positive"):
        law_from_spec({"law": "empirical", "file": str(tmp_path / "neg.csv")})
