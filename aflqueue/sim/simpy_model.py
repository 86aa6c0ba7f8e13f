"""SimPy model of Generalized AsyncSGD's closed network (any stages, laws, availability).

Each of the ``m`` task slots is one SimPy process that loops forever: dispatch a task to client
``J ~ p`` (with the current model version), pass the client's downlink, compute and uplink
stages, then the central server; when the task leaves the last station its update is applied
(version + 1) and the slot immediately dispatches the next task. FIFO stations are
``simpy.Resource(capacity=1)``; delay stations are plain timeouts. Availability stretches a
service over the client's off periods (preemptive resume, see ``availability.py``).

Random numbers come from :class:`~aflqueue.sim.streams.StreamBank`, shared with the fast path.
The processes append events to logs (:class:`_Logs`) that a
:class:`~aflqueue.sim.records.TaskRecorder` turns into the trace, in memory or streamed to a file.
"""

from __future__ import annotations

from array import array

import numpy as np
import simpy

from ..system import System
from .availability import OnOffSchedule
from .records import TaskRecorder
from .streams import StreamBank

__all__ = ["record_simpy"]


class _Logs:
    """The events of a run, appended as they happen and handed to a
    :class:`~aflqueue.sim.records.TaskRecorder` every :data:`LOG` updates.

    ``array.array``: appending is cheap in the hot loop and hands over to numpy without a copy.
    Dispatches come in task order, updates in version order; ``stamps[column]`` holds
    ``(tasks, times)`` of a time column; ``same[column]`` names a logged column it equals."""

    def __init__(self, recorder: TaskRecorder, columns: tuple[str, ...], same: dict[str, str] | None = None):
        self.recorder = recorder
        self.client, self.dispatch, self.version = array("i"), array("d"), array("i")
        self.stamps = {c: (array("q"), array("d")) for c in columns}
        self.same = same or {}
        self.applied_task, self.applied_time = array("q"), array("d")

    def _give(self) -> None:
        rec = self.recorder
        f64 = lambda xs: np.frombuffer(xs, dtype=np.float64)  # noqa: E731
        rec.dispatch(np.frombuffer(self.client, dtype=np.int32), f64(self.dispatch),
                     np.frombuffer(self.version, dtype=np.int32))
        for column, (tasks, times) in self.stamps.items():
            rec.stamp(column, np.frombuffer(tasks, dtype=np.int64), f64(times))
        for column, logged in self.same.items():
            tasks, times = self.stamps[logged]
            rec.stamp(column, np.frombuffer(tasks, dtype=np.int64), f64(times))
        rec.stamp("completion_time", np.frombuffer(self.applied_task, dtype=np.int64), f64(self.applied_time))
        rec.apply(np.frombuffer(self.applied_task, dtype=np.int64))

    def hand_over(self) -> None:
        self._give()  # its numpy views are gone once it returns: the arrays can shrink
        for xs in (self.client, self.dispatch, self.version, self.applied_task, self.applied_time,
                   *(x for pair in self.stamps.values() for x in pair)):
            del xs[:]  # in place: the hot loop holds bound ``append`` methods
        self.recorder.flush()


#: Updates between two hand-overs of the logs.
LOG = 2**16


def _is_single_stage(system: System) -> bool:
    return system.server is None and all(c.downlink is None and c.uplink is None and c.availability is None
                                         for c in system.clients)


def _single_stage_slot(env: simpy.Environment, system: System, bank: StreamBank, logs: _Logs, state: list[int],
                       U: int, done: simpy.Event):
    """The slot process when every client has only a compute stage (no server, no availability).

    Per-stage branches are dropped and dispatch/update inlined, because this loop runs once per
    simulated update; it records exactly what :func:`_general_slot` would (``uplink_end`` is the
    compute end, ``downlink_end`` the dispatch time)."""
    cp_res = [simpy.Resource(env, capacity=1) for _ in system.clients]
    samp_cp = [s["compute"] for s in bank.service]
    route = bank.routing
    timeout = env.timeout
    log_client, log_dispatch, log_version = logs.client.append, logs.dispatch.append, logs.version.append
    (start_task, start_time), (end_task, end_time) = (
        (t.append, x.append) for t, x in (logs.stamps[c] for c in ("compute_start", "compute_end")))
    applied_task, applied_time, applied = logs.applied_task.append, logs.applied_time.append, logs.applied_task

    def slot(env):
        while True:
            t = state[1]
            state[1] = t + 1
            j = route()
            log_client(j)
            log_dispatch(env.now)
            log_version(state[0])
            with cp_res[j].request() as req:
                yield req
                start_task(t)
                start_time(env.now)
                yield timeout(samp_cp[j]())
            now = env.now
            end_task(t)
            end_time(now)
            v = state[0]
            if v >= U:  # the last update happened at this same instant
                return
            v += 1
            state[0] = v
            applied_task(t)
            applied_time(now)
            if v == U:
                done.succeed()
            elif len(applied) >= LOG:
                logs.hand_over()

    return slot


