"""Validation of a trace's columns, chunk by chunk in task order, in bounded memory.

What every trace file must satisfy before anything uses it (the rules below are the invariants of
the closed network with ``m`` tasks in flight that downstream code relies on; the full set,
FIFO service included, is :meth:`aflqueue.sim.trace.Trace.verify`):

* ``client`` in ``[0, n - 1]``;
* ``applied_version`` is -1 (not applied) or a version in ``[1, U]``, each version exactly once;
* ``dispatch_version`` is ``max(0, t - m + 1)`` for task ``t`` (the first ``m`` tasks are
  dispatched at version 0, each later one right after the update that frees its slot), and below
  ``applied_version`` for an applied task (relative delay >= 0); so ``m = T - U`` tasks are in
  flight at the end;
* times are finite and >= 0, or NaN for a stage not reached; ``dispatch_time`` is never NaN and is
  non-decreasing in task order; each stage ends no earlier than the one before it;
  ``completion_time`` is set exactly for the applied tasks and is non-decreasing in version order.

A violation raises :class:`~aflqueue.errors.ValidationError` with field ``trace.<column>`` and a
detail naming the file, the allowed range and the first offending task.
"""

from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from .records import VersionOrder
from .columns import TIME_COLUMNS

__all__ = ["TraceChecker"]


class TraceChecker:
    """Checks consecutive chunks of a trace (the rules of the module docstring).

    Args:
        source: how the trace is named in messages (e.g. the quoted file path).
        n_clients, concurrency, tasks: ``n``, ``m``, ``T`` (already range-checked by the caller).
        updates: ``U`` if declared (checked to equal the applied tasks), else ``T - m``.
        budget: bytes the version-order window may use (None: unbounded).
    """

    def __init__(self, source: str, n_clients: int, concurrency: int, tasks: int, updates: int | None,
                 budget: int | None = None):
        self.source = source
        self.n, self.m, self.T = int(n_clients), int(concurrency), int(tasks)
        self.declared = updates
        self.u_max = self.T - self.m
        if updates is not None and updates != self.u_max:
            raise ValidationError("trace.updates", f"{source}: must be tasks - concurrency = {self.u_max} (m tasks are "
                                                   f"in flight at the end; got {updates})")
        self.order = VersionOrder(1, self.u_max, {"time": np.float64}, field="trace.applied_version", source=source,
                                  budget=budget)
        self.next_task = 0
        self.last_dispatch = 0.0
        self.last_completion = -np.inf
        self.applied = 0

    def _fail(self, column: str, rule: str, values: np.ndarray, bad: np.ndarray, start: int) -> None:
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(f"trace.{column}", f"{self.source}: {rule} (got {values[i].item()!r} at task {start + i})")

    def check(self, start: int, cols: dict[str, np.ndarray]) -> None:
        """Check tasks ``start .. start + len - 1`` (chunks must come in order). A column given as
        the very array of another (an alias) is checked once."""
        if start != self.next_task:
            raise RuntimeError("trace checker: chunks out of order")
        c = cols["client"]
        k = c.size
        if start + k > self.T:
            raise ValidationError("trace", f"{self.source}: more than the {self.T} tasks declared")
        for name, a in cols.items():
            if a.shape != (k,):
                raise ValidationError(f"trace.{name}", f"{self.source}: must have one entry per task")
        t = np.arange(start, start + k, dtype=np.int64)
        n, m = self.n, self.m
        bad = (c < 0) | (c >= n)
        if bad.any():
            self._fail("client", f"must be a client index in [0, {n - 1}]", c, bad, start)
        av = cols["applied_version"]
        done = av >= 1
        bad = ~done & (av != -1) | (av > self.u_max)
        if bad.any():
            self._fail("applied_version", f"must be -1 (not applied) or a version in [1, {self.u_max}]", av, bad, start)
        dv = cols["dispatch_version"]
        bad = dv != np.maximum(t - m + 1, 0)
        if bad.any():
            self._fail("dispatch_version", f"must be max(0, task - m + 1) with m = {m}: the first m tasks are "
                                           "dispatched at version 0, each later one right after the update that "
                                           "frees its slot", dv, bad, start)
        bad = done & (dv >= av)
        if bad.any():
            self._fail("dispatch_version", "must be below applied_version (relative delay >= 0)", dv, bad, start)
        seen: set[int] = set()
        for name in TIME_COLUMNS:
            x = cols[name]
            if id(x) in seen:  # an alias of a column already checked
                continue
            seen.add(id(x))
            bad = np.isinf(x) | (x < 0)
            if bad.any():
                self._fail(name, "must be a finite time >= 0, or NaN for a stage not reached", x, bad, start)
        d = cols["dispatch_time"]
        bad = np.isnan(d)
        if bad.any():
            self._fail("dispatch_time", "must be set for every task (finite, >= 0)", d, bad, start)
        bad = d < np.concatenate(([self.last_dispatch], d[:-1]))
        if bad.any():
            self._fail("dispatch_time", "must be non-decreasing in task order (tasks are numbered as dispatched)",
                       d, bad, start)
        if k:
            self.last_dispatch = float(d[-1])
        for before, after in zip(TIME_COLUMNS[:-1], TIME_COLUMNS[1:]):
            y = cols[after]
            if y is cols[before]:
                continue
            bad = ~np.isnan(y) & ~(y >= cols[before])
            if bad.any():
                self._fail(after, f"must be >= {before} (the stages of a task are in order)", y, bad, start)
        ct = cols["completion_time"]
        bad = done == np.isnan(ct)
        if bad.any():
            self._fail("completion_time", "must be set exactly for the applied tasks (applied_version >= 1)", ct,
                       bad, start)
        self.order.put(av[done], time=ct[done])
        times = self.order.take()["time"]
        if times.size:
            if times[0] < self.last_completion or np.any(np.diff(times) < 0):
                raise ValidationError("trace.completion_time", f"{self.source}: must be non-decreasing in version "
                                                               "order (updates are numbered as applied)")
            self.last_completion = float(times[-1])
        self.applied += int(np.count_nonzero(done))
        self.next_task = start + k

    def finish(self) -> dict[str, float | int]:
        """Check the whole (after the last chunk); returns ``{"updates", "horizon"}``."""
        if self.next_task != self.T:
            raise ValidationError("trace", f"{self.source}: {self.next_task} tasks read, {self.T} declared")
        U = self.applied
        if self.order.next != U + 1 or self.order.count or U != self.u_max:
            raise ValidationError("trace.applied_version", f"{self.source}: the applied tasks must carry each version "
                                                           f"in [1, {self.u_max}] exactly once (found {U} applied "
                                                           "tasks)")
        return {"updates": U, "horizon": max(self.last_completion, 0.0)}
