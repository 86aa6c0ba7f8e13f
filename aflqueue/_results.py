"""Habits shared by the result objects: optional pandas, strict-JSON dicts, readable reprs.

Every result (:class:`~aflqueue.queueing.analysis.Analysis`,
:class:`~aflqueue.sim.estimate.SimulationEstimates`, :class:`~aflqueue.sim.trace.Trace`,
:class:`~aflqueue.optimize.OptimizationResult`, :class:`~aflqueue.fl.engine.TrainResult`) has

* ``to_dict()``: strict JSON (RFC 8259) -- NaN and inf become ``null``, arrays become lists;
* ``to_frame()``: a :class:`pandas.DataFrame` (pandas is optional: without it the call raises
  :class:`MissingDependency`, one line naming ``pip install pandas``), scalars in ``df.attrs``;
* a ``repr`` with the essentials, one ``name: value`` line each (like ``scipy.optimize.OptimizeResult``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .errors import ValidationError

__all__ = ["MissingDependency", "require_pandas", "format_value", "summarize_array", "result_repr"]


class MissingDependency(ValidationError, ImportError):
    """An optional dependency is not installed. Both a :class:`ValidationError` (printed as one
    line by the CLI) and an :class:`ImportError` (``except ImportError`` catches it)."""


def require_pandas(what: str) -> Any:
    """The :mod:`pandas` module, or :class:`MissingDependency` naming ``what`` needs it."""
    try:
        import pandas
    except ImportError:
        raise MissingDependency("pandas", f"{what} needs pandas, an optional dependency: pip install pandas "
                                          "(or pip install 'aflqueue[pandas]')") from None
    return pandas


def _num(x: Any) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    return f"{x:.6g}"


def summarize_array(a: Any, max_items: int = 10) -> str:
    """Short text for a 1-D array: the values if there are at most ``max_items``, else a summary
    (``20 x 0.1`` when all equal; ``100 values in [0.1, 3] (5 distinct)``)."""
    v = np.asarray(a, dtype=float).ravel()
    if v.size <= max_items:
        return "[" + ", ".join(_num(x) for x in v) + "]"
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return f"{v.size} values, none finite"
    distinct = np.unique(finite)
    if distinct.size == 1 and finite.size == v.size:
        return f"{v.size} x {_num(distinct[0])}"
    notes = [f"{distinct.size} distinct"] if distinct.size <= 10 else []
    if finite.size < v.size:
        notes.append(f"{v.size - finite.size} undefined")
    text = f"{v.size} values in [{_num(finite.min())}, {_num(finite.max())}]"
    return text + (f" ({', '.join(notes)})" if notes else "")


def format_value(v: Any) -> str:
    """One-line text of a field value for a result's repr."""
    from .stats import Estimate

    if isinstance(v, Estimate):
        if not math.isfinite(v.mean):
            return "undefined"
        ci = f" [{_num(v.lo)}, {_num(v.hi)}]" if math.isfinite(v.lo) and math.isfinite(v.hi) else ""
        return f"{_num(v.mean)}{ci}"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _num(v)
    if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and v and
                                      all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool)
                                          for x in v)):
        return summarize_array(v)
    if isinstance(v, dict):
        items = [f"{k}={format_value(x)}" for k, x in v.items()]
        text = ", ".join(items[:6]) + (", ..." if len(items) > 6 else "")
        return "{" + text + "}"
    return str(v)


def result_repr(title: str, items: Iterable[tuple[str, Any]]) -> str:
    """``title`` then one right-aligned ``name: value`` line per item (None values left out)."""
    rows = [(k, format_value(v)) for k, v in items if v is not None]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title] + [f"  {k.rjust(width)}: {v}" for k, v in rows])
