"""Discrete-event simulation of the closed network: SimPy model, compiled fast path, traces
(in memory, or streamed to a file in bounded memory), and steady-state estimates with confidence
intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import ValidationError, require
from ..io import atomic_write
from ..parallel import pmap
from ..system import System
from .columns import MAX_TASKS
from .estimate import Estimate, SimulationEstimates, delay_distribution, estimate, estimate_replications
from .trace import Trace, TraceError
from .tracefile import TraceFile

__all__ = ["simulate", "simulate_to_file", "simulate_replications", "ENGINES", "Trace", "TraceFile", "TraceError",
           "Estimate", "SimulationEstimates", "estimate", "estimate_replications", "delay_distribution"]

ENGINES = ("auto", "simpy", "fast")


def _engine(system: System, updates: int, seed: int, engine: str) -> tuple[str, Callable]:
    """Check the arguments of a run; return the engine's name and its recording function."""
    require(isinstance(updates, int) and not isinstance(updates, bool) and 1 <= updates <= MAX_TASKS - system.concurrency,
            "updates", f"must be an integer in [1, {MAX_TASKS - system.concurrency}] (got {updates!r})")
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed",
            f"must be an integer >= 0 (got {seed!r})")
    require(engine in ENGINES, "engine", f"must be one of {', '.join(ENGINES)} (got {engine!r})")
    from .fast import fast_path_eligible  # lazy: numba

    if engine == "fast" and not fast_path_eligible(system):
        raise ValidationError("engine", "the fast path needs a single-stage system without availability "
                                        "windows; use engine 'simpy' or 'auto'")
    if engine == "fast" or (engine == "auto" and fast_path_eligible(system)):
        from .fast import record_fast  # lazy: numba

        return "fast", record_fast
    from .simpy_model import record_simpy  # lazy: numba

    return "simpy", record_simpy


def simulate(system: System, updates: int, seed: int = 0, engine: str = "auto") -> Trace:
    """Simulate ``system`` until ``updates`` updates are applied and return the :class:`Trace`
    (in memory: 36 bytes per update for a single-stage system, at most 60; see
    :mod:`aflqueue.sim.trace`). :func:`simulate_to_file` streams the same trace to disk instead.

    ``engine``: ``"simpy"`` (any system), ``"fast"`` (compiled; single-stage systems without
    availability windows) or ``"auto"`` (fast when eligible). Both engines use the same random
    streams: for the same seed and a continuous service law they return the same trace.
    """
    from .records import record_in_memory  # lazy: numba

    _, record = _engine(system, updates, seed, engine)
    return record_in_memory(Trace, system.concurrency + updates, system.n, system.concurrency, system.routing,
                            lambda recorder: {**record(system, updates, seed, recorder), "system": system.to_dict()})


def simulate_to_file(system: System, updates: int, path: str | Path, seed: int = 0, engine: str = "auto",
                     max_memory_gb: float | None = None) -> TraceFile:
    """:func:`simulate`, with the trace streamed to ``path`` (``.npz``, format 2 of
    :mod:`aflqueue.sim.tracefile`) chunk by chunk as the run goes, instead of kept in memory: the
    run holds the tasks from the oldest one in flight to the newest, not the whole trace. The
    file is written atomically (nothing at ``path`` until the run is complete) and holds the
    same trace, bit for bit, as :func:`simulate` returns for the same arguments. Returns the
    file opened (:class:`TraceFile`, ``max_memory_gb`` for reading it), which
    :func:`aflqueue.sim.estimate` reads chunk by chunk."""
    from .records import TaskRecorder  # lazy: numba
    from .tracefile import TraceWriter, header_text  # lazy: numba

    p = Path(path)
    require(p.suffix == ".npz", "trace", f"trace files are .npz (got {str(p)!r})")
    require(not p.is_dir(), "trace", f"{str(p)!r} is a folder; give a file name")
    _, record = _engine(system, updates, seed, engine)
    T = system.concurrency + updates
    system_dict = system.to_dict()
    header_text({"meta": {"system": system_dict}})  # a system too large for the header fails now, not after the run

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f, TraceWriter(f, n_clients=system.n, concurrency=system.concurrency, tasks=T,
                                               updates=updates, routing=system.routing,
                                               source=f"the trace being written to {str(p)!r}") as writer:
            recorder = TaskRecorder(T, writer)
            meta = record(system, updates, seed, recorder)
            recorder.close()
            writer.close({**meta, "system": system_dict})

    atomic_write(p, write)
    return TraceFile.open(p, max_memory_gb=max_memory_gb)


def _replication(args: tuple) -> Trace:
    system, updates, seed, engine = args
    return simulate(system, updates, seed, engine)


def simulate_replications(system: System, updates: int, seeds: Sequence[int], engine: str = "auto",
                          backend: str = "serial", workers: int | None = None, address: str | None = None) -> list[Trace]:
    """Independent runs, one per seed (see :func:`simulate`), on a backend of
    :func:`aflqueue.parallel.pmap` (``serial``, ``process`` or ``ray``); identical traces whatever
    the backend."""

    return pmap(_replication, [(system, updates, int(s), engine) for s in seeds], backend=backend, workers=workers,
                address=address)