def _update_applier(env: simpy.Environment, logs: _Logs, state: list[int], U: int, done: simpy.Event):
    """``apply_update(t)`` of :func:`_general_slot`: record the update made by task t at
    ``env.now``; False if the run already has its U updates."""

    def apply_update(t):
        """Record the update made by task t; False if the run already has its U updates."""
        v = state[0]
        if v >= U:  # another slot made the last update at this same instant
            return False
        v += 1
        state[0] = v
        logs.applied_task.append(t)
        logs.applied_time.append(env.now)
        if v == U:
            # the slot goes on to dispatch the replacement (m tasks stay in flight); the run
            # stops once the events of this instant are processed
            done.succeed()
        elif len(logs.applied_task) >= LOG:
            logs.hand_over()
        return True

    return apply_update


def _dispatcher(env: simpy.Environment, logs: _Logs, state: list[int], route):
    """``dispatch()`` of :func:`_general_slot`: the next task goes to a client drawn from
    ``route``, with the current version; returns ``(task, client)``."""

    def dispatch():
        t = state[1]
        state[1] = t + 1
        j = route()
        logs.client.append(j)
        logs.dispatch.append(env.now)  # also the downlink end until a downlink ends
        logs.version.append(state[0])
        return t, j

    return dispatch


def _general_slot(env: simpy.Environment, system: System, bank: StreamBank, logs: _Logs, state: list[int],
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

    stamps = {c: (t.append, x.append) for c, (t, x) in logs.stamps.items()}

    def stamp(column, t):
        log_task, log_time = stamps[column]
        log_task(t)
        log_time(env.now)

    apply_update = _update_applier(env, logs, state, U, done)
    dispatch = _dispatcher(env, logs, state, route)

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
                stamp("downlink_end", t)
            with cp_res[j].request() as req:
                yield req
                stamp("compute_start", t)
                yield hold(samp_cp[j], sch)
            stamp("compute_end", t)
            if has_ul[j]:
                yield from stage(ul_res[j], samp_ul[j], sch)
            stamp("uplink_end", t)
            if samp_cs is not None:
                yield from stage(cs_res, samp_cs, None)  # the server has no availability schedule
            if not apply_update(t):
                return

    return slot


def record_simpy(system: System, updates: int, seed: int, recorder: TaskRecorder, chunk: int | None = None) -> dict:
    """Run the SimPy model until ``updates`` updates are applied, reporting every event to
    ``recorder``; returns the run's metadata (engine, seed, random-stream chunk)."""
    env = simpy.Environment()
    bank = StreamBank(system, seed, chunk)
    m, U = system.concurrency, int(updates)
    single = _is_single_stage(system)
    logs = (_Logs(recorder, ("compute_start", "compute_end"), {"uplink_end": "compute_end"}) if single else
            _Logs(recorder, ("downlink_end", "compute_start", "compute_end", "uplink_end")))
    state = [0, 0]  # [version, tasks dispatched]
    done = env.event()
    slot = (_single_stage_slot if single else _general_slot)(env, system, bank, logs, state, U, done)
    for _ in range(m):
        env.process(slot(env))
    if U > 0:
        env.run(until=done)
        # let services that start at this same instant begin, as the fast path records them
        while env.peek() == env.now:
            env.step()
    logs.hand_over()
    return {"engine": "simpy", "seed": int(seed), "chunk": bank.chunk}
