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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._results import require_pandas, result_repr
from ..errors import ValidationError, require
from ..io import atomic_write

__all__ = ["Trace", "TraceError", "TIME_COLUMNS"]

TIME_COLUMNS = ("dispatch_time", "downlink_end", "compute_start", "compute_end", "uplink_end", "completion_time")
INT_COLUMNS = ("client", "dispatch_version", "applied_version")


class TraceError(ValueError):
    """A trace violates an invariant (see :meth:`Trace.verify`)."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Columnar task records, all arrays of shape ``(T,)`` indexed by task id (dispatch order).

    Attributes:
        client: client index (int64).
        dispatch_time, downlink_end, compute_start, compute_end, uplink_end, completion_time:
            stage timestamps (float64, time units; NaN if not reached).
        dispatch_version: server version the task's model was taken from (int64).
        applied_version: version created by the task's update (int64; -1 if not applied).
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
        if self.routing is not None:
            p = np.array(self.routing, dtype=np.float64).ravel()
            if p.size != self.n_clients or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
                raise ValidationError("trace.routing", f"must be {self.n_clients} probabilities summing to 1")
            p.setflags(write=False)
            object.__setattr__(self, "routing", p)

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
        return int(self.completed.sum())

    @property
    def relative_delay(self) -> np.ndarray:
        """``applied_version - 1 - dispatch_version`` (int64); -1 for tasks not applied."""
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

    def digest(self) -> str:
        """SHA-256 of the schedule itself (columns, ``n_clients``, ``m``; not ``meta``): two traces
        with the same digest drive training identically."""
        h = hashlib.sha256(f"{self.n_clients},{self.concurrency}".encode())
        if self.routing is not None:
            h.update(b"routing")
            h.update(self.routing.tobytes())
        for c in INT_COLUMNS + TIME_COLUMNS:
            a = np.ascontiguousarray(getattr(self, c))
            h.update(c.encode())
            h.update(str(a.dtype).encode())
            h.update(a.tobytes())
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
        """Write a compressed ``.npz`` (arrays plus JSON metadata)."""
        p = Path(path)
        if p.suffix != ".npz":
            raise ValidationError("trace", f"trace files are .npz (got {str(p)!r}); use to_csv for CSV")
        p.parent.mkdir(parents=True, exist_ok=True)
        header = {"n_clients": self.n_clients, "concurrency": self.concurrency, "meta": self.meta, "format": 1}
        cols = {c: getattr(self, c) for c in INT_COLUMNS + TIME_COLUMNS}
        if self.routing is not None:
            cols["routing"] = self.routing

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
                np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **cols)

        return atomic_write(p, write)

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        """Read a trace written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise ValidationError("trace", f"no such trace file: {str(p)!r}")
        try:
            # allow_pickle=False (numpy's default, stated): object arrays in a file are refused
            with np.load(p, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                cols = {c: z[c] for c in INT_COLUMNS + TIME_COLUMNS}
                routing = z["routing"] if "routing" in z.files else None
            n, m = int(header["n_clients"]), int(header["concurrency"])
        except (KeyError, ValueError, OSError, TypeError, UnicodeDecodeError, EOFError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValidationError("trace", f"{str(p)!r} is not an aflqueue trace ({reason})") from None
        for c in INT_COLUMNS:
            require(np.issubdtype(cols[c].dtype, np.integer) and cols[c].ndim == 1, "trace",
                    f"{str(p)!r}: column {c!r} must be a 1-D integer array")
        for c in TIME_COLUMNS:
            require(cols[c].dtype == np.float64 and cols[c].shape == cols["client"].shape, "trace",
                    f"{str(p)!r}: column {c!r} must be float64 with one entry per task")
        meta = header.get("meta", {})
        return cls(**cols, n_clients=n, concurrency=m, routing=routing, meta=meta if isinstance(meta, dict) else {})

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per task with a header (``task, client, <times>, versions, relative_delay``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        cols = self.columns()
        names = list(cols)
        data = np.column_stack([cols[c].astype(np.float64) for c in names])
        fmt = ["%.17g" if c in TIME_COLUMNS else "%d" for c in names]
        np.savetxt(p, data, fmt=fmt, delimiter=",", header=",".join(names), comments="")
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
        times = np.vstack([getattr(self, c) for c in TIME_COLUMNS])
        for a in range(len(TIME_COLUMNS) - 1):
            x, y = times[a], times[a + 1]
            ok = np.isnan(y) | (y >= x - atol)
            if not np.all(ok):
                errors.append(f"{TIME_COLUMNS[a + 1]} < {TIME_COLUMNS[a]} for {int((~ok).sum())} task(s)")
        if np.any(np.isnan(times[:, done])):
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

    def summary(self) -> dict[str, Any]:
        """Plain statistics (no confidence intervals; see :mod:`aflqueue.sim.estimate`)."""
        up = self.updates()
        d = up["relative_delay"]
        per_client = np.bincount(up["client"], minlength=self.n_clients)
        return {
            "tasks": len(self), "updates": int(d.size), "concurrency": self.concurrency,
            "horizon": self.horizon, "throughput": d.size / self.horizon if self.horizon > 0 else float("nan"),
            "updates_per_client": per_client.tolist(),
            "mean_relative_delay": float(d.mean()) if d.size else float("nan"),
            "max_relative_delay": int(d.max()) if d.size else 0,
        }
