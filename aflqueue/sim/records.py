"""Putting task records in order: engine events to task-order chunks, task order to version order.

A simulation engine reports events as they happen: dispatches (in task order), stage timestamps
of any task, and applied updates (in version order). :class:`TaskRecorder` keeps the tasks not yet
handed on in a window and hands each finished chunk of :data:`~aflqueue.sim.columns.CHUNK` tasks,
in task order, to a sink: a :class:`TraceAssembler` (the trace in memory) or a
:class:`~aflqueue.sim.tracefile.TraceWriter` (the trace file). A chunk is finished when all its
tasks are applied, so the window holds the tasks from the oldest one still in flight to the
newest: memory ``O(chunk + max relative delay)``, not ``O(updates)``.

:class:`VersionOrder` does the converse for readers: per-update values arriving in task order
come out in version order, through a window that spans how far versions and task ids drift
apart (again the relative delays, for a simulated trace).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ValidationError
from .columns import ALIASES, CHUNK, COLUMN_DTYPES, COLUMNS, TIME_COLUMNS

__all__ = ["TaskRecorder", "TraceAssembler", "VersionOrder", "same_bits", "record_in_memory"]

Sink = Callable[[int, dict[str, np.ndarray]], None]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two float64 arrays are equal bit for bit (NaN equal to the same NaN)."""
    return a is b or (a.shape == b.shape and bool(np.array_equal(a.view(np.uint64), b.view(np.uint64))))


class TaskRecorder:
    """Builds the trace columns from an engine's events and hands them on in task-order chunks.

    ``sink(start, columns)`` receives tasks ``start .. start + chunk - 1`` (the last chunk may be
    shorter) as views that are valid only during the call. Defaults at dispatch: ``downlink_end``
    is the dispatch time (no downlink), the other times NaN, ``applied_version`` -1.
    """

    def __init__(self, tasks: int, sink: Sink, chunk: int = CHUNK):
        self.tasks = int(tasks)
        self.sink = sink
        self.chunk = int(chunk)
        self.base = 0  # first task not yet handed on
        self.size = 0  # tasks dispatched and not yet handed on
        self.version = 0  # updates applied so far
        self.cols = {c: np.empty(2 * self.chunk, dtype=COLUMN_DTYPES[c]) for c in COLUMNS}

    def _reserve(self, k: int) -> None:
        cap = self.cols["client"].size
        if self.size + k <= cap:
            return
        cap = max(2 * cap, self.size + k)
        for c, a in self.cols.items():
            b = np.empty(cap, dtype=a.dtype)
            b[:self.size] = a[:self.size]
            self.cols[c] = b

    def dispatch(self, client: np.ndarray, time: np.ndarray, version: np.ndarray) -> None:
        """The next ``len(client)`` tasks: their client, dispatch time and dispatch version."""
        k = len(client)
        self._reserve(k)
        s = slice(self.size, self.size + k)
        cols = self.cols
        cols["client"][s] = client
        cols["dispatch_time"][s] = time
        cols["downlink_end"][s] = time
        for c in TIME_COLUMNS[2:]:
            cols[c][s] = np.nan
        cols["dispatch_version"][s] = version
        cols["applied_version"][s] = -1
        self.size += k

    def _index(self, tasks: np.ndarray) -> np.ndarray:
        idx = np.asarray(tasks, dtype=np.int64) - self.base
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):  # an engine bug, never user input
            raise RuntimeError("trace recorder: an event for a task that is not in flight")
        return idx

    def stamp(self, column: str, tasks: np.ndarray, times: np.ndarray) -> None:
        """Set ``column`` (a time column) of the given tasks."""
        self.cols[column][self._index(tasks)] = times

    def apply(self, tasks: np.ndarray) -> None:
        """The given tasks made the next ``len(tasks)`` updates, in this order."""
        k = len(tasks)
        self.cols["applied_version"][self._index(tasks)] = np.arange(self.version + 1, self.version + k + 1)
        self.version += k

    def flush(self, final: bool = False) -> None:
        """Hand on every whole chunk of applied tasks (``final``: everything, in-flight tasks too)."""
        if final:
            ready = self.size
        else:
            pending = np.flatnonzero(self.cols["applied_version"][:self.size] < 0)
            ready = int(pending[0]) if pending.size else self.size
            ready -= ready % self.chunk
        if ready == 0:
            return
        for s in range(0, ready, self.chunk):
            e = min(s + self.chunk, ready)
            self.sink(self.base + s, {c: a[s:e] for c, a in self.cols.items()})
        rest = self.size - ready
        for a in self.cols.values():
            a[:rest] = a[ready:self.size]
        self.base += ready
        self.size = rest

    def close(self) -> None:
        """Hand on the rest; every task must have been dispatched."""
        if self.base + self.size != self.tasks:
            raise RuntimeError(f"trace recorder: {self.base + self.size} tasks dispatched, expected {self.tasks}")
        self.flush(final=True)


