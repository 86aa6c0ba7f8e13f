"""AsyncSGD against the operating point on one's own configuration, paired by seed (``aflqueue
validate CONFIG``; ``aflqueue run`` is the same on the embedded default).

For each seed: exact analysis of AsyncSGD's network (uniform routing at the configuration's
concurrency) fixes the time budget -- the expected time of ``U0`` AsyncSGD updates
(:func:`aflqueue.protocol.time_budget`); the wall-clock optimiser, with constants calibrated at the
seed's initial model (docs/theory.md section 7), gives the operating point (routing, concurrency
and step size); both are simulated and trained for that same simulated time. The gains are paired
by seed, with intervals on each quantity's natural scale (bootstrap for accuracy differences, log
scale for time ratios; docs/theory.md section 8) -- and no interval below 3 seeds, where the
per-seed values are reported instead. Runs are saved as they finish: an interrupted comparison
resumes. This is a quick look on one's own task, not a tuned study: both arms train at the
configuration's learning rate (the operating point at its step-size rule).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ._results import Result
from .config import TrainConfig, load_config, with_updates
from .errors import check_integer, check_number, check_values, require
from .io import atomic_write_json
from .jobs import JobStore, inputs_digest, run_jobs
from .outcomes import check_run_record, time_to_target
from .pipeline import build_system, prepare, train
from .protocol import time_budget
from .stats import Estimate, bootstrap_interval, log_ratio_interval

__all__ = ["Validation", "validate", "check_validation_record", "ARMS", "MIN_INTERVAL_SEEDS"]

#: The two arms, in order: AsyncSGD (uniform routing) and the wall-clock operating point.
ARMS = {"uniform": "AsyncSGD (uniform)", "optimal": "wall-clock operating point"}
#: Fewest seeds an interval is stated from (below it, the per-seed values).
MIN_INTERVAL_SEEDS = 3


@dataclass(frozen=True, eq=False, repr=False)
class Validation(Result):
    """What :func:`validate` measured (per arm and paired by seed).

    Attributes:
        time_budget: simulated time units; target_accuracy: the test accuracy whose time to reach is
            compared; seeds: the seeds with both arms finished.
        per_arm: ``{"uniform" | "optimal": {"accuracy" (estimate), "reached_target", "diverged",
            "throughput_predicted", "throughput_simulated", "arrivals", "lr"}}`` (means over seeds).
        accuracy_difference: operating point minus AsyncSGD at the budget (test accuracy, bootstrap
            interval); time_to_target_ratio: operating point over AsyncSGD (log-scale interval), over
            the ``time_to_target_pairs`` seeds where both reached the target;
            predicted_wallclock_ratio: the proxy's prediction of it.
        per_seed: the paired values per seed (what to read when there are fewer than 3 seeds).
        intervals: False below :data:`MIN_INTERVAL_SEEDS` seeds (every interval then None).
    """

    time_budget: float
    target_accuracy: float
    seeds: list[int]
    per_arm: dict[str, dict[str, Any]]
    accuracy_difference: Estimate
    time_to_target_ratio: Estimate
    time_to_target_pairs: int
    predicted_wallclock_ratio: Estimate
    per_seed: list[dict[str, Any]]
    intervals: bool

    frame_index: ClassVar[str] = "pair"
    frame_attrs: ClassVar[tuple[str, ...]] = ("time_budget", "target_accuracy", "accuracy_difference",
                                              "time_to_target_ratio", "predicted_wallclock_ratio", "intervals")

    def title(self) -> str:
        return f"Validation: AsyncSGD vs the operating point over {len(self.seeds)} paired seeds"

    def frame_columns(self) -> dict[str, np.ndarray]:
        """One row per seed: ``seed``, ``accuracy_difference``, ``time_to_target_ratio`` (NaN where
        an arm did not reach the target)."""
        return {k: np.array([np.nan if r[k] is None else r[k] for r in self.per_seed], dtype=float)
                for k in ("seed", "accuracy_difference", "time_to_target_ratio")}


def _run(args: tuple) -> dict[str, Any]:
    """One training run (a job of :func:`aflqueue.jobs.run_jobs`)."""
    from .sim import estimate  # lazy: numba

    t0 = time.perf_counter()
    cfg = TrainConfig.from_dict(args)
    pr = prepare(cfg)
    res = train(cfg, prepared=pr, force=True)  # a folder without its record is what a crash left: redo it
    est = estimate(pr.trace, warmup=0.1, batches=10)
    kind = "uniform" if cfg.routing.kind == "uniform" else "optimal"
    rec = {
        "routing_kind": kind, "seed": cfg.seed, "routing": [float(x) for x in pr.routing],
        "concurrency": int(pr.system.concurrency), "step_size": pr.step_size, "lr": pr.lr,
        "predicted": {k: pr.predicted.get(k) for k in ("throughput", "wallclock", "S1", "S2")},
        "simulated_throughput": est.throughput.to_dict(), "arrivals": res.arrivals,
        "final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "diverged": res.diverged,
        "curves": res.curves, "timing": {"wall_time": time.perf_counter() - t0},
    }
    atomic_write_json(Path(cfg.output) / "summary_run.json", rec)
    return rec


def check_validation_record(record: dict[str, Any]) -> None:
    """A saved run record of :func:`validate` holds what :func:`summarize` reads: ``routing_kind``
    one of :data:`ARMS`, an integer ``seed``, ``lr`` > 0, the predicted throughput and wall-clock
    proxy (> 0 or null), the simulated throughput's ``mean`` > 0 and the fields of every run record
    (:func:`~aflqueue.outcomes.check_run_record`); else :class:`~aflqueue.errors.ValidationError`
    naming the field."""
    kind = record.get("routing_kind")
    require(kind in ARMS, "routing_kind", f"must be one of {', '.join(ARMS)} (got {kind!r})")
    check_integer(record.get("seed"), "seed", 0)
    check_number(record.get("lr"), "lr", 0.0, lo_open=True)
    pred, sim = record.get("predicted"), record.get("simulated_throughput")
    require(isinstance(pred, dict), "predicted", "must be a table (throughput, wallclock, S1, S2)")
    for k in ("throughput", "wallclock"):
        check_values([pred.get(k)], f"predicted.{k}", "the record", lo=0.0, nullable=True)
    require(isinstance(sim, dict), "simulated_throughput", "must be a table (mean, lo, hi)")
    check_number(sim.get("mean"), "simulated_throughput.mean", 0.0, lo_open=True)
    check_run_record(record)


def arm_config(cfg: TrainConfig, kind: str, seed: int, tau: float, output: Path) -> TrainConfig:
    """The run of arm ``kind`` (``uniform`` or ``optimal``) at ``seed`` for the time budget ``tau``."""
    routing: dict[str, Any] = {"kind": kind}
    if kind == "optimal":
        routing.update(constants="calibrate", objective="wall-clock")
    return with_updates(cfg, output=str(output.as_posix()), seed=int(seed), routing=routing,
                        run={"time_budget": float(tau), "updates": None, "eval_every": 0, "eval_times": 20,
                             "checkpoint_every": 0})


def summarize(records: list[dict[str, Any]], tau: float, target: float) -> Validation:
    """Paired gains of the operating point over AsyncSGD (module docstring)."""
    by: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["seed"], {})[r["routing_kind"]] = {**r, "time_to_target": time_to_target(r["curves"], target)}
    pairs = {s: v for s, v in sorted(by.items()) if len(v) == 2}
    seeds = list(pairs)
    stated = len(seeds) >= MIN_INTERVAL_SEEDS
    per_seed = []
    for s, p in pairs.items():
        a, b = p["uniform"], p["optimal"]
        ratio = b["time_to_target"] / a["time_to_target"] if a["time_to_target"] and b["time_to_target"] else None
        per_seed.append({"seed": s, "accuracy_difference": b["final_accuracy"] - a["final_accuracy"],
                         "time_to_target_ratio": ratio})

    def interval(values, how) -> Estimate:
        v = [x for x in values if x is not None and math.isfinite(x)]
        if not v:
            return Estimate(math.nan, math.nan, math.nan, 0)
        e = how(v)
        return e if stated else Estimate(e.mean, math.nan, math.nan, len(v))

    ratios = [r["time_to_target_ratio"] for r in per_seed]
    predicted = [p["optimal"]["predicted"]["wallclock"] / p["uniform"]["predicted"]["wallclock"]
                 for p in pairs.values() if p["uniform"]["predicted"]["wallclock"] and p["optimal"]["predicted"]["wallclock"]]
    per = {k: {"accuracy": interval([p[k]["final_accuracy"] for p in pairs.values()], bootstrap_interval).to_dict(),
               "reached_target": sum(p[k]["time_to_target"] is not None for p in pairs.values()),
               "diverged": sum(bool(p[k]["diverged"]) for p in pairs.values()),
               "throughput_predicted": float(np.mean([p[k]["predicted"]["throughput"] for p in pairs.values()])),
               "throughput_simulated": float(np.mean([p[k]["simulated_throughput"]["mean"] for p in pairs.values()])),
               "arrivals": float(np.mean([p[k]["arrivals"] for p in pairs.values()])),
               "lr": float(np.mean([p[k]["lr"] for p in pairs.values()]))} for k in ARMS} if pairs else {}
    return Validation(time_budget=tau, target_accuracy=target, seeds=seeds, per_arm=per,
                      accuracy_difference=interval([r["accuracy_difference"] for r in per_seed], bootstrap_interval),
                      time_to_target_ratio=interval(ratios, log_ratio_interval),
                      time_to_target_pairs=sum(r is not None for r in ratios),
                      predicted_wallclock_ratio=interval(predicted, log_ratio_interval), per_seed=per_seed,
                      intervals=stated)


def validate(cfg: TrainConfig | None = None, *, seeds: int = 5, seed: int = 0, updates: int | None = None,
             target: float | None = None, output: str | Path = "runs/validate", backend: str = "serial",
             workers: int | None = None, address: str | None = None,
             progress: Callable[[str], None] | None = None) -> Validation:
    """Compare AsyncSGD and the wall-clock operating point on ``cfg`` (module docstring; default:
    the embedded configuration) over seeds ``seed .. seed + seeds - 1``.

    ``updates``: ``U0``, whose expected AsyncSGD time is the budget (default ``cfg.run.updates``);
    ``target``: the test accuracy whose time to reach is compared (default: 0.9 x AsyncSGD's mean
    final accuracy over the seeds, rounded down to 0.01 -- read off AsyncSGD alone, before any
    ratio). Runs and ``summary.json`` are written under ``output``."""
    cfg = cfg if cfg is not None else load_config(None)
    require(isinstance(seeds, int) and 1 <= seeds <= 1000, "seeds", f"must be an integer in [1, 1000] (got {seeds!r})")
    require(isinstance(seed, int) and seed >= 0, "seed", f"must be an integer >= 0 (got {seed!r})")
    U0 = updates if updates is not None else cfg.run.updates
    require(U0 is not None and 100 <= U0 <= 10**7, "updates",
            f"the budget needs U0 in [100, 10000000] AsyncSGD updates (got {U0!r})")
    require(target is None or 0 < target < 1, "target", f"must be an accuracy in (0, 1) (got {target!r})")
    out = Path(output)
    tau = time_budget(build_system(cfg, cfg.data.clients), U0)
    jobs = [(f"{k}_s{s}", arm_config(cfg, k, s, tau, out / f"{k}_s{s}").to_dict())
            for s in range(seed, seed + seeds) for k in ARMS]
    ids = {i for i, _ in jobs}
    # a record counts only for the configuration it was computed with (another one validated into
    # the same folder runs again), and only records of these jobs are read
    records = [r for r in run_jobs(jobs, _run, JobStore(out / "runs"), backend=backend, workers=workers,
                                   address=address, progress=progress, settings=inputs_digest,
                                   check=check_validation_record)
               if r["id"] in ids]
    if target is None:  # read off AsyncSGD alone, before any ratio
        accs = [r["final_accuracy"] for r in records if r["routing_kind"] == "uniform" and not r["diverged"]]
        require(bool(accs), "target", "AsyncSGD diverged on every seed; give a target or a smaller learning rate")
        target = math.floor(0.9 * float(np.mean(accs)) * 100) / 100
    summary = summarize(records, tau, target)
    atomic_write_json(out / "summary.json", summary.to_dict())
    return summary
