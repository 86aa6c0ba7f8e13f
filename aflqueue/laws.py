"""Service-time laws of client and network stages.

A law is an immutable description of a positive random duration with a finite mean (time
units, whatever the user's rates are in: rates are tasks per time unit, durations are time units).
Every law is a *scale family*: :meth:`ServiceLaw.with_mean` rescales it, which is how a single
shape specification such as ``"lognormal:cv=1.5"`` is applied to clients of different speeds.

The exact analysis only uses the mean (product form is exact for exponential FIFO stations, and
for delay stations under any law, by BCMP insensitivity); the simulator samples the full law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from .errors import RATE_RANGE, ValidationError, check_number, check_positive, check_rate, require

__all__ = [
    "ServiceLaw",
    "ParametricLaw",
    "Exponential",
    "Deterministic",
    "LogNormal",
    "Gamma",
    "Weibull",
    "Pareto",
    "Uniform",
    "Mixture",
    "Empirical",
    "law_from_spec",
    "LAW_NAMES",
]


class ServiceLaw:
    """Base class. Subclasses are frozen dataclasses with a ``mean`` field (time units)."""

    name: str = ""
    mean: float

    @property
    def rate(self) -> float:
        """Service rate ``1 / mean`` (tasks per time unit)."""
        return 1.0 / self.mean

    @property
    def cv(self) -> float:
        """Coefficient of variation (standard deviation / mean); ``inf`` if the variance is infinite."""
        raise NotImplementedError

    def with_mean(self, mean: float) -> "ServiceLaw":
        """The same shape rescaled to the given mean."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """Draw i.i.d. durations, shape ``size``, float64, all > 0."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description accepted by :func:`law_from_spec`."""
        raise NotImplementedError

    @property
    def is_exponential(self) -> bool:
        return False


@dataclass(frozen=True)
class ParametricLaw(ServiceLaw):
    """A law given by its ``mean`` and shape parameters: the dataclass fields, ``mean`` first, each
    checked by :meth:`check_parameter` (> 0 unless :attr:`RANGES` says otherwise). Rescaling keeps
    the shape parameters, and :meth:`to_dict` writes every field."""

    mean: float = 1.0
    #: Allowed range of a shape parameter, as :func:`~aflqueue.errors.check_number`'s keyword
    #: arguments (``lo``, ``hi``, ``lo_open``, ``hi_open``), where a law needs other than > 0.
    RANGES: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self):
        for f in fields(self):  # in declaration order: an error names the first bad field
            object.__setattr__(self, f.name, self.check_parameter(f.name, getattr(self, f.name)))

    def check_parameter(self, name: str, value: Any) -> float:
        """The validated value of field ``name`` (raises :class:`ValidationError` naming it): the
        mean within :data:`~aflqueue.errors.RATE_RANGE`, a shape parameter in its :attr:`RANGES`
        (default > 0)."""
        if name == "mean":
            return check_rate(value, name)
        return check_number(value, name, **self.RANGES[name]) if name in self.RANGES else check_positive(value, name)

    def with_mean(self, mean: float) -> "ParametricLaw":
        return replace(self, mean=mean)

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class Exponential(ParametricLaw):
    name = "exponential"

    @property
    def cv(self) -> float:
        return 1.0

    @property
    def is_exponential(self) -> bool:
        return True

    def sample(self, rng, size):
        return rng.exponential(self.mean, size)


@dataclass(frozen=True)
class Deterministic(ParametricLaw):
    name = "deterministic"

    @property
    def cv(self) -> float:
        return 0.0

    def sample(self, rng, size):
        return np.full(size, self.mean, dtype=np.float64)


@dataclass(frozen=True)
class LogNormal(ParametricLaw):
    """Lognormal with given mean and coefficient of variation ``cv`` in ``(0, 100]``."""

    cv: float = 1.0  # type: ignore[assignment]
    name = "lognormal"
    #: Largest cv 100: the log-scale sigma is then 3.03, and draws stay within double precision.
    RANGES: ClassVar[dict[str, dict[str, Any]]] = {"cv": {"lo": 0.0, "hi": 100.0, "lo_open": True}}

    def sample(self, rng, size):
        s2 = math.log1p(self.cv**2)
        return rng.lognormal(math.log(self.mean) - 0.5 * s2, math.sqrt(s2), size)


