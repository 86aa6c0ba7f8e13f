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


def simulate_simpy(system: System, updates: int, seed: int = 0, chunk: int | None = None) -> Trace:
    """Run until ``updates`` updates are applied; return the full :class:`Trace`."""
    env = simpy.Environment()
    bank = StreamBank(system, seed, chunk)
    n, m, U = system.n, system.concurrency, int(updates)
    T = m + U
    nan = math.nan
    # array.array: cheap item assignment in the hot loop and zero-copy hand-over to numpy
    rec_client = array("q", [0]) * T
    rec_dispatch = array("d", [nan]) * T
    rec_dl = array("d", [nan]) * T
    rec_cs = array("d", [nan]) * T
    rec_ce = array("d", [nan]) * T
    rec_ul = array("d", [nan]) * T
    rec_done = array("d", [nan]) * T
    rec_dv = array("q", [0]) * T
    rec_av = array("q", [-1]) * T
    state = [0, 0]  # [version, tasks dispatched]
    done = env.event()

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
        rec_done[t] = env.now
        rec_av[t] = v
        if v == U:
            # the slot goes on to dispatch the replacement (m tasks stay in flight); the run
            # stops once the events of this instant are processed
            done.succeed()
        return True

    def dispatch():
        t = state[1]
        state[1] = t + 1
        j = route()
        rec_client[t] = j
        rec_dispatch[t] = rec_dl[t] = env.now
        rec_dv[t] = state[0]
        return t, j

    def stage(res, sampler, sch):
        """Pass one communication or server stage: FIFO (``res``) or delay (``res is None``)."""
        if res is None:
            yield hold(sampler, sch)
        else:
            with res.request() as req:
                yield req
                yield hold(sampler, sch)

    def slot_general(env):
        while True:
            t, j = dispatch()
            sch = sched[j]
            if has_dl[j]:
                yield from stage(dl_res[j], samp_dl[j], sch)
                rec_dl[t] = env.now
            with cp_res[j].request() as req:
                yield req
                rec_cs[t] = env.now
                yield hold(samp_cp[j], sch)
            rec_ce[t] = env.now
            if has_ul[j]:
                yield from stage(ul_res[j], samp_ul[j], sch)
            rec_ul[t] = env.now
            if samp_cs is not None:
                yield from stage(cs_res, samp_cs, None)  # the server has no availability schedule
            if not apply_update(t):
                return

    def slot_single(env):
        # The same model when no client has optional stages or availability and there is no
        # central server: per-stage branches are dropped and dispatch/update are inlined,
        # because this loop runs once per simulated update.
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

    single = system.server is None and not any(has_dl) and not any(has_ul) and all(x is None for x in sched)
    slot = slot_single if single else slot_general
    for _ in range(m):
        env.process(slot(env))
    if U > 0:
        env.run(until=done)
        # let services that start at this same instant begin, as the fast path records them
        while env.peek() == env.now:
            env.step()
    if single:  # stages without duration: fill the columns the hot loop skipped
        rec_dl = rec_dispatch
        rec_ul = rec_ce
        rec_done = array("d", np.where(np.frombuffer(rec_av, dtype=np.int64) >= 1,
                                       np.frombuffer(rec_ce, dtype=np.float64), np.nan).tobytes())
    f = lambda xs: np.frombuffer(xs, dtype=np.float64).copy()  # noqa: E731
    i = lambda xs: np.frombuffer(xs, dtype=np.int64).copy()  # noqa: E731
    return Trace(
        client=i(rec_client), dispatch_time=f(rec_dispatch), downlink_end=f(rec_dl),
        compute_start=f(rec_cs), compute_end=f(rec_ce), uplink_end=f(rec_ul), completion_time=f(rec_done),
        dispatch_version=i(rec_dv), applied_version=i(rec_av),
        n_clients=n, concurrency=m, routing=system.routing, meta={"engine": "simpy", "seed": int(seed), "chunk": bank.chunk},
    )
