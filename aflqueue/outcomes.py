"""What training runs achieved, and how runs are paired for a comparison.

Curves are the ``curves`` of a :class:`~aflqueue.fl.engine.TrainResult`: parallel lists
``time`` (simulated time units), ``updates``, ``test_accuracy`` and ``test_loss``, in time order.
:func:`time_to_target`, :func:`accuracy_at` and :func:`run_times` read them; :func:`split_timings`
separates an algorithm's cost report into deterministic counts and wall-clock measurements.

*Pairing*: within a scenario each arm (a treatment, a routing) meets its baseline seed by seed
(:func:`group_by_seed`, :func:`with_baseline`, :func:`paired_arms`, :func:`paired_seeds`), so
that the seed-to-seed noise shared by both cancels out of their ratio; the intervals of the
paired ratios and differences are :mod:`aflqueue.stats`'s.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from .errors import ValidationError, check_integer, check_values

__all__ = ["CURVES", "check_curves", "check_run_record", "time_to_target", "run_times", "accuracy_at", "split_timings",
           "group_by_seed", "with_baseline", "paired_arms", "paired_seeds"]


#: The curves of a run, parallel lists in time order (module docstring).
CURVES = ("time", "updates", "test_accuracy", "test_loss")


def check_curves(curves: Any, field: str, src: str) -> None:
    """Curves read from ``src`` (a run's results, a job's record) as the trainer writes them: the
    lists :data:`CURVES` of one length >= 1, ``time`` >= 0 and ``updates`` integers >= 0 (both
    non-decreasing), ``test_accuracy`` in ``[0, 1]`` and ``test_loss`` >= 0 (either may be null);
    else one :class:`~aflqueue.errors.ValidationError` naming ``src`` and ``field.<curve>``."""
    if not isinstance(curves, dict):
        raise ValidationError(field, f"{src}: must be a table of the curves {', '.join(CURVES)}")
    for k in CURVES:
        if k not in curves:
            raise ValidationError(f"{field}.{k}", f"{src}: missing (the curves {', '.join(CURVES)} are lists, "
                                                  "one entry per evaluation)")
        if not isinstance(curves[k], list):
            raise ValidationError(f"{field}.{k}", f"{src}: must be a list, one entry per evaluation (got "
                                                  f"{type(curves[k]).__name__})")
    n = len(curves["time"])
    if n < 1:
        raise ValidationError(f"{field}.time", f"{src}: the run has no evaluation (an empty curve)")
    for k in CURVES[1:]:
        if len(curves[k]) != n:
            raise ValidationError(f"{field}.{k}", f"{src}: {len(curves[k])} entries, but time has {n} (one per "
                                                  "evaluation)")
    check_values(curves["time"], f"{field}.time", src, lo=0.0, increasing=True)
    check_values(curves["updates"], f"{field}.updates", src, lo=0.0, integer=True, increasing=True)
    check_values(curves["test_accuracy"], f"{field}.test_accuracy", src, lo=0.0, hi=1.0, nullable=True)
    check_values(curves["test_loss"], f"{field}.test_loss", src, lo=0.0, nullable=True)


def check_run_record(record: dict[str, Any]) -> None:
    """The fields every saved training-run record holds (tuning, validation and pilot jobs):
    ``final_accuracy`` in ``[0, 1]`` or null, a boolean ``diverged``, integer ``arrivals`` >= 0 and
    the run's curves (:func:`check_curves`); else :class:`~aflqueue.errors.ValidationError` naming
    the field."""
    check_values([record.get("final_accuracy")], "final_accuracy", "the record", lo=0.0, hi=1.0, nullable=True)
    diverged = record.get("diverged")
    if not isinstance(diverged, bool):
        raise ValidationError("diverged", f"must be true or false (got {diverged!r})")
    check_integer(record.get("arrivals"), "arrivals", 0)
    check_curves(record.get("curves"), "curves", "the record")


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


# --------------------------------------------------------------------------- pairing by seed
Record = dict[str, Any]
#: Runs of one scenario: arm -> seed -> record.
Arms = dict[str, dict[int, Record]]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


S = TypeVar("S", bound=_Identified)


def group_by_seed(records: Iterable[Record], scenario: Callable[[Record], str],
                  arm: Callable[[Record], str]) -> dict[str, Arms]:
    """``{scenario: {arm: {seed: record}}}`` for records that carry a ``seed``; ``scenario`` and
    ``arm`` read the other two keys off a record. A later record of the same cell replaces an
    earlier one."""
    by: dict[str, dict[str, dict[int, Record]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[scenario(r)][arm(r)][r["seed"]] = r
    return {s: dict(arms) for s, arms in by.items()}


def with_baseline(scenarios: Iterable[S], by: dict[str, Arms],
                  baseline: str) -> Iterator[tuple[S, Arms, dict[int, Record]]]:
    """``(scenario, its runs by arm, the baseline's runs by seed)`` for each scenario, in order, whose
    runs include the baseline arm (without it there is nothing to pair with)."""
    for sc in scenarios:
        runs = by.get(sc.id)
        if runs and baseline in runs:
            yield sc, runs, runs[baseline]


def paired_arms(runs: Arms, baseline: dict[int, Record],
                names: Sequence[str]) -> Iterator[tuple[str, dict[int, Record], list[int]]]:
    """``(arm, its runs by seed, the seeds it shares with the baseline)`` for each arm of ``names``, in
    that order, that has runs."""
    for name in names:
        if runs.get(name):
            yield name, runs[name], paired_seeds(runs[name], baseline)


def paired_seeds(runs: dict[int, Record], baseline: dict[int, Record]) -> list[int]:
    """The seeds both an arm and its baseline ran, in increasing order."""
    return sorted(set(runs) & set(baseline))
