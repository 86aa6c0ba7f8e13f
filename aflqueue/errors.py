"""Errors raised for bad input, and the number checks that raise them.

Every validation error names the offending field and the allowed range, so that a user (or the
CLI, which prints it as one line) can fix the input without reading a traceback. The checks
below are the only place where numbers from users are validated: booleans are never numbers,
strings are never parsed implicitly, and NaN/inf are rejected unless a bound says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["ValidationError", "OneLineArgumentParser", "require", "check_number", "check_positive", "RATE_RANGE",
           "check_rate", "short_repr", "check_values", "check_integer", "check_fraction", "FL_EXTRA_MESSAGE",
           "FL_MODULES", "missing_fl_modules"]


class ValidationError(ValueError):
    """A user-supplied value is outside its allowed range.

    Attributes:
        field: dotted name of the offending field, e.g. ``"routing"`` or ``"clients[2].rate"``.
        detail: what was wrong and what is allowed.
    """

    def __init__(self, field: str, detail: str):
        self.field = field
        # one line, whatever a wrapped library's message holds (the CLI promises one line)
        self.detail = " ".join(str(detail).split()) if "\n" in str(detail) else str(detail)
        super().__init__(f"{field}: {self.detail}")

    def __reduce__(self):
        # a worker process sends its exception back pickled; the default reduction would call
        # __init__ with the one formatted message and fail, breaking the whole pool
        return (type(self), (self.field, self.detail))


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser for scripts whose bad command lines must end as one line, exit status 2:
    a parse error raises :class:`ValidationError` (field ``arguments``) for the script to print,
    instead of argparse's usage block and ``SystemExit``."""

    def error(self, message: str):
        raise ValidationError("arguments", message)


def require(condition: bool, field: str, detail: str) -> None:
    """Raise :class:`ValidationError` for ``field`` unless ``condition`` holds."""
    if not condition:
        raise ValidationError(field, detail)


def _describe(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"a finite number {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"a finite number {'<' if hi_open else '<='} {hi:g}"
    return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def check_number(value: Any, field: str, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (open or closed), else :class:`ValidationError`."""
    allowed = _describe(lo, hi, lo_open, hi_open)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValidationError(field, f"must be {allowed} (got {value!r})")
    x = float(value)
    ok = math.isfinite(x)
    if ok and lo is not None:
        ok = x > lo if lo_open else x >= lo
    if ok and hi is not None:
        ok = x < hi if hi_open else x <= hi
    if not ok:
        raise ValidationError(field, f"must be {allowed} (got {value!r})")
    return x


def check_positive(value: Any, field: str) -> float:
    """A finite number > 0 (step sizes, time budgets, ratios)."""
    return check_number(value, field, 0.0, lo_open=True)


#: Rates (tasks per time unit) and mean durations (time units) a system may have: beyond, a
#: duration, its reciprocal or its square (a variance) leaves double precision.
RATE_RANGE = (1e-100, 1e100)


def check_rate(value: Any, field: str) -> float:
    """A rate or a mean duration within :data:`RATE_RANGE`."""
    return check_number(value, field, *RATE_RANGE)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (one line, whatever the value)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_values(values: list, field: str, src: str, *, lo: float | None = None, hi: float | None = None,
                 integer: bool = False, nullable: bool = False, increasing: bool = False) -> np.ndarray:
    """``values`` (a list read from ``src``) as a float array (NaN for a null) after checking each
    entry: a number (an integer if ``integer``; null only if ``nullable``) in ``[lo, hi]``, and the
    numbers non-decreasing if ``increasing``."""
    what = "an integer" if integer else "a number"
    rng = (f" in [{lo:g}, {hi:g}]" if hi is not None else f" >= {lo:g}") if lo is not None else ""
    allowed = f"{what}{rng}" + (" or null" if nullable else "")
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if v is None and nullable:
            out[i] = np.nan
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok and integer:
            ok = float(v).is_integer()
        if ok and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            ok = False
        if not ok:
            raise ValidationError(f"{field}[{i}]", f"{src}: must be {allowed} (got {short_repr(v)})")
        out[i] = v
    if increasing and out.size > 1:
        drop = np.flatnonzero(np.diff(out) < 0)
        if drop.size:
            i = int(drop[0]) + 1
            raise ValidationError(f"{field}[{i}]", f"{src}: must be non-decreasing (evaluations are in time order; "
                                                   f"got {out[i]:g} after {out[i - 1]:g})")
    return out


def check_integer(value: Any, field: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool; a float only if integral, e.g. ``3.0`` from a JSON file) within bounds."""
    if minimum is not None and maximum is not None:
        allowed = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
        allowed = f"an integer >= {minimum}"
    elif maximum is not None:
        allowed = f"an integer <= {maximum}"
    else:
        allowed = "an integer"
    if isinstance(value, bool):
        raise ValidationError(field, f"must be {allowed} (got {value!r})")
    if isinstance(value, Integral):
        k = int(value)
    elif isinstance(value, Real) and math.isfinite(float(value)) and float(value).is_integer():
        k = int(value)
    else:
        raise ValidationError(field, f"must be {allowed} (got {value!r})")
    if (minimum is not None and k < minimum) or (maximum is not None and k > maximum):
        raise ValidationError(field, f"must be {allowed} (got {value!r})")
    return k


def check_fraction(value: Any, field: str, *, allow_zero: bool = True, allow_one: bool = False) -> float:
    """A number in ``[0, 1)`` (by default), ``(0, 1)``, ``[0, 1]`` or ``(0, 1]``."""
    return check_number(value, field, 0.0, 1.0, lo_open=not allow_zero, hi_open=not allow_one)


# --------------------------------------------------------------------------- optional extras
#: The one-line message for training without the ``fl`` extra (``pip install aflqueue`` is the
#: torch-free core: analysis, simulation, optimisation, figures).
FL_EXTRA_MESSAGE = "training needs the fl extra: pip install 'aflqueue[fl]'"
#: What the ``fl`` extra installs (import names).
FL_MODULES = ("torch", "torchvision", "sklearn", "mnist1d")


def missing_fl_modules() -> list[str]:
    """The modules of the ``fl`` extra that cannot be imported, found without importing them."""

    missing = []
    for name in FL_MODULES:
        if name in sys.modules:
            if sys.modules[name] is None:  # blocked on purpose (``sys.modules[name] = None``)
                missing.append(name)
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing
