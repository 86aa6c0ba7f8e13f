"""Discrete-event simulation of the closed network: SimPy model, compiled fast path, traces,
and steady-state estimates with confidence intervals."""

from __future__ import annotations

from typing import Sequence

from ..errors import ValidationError, require
from ..system import System
from .estimate import Estimate, SimulationEstimates, delay_distribution, estimate, estimate_replications
from .trace import Trace, TraceError

__all__ = ["simulate", "simulate_replications", "ENGINES", "Trace", "TraceError", "Estimate",
           "SimulationEstimates", "estimate", "estimate_replications", "delay_distribution"]

ENGINES = ("auto", "simpy", "fast")


def simulate(system: System, updates: int, seed: int = 0, engine: str = "auto") -> Trace:
    """Simulate ``system`` until ``updates`` updates are applied and return the :class:`Trace`.

    ``engine``: ``"simpy"`` (any system), ``"fast"`` (compiled; single-stage systems without
    availability windows) or ``"auto"`` (fast when eligible). Both engines use the same random
    streams: for the same seed and a continuous service law they return the same trace.
    """
    require(isinstance(updates, int) and not isinstance(updates, bool) and updates >= 1, "updates",
            f"must be an integer >= 1 (got {updates!r})")
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed",
            f"must be an integer >= 0 (got {seed!r})")
    require(engine in ENGINES, "engine", f"must be one of {', '.join(ENGINES)} (got {engine!r})")
    from .fast import fast_path_eligible

    if engine == "fast" and not fast_path_eligible(system):
        raise ValidationError("engine", "the fast path needs a single-stage system without availability "
                                        "windows; use engine 'simpy' or 'auto'")
    if engine == "fast" or (engine == "auto" and fast_path_eligible(system)):
        from .fast import simulate_fast

        trace = simulate_fast(system, updates, seed)
    else:
        from .simpy_model import simulate_simpy

        trace = simulate_simpy(system, updates, seed)
    trace.meta["system"] = system.to_dict()
    return trace


def _replication(args: tuple) -> Trace:
    system, updates, seed, engine = args
    return simulate(system, updates, seed, engine)


def simulate_replications(system: System, updates: int, seeds: Sequence[int], engine: str = "auto",
                          backend: str = "serial", workers: int | None = None, address: str | None = None) -> list[Trace]:
    """Independent runs, one per seed (see :func:`simulate`), on a backend of
    :func:`aflqueue.parallel.pmap` (``serial``, ``process`` or ``ray``); identical traces whatever
    the backend."""
    from ..parallel import pmap

    return pmap(_replication, [(system, updates, int(s), engine) for s in seeds], backend=backend, workers=workers,
                address=address)
