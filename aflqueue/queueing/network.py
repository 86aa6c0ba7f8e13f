"""Flatten a :class:`~aflqueue.system.System` into the stations of a BCMP product-form network.

Station ``s`` has visit ratio ``v_s`` (``p_i`` for every stage of client ``i``, 1 for the central
server), rate ``mu_s`` and *demand* ``rho_s = v_s / mu_s`` (time units per update). FIFO stations
contribute ``rho^x`` to the product form, delay stations ``rho^x / x!`` (docs/theory.md section 4).
Clients with ``p_i = 0`` are left out: they never receive a task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..system import System

__all__ = ["Network", "network_of", "SERVER"]

#: ``owner`` value of the central-server station.
SERVER = -1


@dataclass(frozen=True, eq=False)
class Network:
    """Station arrays, all of shape ``(S,)`` (S = number of stations with a positive visit ratio).

    Attributes:
        demands: ``rho_s = v_s / mu_s`` (time units per update).
        visits: visit ratios ``v_s`` per update.
        rates: service rates ``mu_s`` (tasks per time unit).
        is_delay: True for infinite-server (delay) stations.
        owner: client index of each station, or ``SERVER`` (-1) for the central server.
        stage: ``"downlink" | "compute" | "uplink" | "server"``.
        n_clients: number of clients in the system (including those with ``p_i = 0``).
        population: concurrency ``m``.
    """

    demands: np.ndarray
    visits: np.ndarray
    rates: np.ndarray
    is_delay: np.ndarray
    owner: np.ndarray
    stage: tuple[str, ...]
    n_clients: int
    population: int

    @property
    def size(self) -> int:
        return int(self.demands.size)

    def client_matrix(self) -> np.ndarray:
        """Indicator matrix ``A`` of shape ``(n_clients, S)``: ``A[i, s] = 1`` if station s belongs to client i."""
        a = np.zeros((self.n_clients, self.size))
        own = self.owner >= 0
        a[self.owner[own], np.flatnonzero(own)] = 1.0
        return a

    def per_client(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Sum station values over each client's stages: shape ``(S,)`` or ``(q, S)`` -> ``(n_clients,)`` or ``(q, n_clients)``.

        Clients without stations (``p_i = 0``) get ``fill``.
        """
        values = np.asarray(values, dtype=float)
        own = self.owner >= 0
        idx = self.owner[own]
        flat = values.reshape(-1, values.shape[-1])
        out = np.zeros((flat.shape[0], self.n_clients))
        for r in range(flat.shape[0]):
            out[r] = np.bincount(idx, weights=flat[r, own], minlength=self.n_clients)
        if fill != 0.0:
            has = np.zeros(self.n_clients, dtype=bool)
            has[idx] = True
            out[:, ~has] = fill
        return out.reshape(values.shape[:-1] + (self.n_clients,))

    @property
    def server_index(self) -> int | None:
        idx = np.flatnonzero(self.owner == SERVER)
        return int(idx[0]) if idx.size else None


_STAGE_NAMES = ("downlink", "compute", "uplink")


def network_of(system: System, routing: np.ndarray | None = None) -> Network:
    """Stations of ``system`` (optionally with another routing vector, unchecked, shape ``(n,)``)."""
    p = system.routing if routing is None else np.asarray(routing, dtype=float)
    t = system.stage_table
    keep = p[t["owner"]] > 0
    owner = t["owner"][keep]
    rates = t["rate"][keep]
    visits = p[owner]
    is_delay = t["is_delay"][keep]
    stage = tuple(_STAGE_NAMES[c] for c in t["stage"][keep])
    if system.server is not None:
        owner = np.append(owner, SERVER)
        rates = np.append(rates, system.server.rate)
        visits = np.append(visits, 1.0)
        is_delay = np.append(is_delay, system.server.discipline == "delay")
        stage = stage + ("server",)
    return Network(demands=visits / rates, visits=visits, rates=rates, is_delay=is_delay, owner=owner,
                   stage=stage, n_clients=system.n, population=system.concurrency)