@dataclass(frozen=True)
class Gamma(ParametricLaw):
    """Gamma with given mean and shape ``k >= 0.05`` (cv = 1/sqrt(k))."""

    shape: float = 1.0
    name = "gamma"
    #: Smallest shape 0.05 (cv 4.47): below, draws underflow to 0 (a duration must be > 0).
    RANGES: ClassVar[dict[str, dict[str, Any]]] = {"shape": {"lo": 0.05}}

    @property
    def cv(self) -> float:
        return 1.0 / math.sqrt(self.shape)

    def sample(self, rng, size):
        return rng.gamma(self.shape, self.mean / self.shape, size)


@dataclass(frozen=True)
class Weibull(ParametricLaw):
    """Weibull with given mean and shape ``k >= 0.05`` (k < 1: heavier tail than exponential)."""

    shape: float = 1.0
    name = "weibull"
    #: Smallest shape 0.05 (cv about 3.7e5): below, Gamma(1 + 2/k) in its moments overflows.
    RANGES: ClassVar[dict[str, dict[str, Any]]] = {"shape": {"lo": 0.05}}

    @property
    def scale(self) -> float:
        return self.mean / math.gamma(1.0 + 1.0 / self.shape)

    @property
    def cv(self) -> float:
        k = self.shape
        g1, g2 = math.gamma(1 + 1 / k), math.gamma(1 + 2 / k)
        return math.sqrt(max(g2 / g1**2 - 1.0, 0.0))

    def sample(self, rng, size):
        return self.scale * rng.weibull(self.shape, size)


@dataclass(frozen=True)
class Pareto(ParametricLaw):
    """Classical Pareto (support ``[x_m, inf)``) with given mean and tail index ``shape`` > 1."""

    shape: float = 3.0
    name = "pareto"

    def check_parameter(self, name: str, value: Any) -> float:
        value = super().check_parameter(name, value)
        if name == "shape":
            require(value > 1.0, "shape", f"Pareto tail index must be > 1 for a finite mean (got {value})")
        return value

    @property
    def minimum(self) -> float:
        return self.mean * (self.shape - 1.0) / self.shape

    @property
    def cv(self) -> float:
        a = self.shape
        return math.inf if a <= 2 else 1.0 / math.sqrt(a * (a - 2.0))

    def sample(self, rng, size):
        return self.minimum * (1.0 + rng.pareto(self.shape, size))


@dataclass(frozen=True)
class Uniform(ParametricLaw):
    """Uniform on ``[mean (1 - spread), mean (1 + spread)]``: ``spread`` in ``[0, 1)`` is the
    half-width relative to the mean (so durations stay > 0); cv = spread / sqrt(3)."""

    spread: float = 0.5
    name = "uniform"
    RANGES: ClassVar[dict[str, dict[str, Any]]] = {"spread": {"lo": 0.0, "hi": 1.0, "hi_open": True}}  # durations > 0

    @classmethod
    def between(cls, low: float, high: float) -> "Uniform":
        """Uniform on ``[low, high]`` (time units), ``0 < low <= high``."""
        lo = check_rate(low, "low")
        hi = check_number(high, "high", lo)
        return cls(0.5 * (lo + hi), (hi - lo) / (hi + lo))

    @property
    def low(self) -> float:
        return self.mean * (1.0 - self.spread)

    @property
    def high(self) -> float:
        return self.mean * (1.0 + self.spread)

    @property
    def cv(self) -> float:
        return self.spread / math.sqrt(3.0)

    def sample(self, rng, size):
        return rng.uniform(self.low, self.high, size)


