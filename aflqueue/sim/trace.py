"""Event trace of a simulated (or recorded) run: one row per dispatched task, columnar.

Versions: the server's model version is the number of updates applied so far. The first ``m``
tasks are dispatched at time 0 with version 0; the task whose update is the ``k``-th one has
``applied_version = k`` and the task dispatched right after it has ``dispatch_version = k``. The
relative delay (staleness) of a task is the number of updates applied between its dispatch and
its own update: ``relative_delay = applied_version - 1 - dispatch_version``.

Stage timestamps (time units): ``dispatch_time <= downlink_end <= compute_start <= compute_end
<= uplink_end <= completion_time`` (absent stages take zero time; ``completion_time`` is when the
update is applied, after the central server if there is one). Tasks still in flight at the end
have ``applied_version = -1`` and NaN for the timestamps they did not reach.

Memory: a simulated trace keeps client and versions as int32 (4 bytes each; a trace holds at most
:data:`MAX_TASKS` tasks) and the times as float64 (8 bytes each). A column equal to the one it
follows (:data:`ALIASES`: ``downlink_end`` is ``dispatch_time`` without a downlink,
``uplink_end`` is ``compute_end`` without an uplink, ``completion_time`` is ``uplink_end``
without a central server) is the same read-only array, not a copy. Bytes per task (one task per
update, plus the ``m`` in flight): **36** for a single-stage system (client, two versions,
``dispatch_time``, ``compute_start``, ``compute_end``), 44 to 52 with links, **60** at most (all
six times distinct). The whole trace is in memory; :func:`aflqueue.sim.simulate_to_file` streams
a run to disk in chunks instead (:mod:`aflqueue.sim.tracefile`), in bounded memory, and
:func:`aflqueue.sim.estimate` reads such a file chunk by chunk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .._results import Result, require_pandas, result_repr
from ..errors import ValidationError
from .columns import ALIASES, CHUNK, COLUMN_DTYPES, COLUMNS, INT_COLUMNS, MAX_TASKS, TIME_COLUMNS, check_routing

__all__ = ["Trace", "TraceSummary", "TraceError", "TIME_COLUMNS", "INT_COLUMNS", "COLUMNS", "ALIASES", "COLUMN_DTYPES", "CHUNK",
           "MAX_TASKS", "check_routing"]


class TraceError(ValueError):
    """A trace violates an invariant (see :meth:`Trace.verify`)."""


def _read_only(a: Any, name: str, kind: str, size: int | None) -> np.ndarray:
    """A read-only view of a 1-D column (the caller's array stays writable); no copy."""
    v = np.asarray(a)
    ok = v.ndim == 1 and (np.issubdtype(v.dtype, np.integer) if kind == "int" else v.dtype == np.float64)
    if not ok or (size is not None and v.size != size):
        want = "integer" if kind == "int" else "float64"
        raise ValidationError(f"trace.{name}", f"must be a 1-D {want} array with one entry per task "
                                               f"(got dtype {v.dtype}, shape {v.shape})")
    v = v.view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True, eq=False, repr=False)
class TraceSummary(Result):
    """Plain statistics of a trace (:meth:`Trace.summary`; no intervals: see
    :func:`aflqueue.sim.estimate.estimate`).

    Attributes:
        tasks: tasks dispatched; updates: updates applied; concurrency: ``m``.
        horizon: simulated time of the last update (time units); throughput: updates per time unit.
        updates_per_client: shape ``(n,)``; mean_relative_delay, max_relative_delay: in updates.
    """

    tasks: int
    updates: int
    concurrency: int
    horizon: float
    throughput: float
    updates_per_client: np.ndarray
    mean_relative_delay: float
    max_relative_delay: int

    def title(self) -> str:
        return f"TraceSummary: {self.updates} updates, m = {self.concurrency}"


