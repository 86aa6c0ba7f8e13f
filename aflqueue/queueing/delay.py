"""Mean relative delay (staleness, in updates) from per-station queue lengths (docs/theory.md sections 3-4).

An update of client ``i``'s task arrives with the arrival theorem's view of the other ``m - 1``
tasks, ``pi_{m-1}``; by the discrete Little law on update epochs,
``E[D_i] = E_{m-1}[Y_i] / p_i + E_{m-1}[X_cs]``, with ``Y_i`` the tasks at client ``i``'s stages
and ``X_cs`` those queued at the central server (each of which updates before the new task).
Shared by the exact analysis, its gradients and the approximate analysis.
"""

from __future__ import annotations

import numpy as np

from .network import Network

__all__ = ["relative_delay_from_queues"]


def relative_delay_from_queues(net: Network, q_prev: np.ndarray, routing: np.ndarray) -> np.ndarray:
    """``E[D_i] = E_{m-1}[Y_i]/p_i + E_{m-1}[X_cs]`` (docs/theory.md sections 3-4), shape ``(n,)``;
    NaN where ``p_i = 0``. ``q_prev``: per-station ``E_{m-1}[X_s]``."""
    y_prev = net.per_client(q_prev)
    cs = net.server_index
    x_cs = float(q_prev[cs]) if cs is not None else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(routing > 0, y_prev / np.where(routing > 0, routing, 1.0) + x_cs, np.nan)
    return d