@dataclass(frozen=True, eq=False)
class Mixture(ServiceLaw):
    """Finite mixture (e.g. device classes): with probability ``weights[j]`` draw from ``components[j]``."""

    components: tuple[ServiceLaw, ...] = ()
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))
    name = "mixture"

    def __post_init__(self):
        comps = tuple(self.components)
        require(len(comps) >= 1, "components", "a mixture needs at least one component")
        for j, c in enumerate(comps):
            require(isinstance(c, ServiceLaw), f"components[{j}]", "must be a service law")
        w = np.asarray(self.weights, dtype=np.float64).ravel()
        require(w.shape == (len(comps),), "weights", f"needs one weight per component ({len(comps)}), got {w.size}")
        require(bool(np.all(np.isfinite(w))) and bool(np.all(w >= 0)) and w.sum() > 0,
                "weights", "must be non-negative and not all zero")
        w = w / w.sum()
        w.setflags(write=False)
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "weights", w)

    @property
    def mean(self) -> float:  # type: ignore[override]
        return float(sum(wj * c.mean for wj, c in zip(self.weights, self.components)))

    @property
    def cv(self) -> float:
        m2 = sum(wj * (c.mean**2) * (1.0 + c.cv**2) for wj, c in zip(self.weights, self.components))
        mean = self.mean
        return math.sqrt(max(m2 / mean**2 - 1.0, 0.0))

    def with_mean(self, mean):
        factor = check_rate(mean, "mean") / self.mean
        return Mixture(tuple(c.with_mean(c.mean * factor) for c in self.components), self.weights)

    def sample(self, rng, size):
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        total = int(np.prod(shape))
        which = rng.choice(len(self.components), size=total, p=self.weights)
        out = np.empty(total)
        for j, c in enumerate(self.components):
            idx = np.flatnonzero(which == j)
            if idx.size:
                out[idx] = c.sample(rng, idx.size)
        return out.reshape(shape)

    def to_dict(self):
        return {"law": self.name, "weights": self.weights.tolist(),
                "components": [c.to_dict() for c in self.components]}


@dataclass(frozen=True, eq=False)
class Empirical(ServiceLaw):
    """Bootstrap from observed durations (e.g. a device trace); ``mean`` is the sample mean."""

    samples: np.ndarray = field(default_factory=lambda: np.ones(1))
    name = "empirical"

    def __post_init__(self):
        s = np.asarray(self.samples, dtype=np.float64).ravel()
        require(s.size >= 1, "samples", "an empirical law needs at least one duration")
        lo, hi = RATE_RANGE
        require(bool(np.all((s >= lo) & (s <= hi))), "samples", f"durations must be in [{lo:g}, {hi:g}] time units "
                                                                "(positive and finite)")
        s = s.copy()
        s.setflags(write=False)
        object.__setattr__(self, "samples", s)

    @property
    def mean(self) -> float:  # type: ignore[override]
        return float(self.samples.mean())

    @property
    def cv(self) -> float:
        return float(self.samples.std() / self.samples.mean())

    def with_mean(self, mean):
        return Empirical(self.samples * (check_rate(mean, "mean") / self.mean))

    def sample(self, rng, size):
        return self.samples[rng.integers(0, self.samples.size, size)]

    def to_dict(self):
        return {"law": self.name, "samples": self.samples.tolist()}

    #: Largest CSV file :meth:`from_csv` reads (about 3 million durations).
    MAX_CSV_BYTES: ClassVar[int] = 64 * 2**20

    @classmethod
    def from_csv(cls, path: str | Path, column: int | str = 0) -> "Empirical":
        """Durations from a CSV file (at most :attr:`MAX_CSV_BYTES`): one column (by index or header
        name), header optional, blank lines skipped.

        Errors name the file and the line, never its contents (the path may point anywhere)."""
        p = Path(path)
        require(p.is_file(), "file", f"empirical trace not found at {str(p)!r}")
        try:
            size = p.stat().st_size
            require(size <= cls.MAX_CSV_BYTES, "file", f"{str(p)!r} is {size:,} bytes; an empirical trace may have "
                                                       f"at most {cls.MAX_CSV_BYTES:,}")
            text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the header
        except (OSError, UnicodeDecodeError) as e:
            raise ValidationError("file", f"cannot read {str(p)!r} as UTF-8 text "
                                          f"({getattr(e, 'strerror', None) or type(e).__name__})") from None
        rows = [(ln, r.strip()) for ln, r in enumerate(text.splitlines(), 1) if r.strip()]
        require(len(rows) >= 1, "file", f"{str(p)!r} holds no durations")
        first = [c.strip() for c in rows[0][1].split(",")]
        if isinstance(column, bool) or not isinstance(column, (int, str)):
            raise ValidationError("column", f"must be a column index >= 0 or a header name (got {column!r})")
        col = column
        if isinstance(column, str) and not column.isdigit():
            require(column in first, "column", f"{column!r} is not a header of the first line of {str(p)!r} "
                                               f"({len(first)} comma-separated fields)")
            col, rows = first.index(column), rows[1:]
        else:
            col = int(column)
            require(col >= 0, "column", f"must be a column index >= 0 (got {column!r})")
            try:
                float(first[col])
            except (ValueError, IndexError):
                rows = rows[1:]  # a header line
        values = []
        for ln, r in rows:
            cells = r.split(",")
            try:
                if "_" in cells[col]:  # Python's float() reads 1_000; a CSV number has no underscores
                    raise ValueError
                values.append(float(cells[col]))
            except (ValueError, IndexError):
                raise ValidationError("file", f"{str(p)!r}: line {ln} has no number in column {col}") from None
        require(len(values) >= 1, "file", f"{str(p)!r} holds no durations (only a header)")
        try:
            return cls(np.asarray(values))
        except ValidationError as e:
            raise ValidationError("file", f"{str(p)!r}: {e.detail}") from None


