"""Compiled fast path: single-stage network, i.i.d. service laws, no availability windows.

The event loop runs in numba: a binary heap over clients keyed by (finish time, sequence
number) gives the next completion in ``O(log n)``; each client's FIFO queue is a linked list of
the ``m`` task slots. The kernel keeps no per-task array: it logs events (dispatches, service
starts, completions) and returns to Python every :data:`LOG` of them, and a
:class:`~aflqueue.sim.records.TaskRecorder` turns the logs into the trace, in memory or streamed
to a file, so the run's own memory is ``O(n + m)``. Random numbers come from the same
:class:`~aflqueue.sim.streams.StreamBank` chunks as the SimPy model, in the same order (k-th
service start at client i takes the k-th draw of its stream, t-th dispatch the t-th routing
draw), so for continuous laws both engines produce the same trace. When a buffer runs dry (or
the logs are full) the kernel returns to Python, which refills (or empties) it and resumes; no
state is changed by an event that cannot complete.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..system import System
from .records import TaskRecorder
from .streams import StreamBank

__all__ = ["record_fast", "fast_path_eligible"]


def fast_path_eligible(system: System) -> bool:
    """True if the system has only compute stages and no availability schedules."""
    return (system.server is None and all(c.downlink is None and c.uplink is None and c.availability is None
                                          for c in system.clients))


@njit(cache=True, inline="always")
def _less(t1, s1, t2, s2):  # pragma: no cover - compiled
    return t1 < t2 or (t1 == t2 and s1 < s2)


@njit(cache=True)
def _heap_push(ht, hs, hc, size, t, s, c):  # pragma: no cover - compiled
    k = size
    while k > 0:
        parent = (k - 1) >> 1
        if _less(t, s, ht[parent], hs[parent]):
            ht[k], hs[k], hc[k] = ht[parent], hs[parent], hc[parent]
            k = parent
        else:
            break
    ht[k], hs[k], hc[k] = t, s, c
    return size + 1


@njit(cache=True)
def _heap_pop(ht, hs, hc, size):  # pragma: no cover - compiled
    size -= 1
    t, s, c = ht[size], hs[size], hc[size]
    k = 0
    while True:
        child = 2 * k + 1
        if child >= size:
            break
        if child + 1 < size and _less(ht[child + 1], hs[child + 1], ht[child], hs[child]):
            child += 1
        if _less(ht[child], hs[child], t, s):
            ht[k], hs[k], hc[k] = ht[child], hs[child], hc[child]
            k = child
        else:
            break
    if size > 0:
        ht[k], hs[k], hc[k] = t, s, c
    return size


@njit(cache=True, inline="always")
def _start_service(s, j, now, slot_task, svc_buf, svc_pos, s_task, s_time, lp, ht, hs, hc, hsize, seq):  # pragma: no cover
    """The task in slot s starts service at client j at ``now``: the client's next service-time
    draw, and its completion enters the heap (ties broken by the sequence number)."""
    x = svc_buf[j, svc_pos[j]]
    svc_pos[j] += 1
    s_task[lp[1]] = slot_task[s]
    s_time[lp[1]] = now
    lp[1] += 1
    return _heap_push(ht, hs, hc, hsize, now + x, seq, j), seq + 1


@njit(cache=True, inline="always")
def _dispatch(s, t, j, now, version, head, tail, slot_task, slot_next, svc_buf, svc_pos, d_client, d_time,
              d_version, s_task, s_time, lp, ht, hs, hc, hsize, seq):  # pragma: no cover - compiled
    """Task t, in slot s, goes to client j at ``now``: it starts service at once if j is idle, else queues."""
    slot_task[s] = t
    slot_next[s] = -1
    d_client[lp[0]] = j
    d_time[lp[0]] = now
    d_version[lp[0]] = version
    lp[0] += 1
    if head[j] < 0:
        head[j] = s
        tail[j] = s
        hsize, seq = _start_service(s, j, now, slot_task, svc_buf, svc_pos, s_task, s_time, lp, ht, hs, hc, hsize,
                                    seq)
    else:
        slot_next[tail[j]] = s
        tail[j] = s
    return hsize, seq


@njit(cache=True, inline="always")
def _complete(s, nxt, i, now, head, tail, slot_task, svc_buf, svc_pos, s_task, s_time, c_task, c_time, lp, ht, hs, hc,
              hsize, seq):  # pragma: no cover - compiled
    """Client i's task in slot s completes at ``now`` (its update applied): the completion is
    logged and the task in slot ``nxt`` (-1: none, the client goes idle) starts service."""
    c_task[lp[2]] = slot_task[s]
    c_time[lp[2]] = now
    lp[2] += 1
    head[i] = nxt
    if nxt >= 0:
        return _start_service(nxt, i, now, slot_task, svc_buf, svc_pos, s_task, s_time, lp, ht, hs, hc, hsize, seq)
    tail[i] = -1
    return hsize, seq


@njit(cache=True)
def _run(st, ht, hs, hc, head, tail, slot_task, slot_next, route_buf, svc_buf, svc_pos,
         d_client, d_time, d_version, s_task, s_time, c_task, c_time, lp, m, U):  # pragma: no cover - compiled
    """Advance the simulation. ``st`` = [now, version, tasks, hsize, seq, route_pos, need] (float64);
    ``lp`` = [dispatch, start, completion] log positions.

    The ``m`` tasks in flight live in slots (the task that replaces an applied one takes its slot);
    each client's FIFO queue is a linked list of slots. Events are logged: dispatches (client,
    time, version) in task order, service starts (task, time), completions (task, time) in
    version order. Returns 0 when done, 1 when the routing buffer needs a refill, 2 when the
    service buffer of client ``int(st[6])`` needs a refill, 3 when the logs need emptying.
    """
    chunk_r = route_buf.size
    chunk_s = svc_buf.shape[1]
    cap = d_client.size
    now = st[0]
    version = np.int64(st[1])
    tasks = np.int64(st[2])
    hsize = np.int64(st[3])
    seq = np.int64(st[4])
    rpos = np.int64(st[5])
    code = 0
    while True:
        if version >= U and tasks >= m + U:
            code = 0
            break
        if rpos >= chunk_r:
            code = 1
            break
        if lp[0] >= cap or lp[1] + 2 > cap or lp[2] >= cap:
            code = 3
            break
        j = route_buf[rpos]
        if tasks < m:
            # initial dispatch at time 0: J starts service at once if idle
            if head[j] < 0 and svc_pos[j] >= chunk_s:
                st[6] = j
                code = 2
                break
            hsize, seq = _dispatch(tasks, tasks, j, 0.0, 0, head, tail, slot_task, slot_next, svc_buf, svc_pos, d_client,
                                   d_time, d_version, s_task, s_time, lp, ht, hs, hc, hsize, seq)
            rpos += 1
            tasks += 1
            continue
        # next completion: client i at the top of the heap
        i = hc[0]
        s_done = head[i]
        nxt_i = slot_next[s_done]
        # Draws this event needs (at most one per client): client i draws if its next task
        # starts (nxt_i >= 0) or if the new task goes to i itself; client j != i draws if idle.
        # A buffer is refilled only when fully consumed, so no draw is ever skipped.
        if (nxt_i >= 0 or j == i) and svc_pos[i] >= chunk_s:
            st[6] = i
            code = 2
            break
        if j != i and head[j] < 0 and svc_pos[j] >= chunk_s:
            st[6] = j
            code = 2
            break
        now = ht[0]
        hsize = _heap_pop(ht, hs, hc, hsize)
        # apply the update; client i starts its next task
        version += 1
        hsize, seq = _complete(s_done, nxt_i, i, now, head, tail, slot_task, svc_buf, svc_pos, s_task, s_time, c_task,
                               c_time, lp, ht, hs, hc, hsize, seq)
        # dispatch the replacement task to j, in the freed slot
        hsize, seq = _dispatch(s_done, tasks, j, now, version, head, tail, slot_task, slot_next, svc_buf, svc_pos,
                               d_client, d_time, d_version, s_task, s_time, lp, ht, hs, hc, hsize, seq)
        rpos += 1
        tasks += 1
    st[0] = now
    st[1] = version
    st[2] = tasks
    st[3] = hsize
    st[4] = seq
    st[5] = rpos
    return code


#: Events logged by the kernel between two hand-overs to the recorder.
LOG = 2**16


def record_fast(system: System, updates: int, seed: int, recorder: TaskRecorder, chunk: int | None = None) -> dict:
    """Run the compiled event loop, reporting every event to ``recorder``; returns the run's
    metadata (engine, seed, random-stream chunk). Only for :func:`fast_path_eligible` systems."""
    if not fast_path_eligible(system):
        raise ValueError("engine: the fast path needs a single-stage system without availability windows")
    bank = StreamBank(system, seed, chunk)
    n, m, U = system.n, system.concurrency, int(updates)
    ch = bank.chunk
    ht, hs, hc = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    head = np.full(n, -1, dtype=np.int64)
    tail = np.full(n, -1, dtype=np.int64)
    slot_task = np.full(m, -1, dtype=np.int64)
    slot_next = np.full(m, -1, dtype=np.int64)
    svc_buf = np.zeros((n, ch))
    svc_pos = np.full(n, ch, dtype=np.int64)  # empty: refilled on first need
    samplers = [bank.service[i]["compute"] for i in range(n)]
    route_buf = np.zeros(ch, dtype=np.int64)
    d_client, d_time, d_version = np.zeros(LOG, np.int32), np.zeros(LOG), np.zeros(LOG, np.int32)
    s_task, s_time = np.zeros(LOG, np.int64), np.zeros(LOG)
    c_task, c_time = np.zeros(LOG, np.int64), np.zeros(LOG)
    lp = np.zeros(3, dtype=np.int64)
    st = np.array([0.0, 0.0, 0.0, 0.0, 0.0, float(ch), -1.0])
    while True:
        code = _run(st, ht, hs, hc, head, tail, slot_task, slot_next, route_buf, svc_buf, svc_pos, d_client, d_time,
                    d_version, s_task, s_time, c_task, c_time, lp, m, U)
        if code == 0 or code == 3:
            nd, ns, nc = (int(x) for x in lp)
            recorder.dispatch(d_client[:nd], d_time[:nd], d_version[:nd])
            recorder.stamp("compute_start", s_task[:ns], s_time[:ns])
            done, at = c_task[:nc], c_time[:nc]
            for column in ("compute_end", "uplink_end", "completion_time"):  # one stage: all at once
                recorder.stamp(column, done, at)
            recorder.apply(done)
            lp[:] = 0
            recorder.flush()
            if code == 0:
                break
        elif code == 1:
            route_buf[:] = bank.routing.next_chunk()
            st[5] = 0.0
        else:
            i = int(st[6])
            svc_buf[i] = samplers[i].next_chunk()
            svc_pos[i] = 0
    return {"engine": "fast", "seed": int(seed), "chunk": ch}
