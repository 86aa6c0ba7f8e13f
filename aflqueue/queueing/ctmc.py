"""Brute-force reference solutions for small networks (independent of the product form).

* :func:`stationary` enumerates every state ``x`` (tasks per station, ``sum x = m``), builds the
  CTMC generator from the service rates and routing, and solves ``pi Q = 0``.
* :func:`relative_delay_distribution` follows one *tagged* task from its dispatch to its update
  in a CTMC that also tracks its FIFO position, started from the Palm distribution at update
  epochs (derived from the brute-force ``pi``, not from the arrival theorem). It gives the exact
  law of the relative delay ``D`` per client.

Exponential service is assumed (that is what the CTMC is). State spaces grow like
``C(m + S - 1, S - 1)``; a guard refuses more than ``max_states`` states.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..system import System
from .network import SERVER, Network, network_of

__all__ = ["CTMCSolution", "stationary", "relative_delay_distribution", "enumerate_states"]


def enumerate_states(S: int, m: int) -> np.ndarray:
    """All ``x in N^S`` with ``sum x = m``, shape ``(C(m+S-1, S-1), S)`` (stars and bars)."""
    rows = []
    for bars in itertools.combinations(range(m + S - 1), S - 1):
        prev = -1
        x = []
        for b in bars:
            x.append(b - prev - 1)
            prev = b
        x.append(m + S - 1 - prev - 1)
        rows.append(x)
    return np.asarray(rows, dtype=np.int64).reshape(-1, S)


@dataclass(frozen=True, eq=False)
class _Routing:
    net: Network
    next_station: list[list[tuple[int, float]]]  # successors of each station with probabilities
    is_update: np.ndarray  # completing at this station applies an update


def _routing(system: System) -> _Routing:
    net = network_of(system)
    p = system.routing
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for s in range(net.size):
        i = int(net.owner[s])
        if i == SERVER:
            continue
        first.setdefault(i, s)
        last[i] = s
    dispatch = [(first[i], float(p[i])) for i in sorted(first)]
    cs = net.server_index
    nxt: list[list[tuple[int, float]]] = []
    is_update = np.zeros(net.size, dtype=bool)
    for s in range(net.size):
        i = int(net.owner[s])
        if i == SERVER:
            nxt.append(dispatch)
            is_update[s] = True
        elif s != last[i]:
            nxt.append([(s + 1, 1.0)])
        elif cs is not None:
            nxt.append([(cs, 1.0)])
        else:
            nxt.append(dispatch)
            is_update[s] = True
    return _Routing(net, nxt, is_update)


def _rate(net: Network, s: int, count: int) -> float:
    if count <= 0:
        return 0.0
    return float(net.rates[s]) * (count if net.is_delay[s] else 1.0)


def _solve_stationary(Q: sp.csr_matrix) -> np.ndarray:
    N = Q.shape[0]
    A = sp.lil_matrix(Q.T)
    A[0, :] = 1.0  # replace one balance equation by normalisation
    b = np.zeros(N)
    b[0] = 1.0
    pi = spla.spsolve(A.tocsc(), b) if N > 1 else np.ones(1)
    return np.asarray(pi)


@dataclass(frozen=True, eq=False)
class CTMCSolution:
    """Brute-force stationary solution.

    Attributes:
        states: shape ``(N, S)``; pi: shape ``(N,)``; network: the stations.
        throughput: update events per time unit.
        queue_lengths: ``E[X_s]``, shape ``(S,)``.
    """

    states: np.ndarray
    pi: np.ndarray
    network: Network
    throughput: float
    queue_lengths: np.ndarray

    def tail(self, station: int, k: int) -> float:
        """``P(X_station >= k)``."""
        return float(self.pi[self.states[:, station] >= k].sum())


def stationary(system: System, max_states: int = 200_000) -> CTMCSolution:
    """Stationary distribution of the network's CTMC by enumeration and a sparse linear solve."""
    r = _routing(system)
    net = r.net
    S, m = net.size, system.concurrency
    states = enumerate_states(S, m)
    N = states.shape[0]
    if N > max_states:
        raise ValueError(f"state space too large for brute force ({N} > max_states={max_states})")
    index = {tuple(x): j for j, x in enumerate(states)}
    rows, cols, vals = [], [], []
    upd_rate = np.zeros(N)
    for j, x in enumerate(states):
        for s in range(S):
            rate = _rate(net, s, x[s])
            if rate == 0:
                continue
            if r.is_update[s]:
                upd_rate[j] += rate
            for t, prob in r.next_station[s]:
                y = x.copy()
                y[s] -= 1
                y[t] += 1
                k = index[tuple(y)]
                if k != j:
                    rows.append(j)
                    cols.append(k)
                    vals.append(rate * prob)
    Q = sp.csr_matrix((vals, (rows, cols)), shape=(N, N))
    Q = Q - sp.diags(np.asarray(Q.sum(axis=1)).ravel())
    pi = _solve_stationary(Q.tocsr())
    return CTMCSolution(states, pi, net, float(pi @ upd_rate), pi @ states)


