"""Discrete-event simulation of the closed network: SimPy model, compiled fast path, traces
(in memory, or streamed to a file in bounded memory), and steady-state estimates with confidence
intervals; :func:`simulate_and_estimate` is one whole measurement (``aflqueue simulate``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .._results import Result
from ..errors import ValidationError, check_number, require
from ..io import atomic_write
from ..parallel import pmap
from ..system import System
from .columns import MAX_TASKS
from .estimate import Estimate, SimulationEstimates, delay_distribution, estimate, estimate_replications
from .trace import Trace, TraceError
from .tracefile import TraceFile

__all__ = ["simulate", "simulate_to_file", "simulate_replications", "ENGINES", "Trace", "TraceFile", "TraceError",
           "Estimate", "SimulationEstimates", "estimate", "estimate_replications", "delay_distribution",
           "SimulationRun", "simulate_and_estimate", "replication_seeds", "memory_needed_gb"]

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


# ----------------------------------------------------------------------------- one measurement
#: Memory per simulated update with the full trace kept (measured ~150 B; rounded up).
BYTES_PER_SIMULATED_UPDATE = 160
#: Memory per update of a trace held by the parent process while workers simulate (its columns).
BYTES_PER_COLLECTED_UPDATE = 72
#: Post-warm-up updates per batch below which batch means are too short to be trusted.
MIN_UPDATES_PER_BATCH = 50
#: Most runs one measurement takes (``aflqueue simulate --replications``).
MAX_REPLICATIONS = 100_000


@dataclass(frozen=True, eq=False, repr=False)
class SimulationRun(Result):
    """What :func:`simulate_and_estimate` measured: ``estimates`` (intervals within one run by batch
    means, or across replications), the ``seeds`` of the runs, the ``engine`` that ran them, the
    ``updates`` per run, the ``wall_time`` of the simulation in seconds (estimation excluded), and
    where the first run's trace was written (``trace``, None when it was not)."""

    estimates: SimulationEstimates
    seeds: list[int]
    engine: str
    updates: int
    wall_time: float
    trace: str | None = None

    @property
    def updates_per_second(self) -> float:
        """Simulated updates per wall-clock second, over every run."""
        return self.updates * len(self.seeds) / self.wall_time


def replication_seeds(seed: int, replications: int) -> list[int]:
    """The runs' seeds: ``seed`` itself for one run, else ``replications`` independent seeds
    spawned from it (:class:`numpy.random.SeedSequence`)."""
    if replications == 1:
        return [seed]
    return [int(x) for x in np.random.SeedSequence(seed).generate_state(replications, dtype=np.uint32)]


def memory_needed_gb(updates: int, replications: int, backend: str = "serial", workers: int = 1) -> float:
    """Memory the traces of a measurement need, in GB: every run's trace in one process, or, on a
    parallel backend, one trace per busy worker plus the columns each finished run sends back."""
    if backend == "serial":
        return updates * replications * BYTES_PER_SIMULATED_UPDATE / 2**30
    return (updates * min(replications, workers) * BYTES_PER_SIMULATED_UPDATE
            + updates * replications * BYTES_PER_COLLECTED_UPDATE) / 2**30


def _check_measurement(updates: int, replications: int, seed: int, warmup: float, batches: int, confidence: float,
                       max_memory_gb: float, trace: str | None) -> None:
    require(1 <= replications <= MAX_REPLICATIONS, "replications",
            f"must be an integer in [1, {MAX_REPLICATIONS}] (got {replications})")
    require(seed >= 0, "seed", f"must be an integer >= 0 (got {seed})")
    require(updates >= 1, "updates", f"must be an integer >= 1 (got {updates})")
    check_number(warmup, "warmup", 0.0)
    check_number(confidence, "confidence", 0.0, 1.0)
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    require(batches >= 2, "batches", f"must be an integer >= 2 (got {batches})")
    check_number(max_memory_gb, "max-memory", 0.0, lo_open=True)
    if trace is not None:
        require(Path(trace).suffix.lower() in (".npz", ".csv"), "trace",
                f"must end in .npz (trace) or .csv (export) (got {trace!r})")
        require(not Path(trace).is_dir(), "trace", f"{trace!r} is a folder; give a file name")
    warm = round(warmup * updates) if warmup < 1 else int(warmup)
    after = updates - warm
    per_run_batches = batches if replications == 1 else 2
    need = MIN_UPDATES_PER_BATCH * per_run_batches
    if after < need:
        raise ValidationError("updates", f"{updates} updates leave {max(after, 0)} after the warm-up, fewer than "
                                         f"{need} ({MIN_UPDATES_PER_BATCH} per batch x {per_run_batches} batches) for "
                                         f"a trustworthy interval; use --updates >= {need + warm}")


def simulate_and_estimate(system: System, updates: int, *, replications: int = 1, seed: int = 0,
                          engine: str = "auto", warmup: float = 0.1, batches: int = 20, confidence: float = 0.95,
                          trace: str | None = None, max_memory_gb: float = 4.0, backend: str = "serial",
                          workers: int | None = None, address: str | None = None) -> SimulationRun:
    """Simulate ``replications`` runs of ``updates`` updates each and estimate the steady state.

    ``warmup``: updates discarded, a fraction (< 1) or a count. One run: batch means over
    ``batches`` batches; several: the interval is across runs. Settings that leave fewer than
    :data:`MIN_UPDATES_PER_BATCH` updates per batch after the warm-up, or whose traces would need
    more than ``max_memory_gb`` GB, are refused (:class:`ValidationError`) before anything runs.
    ``trace``: write the first run's trace (``.npz``; ``.csv`` exports it); a single run to a
    ``.npz`` streams it to the file as it goes, in bounded memory, and is estimated from the file.
    """
    _check_measurement(updates, replications, seed, warmup, batches, confidence, max_memory_gb, trace)
    stream = trace is not None and trace.lower().endswith(".npz") and replications == 1
    mem = memory_needed_gb(updates, replications, backend, workers or os.cpu_count() or 1)
    require(stream or mem <= max_memory_gb, "updates",
            f"{updates:,} updates x {replications} run(s) need about {mem:.1f} GB of traces "
            f"(> --max-memory {max_memory_gb:g} GB); use fewer --updates or --replications, or raise --max-memory")
    seeds = replication_seeds(seed, replications)
    t0 = time.perf_counter()
    if stream:
        traces = [simulate_to_file(system, updates, trace, seed=seed, engine=engine, max_memory_gb=max_memory_gb)]
        out = traces[0].path
    else:
        traces = simulate_replications(system, updates, seeds, engine=engine, backend=backend, workers=workers,
                                       address=address)
    wall = time.perf_counter() - t0
    if trace and not stream:
        out = traces[0].save(trace) if not trace.lower().endswith(".csv") else traces[0].to_csv(trace)
    if len(traces) == 1:
        est = estimate(traces[0], warmup=warmup, batches=batches, confidence=confidence)
    else:
        est = estimate_replications(traces, warmup=warmup, confidence=confidence)
    return SimulationRun(est, seeds, traces[0].meta["engine"], updates, wall, None if trace is None else str(out))
