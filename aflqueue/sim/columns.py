"""The columns of a trace: names, dtypes, aliases and sizes, shared by the trace, its recorder and
its file format (:mod:`aflqueue.sim.trace`, :mod:`aflqueue.sim.records`, :mod:`aflqueue.sim.tracefile`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["TIME_COLUMNS", "INT_COLUMNS", "COLUMNS", "COLUMN_DTYPES", "ALIASES", "CHUNK", "MAX_TASKS", "UPDATES_COLUMNS",
           "check_routing"]

TIME_COLUMNS = ("dispatch_time", "downlink_end", "compute_start", "compute_end", "uplink_end", "completion_time")

INT_COLUMNS = ("client", "dispatch_version", "applied_version")

#: All columns, in the order of the file format and of :meth:`Trace.chunks`.
COLUMNS = INT_COLUMNS + TIME_COLUMNS

#: dtype of each column in a simulated or loaded trace (and in trace files of format 2).
COLUMN_DTYPES = {**{c: np.dtype(np.int32) for c in INT_COLUMNS}, **{c: np.dtype(np.float64) for c in TIME_COLUMNS}}

#: A column that often equals an earlier one, bit for bit: it is then stored (and kept) once.
ALIASES = {"downlink_end": "dispatch_time", "uplink_end": "compute_end", "completion_time": "uplink_end"}

#: Tasks per chunk when a trace is streamed (written, read, estimated): 2 MiB per float64 column.
CHUNK = 2**18

#: Most tasks in one trace: task ids and versions are int32.
MAX_TASKS = 2**31 - 2

#: The columns of a training run's per-arrival log (``TrainResult.log``) and of its ``updates.csv``
#: (its header line, in this order), written by the trainer and read by :mod:`aflqueue.runs`.
UPDATES_COLUMNS = ("arrival", "time", "client", "relative_delay", "staleness", "model_version")


def check_routing(routing: Any, n_clients: int, field: str = "trace.routing") -> np.ndarray:
    """``routing`` as a read-only float64 array of ``n_clients`` probabilities summing to 1 (within
    1e-6), else :class:`ValidationError` naming ``field``."""
    p = np.array(routing, dtype=np.float64).ravel()
    if p.size != n_clients or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
        raise ValidationError(field, f"must be {n_clients} probabilities summing to 1")
    p.setflags(write=False)
    return p
