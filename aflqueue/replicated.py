"""Many training runs from configurations, replica-batched where they can be.

:func:`train_replicas` takes the :class:`~aflqueue.config.TrainConfig` objects that
:func:`aflqueue.pipeline.train` takes and returns the same :class:`~aflqueue.fl.engine.TrainResult`
for each, in order. Runs that can share a batch (one of
:data:`~aflqueue.fl.replicas.BATCHABLE_ALGORITHMS`, the same architecture, device, thread count and
local optimiser settings; seeds, data splits, routings, concurrencies, learning rates, batch
sizes, budgets and algorithm parameters may all differ) are trained together by
:class:`~aflqueue.fl.replicas.ReplicaTrainer`; the others run one by one with
:func:`aflqueue.pipeline.train`. Each result's ``meta["execution"]`` says which:
``"replica-batched(R=..)"`` or ``"serial"``. A batchable run is replica-batched even when it is
alone (R = 1, about 0.7x the serial engine's speed): a replica's bits do not depend on its
companions, so a run's result never depends on how a backend split the job list among workers.

What a batched run writes in ``cfg.output`` is what :func:`~aflqueue.pipeline.train` writes
(``config.json``, ``trace.npz``, ``results.json``, ``updates.csv``) but for ``checkpoint.pt``:
a batch is not resumable mid-way (it is rerun whole; a study runner saves each result as its
batch returns). The data split and initial model of configurations that share their ``seed``,
``data`` and ``model`` sections are built once and shared.

A batched result equals the serial one to the tolerances of :mod:`validation.agreement` (in the source repository), not
bit for bit (the local gradients come from batched matrix products):
:mod:`aflqueue.fl.replicas` says why and what is identical.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import TrainConfig, with_updates
from .errors import require
from .io import atomic_write_json
from .pipeline import (Prepared, build_data_and_model, engine_settings, evaluation_data, local_config, prepare,
                       run_meta, train)

__all__ = ["train_replicas", "group_runs", "DEFAULT_MAX_REPLICAS"]

#: Replicas per batch by device kind (CPU: runs per core-hour of the paper preset's MLPs still grew
#: from R = 20 to 32, the largest measured, ``validation/bench_replicas.py``, while memory grows
#: with R: about 0.7 GB at R = 32 and m = 100; CUDA: bounded by ``run.max_memory_gb``).
DEFAULT_MAX_REPLICAS = {"cpu": 32, "cuda": 128}


def _data_key(cfg: TrainConfig) -> str:
    return json.dumps({"seed": cfg.seed, "data": cfg.to_dict()["data"], "model": cfg.to_dict()["model"]},
                      sort_keys=True, default=str)


def group_runs(configs: Sequence[TrainConfig], prepared: Sequence[Prepared]) -> list[list[int]]:
    """Indices of ``configs`` that can share a replica batch, one list per group (a run that
    cannot be batched is a group of one), in order of first appearance."""
    from .fl.replicas import batch_key  # lazy: torch

    groups: dict[Any, list[int]] = {}
    out: list[list[int]] = []
    for j, (cfg, pr) in enumerate(zip(configs, prepared)):
        key = batch_key(pr.model, local_config(cfg, pr), cfg.algorithm.name)
        if key is None:
            out.append([j])
            continue
        key = (key, cfg.device, cfg.run.threads, tuple(pr.data.input_shape))
        if key not in groups:
            groups[key] = []
            out.append(groups[key])
        groups[key].append(j)
    return out


def train_replicas(configs: Sequence[TrainConfig], *, prepared: Sequence[Prepared | None] | None = None,
                   max_replicas: int | None = None, write_outputs: bool = True, progress: bool = False,
                   on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Train every configuration; replica-batched where possible (module docstring).

    Args:
        configs: the runs.
        prepared: for each run, its :class:`~aflqueue.pipeline.Prepared` (e.g. after a study's own
            calibration and optimisation), or None to prepare it here.
        max_replicas: the most runs per batch (default :data:`DEFAULT_MAX_REPLICAS` for the
            device); within a group, runs are batched in order of their number of arrivals, so that
            runs of similar length share a batch.
        write_outputs: write each run's outputs in its ``cfg.output`` as ``pipeline.train`` does
            (with ``execution`` in ``results.json``); False: nothing is written anywhere (a run
            trained serially saves as it goes into a temporary folder).
        progress: progress bars.
        on_result: called as ``on_result(index, result)`` as soon as each result exists (e.g. to
            save it: a batch returns all its results together).

    Returns:
        One :class:`~aflqueue.fl.engine.TrainResult` per configuration, in order.
    """
    # lazy: torch
    import aflqueue.fl  # noqa: F401  (without the fl extra: one ImportError naming it, before any work)
    from .fl.engine import write_run_files  # lazy: torch
    from .fl.replicas import Replica, batch_key  # lazy: torch

    cfgs, preps = _checked_and_prepared(configs, prepared, max_replicas)
    results: list[Any] = [None] * len(cfgs)

    def done(j: int, res) -> None:
        results[j] = res
        if on_result is not None:
            on_result(j, res)

    views: dict[tuple[int, str], Any] = {}

    def data_for(j: int):  # one view per shared data set and split, so replicas share one copy on the device
        key = (id(preps[j].data), cfgs[j].run.evaluate_on)
        if key not in views:
            views[key] = evaluation_data(cfgs[j], preps[j])
        return views[key]

    def serially(j: int) -> None:  # the engine alone: what cannot be batched
        if write_outputs:
            res = train(cfgs[j], prepared=preps[j], progress=progress)
        else:  # the engine saves as it goes: into a folder that goes away, never into cfg.output
            with tempfile.TemporaryDirectory(prefix="aflqueue-run-") as tmp:
                res = train(with_updates(cfgs[j], output=tmp), prepared=preps[j], progress=progress)
        res.meta["execution"] = "serial"
        if write_outputs:
            write_run_files(Path(cfgs[j].output), res)
        done(j, res)

    for group in group_runs(cfgs, preps):
        if batch_key(preps[group[0]].model, local_config(cfgs[group[0]], preps[group[0]]),
                     cfgs[group[0]].algorithm.name) is None:
            serially(group[0])
            continue
        device = cfgs[group[0]].device
        cap = max_replicas or DEFAULT_MAX_REPLICAS["cuda" if device.startswith("cuda") else "cpu"]
        order = sorted(group, key=lambda j: (_arrivals(cfgs[j], preps[j]), j))
        for chunk in _chunks(order, cfgs, preps, cap):
            reps = [Replica(model=preps[j].model, data=data_for(j), trace=preps[j].trace,
                            algorithm=cfgs[j].algorithm.name, algorithm_params=dict(cfgs[j].algorithm.params),
                            local=local_config(cfgs[j], preps[j]), settings=engine_settings(cfgs[j]),
                            meta=run_meta(cfgs[j], preps[j])) for j in chunk]
            if write_outputs:
                for j in chunk:
                    _write_inputs(cfgs[j], preps[j])
            batch = _run_batch(reps, device, progress, cfgs[chunk[0]].run.threads,
                               min(cfgs[j].run.max_memory_gb for j in chunk))
            for j, res in zip(chunk, batch):
                if write_outputs:
                    write_run_files(Path(cfgs[j].output), res)
                done(j, res)
    return results


