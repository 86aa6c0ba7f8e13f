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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import TrainConfig, with_updates
from .errors import check_integer, check_number, require
from .io import atomic_write_json
from .jobs import JobStore, inputs_digest, run_jobs
from .outcomes import accuracy_at, check_run_record

__all__ = ["log_grid", "score_curves", "check_tuning_record", "tuning_run", "tuning_runs", "tuning_jobs",
           "best_learning_rate", "TuningResult",
           "next_rate_out", "grid_edge", "tune"]


def log_grid(lo: float, hi: float, count: int) -> list[float]:
    """``count`` learning rates spaced evenly on the log scale from ``lo`` to ``hi`` (3 digits)."""
    require(0 < lo < hi and math.isfinite(hi), "lr-grid", f"needs 0 < lo < hi (got {lo}, {hi})")
    require(count >= 2, "lr-grid", f"needs at least 2 rates (got {count})")
    return [float(f"{x:.3g}") for x in np.geomspace(lo, hi, count)]


SCORE_POINTS = 50


def score_curves(curves: dict[str, list], horizon: float, points: int = SCORE_POINTS) -> float:
    """Mean accuracy over ``points`` equally spaced times in ``(0, horizon]`` (the pre-registered
    tuning score, module docstring); the accuracy at a time is the last evaluation before it."""

    grid = horizon * (np.arange(points) + 1) / points
    vals = [accuracy_at(curves, float(t)) for t in grid]
    return float(np.mean([0.0 if v is None or not math.isfinite(v) else v for v in vals]))


def _tuning_config(cfg, lr: float, seed: int, output: str, with_updates):
    # the score reads the accuracy at 50 equally spaced times: evaluate exactly there
    return with_updates(cfg, output=output, seed=int(seed), local={"lr": float(lr)},
                        run={"evaluate_on": "validation", "checkpoint_every": 0, "eval_every": 0,
                             "eval_times": max(cfg.run.eval_times, SCORE_POINTS)})


def _tuning_record(cfg, res, lr: float, seed: int, wall: float) -> dict[str, Any]:
    horizon = cfg.run.time_budget if cfg.run.time_budget is not None else res.simulated_time
    return {"lr": float(lr), "seed": int(seed), "score": score_curves(res.curves, horizon),
            "final_accuracy": res.final_accuracy, "diverged": res.diverged, "arrivals": res.arrivals,
            "lr_used": (res.meta.get("step_size") or {}).get("lr", float(lr)), "curves": res.curves,
            "timing": {"wall_time": wall}}


def check_tuning_record(record: dict[str, Any]) -> None:
    """A saved :func:`tuning_run` record holds what the tuning reads: ``lr`` > 0, an integer
    ``seed``, ``score`` in ``[0, 1]`` and the fields of every run record
    (:func:`~aflqueue.outcomes.check_run_record`); else :class:`~aflqueue.errors.ValidationError`
    naming the field."""
    check_number(record.get("lr"), "lr", 0.0, lo_open=True)
    check_integer(record.get("seed"), "seed", 0)
    check_number(record.get("score"), "score", 0.0, 1.0)
    check_run_record(record)


def tuning_run(args: tuple) -> dict[str, Any]:
    """Train ``config`` (a dict, see :class:`~aflqueue.config.TrainConfig`) at learning rate
    ``lr`` with seed ``seed``, evaluating on the validation split; return the score and curves."""

    from .pipeline import prepare, train  # lazy: numba

    config, lr, seed = args
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _tuning_config(TrainConfig.from_dict(config), lr, seed, tmp, with_updates)
        res = train(cfg, prepared=prepare(cfg))
    return _tuning_record(cfg, res, lr, seed, time.perf_counter() - t0)


def tuning_jobs(prefix: str, config: dict[str, Any], lrs: Sequence[float], seeds: Sequence[int]) -> list[tuple[str, Any]]:
    """Job list ``(id, args)`` for :func:`tuning_run`: every rate on every pilot seed."""
    return [(f"{prefix}__lr{lr:g}__s{s}", (config, float(lr), int(s))) for lr in lrs for s in seeds]


@dataclass(frozen=True)
class TuningResult:
    """Outcome of tuning one configuration.

    Attributes:
        best_lr: the rate with the highest mean score.
        table: per rate ``{"lr", "score" (mean), "scores" (per seed), "diverged" (count)}``.
        at_edge: True if the best rate is the smallest or largest rate tried (after any
            extension: flag it; the grid should be widened).
        extensions: rates added beyond the first grid to move the best rate off an edge.
    """

    best_lr: float
    table: list[dict[str, Any]]
    at_edge: bool
    extensions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"best_lr": self.best_lr, "at_edge": self.at_edge, "extensions": self.extensions, "table": self.table}


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


