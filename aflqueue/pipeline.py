"""The pipeline: configuration -> system -> optimisation -> simulation -> training.

From a :class:`~aflqueue.config.TrainConfig` to a trained model: the whole flow.

``prepare`` builds the data split, the model, the system (client speeds), the routing
(uniform, optimal for a proxy, or explicit) and the schedule (a simulated trace covering the
budget, or a saved one); ``train`` replays the schedule with :class:`TraceTrainer` and writes
the outputs next to the resolved configuration.

This module is the one place where the queueing side (``system``, ``queueing``, ``optimize``,
``bounds``, ``calibrate``, ``sim``) meets the training side (``aflqueue.fl``), so that ``fl``
depends only on torch, the trace type and its own modules.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig, system_rates
from .errors import ValidationError, require
from .sim.trace import Trace
from .system import System, load_system

__all__ = ["Prepared", "prepare", "train", "simulate_for_budget", "build_data_and_model"]


@dataclass
class Prepared:
    """Everything a run needs, resolved from the configuration."""

    config: TrainConfig
    system: System
    routing: np.ndarray
    trace: Trace
    data: Any
    model: Any
    optimization: Any = None
    constants: Any = None
    predicted: dict[str, Any] = field(default_factory=dict)


def build_system(cfg: TrainConfig, n: int) -> System:
    s = cfg.system
    if s.file:
        sysm = load_system(s.file)
        require(sysm.n == n, "system.file", f"describes {sysm.n} clients but data.clients = {n}")
        return sysm.with_concurrency(s.concurrency) if s.concurrency else sysm
    return System.from_rates(system_rates(s, n), concurrency=s.concurrency or n, service=s.service)


def simulate_for_budget(system: System, seed: int, updates: int | None, time_budget: float | None,
                        engine: str = "auto") -> Trace:
    """A trace long enough for the budget. For a time budget the number of updates is estimated
    from the exact throughput and doubled until the trace covers it; with a fixed seed a longer
    run extends a shorter one (same random streams), so the schedule does not depend on the guess."""
    from .queueing.analysis import analyze
    from .sim import simulate

    if time_budget is None:
        return simulate(system, int(updates), seed=seed, engine=engine)
    U = int(math.ceil(analyze(system).throughput * time_budget * 1.25)) + 50
    if updates is not None:
        U = min(U, int(updates))  # the update budget binds first: no need to cover the time
    while True:
        tr = simulate(system, U, seed=seed, engine=engine)
        if tr.horizon >= time_budget or (updates is not None and U >= updates):
            return tr
        U *= 2


def build_data_and_model(cfg: TrainConfig):
    """The configuration's federated data split and (seeded) initial model."""
    from .fl.data import default_model_for, make_federated
    from .fl.models import build_model

    d = cfg.data
    data = make_federated(d.dataset, d.clients, d.partition, alpha=d.alpha, classes_per_client=d.classes_per_client,
                          quantity_alpha=d.quantity_alpha, unlabeled_fraction=d.unlabeled_fraction,
                          data_root=d.data_root, seed=cfg.seed, max_train=d.max_train, max_test=d.max_test,
                          **d.options)
    model = build_model(cfg.model.name or default_model_for(d.dataset), data.input_shape, data.num_classes,
                        seed=cfg.seed, **cfg.model.options)
    return data, model


