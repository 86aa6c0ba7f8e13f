"""The recommendation on held-out regimes (PROTOCOL.md): the regimes, the runs and their stages.

Per regime: AsyncSGD's learning rate is tuned (rates extended out of every edge), the target is
fixed from it, :func:`aflqueue.recommendation.recommend` chooses an operating point from its own pilots
(its prediction saved before any evaluation run), then both arms -- and, where AsyncSGD is kept,
the best finalist -- train on the evaluation seeds. Every run is a resumable job stamped with the
package's code and this folder's (:func:`aflqueue.jobs.run_jobs`).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aflqueue.config import TrainConfig, with_updates
from aflqueue.errors import require
from aflqueue.io import atomic_write_json, read_json
from aflqueue.jobs import JobStore, run_jobs
from aflqueue.tuning import best_learning_rate, score_curves

HERE = Path(__file__).resolve().parent
#: Code outside the package that the runs execute: stamped into every record (the report and the
#: command only read records, so they are not part of a record's version).
CODE = (HERE / "experiment.py",)

LR_GRID = (0.01, 0.0234, 0.0548, 0.128, 0.3)
#: Factor of the next rate out from an edge (the grid's own spacing) and the most extensions.
EXTEND, MAX_EXTENSIONS = 0.3 / 0.128, 6
TUNING_SEEDS = (1000, 1001)
START_LR = 0.0548
EVALUATIONS = 50
#: Runs per replica batch (``aflqueue.replicated``: runs per core-hour flat from 20 to 32 on CPU).
BATCH = 32
PARTITIONS = {"iid": {"partition": "iid"}}


def partition(name: str) -> dict[str, Any]:
    """The data section's partition fields of ``iid``, ``dir<alpha>`` or ``k<classes>``."""
    if name == "iid":
        return {"partition": "iid"}
    if name.startswith("dir"):
        return {"partition": "dirichlet", "alpha": float(name[3:])}
    require(name.startswith("k") and name[1:].isdigit(), "partition", f"unknown {name!r}")
    return {"partition": "k_classes", "classes_per_client": int(name[1:])}