def relative_delay_distribution(system: System, max_delay: int = 200, max_states: int = 200_000) -> np.ndarray:
    """Exact ``P(D = d | task sent to client i)``, shape ``(n, max_delay + 1)`` (NaN rows for p_i = 0).

    ``D`` counts the updates applied between a task's dispatch and its own update.
    """
    r = _routing(system)
    net = r.net
    S, m = net.size, system.concurrency
    sol = stationary(system, max_states)
    p = system.routing
    n = system.n
    out = np.full((n, max_delay + 1), np.nan)
    if m == 1:
        for i in range(n):
            if p[i] > 0:
                out[i] = 0.0
                out[i, 0] = 1.0
        return out
    tstates = _tagged_states(net, S, m)
    if len(tstates) > max_states:
        raise ValueError(f"tagged state space too large ({len(tstates)} > {max_states})")
    tindex = {st: j for j, st in enumerate(tstates)}
    T = len(tstates)
    B, U, absorb = _tagged_jump_chain(r, tstates, tindex)
    lu = spla.splu(sp.identity(T, format="csc") - B.tocsc())
    for i in range(n):
        if p[i] <= 0:
            continue
        u = _palm_start(sol, r, i, tindex, T)
        # P(D = d) = u (I - B)^-1 [U (I - B)^-1]^d a  (row-vector form: solve transposed systems)
        v = lu.solve(u, trans="T")
        for d in range(max_delay + 1):
            out[i, d] = float(v @ absorb)
            v = lu.solve(U.T @ v, trans="T")
    return out


def _tagged_states(net: Network, S: int, m: int) -> list[tuple]:
    """States of the tagged chain: ``(others y, tagged station t, others ahead a)``, with
    ``a <= y_t`` for a FIFO station ``t`` and ``a = 0`` for a delay station."""
    others = enumerate_states(S, m - 1)
    tstates = []
    for y in others:
        for t in range(S):
            for a in (range(y[t] + 1) if not net.is_delay[t] else [0]):
                tstates.append((tuple(y), t, a))
    return tstates


def _tagged_jump_chain(r: _Routing, tstates: list[tuple], tindex: dict) -> tuple[sp.csr_matrix, sp.csr_matrix,
                                                                                  np.ndarray]:
    """The tagged chain's jump chain split into non-update moves ``B``, update moves ``U``
    (reward 1), both shape ``(T, T)``, and the absorption vector (the tagged task's own update),
    shape ``(T,)``."""
    net = r.net
    S = net.size
    T = len(tstates)
    Bi, Bj, Bv, Ui, Uj, Uv = [], [], [], [], [], []
    absorb = np.zeros(T)
    def other_leaves(moves, y, s, rate, t, a):
        """An untagged task completes at s and moves on (an update if s is the update station)."""
        for u, prob in r.next_station[s]:
            y2 = y.copy()
            y2[s] -= 1
            y2[u] += 1
            moves.append((rate * prob, int(r.is_update[s]), (tuple(y2), t, a)))

    def tagged_leaves(moves, y, s):
        """The tagged task completes at s: its own update (absorption), or it joins the next tail."""
        for u, prob in r.next_station[s]:
            if r.is_update[s]:
                moves.append((net.rates[s] * prob, 2, None))
            else:
                moves.append((net.rates[s] * prob, 0, (tuple(y), u, 0 if net.is_delay[u] else int(y[u]))))

    for j, (y, t, a) in enumerate(tstates):
        y = np.asarray(y)
        moves = []  # (rate, kind, successor or None); kind 0 = plain, 1 = other's update, 2 = own update
        for s in range(S):
            if s == t and not net.is_delay[t]:
                # FIFO: the head of the queue is an "other" iff a >= 1
                if a >= 1:
                    other_leaves(moves, y, s, net.rates[s], t, a - 1)
                else:
                    tagged_leaves(moves, y, s)
                continue
            rate = _rate(net, s, y[s])
            if rate > 0:
                other_leaves(moves, y, s, rate, t, a)
            if s == t:  # delay station: the tagged task is served in parallel
                tagged_leaves(moves, y, s)
        total = sum(mv[0] for mv in moves)
        for rate, kind, nxt in moves:
            prob = rate / total
            if kind == 2:
                absorb[j] += prob
            elif kind == 1:
                Ui.append(j); Uj.append(tindex[nxt]); Uv.append(prob)
            else:
                Bi.append(j); Bj.append(tindex[nxt]); Bv.append(prob)
    B = sp.csr_matrix((Bv, (Bi, Bj)), shape=(T, T))
    U = sp.csr_matrix((Uv, (Ui, Uj)), shape=(T, T))
    return B, U, absorb


def _palm_start(sol: CTMCSolution, r: _Routing, i: int, tindex: dict, T: int) -> np.ndarray:
    """Law of the tagged chain's start for a task sent to client ``i``, shape ``(T,)``: the Palm
    distribution at update epochs (the state just before an update ~ ``pi(x)`` times the update
    rate), the new task joining the tail at client ``i``'s first station."""
    net = r.net
    u0 = np.zeros(T)
    w_total = 0.0
    first_i = int(np.flatnonzero(net.owner == i)[0])
    for x, prob_x in zip(sol.states, sol.pi):
        for s in np.flatnonzero(r.is_update):
            rate = _rate(net, s, x[s])
            if rate == 0:
                continue
            y = x.copy()
            y[s] -= 1
            w = prob_x * rate
            w_total += w
            a0 = 0 if net.is_delay[first_i] else int(y[first_i])
            u0[tindex[(tuple(y), first_i, a0)]] += w
    return u0 / w_total
