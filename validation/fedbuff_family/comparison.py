"""Server algorithms compared at equal simulated time, paired by seed (FedBuff, FedEcho, FedRevive).

A *preset* names a scenario: a training configuration shared by every run (data set and split,
system, local training, time budget) and the algorithms to compare. For each seed (data split,
model initialisation, schedule and minibatches all follow it) every algorithm replays the same
simulated schedule up to the same ``run.time_budget``, with its spec defaults (ALGORITHMS.md;
nothing tuned here) unless the preset says otherwise. One run is one job of
:func:`aflqueue.jobs.run_jobs` (stamped with the package's and this study's code, :data:`CODE`);
a long run also checkpoints, so an interrupted
job resumes from its last checkpoint.

Presets (:data:`PRESETS`):

* ``stale``: digits, 20 clients with a Dirichlet(0.1) label split, two speed groups 10x apart,
  uniform routing and ``m = 2n = 40`` tasks in flight, so the slow clients' updates arrive very
  stale. Budget 1300 (about 2,100 arrivals), 5 seeds. ``quick``: 8 clients, ``m = 16``, budget
  250, 2 seeds.
* ``fedrevive-schedule``: the shape of FedRevive's asynchronous schedule: 1000 logical clients
  with 100 tasks in flight (about 0.1 per client, so a client rarely queues), Dirichlet(0.5);
  per client an exponential compute time whose mean is drawn once from {1.0, 1.3, 1.6} with
  probabilities 0.25/0.5/0.25, a download of exactly 0.1 and an upload uniform on +-0.02 about
  a per-client mean drawn from {0.15, 0.25}. Links are delay (infinite-server) stations: a
  transfer takes its own time whatever else is in flight, and by BCMP insensitivity the exact
  analysis stays exact for these non-exponential link laws. Data: mnist1d with 12,000 samples
  (9,600 train, 960 of them the server's unlabeled set, ~8.6 per client; digits' 1,797
  samples would leave ~1.3 per client). The Dirichlet partitioner redraws, then repairs, until
  every client holds at least one sample (``aflqueue.fl.partition.dirichlet``, ``min_size=1``).
  Budget 160, about 9,300 arrivals (exact throughput 58 per time unit). ``quick``: 100 clients,
  ``m = 10``, budget 10, 2 seeds (a smoke test).
* ``fedecho-like``: FedEcho's regime of buffered aggregation under large delays: digits,
  20 clients, Dirichlet(0.1); the five device types (rates 3 to 0.1, 30x apart) with lognormal
  compute times (CV 2: a heavy tail); ``m = 3n = 60``, so the slowest type's updates are about
  280 updates (28 buffered versions) old (exact analysis, mean only); FedBuff's buffer B = 10 for
  FedBuff and FedEcho. Budget 1200, about 2,300 arrivals. ``quick``: 10 clients, ``m = 30``,
  budget 150, 2 seeds.

A preset whose system is not a speed profile gives a *system description* (the structured
layout of :func:`aflqueue.system.load_system`): it is written next to the run and named by
``system.file``. Add a preset by adding an entry to :data:`PRESETS`; nothing else changes.

Records (``<out>/cells/<preset>__<algorithm>__s<seed>.json``) hold what the inputs determine:
final accuracy and loss, accuracy at half the budget, the evaluation curve, time to the
preset's target accuracy, arrivals, model versions, staleness, the algorithm's counts and
memory (bytes besides the model); wall-clock seconds go to ``timings/``. The statistics and the
report are :func:`validation.fedbuff_family.report.summarize_comparison` and
:func:`validation.fedbuff_family.report.write_comparison_report`; the command is
``validation/fedbuff_family/stale_algorithms.py``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from aflqueue.errors import check_integer, check_positive, require
from aflqueue.io import atomic_write_json, dumps_json, json_digest
from aflqueue.jobs import JobStore, run_jobs
from aflqueue.outcomes import split_timings, time_to_target
from validation import code

__all__ = ["ComparisonPreset", "PRESETS", "ALGORITHMS", "resolve", "jobs_of", "run_comparison", "comparison_run",
           "fedrevive_schedule_system", "memory_bytes", "apply_overrides", "CODE"]

#: The code outside the package that computes this study's records (stamped into them).
CODE = code("fedbuff_family")

ALGORITHMS = ("fedbuff", "fedecho", "fedrevive")
FORMAT_VERSION = 2  # 1: the first script's results.json (results/stale_algorithms); 2: one record per run


@dataclass(frozen=True)
class ComparisonPreset:
    """A scenario for comparing server algorithms.

    Attributes:
        name: preset name (job ids start with it).
        title: one line for the report.
        config: the :class:`~aflqueue.config.TrainConfig` mapping shared by every run (without
            ``output``, ``seed`` and ``algorithm``); ``run.time_budget`` is in simulated time units.
        target: test accuracy in ``[0, 1]`` for "time to target".
        seeds: seeds ``0 .. seeds-1``.
        algorithms: server algorithms compared; the first is the reference of paired differences.
        algorithm_params: per algorithm, hyper-parameters overriding its spec defaults.
        system: builds the system description (structured mapping) for ``data.clients`` clients,
            or None when ``config["system"]`` is a speed profile.
        quick: dotted-key overrides of the smoke version (e.g. ``{"data.clients": 8}``);
            ``quick_seeds``: its number of seeds.
    """

    name: str
    title: str
    config: Mapping[str, Any]
    target: float
    seeds: int = 5
    algorithms: tuple[str, ...] = ALGORITHMS
    algorithm_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    system: Callable[[int], dict[str, Any]] | None = None
    quick: Mapping[str, Any] = field(default_factory=dict)
    quick_seeds: int = 2


def _base(dataset: dict[str, Any], system: dict[str, Any], budget: float,
          local: dict[str, Any] | None = None) -> dict[str, Any]:
    """A preset's configuration: every run on CPU with one torch thread, uniform routing, the data
    set's default model, 10 evaluations over the budget and a checkpoint every 500 arrivals."""
    return {
        "device": "cpu",
        "data": dataset,
        "model": {"name": None, "options": {}},
        "system": system,
        "routing": {"kind": "uniform"},
        "local": local or {"steps": 5, "lr": 0.05, "batch_size": 32, "optimizer": "sgd", "weight_decay": 0.0},
        "run": {"updates": None, "time_budget": float(budget), "eval_every": 0, "eval_times": 10,
                "checkpoint_every": 500, "threads": 1},
    }