@dataclass(frozen=True)
class Regime:
    """A system, partition and model of the map (PROTOCOL.md). ``m``: ``"n"``, ``"n/2"`` or ``"2n"``."""

    id: str
    tier: str
    n: int
    model: str
    spread: float
    partition: str
    m: str
    u0: int | None = None
    n_samples: int | None = None

    @property
    def concurrency(self) -> int:
        return {"n": self.n, "n/2": self.n // 2, "2n": 2 * self.n}[self.m]

    @property
    def updates(self) -> int:
        """``U0``: AsyncSGD's updates whose expected time is the budget."""
        return self.u0 or (4000 if self.n <= 100 else 8000)

    @property
    def samples(self) -> int:
        return self.n_samples or (8000 if self.n <= 100 else 20000)

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        return tuple(range(10 if self.tier == "held-out" else 5))


def _regimes(tier: str, rows: Sequence[tuple]) -> list[Regime]:
    return [Regime(r[0], tier, *r[1:]) for r in rows]


HELD_IN = _regimes("held-in", [
    ("H1", 100, "mlp", 3, "iid", "n"), ("H2", 100, "mlp", 10, "dir0.3", "n"), ("H3", 100, "mlp", 30, "dir0.3", "n"),
    ("H4", 100, "mlp", 100, "iid", "n"), ("H5", 100, "mlp", 30, "k2", "n"), ("H6", 100, "mlp", 10, "iid", "n/2"),
    ("H7", 100, "mlp", 100, "dir0.3", "2n"), ("H8", 100, "mlp", 30, "dir1.0", "n"), ("H9", 100, "mlp", 3, "dir0.1", "n"),
    ("H10", 100, "mlp", 60, "k5", "n")])
HELD_OUT = _regimes("held-out", [
    ("O1", 100, "mlp", 10, "iid", "n"), ("O2", 100, "mlp", 30, "dir0.5", "n"), ("O3", 100, "mlp", 100, "dir0.1", "n"),
    ("O4", 100, "mlp", 30, "k3", "n"), ("O5", 100, "mlp", 100, "k3", "n"), ("O6", 100, "mlp", 10, "dir0.1", "n/2"),
    ("O7", 100, "mlp", 30, "iid", "2n"), ("O8", 100, "mlp", 100, "dir0.5", "n"), ("O9", 500, "mlp", 30, "iid", "n"),
    ("O10", 500, "mlp", 30, "dir0.1", "n"), ("O11", 500, "mlp", 100, "dir0.5", "n"), ("O12", 500, "mlp", 10, "k3", "n"),
    ("O13", 100, "cnn1d", 30, "dir0.1", "n"), ("O14", 100, "cnn1d", 100, "iid", "n"),
    ("O15", 100, "cnn1d", 10, "dir0.5", "n"), ("O16", 100, "cnn1d", 30, "k3", "n")])
REGIMES = {r.id: r for r in HELD_IN + HELD_OUT}


def regime_config(regime: Regime, seed: int, lr: float, *, samples: int | None = None,
                  updates: int | None = None) -> TrainConfig:
    """The run configuration of AsyncSGD in ``regime`` (budget: ``U0`` updates of it, as time)."""
    from aflqueue.pipeline import build_system
    from aflqueue.protocol import time_budget

    data = {"dataset": "mnist1d", "clients": regime.n, **partition(regime.partition), "validation_fraction": 0.1,
            "options": {"num_samples": samples or regime.samples, "test_fraction": 0.2}}
    cfg = TrainConfig.from_dict({
        "output": "unused", "seed": int(seed), "device": "cpu", "data": data, "model": {"name": regime.model},
        "system": {"profile": "five-types", "spread": float(regime.spread), "concurrency": regime.concurrency},
        "local": {"steps": 1, "lr": float(lr), "batch_size": 32},
        "run": {"time_budget": 1.0, "updates": None, "eval_every": 0, "eval_times": EVALUATIONS,
                "checkpoint_every": 0}})
    tau = time_budget(build_system(cfg, regime.n), updates or regime.updates)
    return with_updates(cfg, run={"time_budget": float(tau)})


# ----------------------------------------------------------------------------------- one run
def train_run(args: tuple) -> dict[str, Any]:
    """One training run (a job): ``(config dict, split)`` with ``split`` ``"validation"`` (tuning)
    or ``"test"`` (evaluation); returns the curves and what the statistics read off them."""
    import torch

    from aflqueue.pipeline import prepare, train

    config, split = args
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_updates(TrainConfig.from_dict(config), output=tmp, run={"evaluate_on": split})
        pr = prepare(cfg)
        res = train(cfg, prepared=pr)
    rec = _record(cfg, res, time.perf_counter() - t0)
    rec["execution"] = "serial"
    return rec


def train_runs(batch: list[tuple]) -> list[dict[str, Any]]:
    """A chunk of runs (a batched job, ``run_jobs(..., batch=R)``), replica-batched where they can
    be (:func:`aflqueue.replicated.train_replicas`): the records of :func:`train_run`, each saying
    how it was computed (``execution``)."""
    import torch

    from aflqueue.replicated import train_replicas

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    cfgs = [with_updates(TrainConfig.from_dict(config), run={"evaluate_on": split}) for config, split in batch]
    results = train_replicas(cfgs, write_outputs=False)
    wall = (time.perf_counter() - t0) / max(len(cfgs), 1)
    return [_record(cfg, res, wall) for cfg, res in zip(cfgs, results)]


def _record(cfg: TrainConfig, res, wall: float) -> dict[str, Any]:
    horizon = float(cfg.run.time_budget)
    return {"split": cfg.run.evaluate_on, "lr": float(cfg.local.lr), "seed": int(cfg.seed), "time_budget": horizon,
            "routing": [float(x) for x in res.routing], "concurrency": int(res.concurrency),
            "weight_cap": cfg.algorithm.params.get("weight_cap"), "execution": res.meta.get("execution", "serial"),
            "measured": {"score": score_curves(res.curves, horizon), "final_accuracy": res.final_accuracy,
                         "arrivals": int(res.arrivals), "simulated_time": float(res.simulated_time),
                         "diverged": bool(res.diverged), "curves": res.curves},
            "timing": {"wall_time": wall}}


def _job(regime: Regime, arm: str, seed: int, config: TrainConfig, split: str) -> tuple[str, tuple]:
    return (f"{regime.id}__{arm}__lr{config.local.lr:.4g}__s{seed}", (config.to_dict(), split))


# ----------------------------------------------------------------------------------- stage 1: tuning
def tuning_rates(records: Sequence[dict[str, Any]]) -> tuple[list[float], bool]:
    """The rates to add so that the best one is interior (PROTOCOL.md: both directions, a factor
    ``EXTEND``), and whether the best one is interior already."""
    done = [r for r in records if r["split"] == "validation"]
    res = best_learning_rate([{"lr": r["lr"], "seed": r["seed"], "score": r["measured"]["score"],
                               "diverged": r["measured"]["diverged"]} for r in done])
    lrs = sorted({r["lr"] for r in done})
    if not res.at_edge:
        return [], True
    nxt = res.best_lr * EXTEND if res.best_lr == lrs[-1] else res.best_lr / EXTEND
    return [float(f"{nxt:.4g}")], False


def run_tuning(regimes: Sequence[Regime], out: Path, **kw) -> dict[str, dict[str, Any]]:
    """AsyncSGD tuned per regime, extended out of every edge (PROTOCOL.md, arm 1); returns each
    regime's ``{"lr", "at_edge", "extensions", "target", "table"}``."""
    store = JobStore(out / "tuning")
    lrs = {r.id: list(LR_GRID) for r in regimes}
    pending = {r.id: 0 for r in regimes}
    result: dict[str, dict[str, Any]] = {}
    while pending:
        jobs = [_job(r, "asyncsgd", s, regime_config(r, s, lr), "validation")
                for r in regimes if r.id in pending for lr in lrs[r.id] for s in TUNING_SEEDS]
        records = run_jobs(jobs, train_runs, store, code=CODE, batch=BATCH, **kw)
        for r in [x for x in regimes if x.id in pending]:
            mine = [x for x in records if x["id"].startswith(f"{r.id}__asyncsgd__")]
            more, interior = tuning_rates(mine)
            if interior or pending[r.id] >= MAX_EXTENSIONS:
                result[r.id] = _tuned(r, mine, pending[r.id], interior)
                del pending[r.id]
            else:
                lrs[r.id] += more
                pending[r.id] += 1
    return result


def _tuned(regime: Regime, records: list[dict[str, Any]], extensions: int, interior: bool) -> dict[str, Any]:
    res = best_learning_rate([{"lr": r["lr"], "seed": r["seed"], "score": r["measured"]["score"],
                               "diverged": r["measured"]["diverged"]} for r in records])
    finals = [r["measured"]["final_accuracy"] for r in records if r["lr"] == res.best_lr]
    target = math.floor(0.9 * float(np.mean(finals)) * 100) / 100
    return {"lr": res.best_lr, "at_edge": not interior, "extensions": extensions, "target": target,
            "table": res.table}


# ----------------------------------------------------------------------------------- stage 2: recommendation
def run_recommendations(regimes: Sequence[Regime], out: Path, *, backend: str = "serial", workers: int | None = None,
                        progress: Callable[[str], None] | None = print) -> dict[str, dict[str, Any]]:
    """Each regime's recommendation, saved (``recommendations/<id>.json``) before any of its
    evaluation runs; a saved one is read back, never recomputed."""
    from aflqueue.recommendation import job_runner, recommend

    recs = {}
    for r in regimes:
        path = out / "recommendations" / f"{r.id}.json"
        if path.is_file():
            recs[r.id] = read_json(path, "recommendation")
            continue
        cfg = regime_config(r, 2000, START_LR)
        t0 = time.perf_counter()
        runner = job_runner(out / "pilots" / r.id, backend=backend, workers=workers, progress=progress, code=CODE,
                            batched=True)
        rec = recommend(cfg, updates=r.updates, runner=runner)
        d = {**rec.to_dict(), "regime": asdict(r), "code_version": _version(), "wall": time.perf_counter() - t0}
        atomic_write_json(path, d)
        recs[r.id] = d
        if progress:
            progress(f"[{r.id}] {rec.verdict()}")
    return recs


def _version() -> dict[str, Any]:
    from aflqueue.jobs import code_version

    return code_version(CODE)


# ----------------------------------------------------------------------------------- stage 3: evaluation
def evaluation_jobs(regimes: Sequence[Regime], tuned: dict[str, dict[str, Any]],
                    recs: dict[str, dict[str, Any]]) -> list[tuple[str, tuple]]:
    """Both arms on the evaluation seeds, and the best finalist where AsyncSGD was kept."""
    jobs = []
    for r in regimes:
        rec = recs[r.id]
        arms = [("asyncsgd", None, tuned[r.id]["lr"]), ("recommended", rec, rec["lr"])]
        if rec["keep_asyncsgd"] and rec["finalists"]:
            arms.append(("finalist", rec, None))
        for s in r.eval_seeds:
            for arm, point, lr in arms:
                cfg = regime_config(r, s, tuned[r.id]["lr"])
                if arm == "recommended" and not rec["keep_asyncsgd"]:
                    cfg = _at_point(cfg, rec["routing"], rec["concurrency"], rec["weight_cap"], lr)
                elif arm == "recommended":
                    cfg = with_updates(cfg, local={"lr": float(lr)})
                elif arm == "finalist":
                    cfg = _at_finalist(cfg, r, rec)
                jobs.append(_job(r, arm, s, cfg, "test"))
    return jobs


def _at_point(cfg: TrainConfig, routing, concurrency: int, cap, lr: float) -> TrainConfig:
    params = {} if cap is None else {"weight_cap": float(cap)}
    return with_updates(cfg, routing={"kind": "explicit", "values": [float(x) for x in routing]},
                        system={"concurrency": int(concurrency)}, local={"lr": float(lr)},
                        algorithm={"name": "generalized-asyncsgd", "params": params})


def _at_finalist(cfg: TrainConfig, regime: Regime, rec: dict[str, Any]) -> TrainConfig:
    """The best finalist's operating point, read off its pilot runs (routing, m, cap, rate)."""
    name = min(rec["finalists"], key=lambda k: math.inf if rec["finalists"][k]["ratio"] is None
               else rec["finalists"][k]["ratio"])
    point = rec["points"][name]
    return _at_point(cfg, point["routing"], point["concurrency"], point["weight_cap"], rec["finalists"][name]["lr"])


def run_study(out: str | Path, *, tiers: Sequence[str] = ("held-in", "held-out"), regimes: Sequence[str] = (),
              backend: str = "serial", workers: int | None = None, progress: Callable[[str], None] | None = print,
              catalogue: Sequence[Regime] = HELD_IN + HELD_OUT) -> dict[str, Any]:
    """Every stage for the chosen regimes of ``catalogue`` (PROTOCOL.md, execution); returns what
    exists."""
    out = Path(out)
    chosen = [r for r in catalogue if r.tier in tiers and (not regimes or r.id in regimes)]
    require(bool(chosen), "regimes", f"none chosen; ids are {', '.join(REGIMES)}")
    kw = dict(backend=backend, workers=workers, progress=progress)
    tuned = run_tuning(chosen, out, **kw)
    atomic_write_json(out / "tuned.json", {**_read(out / "tuned.json"), **tuned})
    recs = run_recommendations(chosen, out, **kw)
    records = run_jobs(evaluation_jobs(chosen, tuned, recs), train_runs, JobStore(out / "cells"), code=CODE,
                       batch=BATCH, **kw)
    return {"tuned": tuned, "recommendations": recs, "evaluation": records}


def _read(path: Path) -> dict[str, Any]:
    return read_json(path, "tuned") if path.is_file() else {}