def grid_edge(result: dict[str, Any]) -> str | None:
    """``"floor"`` or ``"top"`` when a saved tuning result (:meth:`TuningResult.to_dict`) chose the
    smallest or largest rate it tried, else None: a rate at an edge may not be the best one."""
    rates = [row["lr"] for row in result["table"]]
    if result["best_lr"] == min(rates):
        return "floor"
    return "top" if result["best_lr"] == max(rates) else None


def next_rate_out(result: TuningResult, factor: float) -> float | None:
    """The rate one step (``factor``) beyond the edge where ``result``'s best rate sits, None when
    it is interior: the rule that keeps tuning off the edges of its grid."""
    if not result.at_edge:
        return None
    lrs = [row["lr"] for row in result.table]
    nxt = result.best_lr * factor if result.best_lr == max(lrs) else result.best_lr / factor
    return float(f"{nxt:.4g}")


def tuning_runs(batch: list[tuple]) -> list[dict[str, Any]]:
    """:func:`tuning_run` for a chunk of jobs, replica-batched (:func:`aflqueue.replicated.train_replicas`);
    each record says how it was computed (``execution``)."""
    import torch  # lazy: torch

    from .replicated import train_replicas  # lazy: numba

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    cfgs = [_tuning_config(TrainConfig.from_dict(config), lr, seed, "unused", with_updates) for config, lr, seed in batch]
    results = train_replicas(cfgs, write_outputs=False)
    wall = (time.perf_counter() - t0) / max(len(cfgs), 1)
    return [{**_tuning_record(cfg, res, float(lr), int(seed), wall), "execution": res.meta.get("execution", "serial")}
            for cfg, res, (_, lr, seed) in zip(cfgs, results, batch)]


def tune(config, lrs: Sequence[float], seeds: Sequence[int], output: str | Path, *, backend: str = "serial",
         workers: int | None = None, address: str | None = None,
         progress: Callable[[str], None] | None = print, max_extensions: int = 6, batch: int = 1) -> TuningResult:
    """Tune the learning rate of ``config`` (a :class:`~aflqueue.config.TrainConfig`) on a
    validation split (module docstring); runs are saved under ``output`` as they finish, and
    ``output/tune.json`` holds the result. While the best rate is the smallest or largest tried,
    the next rate out (a factor of the grid's widest spacing) is added on every seed, up to
    ``max_extensions`` times; a rate still at an edge is reported (``at_edge``). ``batch > 1``
    trains that many runs replica-batched per job (:func:`tuning_runs`)."""

    require(config.data.validation_fraction > 0, "data.validation_fraction",
            "tuning needs a validation split: set data.validation_fraction (e.g. 0.1)")
    grid = sorted(set(float(x) for x in lrs))
    require(len(grid) >= 2, "lr-grid", "needs at least 2 distinct rates")
    require(isinstance(max_extensions, int) and 0 <= max_extensions <= 20, "max-extensions",
            f"must be an integer in [0, 20] (got {max_extensions!r})")
    factor = max(b / a for a, b in zip(grid, grid[1:]))
    cfg = json.loads(json.dumps(config.to_dict()))
    if cfg["routing"]["kind"] == "optimal":
        cfg["routing"]["step_size"] = "fixed"  # the rate itself is what is tuned
    extensions = 0
    while True:
        jobs = tuning_jobs("tune", cfg, grid, seeds)
        # a record counts only for the configuration it was computed with (another one tuned into
        # the same folder runs again), and only records of these jobs are read
        records = run_jobs(jobs, tuning_runs if batch > 1 else tuning_run, JobStore(Path(output)), backend=backend,
                           workers=workers, address=address, progress=progress, batch=batch,
                           settings=inputs_digest, check=check_tuning_record,
                           describe=lambda r: f"lr {r['lr']:g} seed {r['seed']}: score {r['score']:.4f}")
        ids = {i for i, _ in jobs}
        mine = [r for r in records if r["id"] in ids]
        result = best_learning_rate(mine)
        nxt = next_rate_out(result, factor)
        if nxt is None or extensions >= max_extensions:
            break
        grid.append(nxt)
        extensions += 1
    result = TuningResult(result.best_lr, result.table, result.at_edge, extensions)
    atomic_write_json(Path(output) / "tune.json", {"config": cfg, "seeds": list(seeds), **result.to_dict()})
    return result