class TraceAssembler:
    """A sink that assembles the chunks into a :class:`~aflqueue.sim.trace.Trace` in memory.

    A column of :data:`~aflqueue.sim.columns.ALIASES` equal to its target in every chunk is not
    stored: the trace gets the target's array. It is allocated (and the earlier chunks copied
    from the target) at the first chunk where the two differ.
    """

    def __init__(self, tasks: int):
        self.tasks = int(tasks)
        self.arrays: dict[str, np.ndarray] = {c: np.empty(self.tasks, dtype=COLUMN_DTYPES[c])
                                              for c in COLUMNS if c not in ALIASES}
        self.written = 0

    def effective(self, column: str) -> np.ndarray:
        """The array that holds ``column`` (its alias target's while the two are equal)."""
        while column not in self.arrays:
            column = ALIASES[column]
        return self.arrays[column]

    def __call__(self, start: int, cols: dict[str, np.ndarray]) -> None:
        if start != self.written:
            raise RuntimeError("trace assembler: chunks out of order")
        e = start + cols["client"].size
        for c in COLUMNS:
            if c in ALIASES and c not in self.arrays:
                if same_bits(cols[c], cols[ALIASES[c]]):
                    continue
                a = np.empty(self.tasks, dtype=COLUMN_DTYPES[c])
                a[:start] = self.effective(ALIASES[c])[:start]
                self.arrays[c] = a
            self.arrays[c][start:e] = cols[c]
        self.written = e

    def trace(self, cls: type, n_clients: int, concurrency: int, routing: np.ndarray | None, meta: dict) -> Any:
        """The assembled trace, an instance of ``cls`` (:class:`~aflqueue.sim.trace.Trace`: given by
        the caller, so that the trace's own module can import this one)."""
        if self.written != self.tasks:
            raise RuntimeError(f"trace assembler: {self.written} of {self.tasks} tasks written")
        return cls(**{c: self.effective(c) for c in COLUMNS}, n_clients=int(n_clients),
                   concurrency=int(concurrency), routing=routing, meta=meta)


def record_in_memory(cls: type, tasks: int, n_clients: int, concurrency: int, routing: np.ndarray | None,
                     record: Callable[["TaskRecorder"], dict[str, Any]]) -> Any:
    """Run ``record(recorder)`` (an engine reporting ``tasks`` tasks) and return the trace it
    made (a ``cls``, :class:`~aflqueue.sim.trace.Trace`), assembled in memory; ``record`` returns
    the trace's metadata."""
    out = TraceAssembler(tasks)
    recorder = TaskRecorder(tasks, out)
    meta = record(recorder)
    recorder.close()
    return out.trace(cls, n_clients, concurrency, routing, meta)


class VersionOrder:
    """Per-update values put in any order (e.g. task order), taken out in version order.

    Versions ``first .. last`` must each be put exactly once; :meth:`take` returns the longest run
    of consecutive versions from the next one not yet taken. The window grows to span the versions
    put but not yet taken; growing past ``budget`` bytes raises :class:`ValidationError`
    (``field``, ``source``), as do a version out of range or put twice.
    """

    def __init__(self, first: int, last: int, fields: dict[str, np.dtype], *, field: str, source: str,
                 budget: int | None = None):
        self.first = self.next = int(first)
        self.last = int(last)
        self.field = field
        self.source = source
        self.budget = budget
        self.dtypes = {f: np.dtype(d) for f, d in fields.items()}
        self.values = {f: np.empty(0, dtype=d) for f, d in self.dtypes.items()}
        self.filled = np.zeros(0, dtype=bool)
        self.span = 0  # offsets [0, span) may hold values
        self.count = 0  # values held

    def _fail(self, detail: str) -> None:
        raise ValidationError(self.field, f"{self.source}: {detail}")

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self.filled.size, 1024)
        per = 1 + sum(d.itemsize for d in self.dtypes.values())
        if self.budget is not None and cap * per > self.budget:
            cap = max(need, self.budget // per)
            if cap * per > self.budget:
                self._fail(f"updates are too far out of task order to read within the memory limit "
                           f"({need:,} versions pending)")
        for f, a in self.values.items():
            b = np.empty(cap, dtype=a.dtype)
            b[:self.span] = a[:self.span]
            self.values[f] = b
        filled = np.zeros(cap, dtype=bool)
        filled[:self.span] = self.filled[:self.span]
        self.filled = filled

    def put(self, versions: np.ndarray, **values: np.ndarray) -> None:
        v = np.asarray(versions, dtype=np.int64)
        if v.size == 0:
            return
        lo, hi = int(v.min()), int(v.max())
        if lo < self.next or hi > self.last:
            bad = lo if lo < self.next else hi
            self._fail(f"version {bad} is outside [{self.first}, {self.last}] or repeated")
        off = v - self.next
        need = hi - self.next + 1
        if need > self.filled.size:
            self._grow(need)
        self.span = max(self.span, need)
        seg = self.filled[lo - self.next:need]
        before = np.count_nonzero(seg)
        self.filled[off] = True
        if np.count_nonzero(seg) - before != v.size:  # a version put before, or twice now
            self._fail(f"each version in [{self.first}, {self.last}] must appear once (a version in [{lo}, {hi}] repeats)")
        for f, x in values.items():
            self.values[f][off] = x
        self.count += v.size

    def take(self) -> dict[str, np.ndarray]:
        """The values of the next consecutive versions held (possibly none), in version order."""
        gaps = np.flatnonzero(~self.filled[:self.span])
        k = int(gaps[0]) if gaps.size else self.span
        out = {f: a[:k].copy() for f, a in self.values.items()}
        if k:
            rest = self.span - k
            for a in self.values.values():
                a[:rest] = a[k:self.span]
            self.filled[:rest] = self.filled[k:self.span]
            self.filled[rest:self.span] = False
            self.span = rest
            self.next += k
            self.count -= k
        return out

    def done(self) -> bool:
        """True once every version ``first .. last`` has been taken."""
        return self.next == self.last + 1
