"""Learning-rate tuning on a validation split: the same protocol for every treatment.

A treatment is tuned by training its configuration at each learning rate of a log grid, on
*pilot* seeds that are never used for evaluation, scoring each run on the validation slice of
the training set (``data.validation_fraction``; the test set is never looked at), and keeping
the rate with the best mean score. The score is pre-registered: the mean validation accuracy
over the run's evaluation grid (the normalised area under the accuracy-time curve), which
rewards reaching a good accuracy early as well as the level reached, the two things the
time-to-target and equal-time criteria measure. A run that diverges keeps the accuracy of its
diverged model (about chance) for the rest of the grid.

:func:`tuning_jobs` lists the runs, :func:`tuning_run` is one run (a job of
:func:`aflqueue.jobs.run_jobs`), :func:`best_learning_rate` reads the winner off the records;
:func:`tune` does all three for one configuration (``aflqueue tune``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import require
from .jobs import JobStore, run_jobs

__all__ = ["log_grid", "score_curves", "tuning_run", "tuning_jobs", "best_learning_rate", "TuningResult", "tune"]


def log_grid(lo: float, hi: float, count: int) -> list[float]:
    """``count`` learning rates spaced evenly on the log scale from ``lo`` to ``hi`` (3 digits)."""
    require(0 < lo < hi and math.isfinite(hi), "lr-grid", f"needs 0 < lo < hi (got {lo}, {hi})")
    require(count >= 2, "lr-grid", f"needs at least 2 rates (got {count})")
    return [float(f"{x:.3g}") for x in np.geomspace(lo, hi, count)]


SCORE_POINTS = 50


def score_curves(curves: dict[str, list], horizon: float, points: int = SCORE_POINTS) -> float:
    """Mean accuracy over ``points`` equally spaced times in ``(0, horizon]`` (the pre-registered
    tuning score, module docstring); the accuracy at a time is the last evaluation before it."""
    from .outcomes import accuracy_at

    grid = horizon * (np.arange(points) + 1) / points
    vals = [accuracy_at(curves, float(t)) for t in grid]
    return float(np.mean([0.0 if v is None or not math.isfinite(v) else v for v in vals]))


def tuning_run(args: tuple) -> dict[str, Any]:
    """Train ``config`` (a dict, see :class:`~aflqueue.config.TrainConfig`) at learning rate
    ``lr`` with seed ``seed``, evaluating on the validation split; return the score and curves."""
    import tempfile

    from .config import TrainConfig, with_updates
    from .pipeline import prepare, train

    config, lr, seed = args
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_dict(config)
        # the score reads the accuracy at 50 equally spaced times: evaluate exactly there
        cfg = with_updates(cfg, output=tmp, seed=int(seed), local={"lr": float(lr)},
                           run={"evaluate_on": "validation", "checkpoint_every": 0, "eval_every": 0,
                                "eval_times": max(cfg.run.eval_times, SCORE_POINTS)})
        pr = prepare(cfg)
        res = train(cfg, prepared=pr)
    horizon = cfg.run.time_budget if cfg.run.time_budget is not None else res.simulated_time
    return {"lr": float(lr), "seed": int(seed), "score": score_curves(res.curves, horizon),
            "final_accuracy": res.final_accuracy, "diverged": res.diverged, "arrivals": res.arrivals,
            "lr_used": pr.lr, "curves": res.curves, "timing": {"wall_time": time.perf_counter() - t0}}


def tuning_jobs(prefix: str, config: dict[str, Any], lrs: Sequence[float], seeds: Sequence[int]) -> list[tuple[str, Any]]:
    """Job list ``(id, args)`` for :func:`tuning_run`: every rate on every pilot seed."""
    return [(f"{prefix}__lr{lr:g}__s{s}", (config, float(lr), int(s))) for lr in lrs for s in seeds]


@dataclass(frozen=True)
class TuningResult:
    """Outcome of tuning one configuration.

    Attributes:
        best_lr: the rate with the highest mean score.
        table: per rate ``{"lr", "score" (mean), "scores" (per seed), "diverged" (count)}``.
        at_edge: True if the best rate is the smallest or largest of the grid (widen the grid).
    """

    best_lr: float
    table: list[dict[str, Any]]
    at_edge: bool

    def to_dict(self) -> dict[str, Any]:
        return {"best_lr": self.best_lr, "at_edge": self.at_edge, "table": self.table}


def best_learning_rate(records: Sequence[dict[str, Any]]) -> TuningResult:
    """Best mean score over seeds (ties: the smaller rate, the safer choice)."""
    by: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(float(r["lr"]), []).append(r)
    require(bool(by), "tuning", "no finished tuning runs")
    table = [{"lr": lr, "score": float(np.mean([r["score"] for r in rs])),
              "scores": [r["score"] for r in sorted(rs, key=lambda r: r["seed"])],
              "diverged": int(sum(bool(r["diverged"]) for r in rs))} for lr, rs in sorted(by.items())]
    best = max(table, key=lambda row: (round(row["score"], 12), -row["lr"]))  # ties within rounding: smaller
    lrs = [row["lr"] for row in table]
    return TuningResult(best["lr"], table, best["lr"] in (lrs[0], lrs[-1]))


def tune(config, lrs: Sequence[float], seeds: Sequence[int], output: str | Path, *, backend: str = "serial",
         workers: int | None = None, address: str | None = None,
         progress: Callable[[str], None] | None = print) -> TuningResult:
    """Tune the learning rate of ``config`` (a :class:`~aflqueue.config.TrainConfig`) on a
    validation split (module docstring); runs are saved under ``output`` as they finish, and
    ``output/tune.json`` holds the result."""
    from .io import atomic_write_json

    require(config.data.validation_fraction > 0, "data.validation_fraction",
            "tuning needs a validation split: set data.validation_fraction (e.g. 0.1)")
    cfg = json.loads(json.dumps(config.to_dict()))
    if cfg["routing"]["kind"] == "optimal":
        cfg["routing"]["step_size"] = "fixed"  # the rate itself is what is tuned
    records = run_jobs(tuning_jobs("tune", cfg, lrs, seeds), tuning_run, JobStore(Path(output)),
                       backend=backend, workers=workers, address=address, progress=progress,
                       describe=lambda r: f"lr {r['lr']:g} seed {r['seed']}: score {r['score']:.4f}")
    result = best_learning_rate(records)
    atomic_write_json(Path(output) / "tune.json", {"config": cfg, "seeds": list(seeds), **result.to_dict()})
    return result
