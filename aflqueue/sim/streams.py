"""Reproducible random streams shared by every simulation engine.

Streams are children of ``numpy.random.SeedSequence(seed)`` at fixed spawn keys: ``(0,)``
routing, ``(1,)`` central server, ``(2, i, k)`` client ``i``'s stage ``k`` (0 downlink, 1 compute,
2 uplink, 3 availability). Generators are created on first use, so clients that never get a
task cost nothing. Each stream is consumed in chunks of a fixed size, so any engine that asks
for "the k-th service time of client i's compute stage" gets the same number. This makes the
SimPy model and the compiled fast path produce identical traces for the same seed (common
random numbers), and keeps a trace independent of how many events an engine processes at once.
"""

from __future__ import annotations

import numpy as np

from ..laws import ServiceLaw
from ..system import System

__all__ = ["StreamBank", "BufferedSampler", "RoutingStream", "default_chunk"]

STAGES = ("downlink", "compute", "uplink")


def default_chunk(n: int) -> int:
    """Draws per refill: large enough to amortise Python overhead, bounded memory for large n."""
    return int(min(4096, max(256, 2**19 // max(n, 1))))


def child_rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    """Generator of the child of ``SeedSequence(seed)`` with spawn key ``key``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class _Buffered:
    """Hands out the draws of ``next_chunk()`` one at a time, refilling only when all are used,
    so that every consumer sees the same sequence whatever it asks for at once."""

    __slots__ = ("chunk", "buf", "pos")

    def __init__(self, chunk: int):
        self.chunk = int(chunk)
        self.buf: list = []
        self.pos = 0

    def next_chunk(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self):
        pos = self.pos
        if pos >= len(self.buf):
            # a Python list: indexing it is several times cheaper than a numpy array (SimPy hot path)
            self.buf = self.next_chunk().tolist()
            pos = 0
        self.pos = pos + 1
        return self.buf[pos]


class BufferedSampler(_Buffered):
    """Durations of one stage, drawn from ``law`` in chunks of ``chunk`` from its own stream."""

    __slots__ = ("law", "seed", "key", "rng")

    def __init__(self, law: ServiceLaw, seed: int, key: tuple[int, ...], chunk: int):
        super().__init__(chunk)
        self.law = law
        self.seed = seed
        self.key = key
        self.rng: np.random.Generator | None = None

    def next_chunk(self) -> np.ndarray:
        """The next ``chunk`` draws (float64, > 0)."""
        if self.rng is None:
            self.rng = child_rng(self.seed, self.key)
        return np.ascontiguousarray(self.law.sample(self.rng, self.chunk), dtype=np.float64)


class RoutingStream(_Buffered):
    """Client indices ``J ~ p``: uniforms in chunks, mapped by inverse CDF (binary search)."""

    __slots__ = ("cdf", "rng")

    def __init__(self, routing: np.ndarray, rng: np.random.Generator, chunk: int):
        super().__init__(chunk)
        cdf = np.cumsum(routing)
        cdf[-1] = np.inf  # guard against rounding: u < 1 always maps to a valid client
        self.cdf = cdf
        self.rng = rng

    def next_chunk(self) -> np.ndarray:
        u = self.rng.random(self.chunk)
        return np.searchsorted(self.cdf, u, side="right").astype(np.int64)


class StreamBank:
    """All random streams of one simulation run.

    Attributes:
        routing: :class:`RoutingStream`.
        service: ``service[i][stage]`` is a :class:`BufferedSampler` or None (stage absent).
        server: sampler of the central-server stage, or None.
        availability_rng(i): generator of client i's on/off periods.
    """

    def __init__(self, system: System, seed: int, chunk: int | None = None):
        self.seed = int(seed)
        self.chunk = default_chunk(system.n) if chunk is None else int(chunk)
        self.routing = RoutingStream(system.routing, child_rng(self.seed, (0,)), self.chunk)
        self.server = None
        if system.server is not None:
            self.server = BufferedSampler(system.server.law, self.seed, (1,), self.chunk)
        self.service: list[dict[str, BufferedSampler | None]] = []
        for i, client in enumerate(system.clients):
            stages = {"downlink": client.downlink, "compute": client.compute, "uplink": client.uplink}
            self.service.append({
                name: None if stages[name] is None else BufferedSampler(stages[name].law, self.seed, (2, i, k), self.chunk)
                for k, name in enumerate(STAGES)
            })

    def availability_rng(self, client: int) -> np.random.Generator:
        """Stream of client ``client``'s on/off periods."""
        return child_rng(self.seed, (2, client, len(STAGES)))