def fedrevive_schedule_system(n: int, concurrency: int, seed: int = 0) -> dict[str, Any]:
    """System description of the ``fedrevive-schedule`` preset (module docstring), ``n`` clients.

    Per-client means are drawn once from ``np.random.default_rng(seed)`` (compute mean, then
    upload mean), so the population is the same for every run seed. Times in time units."""
    n = check_integer(n, "data.clients", 1)
    rng = np.random.default_rng(seed)
    compute = rng.choice([1.0, 1.3, 1.6], size=n, p=[0.25, 0.5, 0.25])
    upload = rng.choice([0.15, 0.25], size=n)
    clients = [{"name": f"c{i}",
                "service": {"law": "exponential", "mean": float(compute[i])},
                "downlink": {"service": {"law": "deterministic", "mean": 0.1}, "discipline": "delay"},
                "uplink": {"service": {"law": "uniform", "low": float(upload[i]) - 0.02,
                                       "high": float(upload[i]) + 0.02}, "discipline": "delay"}}
               for i in range(n)]
    return {"clients": clients, "concurrency": int(concurrency)}


def _fedrevive_system(n: int) -> dict[str, Any]:
    return fedrevive_schedule_system(n, concurrency=max(1, n // 10))


PRESETS: dict[str, ComparisonPreset] = {
    "stale": ComparisonPreset(
        "stale", "digits, 20 clients, Dirichlet(0.1) labels, two speed groups (rates 1 and 1/10), uniform "
                 "routing, m = 40 tasks in flight",
        _base({"dataset": "digits", "clients": 20, "partition": "dirichlet", "alpha": 0.1, "unlabeled_fraction": 0.1},
              {"profile": "two-groups", "fast_rate": 1.0, "slow_factor": 10.0, "concurrency": 40}, 1300.0),
        target=0.8, quick={"data.clients": 8, "system.concurrency": 16, "run.time_budget": 250.0}),
    "fedrevive-schedule": ComparisonPreset(
        "fedrevive-schedule", "mnist1d (12,000 samples), 1000 clients, Dirichlet(0.5) labels, exponential compute "
                              "(mean 1.0/1.3/1.6 w.p. 0.25/0.5/0.25), download 0.1, upload uniform +-0.02 about "
                              "0.15 or 0.25 (delay links), uniform routing, m = 100 tasks in flight",
        _base({"dataset": "mnist1d", "options": {"num_samples": 12000}, "clients": 1000, "partition": "dirichlet",
               "alpha": 0.5, "unlabeled_fraction": 0.1}, {"concurrency": 0}, 160.0),
        target=0.5, system=_fedrevive_system, quick={"data.clients": 100, "run.time_budget": 10.0}),
    "fedecho-like": ComparisonPreset(
        "fedecho-like", "digits, 20 clients, Dirichlet(0.1) labels, five device types 30x apart (rates 3 to 0.1) "
                        "with lognormal compute times (CV 2), uniform routing, m = 60 tasks in flight, buffer B = 10",
        _base({"dataset": "digits", "clients": 20, "partition": "dirichlet", "alpha": 0.1, "unlabeled_fraction": 0.1},
              {"profile": "five-types", "service": "lognormal:cv=2", "concurrency": 60}, 1200.0),
        target=0.8, algorithm_params={"fedbuff": {"buffer": 10}, "fedecho": {"buffer": 10}},
        quick={"data.clients": 10, "system.concurrency": 30, "run.time_budget": 150.0}),
    # seconds: tests of the machinery (synthetic data, a few hundred arrivals)
    "tiny": ComparisonPreset(
        "tiny", "synthetic data (600 samples), 6 clients, Dirichlet(0.5), two speed groups, m = 6",
        _base({"dataset": "synthetic", "options": {"num_samples": 600, "num_features": 10, "num_classes": 4},
               "clients": 6, "partition": "dirichlet", "alpha": 0.5, "unlabeled_fraction": 0.1},
              {"profile": "two-groups", "fast_rate": 1.0, "slow_factor": 5.0, "concurrency": 6}, 300.0,
              local={"steps": 2, "lr": 0.1, "batch_size": 32, "optimizer": "sgd", "weight_decay": 0.0}),
        target=0.8, seeds=2, algorithms=("fedbuff", "fedecho")),
}


# --------------------------------------------------------------------------- the plan
def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *path, leaf = dotted.split(".")
    for k in path:
        d = d.setdefault(k, {})
    d[leaf] = value


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with dotted-key ``overrides`` (``{"data.clients": 8}``) set."""
    cfg = copy.deepcopy(dict(config))
    for k, v in overrides.items():
        _set(cfg, k, v)
    return cfg


def resolve(preset: ComparisonPreset, quick: bool = False, budget: float | None = None,
            seeds: int | None = None) -> tuple[ComparisonPreset, list[int]]:
    """The preset with its quick overrides and an explicit ``budget`` (simulated time units)
    applied, and the seeds to run (``seeds`` of them, default the preset's)."""
    cfg = apply_overrides(preset.config, preset.quick if quick else {})
    if budget is not None:
        _set(cfg, "run.time_budget", check_positive(budget, "budget"))
    s = (preset.quick_seeds if quick else preset.seeds) if seeds is None else check_integer(seeds, "seeds", 1)
    return replace(preset, config=cfg), list(range(s))


def _system_mapping(preset: ComparisonPreset) -> dict[str, Any] | None:
    return None if preset.system is None else preset.system(int(preset.config["data"]["clients"]))


def _settings(preset: ComparisonPreset, system: dict[str, Any] | None) -> dict[str, Any]:
    """What a record must have been computed with: the shared configuration and, for a preset
    with a system description, the SHA-256 of that description (it can be large)."""
    s: dict[str, Any] = {"format": FORMAT_VERSION, "preset": preset.name, "config": preset.config,
                         "target": preset.target, "algorithm_params": preset.algorithm_params}
    if system is not None:
        s["system_sha256"] = json_digest(system)
    return s


def jobs_of(preset: ComparisonPreset, seeds: list[int], runs_dir: str | Path) -> list[tuple[str, tuple]]:
    """Jobs ``(id, args)``, seed-major (every algorithm of seed 0 first). A run's checkpoints live
    in ``runs_dir/<id>-<settings hash>``, so changed settings never meet an old checkpoint."""
    from aflqueue.fl.algorithms import ALGORITHM_NAMES

    for a in preset.algorithms:
        require(a in ALGORITHM_NAMES, "algorithms", f"unknown algorithm {a!r}; allowed: {', '.join(ALGORITHM_NAMES)}")
    system = _system_mapping(preset)
    settings = _settings(preset, system)
    tag = json_digest(settings, 8)
    out = []
    for seed in seeds:
        for alg in preset.algorithms:
            job_id = f"{preset.name}__{alg}__s{seed}"
            out.append((job_id, (preset.name, settings, preset.config, alg, dict(preset.algorithm_params.get(alg, {})),
                                 seed, str(Path(runs_dir) / f"{job_id}-{tag}"), system, preset.target)))
    return out


# --------------------------------------------------------------------------- one run
def memory_bytes(costs: Mapping[str, Any], parameters: int) -> int:
    """Server memory besides the model: the algorithm's own report; FedBuff reports none, and holds
    only its accumulation buffer (``P`` float32 values)."""
    return int(costs.get("memory_total_bytes", 4 * parameters))


def comparison_run(args: tuple) -> dict[str, Any]:
    """Train one (algorithm, seed) of a preset; resumes from the run folder's checkpoint.

    ``args = (preset name, settings, config, algorithm, params, seed, run folder, system, target)``:
    ``config`` is the shared :class:`~aflqueue.config.TrainConfig` mapping (without ``output``,
    ``seed``, ``algorithm``), ``params`` the algorithm's hyper-parameters, ``system`` a system
    description or None, ``target`` the accuracy of ``time_to_target``; ``settings`` is not read
    (it is what :func:`aflqueue.jobs.run_jobs` checks a saved record against).
    The record's accuracies are on whatever ``run.evaluate_on`` names (test by default)."""
    import torch

    from aflqueue.config import TrainConfig
    from aflqueue.fl.models import count_parameters
    from aflqueue.pipeline import prepare, train

    preset, _, base, algorithm, params, seed, run_dir, system, target = args
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    out = Path(run_dir)
    d = copy.deepcopy(base)
    d.update({"output": str(out), "seed": seed, "algorithm": {"name": algorithm, "params": params}})
    if system is not None:
        atomic_write_json(out / "system.json", system)
        d["system"] = {**d["system"], "file": str(out / "system.json")}
    cfg = TrainConfig.from_dict(d)
    pr = prepare(cfg)
    parameters = count_parameters(pr.model)
    res = train(cfg, resume=True, prepared=pr)
    r = res.to_dict()
    times, accs = r["time"], r["test_accuracy"]
    half = cfg.run.time_budget / 2
    acc_half = next((a for tt, a in zip(times, accs) if tt >= half - 1e-9), math.nan)
    stal = np.asarray(res.log["staleness"], dtype=float)
    counts, timings = split_timings(r["costs"])
    # a diverged run stops; its last evaluation is of the diverged model, and nothing at or after
    # that time counts as reaching a target
    diverged_at_time = float(res.log["time"][-1]) if res.diverged else None
    return {"preset": preset, "algorithm": algorithm, "seed": seed, "target": target,
            "final_accuracy": r["final_accuracy"], "final_loss": r["final_loss"],
            "accuracy_at_half_budget": acc_half,
            "time_to_target": time_to_target(res.curves, target, diverged_at_time=diverged_at_time),
            "diverged": bool(res.diverged), "diverged_at_time": diverged_at_time,
            "time_budget": cfg.run.time_budget, "evaluated_on": cfg.run.evaluate_on,
            "curve": {"time": times, "test_accuracy": accs}, "arrivals": r["arrivals"],
            "simulated_time": r["simulated_time"], "versions": int(res.log["model_version"][-1]),
            "staleness_mean": float(stal.mean()), "staleness_p90": float(np.quantile(stal, 0.9)),
            "staleness_max": int(stal.max()), "parameters": parameters,
            "memory_bytes": memory_bytes(counts, parameters), "state_bytes": counts.get("memory_state_bytes"),
            "costs": counts,
            "timing": {"wall_time": r["wall_time"], "wall_time_call": time.perf_counter() - t0, **timings}}


def _describe(rec: dict[str, Any]) -> str:
    return (f"accuracy {100 * rec['final_accuracy']:.1f}% ({rec['arrivals']} arrivals, {rec['versions']} versions, "
            f"mean staleness {rec['staleness_mean']:.1f})")


def run_comparison(preset: ComparisonPreset | str, out: str | Path, runs_dir: str | Path | None = None, *,
                   quick: bool = False, budget: float | None = None, seeds: int | None = None, fresh: bool = False,
                   progress: Callable[[str], None] | None = print, backend: str = "serial",
                   workers: int | None = None, limit: int | None = None) -> tuple[ComparisonPreset, list[dict]]:
    """Run every missing (algorithm, seed) of ``preset`` and return the resolved preset and the
    records of its jobs (finished ones included).

    ``out``: records folder (also holds ``comparison.json``, the resolved preset); ``runs_dir``:
    per-run outputs and checkpoints (default ``out/runs``); ``fresh``: recompute these jobs from
    scratch. ``limit`` stops after that many new jobs (used to test interruption)."""
    import shutil

    if isinstance(preset, str):
        require(preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)} (got {preset!r})")
        preset = PRESETS[preset]
    preset, seed_list = resolve(preset, quick, budget, seeds)
    out = Path(out)
    runs = Path(runs_dir) if runs_dir is not None else out / "runs"
    jobs = jobs_of(preset, seed_list, runs)
    if fresh:
        for _, args in jobs:
            shutil.rmtree(args[6], ignore_errors=True)
    atomic_write_json(out / "comparison.json", {"format": FORMAT_VERSION, "preset": preset.name, "quick": quick,
                                                 "seeds": seed_list, "settings": jobs[0][1][1] if jobs else None})
    records = run_jobs(jobs, comparison_run, JobStore(out), backend=backend, workers=workers, progress=progress,
                       limit=limit, describe=_describe, settings=lambda a: a[1], fresh=fresh, code=CODE)
    ids = {i for i, _ in jobs}
    return preset, [r for r in records if r["id"] in ids]


def preset_summary(preset: ComparisonPreset) -> dict[str, Any]:
    """The resolved preset as plain data (for the report): name, title, configuration, target."""
    return json.loads(dumps_json({"name": preset.name, "title": preset.title, "config": preset.config,
                                  "target": preset.target, "algorithms": list(preset.algorithms),
                                  "algorithm_params": preset.algorithm_params}, None))
