"""Exact moments of Generalized AsyncSGD with clipped importance weights on 1-D quadratics (tests).

Shares no code with ``aflqueue.bounds``: it builds the update-indexed Markov chain of the closed
network with exponential services (each task is a *slot* with a client and a place in that
client's FIFO queue) and carries the exact first and second moments of the linear recursion

    x_{k+1} = x_k - eta w_I (a (z - b_I) + eps),   eps ~ N(0, sigma2),   w_i = min(1 / (n p_i), c),

where ``z`` is the model the completing task was sent with, jointly with the discrete state
(a Markov jump linear system: ``E[v 1{state}]`` and ``E[v v^T 1{state}]`` for
``v = (x, z_1, ..., z_m)``). At time 0 the ``m`` tasks are sent with ``x_0`` to clients drawn
from ``p``, queued in slot order; after every update the completing slot is sent again, with the
new model, to a client drawn from ``p``.

For every dispatched task ``j = 1..N`` (``z_1 = ... = z_m = x_0``, ``z_{m+k} = x_k``) it returns the
exact ``E (f'(z_j))^2`` with ``f = (1/n) sum_i 0.5 a (x - b_i)^2``, and the two staleness sums of
docs/theory.md section 11: ``A_j = E sum_{i in O_j} w_{J_i}^2`` and
``Gamma_j = E |O_j| sum_{i in O_j} w_{J_i}^2 f_{J_i}'(z_i)^2`` over the tasks ``O_j`` in flight
when ``j`` is sent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quadratic:
    """``f_i(x) = 0.5 a (x - b_i)^2`` (common curvature ``a``), noise variance ``sigma2``, start ``x0``."""

    a: float
    b: np.ndarray
    x0: float
    sigma2: float

    @property
    def n(self) -> int:
        return self.b.size

    @property
    def L(self) -> float:
        return self.a

    @property
    def M2(self) -> float:
        """``max_i sup_x (f_i'(x) - f'(x))^2 = a^2 max_i (b_i - mean b)^2`` (exact: the difference is constant)."""
        return float(self.a**2 * np.max((self.b - self.b.mean()) ** 2))

    @property
    def Delta(self) -> float:
        """``f(x0) - min f = 0.5 a (x0 - mean b)^2``."""
        return 0.5 * self.a * (self.x0 - self.b.mean()) ** 2


def weights(p: np.ndarray, cap: float) -> np.ndarray:
    n = p.size
    return np.array([min(1.0 / (n * pi), cap) for pi in p])


def _initial(n: int, m: int, p: np.ndarray):
    """Initial law of the slot configuration: slot s goes to client J_s ~ p, queued in slot order."""
    init: dict = {}
    for assign in itertools.product(range(n), repeat=m):
        queues = tuple(tuple(s for s in range(m) if assign[s] == i) for i in range(n))
        init[queues] = init.get(queues, 0.0) + float(np.prod([p[i] for i in assign]))
    return init


def _transitions(state, rates, p):
    """Next update from ``state``: (probability, completing slot, its client, next state)."""
    busy = [i for i, q in enumerate(state) if q]
    total = sum(rates[i] for i in busy)
    out = []
    for i in busy:
        s = state[i][0]
        rest = list(state)
        rest[i] = state[i][1:]
        for j in range(len(state)):
            nxt = list(rest)
            nxt[j] = rest[j] + (s,)
            out.append((rates[i] / total * p[j], s, i, tuple(nxt)))
    return out


class ExactChain:
    """The update-indexed chain of one system (rates, routing, concurrency): states and transitions."""

    def __init__(self, rates, p, m):
        self.rates, self.p, self.m = np.asarray(rates, float), np.asarray(p, float), int(m)
        n = self.p.size
        init = _initial(n, self.m, self.p)
        index: dict = {}
        order = []
        todo = list(init)
        while todo:
            st = todo.pop()
            if st in index:
                continue
            index[st] = len(order)
            order.append(st)
            todo.extend(t[3] for t in _transitions(st, self.rates, self.p))
        self.states, self.index = order, index
        self.pi0 = np.zeros(len(order))
        for st, pr in init.items():
            self.pi0[index[st]] = pr
        # transitions grouped by (completing slot, its client): the affine map depends on nothing else
        groups: dict = {}
        for k, st in enumerate(order):
            for pr, s, i, nxt in _transitions(st, self.rates, self.p):
                groups.setdefault((s, i), []).append((k, index[nxt], pr))
        self.groups = {key: (np.array([g[0] for g in v]), np.array([g[1] for g in v]), np.array([g[2] for g in v]))
                       for key, v in groups.items()}
        # client of each slot in each state
        self.client = np.zeros((len(order), self.m), dtype=int)
        for k, st in enumerate(order):
            for i, q in enumerate(st):
                for s in q:
                    self.client[k, s] = i

    def stationary(self) -> np.ndarray:
        """Stationary law of the chain at update epochs (before the update)."""
        S = len(self.states)
        P = np.zeros((S, S))
        for (s, i), (fr, to, pr) in self.groups.items():
            np.add.at(P, (fr, to), pr)
        w, v = np.linalg.eig(P.T)
        k = int(np.argmin(np.abs(w - 1)))
        pi = np.real(v[:, k])
        return pi / pi.sum()

    def staleness_weight(self, pi: np.ndarray, cap: float) -> float:
        """``E sum_{i in O} w_{J_i}^2`` at the dispatch that follows an update from law ``pi``."""
        w2 = weights(self.p, cap) ** 2
        tot = 0.0
        for (s, i), (fr, to, pr) in self.groups.items():
            others = w2[self.client[fr]].sum(axis=1) - w2[i]
            tot += float(np.sum(pi[fr] * pr * others))
        return tot

    def run(self, quad: Quadratic, cap: float, eta: float, K: int) -> dict:
        """Exact per-task sequences for tasks ``j = 1..K+m-1`` (see the module docstring)."""
        n, m, a = self.p.size, self.m, quad.a
        b, x0, bbar = quad.b, quad.x0, float(quad.b.mean())
        w = weights(self.p, cap)
        d = m + 1
        S = len(self.states)
        pi = self.pi0.copy()
        mu = pi[:, None] * np.full(d, x0)[None, :]
        Sig = pi[:, None, None] * np.full((d, d), x0 * x0)[None, :, :]
        S1c = float(np.sum(self.p * w**2))
        g0 = float(np.sum(self.p * w**2 * a**2 * (x0 - b) ** 2))
        grad2 = [a * a * (x0 - bbar) ** 2] * m
        A_seq = [j * S1c for j in range(m)]
        G_seq = [j * j * g0 for j in range(m)]
        maps = {}
        for (s, i) in self.groups:
            A = np.eye(d)
            A[0, s + 1] -= eta * w[i] * a
            A[s + 1, :] = A[0, :]
            dv = np.zeros(d)
            dv[0] = dv[s + 1] = eta * w[i] * a * b[i]
            e = np.zeros(d)
            e[0] = e[s + 1] = -eta * w[i]
            maps[(s, i)] = (A, dv, e)
        w2 = w**2
        for _ in range(1, K):
            npi, nmu, nSig = np.zeros(S), np.zeros((S, d)), np.zeros((S, d, d))
            a_k = g_k = 0.0
            for (s, i), (fr, to, pr) in self.groups.items():
                A, dv, e = maps[(s, i)]
                P, M1, M2 = pi[fr] * pr, mu[fr] * pr[:, None], Sig[fr] * pr[:, None, None]
                AM1 = M1 @ A.T
                np.add.at(npi, to, P)
                np.add.at(nmu, to, AM1 + P[:, None] * dv[None, :])
                cross = AM1[:, :, None] * dv[None, None, :]
                nS = (A[None] @ M2 @ A.T[None] + cross + np.swapaxes(cross, 1, 2)
                      + P[:, None, None] * (np.outer(dv, dv) + quad.sigma2 * np.outer(e, e))[None])
                np.add.at(nSig, to, nS)
                # the tasks still in flight when the completing slot is sent again
                cl = self.client[fr]
                for t in range(m):
                    if t == s:
                        continue
                    bt = b[cl[:, t]]
                    ez = M2[:, t + 1, t + 1] - 2 * bt * M1[:, t + 1] + bt * bt * P
                    a_k += float(np.sum(P * w2[cl[:, t]]))
                    g_k += float(np.sum(w2[cl[:, t]] * a * a * ez))
            pi, mu, Sig = npi, nmu, nSig
            ex, ex2 = float(mu[:, 0].sum()), float(Sig[:, 0, 0].sum())
            grad2.append(a * a * (ex2 - 2 * bbar * ex + bbar * bbar))
            A_seq.append(a_k)
            G_seq.append((m - 1) * g_k)
        return {"grad2": np.array(grad2), "A": np.array(A_seq), "Gamma": np.array(G_seq)}


def stationary_grad2_m1(quad: Quadratic, p: np.ndarray, cap: float, eta: float) -> float:
    """Closed form of ``lim_K E f'(x_K)^2`` at ``m = 1`` (updates i.i.d. over clients): the mean tends
    to ``b_q = sum q_i b_i / Q`` and the variance to
    ``eta^2 (sum p_i w_i^2 a^2 (b_i - b_q)^2 + sigma2 S1_c) / (2 eta a Q - eta^2 a^2 S1_c)``."""
    w = weights(p, cap)
    q = p * w
    Q = q.sum()
    a = quad.a
    bq = float(q @ quad.b / Q)
    S1c = float(np.sum(p * w**2))
    num = eta**2 * (float(np.sum(p * w**2 * a * a * (quad.b - bq) ** 2)) + quad.sigma2 * S1c)
    V = num / (2 * eta * a * Q - eta**2 * a * a * S1c)
    return a * a * ((bq - quad.b.mean()) ** 2 + V)