@dataclass(frozen=True, eq=False)
class Trace:
    """Columnar task records, all arrays of shape ``(T,)`` indexed by task id (dispatch order).

    The arrays are read-only views (a trace is a record; columns in :data:`ALIASES` may be one
    array). Integer columns are int32 in simulated and loaded traces; any integer dtype is accepted.

    Attributes:
        client: client index (integer).
        dispatch_time, downlink_end, compute_start, compute_end, uplink_end, completion_time:
            stage timestamps (float64, time units; NaN if not reached).
        dispatch_version: server version the task's model was taken from (integer).
        applied_version: version created by the task's update (integer; -1 if not applied).
        n_clients: number of clients.
        concurrency: ``m``.
        routing: the routing ``p`` (shape ``(n,)``) the dispatches were drawn with, or None for a
            trace whose dispatch law is unknown (e.g. recorded from a real deployment). The trainer
            weights updates by ``1/(n p_i)`` and refuses a routing other than this one.
        meta: JSON-serialisable provenance (system, seed, engine, ...).
    """

    client: np.ndarray
    dispatch_time: np.ndarray
    downlink_end: np.ndarray
    compute_start: np.ndarray
    compute_end: np.ndarray
    uplink_end: np.ndarray
    completion_time: np.ndarray
    dispatch_version: np.ndarray
    applied_version: np.ndarray
    n_clients: int
    concurrency: int
    routing: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        size = None
        for c in COLUMNS:
            v = _read_only(getattr(self, c), c, "int" if c in INT_COLUMNS else "time", size)
            size = v.size
            object.__setattr__(self, c, v)
        if self.routing is not None:
            object.__setattr__(self, "routing", check_routing(self.routing, self.n_clients))

    # ------------------------------------------------------------------ derived views
    def __len__(self) -> int:
        return int(self.client.size)

    @property
    def task(self) -> np.ndarray:
        """Task ids ``0..T-1``."""
        return np.arange(len(self))

    @property
    def completed(self) -> np.ndarray:
        """Mask of tasks whose update was applied."""
        return self.applied_version >= 1

    @property
    def num_updates(self) -> int:
        return int(np.count_nonzero(self.completed))

    @property
    def relative_delay(self) -> np.ndarray:
        """``applied_version - 1 - dispatch_version`` (the versions' integer dtype); -1 for tasks
        not applied."""
        return np.where(self.completed, self.applied_version - 1 - self.dispatch_version, -1)

    @property
    def update_order(self) -> np.ndarray:
        """Task ids sorted by the update they produced: ``update_order[k-1]`` made version ``k``."""
        done = np.flatnonzero(self.completed)
        return done[np.argsort(self.applied_version[done], kind="stable")]

    @property
    def horizon(self) -> float:
        """Time of the last applied update."""
        c = self.completion_time[self.completed]
        return float(c.max()) if c.size else 0.0

    def updates(self) -> dict[str, np.ndarray]:
        """The update log in version order: ``client``, ``time``, ``relative_delay``,
        ``dispatch_version``, ``task`` (arrays of shape ``(U,)``)."""
        order = self.update_order
        return {"task": order, "client": self.client[order], "time": self.completion_time[order],
                "relative_delay": self.relative_delay[order], "dispatch_version": self.dispatch_version[order]}

    def columns(self) -> dict[str, np.ndarray]:
        return {"task": self.task, **{c: getattr(self, c) for c in ("client",) + TIME_COLUMNS},
                "dispatch_version": self.dispatch_version, "applied_version": self.applied_version,
                "relative_delay": self.relative_delay}

    def chunks(self, columns: Sequence[str] | None = None, size: int = CHUNK) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first task, {column: view})`` for consecutive slices of ``size`` tasks (the last one
        shorter): the same interface as :meth:`aflqueue.sim.tracefile.TraceFile.chunks`, so that
        code written for a streamed trace runs on one in memory."""
        cols = COLUMNS if columns is None else tuple(columns)
        for start in range(0, len(self), size):
            yield start, {c: getattr(self, c)[start:start + size] for c in cols}

    def digest(self) -> str:
        """SHA-256 of the schedule itself (columns, ``n_clients``, ``m``; not ``meta``): two traces
        with the same digest drive training identically. Integer columns are hashed as int64, so
        the digest does not depend on their dtype (nor on whether the trace was loaded or
        simulated)."""
        h = hashlib.sha256(f"{self.n_clients},{self.concurrency}".encode())
        if self.routing is not None:
            h.update(b"routing")
            h.update(self.routing.tobytes())
        for c in INT_COLUMNS + TIME_COLUMNS:
            a = getattr(self, c)
            h.update(c.encode())
            h.update(b"int64" if c in INT_COLUMNS else str(a.dtype).encode())
            for start in range(0, a.size, CHUNK):  # hashing the pieces = hashing the whole
                piece = a[start:start + CHUNK]
                h.update(np.ascontiguousarray(piece, dtype=np.int64 if c in INT_COLUMNS else piece.dtype).tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return result_repr(f"Trace: {len(self)} tasks, {self.num_updates} updates applied", [
            ("n_clients", self.n_clients), ("concurrency", self.concurrency), ("horizon", self.horizon),
            ("routing", "unknown" if self.routing is None else self.routing),
            ("updates_per_client", np.bincount(self.client[self.completed], minlength=self.n_clients)),
            ("engine", self.meta.get("engine")), ("seed", self.meta.get("seed"))])

    def to_frame(self) -> Any:
        """One row per task, index ``task`` (dispatch order), the columns of :meth:`columns` (as in
        :meth:`to_csv`): ``client``, the stage timestamps, ``dispatch_version``, ``applied_version``
        and ``relative_delay`` (-1 and NaN times for tasks still in flight). ``n_clients``,
        ``concurrency`` and ``routing`` are in ``df.attrs``. Needs pandas."""
        pd = require_pandas("Trace.to_frame()")
        cols = self.columns()
        task = cols.pop("task")
        df = pd.DataFrame(cols, index=pd.Index(task, name="task"))
        df.attrs.update(n_clients=self.n_clients, concurrency=self.concurrency,
                        routing=None if self.routing is None else self.routing.tolist())
        return df

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> Path:
        """Write the trace file (``.npz``, format 2 of :mod:`aflqueue.sim.tracefile`: uncompressed
        chunks, validated as they are written), atomically."""
        from .tracefile import write_trace  # lazy: numba

        return write_trace(self, path)

    @classmethod
    def load(cls, path: str | Path, max_memory_gb: float | None = None) -> "Trace":
        """Read a trace file (format 2, or format 1 of earlier versions), validating it before and
        while reading; refuses (:class:`ValidationError`) files that need more than
        ``max_memory_gb`` (default :data:`aflqueue.sim.tracefile.DEFAULT_MAX_MEMORY_GB`) to load.
        See :class:`aflqueue.sim.tracefile.TraceFile`."""
        from .tracefile import TraceFile  # lazy: numba

        with TraceFile.open(path, max_memory_gb=max_memory_gb) as tf:
            return tf.load(cls)

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per task with a header (``task, client, <times>, versions, relative_delay``),
        chunk by chunk (memory bounded by the chunk, not the trace)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        names = list(self.columns())
        fmt = ["%.17g" if c in TIME_COLUMNS else "%d" for c in names]
        with open(p, "w", encoding="utf-8") as f:
            f.write(",".join(names) + "\n")
            for start, ch in self.chunks(COLUMNS):
                av, dv = ch["applied_version"], ch["dispatch_version"]
                ch["task"] = np.arange(start, start + av.size)
                ch["relative_delay"] = np.where(av >= 1, av - 1 - dv, -1)
                np.savetxt(f, np.column_stack([ch[c].astype(np.float64) for c in names]), fmt=fmt, delimiter=",")
        return p

    # ------------------------------------------------------------------ invariants
    def verify(self, atol: float = 1e-9) -> dict[str, Any]:
        """Check the invariants; raise :class:`TraceError` listing violations, else return a summary.

        * stage timestamps are non-decreasing along each task's path;
        * applied versions are exactly ``1..U`` and completion times non-decreasing in version;
        * task ``t < m`` is dispatched at time 0 with version 0; task ``t >= m`` is dispatched
          at the completion of update ``t - m + 1`` with that version: hence exactly ``m`` tasks
          are in flight at all times;
        * relative delays are >= 0;
        * each client's compute stage serves one task at a time, in arrival order (FIFO).
        """
        errors: list[str] = []
        m, T = self.concurrency, len(self)
        if np.any((self.client < 0) | (self.client >= self.n_clients)):
            errors.append("client index out of range")
        done = self.completed
        U = int(done.sum())
        for a in range(len(TIME_COLUMNS) - 1):
            x, y = getattr(self, TIME_COLUMNS[a]), getattr(self, TIME_COLUMNS[a + 1])
            ok = np.isnan(y) | (y >= x - atol)
            if not np.all(ok):
                errors.append(f"{TIME_COLUMNS[a + 1]} < {TIME_COLUMNS[a]} for {int((~ok).sum())} task(s)")
        if any(np.any(np.isnan(getattr(self, c)[done])) for c in TIME_COLUMNS):
            errors.append("a completed task has a missing timestamp")
        versions = np.sort(self.applied_version[done])
        if not np.array_equal(versions, np.arange(1, U + 1)):
            errors.append("applied versions are not exactly 1..U")
        order = self.update_order
        if np.any(np.diff(self.completion_time[order]) < -atol):
            errors.append("completion times decrease along the update order")
        if T < m:
            errors.append(f"fewer tasks ({T}) than the concurrency ({m})")
        else:
            if np.any(self.dispatch_time[:m] != 0) or np.any(self.dispatch_version[:m] != 0):
                errors.append("the first m tasks must be dispatched at time 0 with version 0")
            later = np.arange(m, T)
            k = later - m + 1  # the update after which task t was dispatched
            if np.any(k > U):
                errors.append("more tasks dispatched than updates allow (in flight != m)")
            else:
                if np.any(self.dispatch_version[later] != k):
                    errors.append("dispatch_version != number of updates applied before dispatch")
                if np.any(np.abs(self.dispatch_time[later] - self.completion_time[order[k - 1]]) > atol):
                    errors.append("a task was not dispatched at the time of the update that freed its slot")
            if T - U != m:
                errors.append(f"tasks in flight at the end = {T - U}, expected m = {m}")
        if np.any(self.relative_delay[done] < 0):
            errors.append("negative relative delay")
        # FIFO, one at a time, at each compute stage
        started = ~np.isnan(self.compute_start)
        for i in np.unique(self.client[started]):
            idx = np.flatnonzero(started & (self.client == i))
            idx = idx[np.lexsort((idx, self.downlink_end[idx]))]
            s, e = self.compute_start[idx], self.compute_end[idx]
            if np.any(np.diff(s) < -atol):
                errors.append(f"client {i}: compute service not in arrival order")
                break
            # the next service starts only after the previous one ended (one server)
            if not np.all(~np.isnan(e[:-1]) & (s[1:] >= e[:-1] - atol)):
                errors.append(f"client {i}: overlapping compute services")
                break
        if errors:
            raise TraceError("; ".join(errors))
        return self.summary()

    def summary(self) -> "TraceSummary":
        """Plain statistics (no confidence intervals; see :mod:`aflqueue.sim.estimate`)."""
        up = self.updates()
        d = up["relative_delay"]
        per_client = np.bincount(up["client"], minlength=self.n_clients)
        return TraceSummary(tasks=len(self), updates=int(d.size), concurrency=int(self.concurrency),
                            horizon=float(self.horizon),
                            throughput=d.size / self.horizon if self.horizon > 0 else float("nan"),
                            updates_per_client=per_client.astype(np.int64),
                            mean_relative_delay=float(d.mean()) if d.size else float("nan"),
                            max_relative_delay=int(d.max()) if d.size else 0)
