"""The regime studies' gain prediction and verdict rule, as those studies were run (PROTOCOL.md).

The library's prediction is :func:`aflqueue.pilot.predict`, whose verdict is stated only when the
numbers support one. The rule kept here is older and more lenient: a time ratio whose point is
below 1 "pays" even without an interval. The regime studies' records were computed with it, so it
stays, here, to rebuild and extend them unchanged."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from aflqueue.errors import require
from aflqueue.io import json_safe
from aflqueue.pilot_fit import OperatingPoint, PilotFit, gain_samples, percentile_interval

__all__ = ["GainPrediction", "verdict", "predict_gain"]


@dataclass(frozen=True)
class GainPrediction:
    """Predicted gain of a routing over a baseline (uniform routing).

    Attributes:
        time_ratio: ``{"point", "lo", "hi"}``: time to the target accuracy, routing / baseline
            (< 1: the routing is faster); interval from the bootstrap refits.
        accuracy_difference: accuracy at the budget, routing minus baseline (same layout).
        loss: predicted losses at the budget ``{"routing", "baseline"}`` (point fit).
        target_accuracy: the target (``target_fraction`` x the baseline's predicted accuracy).
        verdict: ``"pays"`` (the ratio's whole interval is below 1), ``"not expected to pay"``
            (it covers 1) or ``"not expected to pay: expected to lose"`` (it is above 1).
        confidence: level of the intervals; samples: bootstrap refits they rest on.
    """

    time_ratio: dict[str, float | None]
    accuracy_difference: dict[str, float | None]
    loss: dict[str, float]
    target_accuracy: float | None
    verdict: str
    confidence: float
    samples: int
    eta: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))



def verdict(ratio: Mapping[str, Any]) -> str:
    """``"pays"`` / ``"not expected to pay"`` / ``"not expected to pay: expected to lose"`` from a
    time-ratio interval (point only when no interval: below 1 pays)."""
    lo, hi, pt = ratio.get("lo"), ratio.get("hi"), ratio.get("point")
    if lo is None or hi is None:
        if pt is None or not math.isfinite(pt):
            return "not expected to pay"
        return "pays" if pt < 1 else "not expected to pay"
    if hi < 1:
        return "pays"
    if lo > 1:
        return "not expected to pay: expected to lose"
    return "not expected to pay"



def predict_gain(fit: PilotFit, candidate: OperatingPoint, baseline: OperatingPoint, time_budget: float, *,
                 target_fraction: float = 0.9, confidence: float = 0.95) -> GainPrediction:
    """Predicted time-to-target ratio and accuracy difference of ``candidate`` against
    ``baseline`` at the budget ``time_budget``, with bootstrap intervals (module docstring)."""
    require(math.isfinite(time_budget) and time_budget > 0, "time_budget", f"must be > 0 (got {time_budget})")
    require(0 < target_fraction <= 1, "target_fraction", f"must be in (0, 1] (got {target_fraction})")
    require(0 < confidence < 1, "confidence", f"must be in (0, 1) (got {confidence})")
    point, boots = gain_samples(fit, candidate, baseline, time_budget, target_fraction)
    ratio = percentile_interval(point[0], [b[0] for b in boots], confidence)
    acc = percentile_interval(point[1], [b[1] for b in boots], confidence)
    return GainPrediction(time_ratio=ratio, accuracy_difference=acc, loss={"routing": point[2], "baseline": point[3]},
                          target_accuracy=None if math.isnan(point[4]) else point[4], verdict=verdict(ratio),
                          confidence=confidence, samples=len(boots), eta={"routing": point[5], "baseline": point[6]})
