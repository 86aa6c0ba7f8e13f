"""On/off availability: when a client is off, its stages pause (preemptive resume).

A client's schedule is an alternating renewal sequence of on and off periods drawn lazily from
its own stream. :meth:`OnOffSchedule.advance` maps "``work`` time units of service starting at
``t``" to the wall-clock finish time, skipping the off periods; engines call it instead of
``t + work``, so availability needs no extra simulation events.
"""

from __future__ import annotations

import bisect

import numpy as np

from ..system import Availability

__all__ = ["OnOffSchedule"]


class OnOffSchedule:
    """Lazily generated on/off periods of one client."""

    def __init__(self, spec: Availability, rng: np.random.Generator, chunk: int = 256):
        self.spec = spec
        self.rng = rng
        self.chunk = chunk
        # boundaries[k] is the start of period k; period k is "on" iff (k % 2 == 0) == start_on
        self.boundaries: list[float] = [0.0]
        self.start_on = spec.start_on

    def _extend(self, until: float) -> None:
        while self.boundaries[-1] <= until:
            on = self.spec.on.sample(self.rng, self.chunk)
            off = self.spec.off.sample(self.rng, self.chunk)
            pair = (on, off) if self.start_on else (off, on)
            b = self.boundaries[-1]
            for a_, b_ in zip(*pair):
                b += a_
                self.boundaries.append(b)
                b += b_
                self.boundaries.append(b)

    def advance(self, t: float, work: float) -> float:
        """Finish time of ``work`` time units of service started at ``t`` (service runs only while on)."""
        self._extend(t)
        k = bisect.bisect_right(self.boundaries, t) - 1
        now = t
        while True:
            if k + 1 >= len(self.boundaries):
                self._extend(now + work + 1.0)
            end = self.boundaries[k + 1]
            if (k % 2 == 0) == self.start_on:
                if now + work <= end:
                    return now + work
                work -= end - now
            now = end
            k += 1

    def fraction_on(self, horizon: float) -> float:
        """Realised fraction of ``[0, horizon]`` spent on (for checks)."""
        self._extend(horizon)
        b = np.asarray(self.boundaries)
        starts, ends = b[:-1], np.minimum(b[1:], horizon)
        lengths = np.clip(ends - starts, 0, None)
        on = (np.arange(len(starts)) % 2 == 0) == self.start_on
        return float(lengths[on].sum() / horizon)
