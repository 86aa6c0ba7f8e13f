"""What a training run achieved: read off its evaluation curves and its cost report.

Curves are the ``curves`` of a :class:`~aflqueue.fl.engine.TrainResult`: parallel lists
``time`` (simulated time units), ``updates``, ``test_accuracy`` and ``test_loss``, in time order.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["time_to_target", "run_times", "accuracy_at", "split_timings"]


def time_to_target(curves: dict[str, list], target: float, interpolate: bool = True,
                   diverged_at_time: float | None = None) -> float | None:
    """Simulated time at which the test accuracy first reaches ``target`` (None if never).

    With ``interpolate`` the time is read off the straight line between the last evaluation
    below the target and the first at or above it (the evaluation grid's spacing otherwise
    biases the estimate by up to one interval); a run that starts above the target reaches it
    at its first evaluation. Evaluations at or after ``diverged_at_time`` never count: a
    diverged run has no model left to reach anything."""
    prev_t, prev_a = None, None
    for t, a in zip(curves["time"], curves["test_accuracy"]):
        if diverged_at_time is not None and t >= diverged_at_time:
            return None
        if a is not None and math.isfinite(a) and a >= target:
            if not interpolate or prev_t is None or prev_a is None or a == prev_a:
                return float(t)
            return float(prev_t + (target - prev_a) * (t - prev_t) / (a - prev_a))
        if a is not None and math.isfinite(a):
            prev_t, prev_a = t, a
    return None


def run_times(rec: dict[str, Any], target: float) -> tuple[float, bool]:
    """(time to target or the budget if not reached, reached?) of a run record (``measured`` curves
    and ``time_budget``): a run that never reaches the target counts as censored at its budget."""
    m = rec["measured"]
    t = time_to_target(m["curves"], target, diverged_at_time=m.get("diverged_at_time"))
    return (t, True) if t is not None else (rec["time_budget"], False)


def accuracy_at(curves: dict[str, list], when: float) -> float | None:
    """Test accuracy of the model as it stood at simulated time ``when``: the last evaluation at
    or before it (None if there is none)."""
    best = None
    for t, a in zip(curves["time"], curves["test_accuracy"]):
        if t <= when * (1 + 1e-12):
            best = a
    return None if best is None else float(best)


def split_timings(costs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an algorithm's cost report into what is deterministic (counts, memory) and what is
    a wall-clock measurement (keys with ``seconds``), which differs from run to run."""
    timings = {k: v for k, v in costs.items() if "seconds" in k}
    return {k: v for k, v in costs.items() if k not in timings}, timings