def _durations(values: Any, field_name: str) -> np.ndarray:
    """A list of numbers as float64 (strings and nested lists are rejected, naming the field)."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (list, tuple, np.ndarray)):
        raise ValidationError(field_name, f"must be a list of positive durations (got {type(values).__name__})")
    out = []
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValidationError(f"{field_name}[{j}]", f"must be a number (got {v!r})")
        out.append(float(v))
    return np.asarray(out, dtype=np.float64)


LAW_NAMES = ("exponential", "deterministic", "lognormal", "gamma", "weibull", "pareto", "uniform", "mixture",
             "empirical")


def _parse_params(text: str, field_name: str) -> dict[str, Any]:
    """``"cv=1.5,file=t.csv"`` -> ``{"cv": 1.5, "file": "t.csv"}`` (numbers parsed, names kept)."""
    params: dict[str, Any] = {}
    for part in filter(None, (t.strip() for t in text.split(","))):
        require("=" in part, field_name, f"parameter {part!r} must look like key=value")
        k, v = (x.strip() for x in part.split("=", 1))
        require(k not in params, f"{field_name}.{k}", "given twice")
        try:
            params[k] = float(v) if k not in ("file", "column") else v
        except ValueError:
            raise ValidationError(f"{field_name}.{k}", f"must be a number (got {v!r})") from None
    return params


def law_from_spec(spec: str | Mapping[str, Any] | ServiceLaw, mean: float | None = None,
                  field_name: str = "service", base_dir: str | Path | None = None) -> ServiceLaw:
    """Build a law from a spec string, a mapping, or a law (returned rescaled if ``mean`` is given).

    Strings: ``"exponential"``, ``"deterministic"``, ``"lognormal:cv=1.5"``, ``"gamma:shape=2"``
    (or ``gamma:cv=0.5``), ``"weibull:shape=0.7"``, ``"pareto:shape=2.5"``, ``"uniform:spread=0.2"``
    (or ``uniform:low=0.13,high=0.17``), ``"empirical:file=durations.csv[,column=NAME]"``. Mappings: ``{"law": name, ...}`` with the same
    parameters, plus ``mean``; a mixture is ``{"law": "mixture", "weights": [...],
    "components": [spec, ...]}`` and an empirical law may give ``"samples": [...]``.

    ``mean`` (time units) rescales the law to that mean; without it the spec's own ``mean``
    (default 1) or, for mixture/empirical, the intrinsic mean is kept. A relative empirical
    ``file`` is resolved against ``base_dir`` (the folder of the system file that names it), or
    the working directory when ``base_dir`` is None.
    """
    if isinstance(spec, ServiceLaw):
        law = spec
    elif isinstance(spec, str):
        name, _, rest = spec.partition(":")
        params: dict[str, Any] = _parse_params(rest, field_name)
        _no_second_mean(params, mean, field_name)
        law = _law_from_mapping({"law": name.strip().lower(), **params}, field_name, base_dir)
    elif isinstance(spec, Mapping):
        _no_second_mean(spec, mean, field_name)
        law = _law_from_mapping(spec, field_name, base_dir)
    else:
        raise ValidationError(field_name, f"must be a law name/spec string or a table (got {type(spec).__name__})")
    return law if mean is None else law.with_mean(mean)


def _no_second_mean(spec: Mapping[str, Any], mean: float | None, field_name: str) -> None:
    # a law given with a rate is rescaled to mean 1/rate: a mean of its own that disagrees would be
    # discarded (one that agrees is what System.to_dict writes)
    own = spec.get("mean")
    same = isinstance(own, (int, float)) and not isinstance(own, bool) and math.isclose(own, mean or 0.0, rel_tol=1e-9)
    require(mean is None or own is None or same, f"{field_name}.mean",
            f"{own!r} disagrees with the rate, which sets the mean to {mean!r} (1/rate); give one of them")


def _law_from_mapping(d: Mapping[str, Any], field_name: str, base_dir: str | Path | None = None) -> ServiceLaw:
    d = dict(d)
    name = str(d.pop("law", d.pop("name", "exponential"))).lower()
    require(name in LAW_NAMES, field_name, f"unknown service law {name!r}; allowed: {', '.join(LAW_NAMES)}")
    given = set(d)
    mean = d.pop("mean", 1.0)

    def take(key, default=None):
        return d.pop(key, default)

    try:
        if name == "exponential":
            law: ServiceLaw = Exponential(mean)
        elif name == "deterministic":
            law = Deterministic(mean)
        elif name == "lognormal":
            law = LogNormal(mean, take("cv", 1.0))
        elif name == "gamma":
            shape, cv = take("shape"), take("cv")
            require(shape is None or cv is None, field_name, "gamma takes shape or cv, not both")
            if cv is not None:  # cv = 1/sqrt(shape)
                cv = check_number(cv, "cv", 0.0, 1.0 / math.sqrt(Gamma.RANGES["shape"]["lo"]), lo_open=True)
            law = Gamma(mean, 1.0 / cv**2 if cv is not None else (shape if shape is not None else 1.0))
        elif name == "weibull":
            law = Weibull(mean, take("shape", 1.0))
        elif name == "pareto":
            law = Pareto(mean, take("shape", 3.0))
        elif name == "uniform":
            if given & {"low", "high"}:
                require(given >= {"low", "high"} and not given & {"mean", "spread"}, field_name,
                        "uniform takes low and high, or mean and spread")
                law = Uniform.between(take("low"), take("high"))
            else:
                law = Uniform(mean, take("spread", 0.5))
        elif name == "mixture":
            comps = take("components")
            require(isinstance(comps, (list, tuple)) and len(comps) > 0, f"{field_name}.components",
                    "a mixture needs a non-empty list of component laws")
            law = Mixture(tuple(law_from_spec(c, field_name=f"{field_name}.components[{j}]", base_dir=base_dir)
                                for j, c in enumerate(comps)), take("weights", [1.0] * len(comps)))
        else:  # empirical
            samples, file = take("samples"), take("file")
            require((samples is None) != (file is None), field_name, "empirical takes samples or file (one of them)")
            if samples is not None:
                law = Empirical(_durations(samples, "samples"))
            else:
                require(isinstance(file, (str, Path)) and str(file) != "", "file", "must be a path to a CSV file")
                path = Path(file).expanduser()
                if not path.is_absolute() and base_dir is not None:
                    path = Path(base_dir) / path
                law = Empirical.from_csv(path, take("column", 0))
    except ValidationError as e:
        raise ValidationError(f"{field_name}.{e.field}", e.detail) from None
    require(not d, field_name, f"unknown parameter(s) {sorted(d)} for law {name!r}")
    return law
