"""What a training run achieved, read off its evaluation curves.

Curves are the ``curves`` of a :class:`~aflqueue.fl.engine.TrainResult`: parallel lists
``time`` (simulated time units), ``updates``, ``test_accuracy`` and ``test_loss``.
"""

from __future__ import annotations

__all__ = ["time_to_target"]


def time_to_target(curves: dict[str, list], target: float) -> float | None:
    """First evaluated simulated time at which the test accuracy reaches ``target`` (None if never)."""
    for t, a in zip(curves["time"], curves["test_accuracy"]):
        if a >= target:
            return float(t)
    return None
