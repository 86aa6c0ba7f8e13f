"""What a training run achieved: read off its evaluation curves and its cost report.

Curves are the ``curves`` of a :class:`~aflqueue.fl.engine.TrainResult`: parallel lists
``time`` (simulated time units), ``updates``, ``test_accuracy`` and ``test_loss``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["time_to_target", "split_timings"]


def time_to_target(curves: dict[str, list], target: float) -> float | None:
    """First evaluated simulated time at which the test accuracy reaches ``target`` (None if never)."""
    for t, a in zip(curves["time"], curves["test_accuracy"]):
        if a >= target:
            return float(t)
    return None


def split_timings(costs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an algorithm's cost report into what is deterministic (counts, memory) and what is
    a wall-clock measurement (keys with ``seconds``), which differs from run to run."""
    timings = {k: v for k, v in costs.items() if "seconds" in k}
    return {k: v for k, v in costs.items() if k not in timings}, timings