def prepare(cfg: TrainConfig, data=None, model=None) -> Prepared:
    """Resolve a configuration; ``data``/``model`` may be passed when already built from it
    (:func:`build_data_and_model`); the model is used only as an initial state and not modified."""
    d = cfg.data
    if data is None or model is None:
        data, model = build_data_and_model(cfg)
    system = build_system(cfg, d.clients)
    n = system.n
    r = cfg.routing
    optimization = constants = None
    if r.kind == "uniform":
        p = np.full(n, 1.0 / n)
    elif r.kind == "explicit":
        from .system import validate_routing

        p = np.array(validate_routing(r.values, n, "routing.values"))
    else:
        from .bounds import ProxyConstants
        from .optimize import OptimizationProblem, optimize

        if r.constants == "calibrate":
            from .calibrate import calibrate

            constants = calibrate(model, data.clients, seed=cfg.seed).constants
        elif isinstance(r.constants, dict):
            constants = ProxyConstants.from_dict(r.constants)
        else:
            raise ValidationError("routing.constants", "must be a table of constants or \"calibrate\"")
        rng = tuple(r.concurrency_range) if r.concurrency_range else None
        if rng is not None:
            require(len(rng) == 2, "routing.concurrency_range", f"must be [lo, hi] (got {list(rng)})")
        problem = OptimizationProblem(system, r.objective, constants=constants, p_min=r.p_min, concurrency=rng,
                                      epsilon=r.epsilon)
        optimization = optimize(problem, seed=cfg.seed)
        p = optimization.routing
        system = system.with_concurrency(optimization.concurrency)
    system = system.with_routing(p)
    run = cfg.run
    if run.trace:
        trace = Trace.load(run.trace)
        require(trace.n_clients == n, "run.trace", f"has {trace.n_clients} clients, the data {n}")
        system = system.with_concurrency(trace.concurrency)
    else:
        trace = simulate_for_budget(system, cfg.seed, run.updates, run.time_budget, run.engine)
    predicted: dict[str, Any] = {}
    try:
        from .optimize import OptimizationProblem, assess

        predicted = assess(OptimizationProblem(system, "wallclock", constants=constants or _default_constants(),
                                               p_min=0.0, time_budget=run.time_budget), system.routing,
                           system.concurrency)
    except ValidationError:
        pass
    return Prepared(cfg, system, np.asarray(system.routing), trace, data, model, optimization, constants, predicted)


def _default_constants():
    from .bounds import ProxyConstants

    return ProxyConstants()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = False, prepared: Prepared | None = None):
    """Prepare (unless given) and train; write outputs under ``cfg.output``; return the result."""
    from .fl.engine import EngineSettings, TraceTrainer
    from .fl.local import LocalConfig

    pr = prepared or prepare(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    lc = cfg.local
    run = cfg.run
    settings = EngineSettings(updates=run.updates, time_budget=run.time_budget, eval_every=run.eval_every,
                              eval_times=run.eval_times, checkpoint_every=run.checkpoint_every,
                              batched=run.batched, max_batch=run.max_batch, seed=cfg.seed)
    meta = {
        "dataset": cfg.data.dataset, "routing": [float(x) for x in pr.routing],
        "concurrency": int(pr.system.concurrency), "n_clients": int(pr.system.n),
        "rates": [float(x) for x in pr.system.rates], "seed": cfg.seed,
        "predicted": {k: v for k, v in pr.predicted.items() if k not in ("routing",)},
        "optimization": None if pr.optimization is None else {
            k: v for k, v in pr.optimization.to_dict().items() if k in ("objective", "objective_value", "concurrency",
                                                                        "eta", "throughput", "constants")},
        "data": {k: v for k, v in pr.data.summary().items() if k in ("name", "num_clients", "client_sizes",
                                                                     "label_skew", "partition", "test_size")},
    }
    import torch

    trainer = TraceTrainer(model=pr.model, data=pr.data, trace=pr.trace, routing=pr.routing,
                           algorithm=cfg.algorithm.name, algorithm_params=cfg.algorithm.params,
                           local=LocalConfig(steps=lc.steps, lr=lc.lr, batch_size=lc.batch_size,
                                             optimizer=lc.optimizer, weight_decay=lc.weight_decay),
                           settings=settings, device=cfg.device, output_dir=out, meta=meta, progress=progress,
                           inputs={k: v for k, v in cfg.to_dict().items() if k != "output"})
    threads = torch.get_num_threads()
    torch.set_num_threads(run.threads)
    try:
        return trainer.run(resume=resume)
    finally:
        torch.set_num_threads(threads)
