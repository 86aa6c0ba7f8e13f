"""SimPy model of Generalized AsyncSGD's closed network (any stages, laws, availability).

Each of the ``m`` task slots is one SimPy process that loops forever: dispatch a task to client
``J ~ p`` (with the current model version), pass the client's downlink, compute and uplink
stages, then the central server; when the task leaves the last station its update is applied
(version + 1) and the slot immediately dispatches the next task. FIFO stations are
``simpy.Resource(capacity=1)``; delay stations are plain timeouts. Availability stretches a
service over the client's off periods (preemptive resume, see ``availability.py``).

Random numbers come from :class:`~aflqueue.sim.streams.StreamBank`, shared with the fast path.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import simpy

from ..system import System
from .availability import OnOffSchedule
from .streams import StreamBank
from .trace import Trace

__all__ = ["simulate_simpy"]


class _Records:
    """Per-task columns of the trace, filled while the simulation runs.

    ``array.array``: cheap item assignment in the hot loop and zero-copy hand-over to numpy."""

    def __init__(self, T: int):
        nan = math.nan
        self.client = array("q", [0]) * T
        self.dispatch = array("d", [nan]) * T
        self.downlink_end = array("d", [nan]) * T
        self.compute_start = array("d", [nan]) * T
        self.compute_end = array("d", [nan]) * T
        self.uplink_end = array("d", [nan]) * T
        self.done = array("d", [nan]) * T
        self.dispatch_version = array("q", [0]) * T
        self.applied_version = array("q", [-1]) * T

    def fill_zero_length_stages(self) -> None:
        """Single-stage runs skip the columns of stages without duration: fill them afterwards."""
        self.downlink_end = self.dispatch
        self.uplink_end = self.compute_end
        applied = np.frombuffer(self.applied_version, dtype=np.int64) >= 1
        self.done = array("d", np.where(applied, np.frombuffer(self.compute_end, dtype=np.float64), np.nan).tobytes())

    def to_trace(self, system: System, seed: int, chunk: int) -> Trace:
        f = lambda xs: np.frombuffer(xs, dtype=np.float64).copy()  # noqa: E731
        i = lambda xs: np.frombuffer(xs, dtype=np.int64).copy()  # noqa: E731
        return Trace(
            client=i(self.client), dispatch_time=f(self.dispatch), downlink_end=f(self.downlink_end),
            compute_start=f(self.compute_start), compute_end=f(self.compute_end), uplink_end=f(self.uplink_end),
            completion_time=f(self.done), dispatch_version=i(self.dispatch_version),
            applied_version=i(self.applied_version), n_clients=system.n, concurrency=system.concurrency,
            routing=system.routing, meta={"engine": "simpy", "seed": int(seed), "chunk": chunk},
        )


def _is_single_stage(system: System) -> bool:
    return system.server is None and all(c.downlink is None and c.uplink is None and c.availability is None
                                         for c in system.clients)


def _single_stage_slot(env: simpy.Environment, system: System, bank: StreamBank, rec: _Records, state: list[int],
                       U: int, done: simpy.Event):
    """The slot process when every client has only a compute stage (no server, no availability).

    Per-stage branches are dropped and dispatch/update inlined, because this loop runs once per
    simulated update; it records exactly what :func:`_general_slot` would."""
    cp_res = [simpy.Resource(env, capacity=1) for _ in system.clients]
    samp_cp = [s["compute"] for s in bank.service]
    route = bank.routing
    timeout = env.timeout
    rec_client, rec_dispatch, rec_dv = rec.client, rec.dispatch, rec.dispatch_version
    rec_cs, rec_ce, rec_av = rec.compute_start, rec.compute_end, rec.applied_version

    def slot(env):
        while True:
            t = state[1]
            state[1] = t + 1
            j = route()
            rec_client[t] = j
            rec_dispatch[t] = env.now  # downlink_end, uplink_end, completion_time: filled after the run
            rec_dv[t] = state[0]
            with cp_res[j].request() as req:
                yield req
                rec_cs[t] = env.now
                yield timeout(samp_cp[j]())
            rec_ce[t] = env.now
            v = state[0]
            if v >= U:  # the last update happened at this same instant
                return
            v += 1
            state[0] = v
            rec_av[t] = v
            if v == U:
                done.succeed()

    return slot


def _general_slot(env: simpy.Environment, system: System, bank: StreamBank, rec: _Records, state: list[int],
                  U: int, done: simpy.Event):
    """The slot process for any system: downlink, compute, uplink, central server, availability."""

    def resource(stage):
        return None if stage is None or stage.discipline == "delay" else simpy.Resource(env, capacity=1)

    dl_res = [resource(c.downlink) for c in system.clients]
    cp_res = [simpy.Resource(env, capacity=1) for _ in system.clients]
    ul_res = [resource(c.uplink) for c in system.clients]
    cs_res = resource(system.server)
    has_dl = [c.downlink is not None for c in system.clients]
    has_ul = [c.uplink is not None for c in system.clients]
    sched = [None if c.availability is None else OnOffSchedule(c.availability, bank.availability_rng(i))
             for i, c in enumerate(system.clients)]
    samp_dl = [s["downlink"] for s in bank.service]
    samp_cp = [s["compute"] for s in bank.service]
    samp_ul = [s["uplink"] for s in bank.service]
    samp_cs = bank.server
    route = bank.routing
    timeout = env.timeout

    def hold(sampler, sch):
        """Timeout for one service, stretched over off periods if the client has a schedule."""
        s = sampler()
        if sch is None:
            return timeout(s)
        now = env.now
        return timeout(sch.advance(now, s) - now)

    def apply_update(t):
        """Record the update made by task t; False if the run already has its U updates."""
        v = state[0]
        if v >= U:  # another slot made the last update at this same instant
            return False
        v += 1
        state[0] = v
        rec.done[t] = env.now
        rec.applied_version[t] = v
        if v == U:
            # the slot goes on to dispatch the replacement (m tasks stay in flight); the run
            # stops once the events of this instant are processed
            done.succeed()
        return True

    def dispatch():
        t = state[1]
        state[1] = t + 1
        j = route()
        rec.client[t] = j
        rec.dispatch[t] = rec.downlink_end[t] = env.now
        rec.dispatch_version[t] = state[0]
        return t, j

    def stage(res, sampler, sch):
        """Pass one communication or server stage: FIFO (``res``) or delay (``res is None``)."""
        if res is None:
            yield hold(sampler, sch)
        else:
            with res.request() as req:
                yield req
                yield hold(sampler, sch)

    def slot(env):
        while True:
            t, j = dispatch()
            sch = sched[j]
            if has_dl[j]:
                yield from stage(dl_res[j], samp_dl[j], sch)
                rec.downlink_end[t] = env.now
            with cp_res[j].request() as req:
                yield req
                rec.compute_start[t] = env.now
                yield hold(samp_cp[j], sch)
            rec.compute_end[t] = env.now
            if has_ul[j]:
                yield from stage(ul_res[j], samp_ul[j], sch)
            rec.uplink_end[t] = env.now
            if samp_cs is not None:
                yield from stage(cs_res, samp_cs, None)  # the server has no availability schedule
            if not apply_update(t):
                return

    return slot


def simulate_simpy(system: System, updates: int, seed: int = 0, chunk: int | None = None) -> Trace:
    """Run until ``updates`` updates are applied; return the full :class:`Trace`."""
    env = simpy.Environment()
    bank = StreamBank(system, seed, chunk)
    m, U = system.concurrency, int(updates)
    rec = _Records(m + U)
    state = [0, 0]  # [version, tasks dispatched]
    done = env.event()
    single = _is_single_stage(system)
    slot = (_single_stage_slot if single else _general_slot)(env, system, bank, rec, state, U, done)
    for _ in range(m):
        env.process(slot(env))
    if U > 0:
        env.run(until=done)
        # let services that start at this same instant begin, as the fast path records them
        while env.peek() == env.now:
            env.step()
    if single:
        rec.fill_zero_length_stages()
    return rec.to_trace(system, seed, bank.chunk)