def _checked_and_prepared(configs: Sequence[TrainConfig], prepared: Sequence[Prepared | None] | None,
                          max_replicas: int | None) -> tuple[list[TrainConfig], list[Prepared]]:
    """The arguments of :func:`train_replicas` checked, and every run prepared (the data split and
    initial model of runs that share ``seed``, ``data`` and ``model`` built once)."""
    cfgs = list(configs)
    for j, c in enumerate(cfgs):
        require(isinstance(c, TrainConfig), f"configs[{j}]", f"must be a TrainConfig (got {type(c).__name__})")
    given = list(prepared) if prepared is not None else [None] * len(cfgs)
    require(len(given) == len(cfgs), "prepared", f"has {len(given)} entries for {len(cfgs)} configurations")
    if max_replicas is not None:
        require(isinstance(max_replicas, int) and max_replicas >= 1, "max_replicas",
                f"must be an integer >= 1 (got {max_replicas!r})")
    built: dict[str, tuple] = {}
    preps: list[Prepared] = []
    for cfg, pr in zip(cfgs, given):
        if pr is None:
            key = _data_key(cfg)
            if key not in built:
                built[key] = build_data_and_model(cfg)
            pr = prepare(cfg, *built[key])
        preps.append(pr)
    return cfgs, preps


def _run_batch(reps: list[Any], device: str, progress: bool, threads: int, max_memory_gb: float) -> list[Any]:
    """One :class:`~aflqueue.fl.replicas.ReplicaTrainer` run with torch's CPU threads set for it."""
    import torch  # lazy: torch

    from .fl.replicas import ReplicaTrainer  # lazy: torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return ReplicaTrainer(reps, device=device, progress=progress, max_memory_gb=max_memory_gb).run()
    finally:
        torch.set_num_threads(before)


def _write_inputs(cfg: TrainConfig, pr: Prepared) -> None:
    """What ``pipeline.train`` writes before a run starts: ``config.json`` and ``trace.npz``."""
    out = Path(cfg.output)
    require(not out.exists() or out.is_dir(), "output", f"{str(out)!r} exists and is not a folder")
    atomic_write_json(out / "config.json", cfg.to_dict(), indent=2)
    pr.trace.save(out / "trace.npz")


def _chunks(order: list[int], cfgs: Sequence[TrainConfig], preps: Sequence[Prepared], cap: int) -> list[list[int]]:
    """``order`` cut into consecutive batches of at most ``cap`` runs whose memory
    (:func:`aflqueue.fl.replicas.memory_bytes`) stays within their ``run.max_memory_gb``."""
    from .fl.local import ParamSpec  # lazy: torch
    from .fl.replicas import memory_bytes  # lazy: torch

    out: list[list[int]] = []
    cur: list[int] = []
    for j in order:
        trial = cur + [j]
        P = ParamSpec(preps[j].model).numel
        size = next(preps[j].model.parameters()).element_size()
        need = memory_bytes(P, [preps[i].trace.concurrency for i in trial],
                            any(str(cfgs[i].algorithm.name).strip().lower() == "fedbuff" for i in trial), size)
        if cur and (len(trial) > cap or need > min(cfgs[i].run.max_memory_gb for i in trial) * 2**30):
            out.append(cur)
            trial = [j]
        cur = trial
    if cur:
        out.append(cur)
    return out


def _arrivals(cfg: TrainConfig, pr: Prepared) -> int:
    """Arrivals the run will apply (within its budget): how long it is."""
    tr, run = pr.trace, cfg.run
    times = np.sort(tr.completion_time[tr.completed])
    U = len(times)
    if run.time_budget is not None:
        U = int(np.searchsorted(times, run.time_budget, side="right"))
    if run.updates is not None:
        U = min(U, run.updates)
    return U


