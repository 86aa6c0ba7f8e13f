"""Validation grid (superseded by the paper study): does the routing chosen by the queueing
optimiser deliver its predicted gain?

A *cell* is one training run: (data set, speed scenario, data partition, routing, algorithm,
seed). Every cell is a pure function of its parameters: it calibrates the proxy constants at the
initial model, computes its routing (uniform = AsyncSGD with ``m = n``; or the optimum of P1
per-update, P2 wall-clock, P3 time-to-accuracy with its own ``m*``, P5 max-throughput; and
"P2 + its step size": the P2 routing trained with the local learning rate scaled by the ratio
``eta*(P2) / eta*(uniform)`` of the proxy's optimal step sizes, i.e. the optimiser's whole
answer rather than the routing alone; every other routing uses the data set's fixed rate),
simulates the schedule, trains for the scenario's simulated-time budget and records predicted
proxies next to measured accuracy. Cells are written one JSON file each, atomically, as they
finish; a rerun skips the files present, so an interrupted grid resumes and any backend
(``serial``, ``process``, ``ray``) produces the same files.

A cell file holds only what the cell's inputs determine, so the same grid gives the same bytes
on every backend; wall-clock measurements (run time, server seconds per arrival) are written
next to it in ``timings/<id>.json`` and merged back by :func:`load_cells`.

Budgets are fixed per data set *before* any comparison, from AsyncSGD alone: ``tau`` is the
time uniform routing needs for ``U0`` updates (exact throughput, :func:`aflqueue.protocol.time_budget`),
the target accuracy is one AsyncSGD typically reaches within ``tau``, and P3's target ``eps`` is
the proxy value uniform routing reaches after ``U0`` updates (:func:`aflqueue.protocol.target_epsilon`).
Every cell is a job of :func:`aflqueue.jobs.run_jobs`, stamped with the package's and this
study's code (:data:`CODE`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aflqueue.errors import require
from aflqueue.io import atomic_write_json
from aflqueue.jobs import JobStore, run_jobs
from aflqueue.parallel import BACKENDS
from validation import code

__all__ = ["Cell", "DatasetSpec", "Preset", "PRESETS", "ROUTINGS", "ROUTING_LABELS", "DATASETS", "cells_of",
           "cell_config", "run_cell", "run_grid", "load_cells", "BACKENDS", "CODE"]

#: The code outside the package that computes this study's records (stamped into them).
CODE = code("grid")

ROUTINGS = ("uniform", "per-update", "wallclock", "wallclock-eta", "time-to-accuracy", "max-throughput")
ROUTING_LABELS = {"uniform": "AsyncSGD (uniform)", "per-update": "P1 per-update", "wallclock": "P2 wall-clock",
                  "wallclock-eta": "P2 + its step size", "time-to-accuracy": "P3 time-to-accuracy",
                  "max-throughput": "P5 max-throughput"}
PARTITIONS = {"iid": ("iid", None), "dir0.5": ("dirichlet", 0.5), "dir0.1": ("dirichlet", 0.1)}


@dataclass(frozen=True)
class DatasetSpec:
    """Per data set settings, fixed from AsyncSGD pilots before any comparison.

    Attributes:
        name: data set (offline: digits, mnist1d; or a torchvision set with ``data_root``).
        updates: ``U0``, AsyncSGD updates that define the time budget.
        target: test accuracy for "time to target".
        lr, batch_size, steps: local training.
        options: loader options (e.g. mnist1d ``num_samples``).
    """

    name: str
    updates: int
    target: float
    lr: float = 0.05
    batch_size: int = 32
    steps: int = 1
    options: dict[str, Any] = field(default_factory=dict)


DATASETS = {
    # tiny and fast: tests and smoke runs
    "synthetic": DatasetSpec("synthetic", updates=200, target=0.60, lr=0.1,
                             options={"num_samples": 800, "num_features": 10, "num_classes": 4}),
    "digits": DatasetSpec("digits", updates=800, target=0.90),
    "mnist1d": DatasetSpec("mnist1d", updates=4000, target=0.60),
    # torchvision sets (with --data-root): budgets for the default small CNNs
    "mnist": DatasetSpec("mnist", updates=3000, target=0.95),
    "fashionmnist": DatasetSpec("fashionmnist", updates=3000, target=0.80),
    "kmnist": DatasetSpec("kmnist", updates=3000, target=0.85),
    "emnist": DatasetSpec("emnist", updates=4000, target=0.75),
    "cifar10": DatasetSpec("cifar10", updates=6000, target=0.50),
    "cifar100": DatasetSpec("cifar100", updates=8000, target=0.20),
}


@dataclass(frozen=True)
class Cell:
    dataset: str
    speed: str
    partition: str
    routing: str
    algorithm: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}__{self.speed}__{self.partition}__{self.routing}__{self.algorithm}__s{self.seed}"


@dataclass(frozen=True)
class Preset:
    """Which cells a grid contains. ``main`` cells: every routing with Generalized AsyncSGD;
    ``algorithms`` are compared under ``algorithm_routings`` on ``algorithm_partitions``."""

    name: str
    datasets: tuple[str, ...]
    speeds: tuple[str, ...] = ("two-groups", "five-types")
    partitions: tuple[str, ...] = ("iid", "dir0.5", "dir0.1")
    routings: tuple[str, ...] = ROUTINGS
    algorithms: tuple[str, ...] = ("fedbuff", "fedecho", "fedrevive")
    algorithm_routings: tuple[str, ...] = ("uniform", "wallclock")
    algorithm_partitions: tuple[str, ...] | None = None  # None: same as partitions
    algorithm_datasets: tuple[str, ...] | None = None  # None: same as datasets
    algorithm_speeds: tuple[str, ...] | None = None  # None: same as speeds
    seeds: int = 3
    clients: int = 20
    unlabeled_fraction: float = 0.1


PRESETS = {
    # seconds: smoke tests of the machinery
    "tiny": Preset("tiny", datasets=("synthetic",), speeds=("two-groups",), partitions=("dir0.5",),
                   routings=("uniform", "wallclock", "max-throughput"), algorithms=("fedbuff",),
                   algorithm_routings=("uniform",), seeds=2, clients=6),
    # under 15 minutes on a 2-core CPU
    "small": Preset("small", datasets=("digits",), partitions=("iid", "dir0.1"), algorithm_partitions=("dir0.1",),
                    algorithm_speeds=("two-groups",)),
    # the committed cells (results/default): 324 runs, superseded by the paper study
    "default": Preset("default", datasets=("digits", "mnist1d"), algorithm_datasets=("digits",)),
    "full": Preset("full", datasets=("digits", "mnist1d"), seeds=5),
}


def cells_of(preset: Preset, seeds: int | None = None, datasets: Sequence[str] | None = None) -> list[Cell]:
    """All cells of a preset (optionally other seeds count / data sets), in a fixed order."""
    S = preset.seeds if seeds is None else int(seeds)
    require(S >= 1, "seeds", f"must be >= 1 (got {S})")
    ds = tuple(datasets) if datasets else preset.datasets
    for d in ds:
        require(d in DATASETS, "datasets", f"unknown data set {d!r}; allowed: {', '.join(DATASETS)}")
    out: list[Cell] = []
    for seed in range(S):
        for d in ds:
            for sp in preset.speeds:
                for part in preset.partitions:
                    for r in preset.routings:
                        out.append(Cell(d, sp, part, r, "generalized-asyncsgd", seed))
                    alg_parts = preset.algorithm_partitions or preset.partitions
                    alg_ds = preset.algorithm_datasets or ds
                    alg_sp = preset.algorithm_speeds or preset.speeds
                    if part in alg_parts and d in alg_ds and sp in alg_sp:
                        for alg in preset.algorithms:
                            for r in preset.algorithm_routings:
                                out.append(Cell(d, sp, part, r, alg, seed))
    return out


# --------------------------------------------------------------------------- one cell
def cell_config(cell: Cell, spec: DatasetSpec, preset: Preset, data_root: str | None, device: str, output: str):
    """The :class:`~aflqueue.config.TrainConfig` of a cell (routing and time budget are set by
    :func:`run_cell`)."""
    from aflqueue.config import load_config

    kind, alpha = PARTITIONS[cell.partition]
    sets = [f"output={json.dumps(output)}", f"seed={cell.seed}", f"device={json.dumps(device)}",
            f"data.dataset={json.dumps(cell.dataset)}", f"data.clients={preset.clients}",
            f"data.partition={json.dumps(kind)}", f"data.unlabeled_fraction={preset.unlabeled_fraction}",
            f"data.options={json.dumps(spec.options)}", f"system.profile={json.dumps(cell.speed)}",
            f"local.lr={spec.lr}", f"local.batch_size={spec.batch_size}", f"local.steps={spec.steps}",
            f"algorithm.name={json.dumps(cell.algorithm)}", "run.time_budget=1", "run.updates=null", "run.eval_every=0",
            "run.eval_times=20", "run.checkpoint_every=0"]
    if alpha is not None:
        sets.append(f"data.alpha={alpha}")
    if data_root:
        sets.append(f"data.data_root={json.dumps(data_root)}")
    return load_config(None, sets)


def run_cell(cell: Cell, preset: Preset, data_root: str | None = None, device: str = "cpu",
             workdir: str | None = None) -> dict[str, Any]:
    """Run one cell and return its result record (JSON-serialisable)."""
    import tempfile

    import torch

    from aflqueue.calibration import calibrate
    from aflqueue.config import with_updates
    from aflqueue.optimization import OptimizationProblem, assess
    from aflqueue.outcomes import split_timings, time_to_target
    from aflqueue.pipeline import build_data_and_model, build_system, prepare, train
    from aflqueue.protocol import target_epsilon, time_budget

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    spec = DATASETS[cell.dataset]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cfg = cell_config(cell, spec, preset, data_root, device, tmp)  # time budget set below
        # calibrate the constants at the initial model on the clients' data (same for every routing)
        d = cfg.data
        data, model = build_data_and_model(cfg)
        cal = calibrate(model, data.clients, seed=cfg.seed)
        constants = cal.constants
        system = build_system(cfg, d.clients)
        n = system.n
        tau = time_budget(system, spec.updates)
        # P3's target: the proxy value AsyncSGD reaches after U0 updates
        eps = target_epsilon(system, constants, spec.updates)
        objective = "wallclock" if cell.routing == "wallclock-eta" else cell.routing
        routing = {"kind": "uniform"} if cell.routing == "uniform" else {
            "kind": "optimal", "objective": objective, "constants": constants.to_dict(), "epsilon": eps,
            "p_min": 0.0 if cell.routing == "max-throughput" else 1e-3,
            "concurrency_range": [1, 2 * n] if cell.routing == "time-to-accuracy" else [],
            # "P2 + its step size" trains the optimiser's whole operating point; the others its routing only
            "step_size": "optimal" if cell.routing == "wallclock-eta" else "fixed"}
        cfg = with_updates(cfg, routing=routing, run={"time_budget": tau})
        pr = prepare(cfg, data, model)
        lr = pr.lr
        res = train(cfg, prepared=pr)
        problem = OptimizationProblem(pr.system, "wallclock", constants=constants, time_budget=tau, epsilon=eps,
                                      updates=float(spec.updates), p_min=0.0)
        pred = assess(problem, pr.system.routing, pr.system.concurrency)
        counts, timings = split_timings(res.costs)
        tr = pr.trace
        order = tr.update_order[: res.arrivals]
        measured_delay = [float(x) if np.isfinite(x) else None for x in
                          [np.mean(tr.relative_delay[order][tr.client[order] == i]) if np.any(tr.client[order] == i)
                           else np.nan for i in range(n)]]
    return {
        "cell": asdict(cell), "preset": preset.name, "time_budget": tau, "target": spec.target,
        "epsilon": eps, "lr": lr, "local_steps": spec.steps,
        "routing": [float(x) for x in pr.system.routing], "concurrency": int(pr.system.concurrency),
        "rates": [float(x) for x in pr.system.rates], "constants": constants.to_dict(),
        "constants_spread": {k: {s: v for s, v in sp.items() if s != "values"} for k, sp in cal.spread.items()},
        "predicted": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in pred.items()
                      if k not in ("routing",)},
        "measured": {"final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "arrivals": res.arrivals,
                     "time_to_target": time_to_target(res.curves, spec.target), "curves": res.curves,
                     "relative_delay": measured_delay, "costs": counts},
        "timing": {"wall_time": time.perf_counter() - t0, **timings},
    }


# --------------------------------------------------------------------------- the grid
def load_cells(output: str | Path) -> list[dict[str, Any]]:
    """All finished cell records under ``output`` (see :class:`aflqueue.jobs.JobStore`)."""
    return JobStore(Path(output)).load()


def _cell_worker(args: tuple) -> dict[str, Any]:
    cell, preset, data_root, device, workdir = args
    return run_cell(cell, preset, data_root, device, workdir)


def run_grid(preset: Preset, output: str | Path, *, seeds: int | None = None, datasets: Sequence[str] | None = None,
             data_root: str | None = None, device: str = "cpu", backend: str = "serial", workers: int | None = None,
             address: str | None = None, gpus_per_cell: float = 0.0, progress: Callable[[str], None] | None = print,
             limit: int | None = None) -> list[dict[str, Any]]:
    """Run every missing cell of ``preset`` and return all cell records (finished ones included).

    ``backend``: ``serial`` (in process), ``process`` (``workers`` local processes) or ``ray``
    (an existing cluster at ``address``, or a local instance; ``gpus_per_cell`` GPUs per task).
    Each finished cell is written to ``output/cells/<id>.json`` as soon as it returns; ``limit``
    stops after that many new cells (used to test interruption).
    """
    require(backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    out = Path(output)
    store = JobStore(out)
    jobs = [(c.id, (c, preset, data_root, device, None)) for c in cells_of(preset, seeds, datasets)]
    atomic_write_json(out / "grid.json", {"preset": asdict(preset), "seeds": seeds, "datasets": datasets,
                                          "data_root": data_root, "device": device})
    return run_jobs(jobs, _cell_worker, store, backend=backend, workers=workers, address=address,
                    num_gpus=gpus_per_cell, progress=progress, limit=limit, code=CODE,
                    describe=lambda r: f"accuracy {r['measured']['final_accuracy']:.4f}")
