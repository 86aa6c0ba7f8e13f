"""The one shape of every result: :class:`Result`, and the habits it rests on.

Every result (:class:`~aflqueue.queueing.analysis.Analysis`,
:class:`~aflqueue.sim.estimate.SimulationEstimates`, :class:`~aflqueue.optimization.OptimizationResult`,
:class:`~aflqueue.fl.engine.TrainResult`, :class:`~aflqueue.sweep.SweepResult`, ...) is a frozen
dataclass deriving from :class:`Result` (in the spirit of scipy's ``OptimizeResult``), so that it has

* ``to_dict()``: strict JSON (RFC 8259) -- NaN and inf become ``null``, arrays become lists;
* ``to_frame()``: a :class:`pandas.DataFrame` of its per-row fields (per client, per evaluation...;
  pandas is optional: without it the call raises :class:`MissingDependency`, one line naming
  ``pip install pandas``), its scalars in ``df.attrs``;
* a ``repr`` with the essentials, one ``name: value`` line each.

A class overrides only what its format fixes (e.g. the keys of a file it writes); the rest comes
from its fields.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any, ClassVar, Iterable

import numpy as np

from .errors import ValidationError
from .io import json_safe
from .stats import Estimate

__all__ = ["Result", "MissingDependency", "require_pandas", "format_value", "summarize_array", "result_repr"]


class MissingDependency(ValidationError, ImportError):
    """An optional dependency is not installed. Both a :class:`ValidationError` (printed as one
    line by the CLI) and an :class:`ImportError` (``except ImportError`` catches it)."""


def require_pandas(what: str) -> Any:
    """The :mod:`pandas` module, or :class:`MissingDependency` naming ``what`` needs it."""
    try:
        import pandas  # lazy: pandas
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


def _plain(v: Any) -> Any:
    """``v`` with nested results and estimates as their dicts (for :meth:`Result.to_dict`)."""
    if hasattr(v, "to_dict") and callable(v.to_dict):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class Result:
    """Base of the result types: a subclass is a ``@dataclass(frozen=True, eq=False, repr=False)``
    (``repr=False`` keeps this repr; a class that writes its own ``__repr__`` may omit it).

    Class attributes a subclass may set:
    * ``frame_index``: the name of a row of :meth:`to_frame` (``"client"`` by default);
    * ``frame_fields``: the fields that are the frame's columns (default: every field holding a
      1-D array as long as the first such field);
    * ``frame_attrs``: the entries of :meth:`to_dict` the frame keeps in ``df.attrs`` (default:
      every one that is not a column);
    * ``repr_fields``: the fields the repr shows (default: all that are not None).

    and it may override :meth:`title` (the repr's first line).
    """

    frame_index: ClassVar[str] = "client"
    frame_fields: ClassVar[tuple[str, ...] | None] = None
    frame_attrs: ClassVar[tuple[str, ...] | None] = None
    repr_fields: ClassVar[tuple[str, ...] | None] = None

    def _field_names(self) -> list[str]:
        assert is_dataclass(self), f"{type(self).__name__} must be a dataclass"
        return [f.name for f in fields(self)]

    def title(self) -> str:
        """First line of the repr."""
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict of the fields (NaN and inf become ``null``, arrays lists, nested
        results and estimates their own dicts)."""
        return json_safe({name: _plain(getattr(self, name)) for name in self._field_names()})

    def frame_columns(self) -> dict[str, np.ndarray]:
        """The per-row fields, each a 1-D float or integer array of one length."""
        names = self.frame_fields
        if names is None:
            arrays = [(k, getattr(self, k)) for k in self._field_names()]
            arrays = [(k, v) for k, v in arrays if isinstance(v, np.ndarray) and v.ndim == 1]
            length = len(arrays[0][1]) if arrays else 0
            return {k: v for k, v in arrays if len(v) == length}
        return {k: np.asarray(getattr(self, k)) for k in names}

    def to_frame(self) -> Any:
        """A :class:`pandas.DataFrame` with one row per element of the per-row fields (index
        named :attr:`frame_index`) and the other fields of :meth:`to_dict` in ``df.attrs``.
        Needs pandas."""
        pd = require_pandas(f"{type(self).__name__}.to_frame()")
        cols = self.frame_columns()
        length = len(next(iter(cols.values()))) if cols else 0
        df = pd.DataFrame(cols, index=pd.RangeIndex(length, name=self.frame_index))
        d = self.to_dict()
        keys = self.frame_attrs if self.frame_attrs is not None else [k for k in d if k not in cols]
        df.attrs.update({k: d.get(k) for k in keys})
        return df

    def __repr__(self) -> str:
        names = self.repr_fields or self._field_names()
        return result_repr(self.title(), [(k, getattr(self, k)) for k in names])
