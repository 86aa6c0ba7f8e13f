"""Service-time laws: sample moments match the stated mean and CV (statistical tolerance)."""

import math

import numpy as np
import pytest

from aflqueue import ValidationError
from aflqueue.laws import LAW_NAMES, Empirical, Mixture, Uniform, law_from_spec

SPECS = ["exponential", "deterministic", "lognormal:cv=1.5", "gamma:shape=2", "gamma:cv=0.5",
         "weibull:shape=0.7", "weibull:shape=3", "pareto:shape=4.5", "uniform:spread=0.6"]


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


def test_uniform_bounds_spec_forms_and_errors():
    law = law_from_spec({"law": "uniform", "low": 0.13, "high": 0.17})
    assert isinstance(law, Uniform) and "uniform" in LAW_NAMES
    assert (law.low, law.high, law.mean) == pytest.approx((0.13, 0.17, 0.15))
    x = law.sample(np.random.default_rng(0), 100_000)
    assert x.min() >= 0.13 and x.max() <= 0.17 and x.min() < 0.1302 and x.max() > 0.1698
    assert law_from_spec("uniform:low=0.13,high=0.17").to_dict() == law.to_dict()
    scaled = law_from_spec("uniform:spread=0.2", mean=3.0)  # a shape: rescaled like every other law
    assert (scaled.low, scaled.high) == pytest.approx((2.4, 3.6))
    assert law_from_spec(scaled.to_dict()).to_dict() == scaled.to_dict()
    assert law_from_spec("uniform:spread=0").sample(np.random.default_rng(0), 3).tolist() == [1.0, 1.0, 1.0]
    for bad, match in [("uniform:spread=1", r"spread: must be a number in \[0, 1\)"),
                       ({"law": "uniform", "low": 0.2}, "low and high, or mean and spread"),
                       ({"law": "uniform", "low": 0.1, "high": 0.2, "mean": 0.15}, "low and high, or mean and spread"),
                       ({"law": "uniform", "low": 0.3, "high": 0.2}, "high: must be a finite number >= 0.3"),
                       ({"law": "uniform", "low": 0, "high": 0.2}, r"low: must be a number in \[1e-100, 1e\+100\]")]:
        with pytest.raises(ValidationError, match=match):
            law_from_spec(bad)


@pytest.mark.parametrize("spec, field", [
    ("lognormal:cv=1e300", "cv"),              # cv**2 overflowed
    ("gamma:cv=1e300", "cv"),
    ("gamma:shape=1e-300", "shape"),           # every draw underflowed to 0
    ("weibull:shape=1e-300", "shape"),         # Gamma(1 + 2/k) overflowed
    ({"law": "exponential", "mean": 1e-320}, "mean"),
    ({"law": "empirical", "samples": [1.0, 1e308]}, "samples"),
    ("lognormal:cv=1.5,cv=0.01", "cv"),        # given twice: the second would win silently
])
def test_law_parameters_outside_double_precision_are_refused(spec, field):
    with pytest.raises(ValidationError, match=field):
        law_from_spec(spec)


def test_the_refused_ranges_start_where_the_maths_breaks():
    # the edges themselves are usable: finite moments, positive draws
    rng = np.random.default_rng(0)
    for spec in ("lognormal:cv=100", "gamma:shape=0.05", "weibull:shape=0.05", {"law": "exponential", "mean": 1e100}):
        law = law_from_spec(spec)
        x = law.sample(rng, 20_000)
        assert math.isfinite(law.cv) and np.all(np.isfinite(x)) and np.all(x > 0)


def test_a_law_mean_next_to_a_rate_must_agree_with_it():
    assert law_from_spec("exponential:mean=0.5", mean=0.5).mean == 0.5  # what System.to_dict writes reads back
    with pytest.raises(ValidationError, match="mean: 5.0 disagrees with the rate"):
        law_from_spec("exponential:mean=5", mean=0.5)
    with pytest.raises(ValidationError, match="mean"):
        law_from_spec({"law": "gamma", "shape": 2, "mean": 3.0}, mean=1.0)


def test_empirical_csv_errors_name_the_file_and_the_real_line(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("seconds\n1.5\n\n0x10\n")  # the bad value is on line 4, after a blank line 3
    with pytest.raises(ValidationError, match=r"t.csv'?: line 4 has no number"):
        Empirical.from_csv(f, "seconds")
    for text, why in [("seconds\n1.5\n-2\n", "durations must be in"), ("seconds\n", "no durations"),
                      ("seconds\n1_000\n", "line 2 has no number")]:
        f.write_text(text)
        with pytest.raises(ValidationError, match="t.csv") as e:
            Empirical.from_csv(f, "seconds")
        assert why in str(e.value)
    f.write_bytes("\ufeffseconds\r\n1.5\r\n2.5\r\n".encode())  # a byte-order mark and Windows line ends
    assert Empirical.from_csv(f, "seconds").mean == 2.0


def test_empirical_csv_size_is_bounded_before_reading(tmp_path, monkeypatch):
    f = tmp_path / "big.csv"
    f.write_text("1.0\n" * 1000)
    monkeypatch.setattr(Empirical, "MAX_CSV_BYTES", 100)
    with pytest.raises(ValidationError, match="4,000 bytes; an empirical trace may have at most 100"):
        Empirical.from_csv(f)
