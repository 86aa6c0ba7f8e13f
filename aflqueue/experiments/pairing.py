"""Paired comparisons across saved runs: within a scenario, each arm (a treatment, a routing) meets
its baseline seed by seed, so that seed-to-seed noise shared by both cancels out of the ratio."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

__all__ = ["group_by_seed", "with_baseline", "paired_arms", "paired_seeds"]

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
