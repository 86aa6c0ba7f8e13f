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

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .bounds import ProxyConstants
from .calibration import calibrate
from .config import TrainConfig, system_rates
from .errors import ValidationError, require
from .io import join_field
from .optimization import OptimizationProblem, assess, optimize
from .pilot_fit import read_constants
from .protocol import step_ratio
from .queueing.analysis import analyze
from .sim.trace import Trace
from .system import System, load_system, validate_routing

__all__ = ["Prepared", "prepare", "train", "simulate_for_budget", "build_data_and_model", "engine_settings",
           "local_config", "run_meta", "evaluation_data"]


#: Bytes held per scheduled update: the trace's 9 columns plus the trainer's per-arrival log and
#: bookkeeping (measured ~200 B; rounded up).
BYTES_PER_UPDATE = 256


@dataclass
class Prepared:
    """Everything a run needs, resolved from the configuration.

    ``lr`` is the local learning rate the run trains with and ``step_size`` says where it came
    from (``rule``: ``"fixed"`` = ``local.lr``; ``"optimal"`` = ``local.lr`` times ``ratio``, the
    optimiser's step size over its step size for uniform routing, see
    :class:`~aflqueue.config.RoutingConfig`)."""

    config: TrainConfig
    system: System
    trace: Trace
    data: Any
    model: Any
    optimization: Any = None
    constants: Any = None
    predicted: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.0
    step_size: dict[str, Any] = field(default_factory=dict)

    @property
    def routing(self) -> np.ndarray:
        """The routing of the schedule (the trace owns it; ``system.routing`` equals it)."""
        return self.trace.routing


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
    from .sim import simulate  # lazy: numba

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
    from .fl.data import default_model_for, make_federated  # lazy: torch
    from .fl.models import build_model  # lazy: torch

    d = cfg.data
    with prefixed("data"):  # the loaders name their own options; the configuration's field is data.<...>
        data = make_federated(d.dataset, d.clients, d.partition, alpha=d.alpha, classes_per_client=d.classes_per_client,
                              quantity_alpha=d.quantity_alpha, unlabeled_fraction=d.unlabeled_fraction,
                              data_root=d.data_root, seed=cfg.seed, max_train=d.max_train, max_test=d.max_test,
                              validation_fraction=d.validation_fraction, **d.options)
    with prefixed("model"):
        model = build_model(cfg.model.name or default_model_for(d.dataset), data.input_shape, data.num_classes,
                            seed=cfg.seed, **cfg.model.options)
    return data, model


@contextlib.contextmanager
def prefixed(section: str) -> Iterator[None]:
    """Re-raise a :class:`ValidationError` of the block with its field under ``section`` (unless it
    is there already)."""
    try:
        yield
    except ValidationError as e:
        if e.field == section or e.field.startswith(f"{section}."):
            raise
        raise ValidationError(join_field(section, e.field), e.detail) from None


def check_memory(system: System, updates: int | None, time_budget: float | None, max_memory_gb: float) -> int:
    """Updates the run will schedule (estimated from the exact throughput for a time budget);
    refuse, before any work, a run that would need more than ``max_memory_gb``."""
    U = updates
    if time_budget is not None:
        est = int(math.ceil(analyze(system).throughput * time_budget * 1.25)) + 50
        U = est if updates is None else min(est, updates)
    need = (U + system.concurrency) * BYTES_PER_UPDATE / 2**30
    require(need <= max_memory_gb, "run.max_memory_gb",
            f"the run schedules about {U:,} updates, about {need:.1f} GB (> {max_memory_gb:g} GB); lower "
            "run.time_budget / run.updates, or raise run.max_memory_gb if the machine has the memory")
    return int(U)


def _routing(cfg: TrainConfig, system: System, data, model):
    """``(routing, optimisation result or None, constants or None)`` for the configured kind."""
    n, r, run = system.n, cfg.routing, cfg.run
    if r.kind == "uniform":
        return np.full(n, 1.0 / n), None, None
    if r.kind == "explicit":
        return np.array(validate_routing(r.values, n, "routing.values")), None, None

    if r.constants == "calibrate":
        constants = calibrate(model, data.clients, seed=cfg.seed).constants
    elif isinstance(r.constants, str):  # a constants file (aflqueue calibrate)
        try:
            constants, _ = read_constants(r.constants)
        except ValidationError as e:
            raise ValidationError("routing.constants", e.detail) from None
    else:
        constants = ProxyConstants.from_dict(r.constants)
    rng = tuple(r.concurrency_range) if r.concurrency_range else None
    # the proxies see the run's own budget: W at tau = run.time_budget, U after run.updates
    problem = OptimizationProblem(system, r.objective, constants=constants, p_min=r.p_min, concurrency=rng,
                                  epsilon=r.epsilon, time_budget=run.time_budget,
                                  updates=None if run.updates is None else float(run.updates))
    opt = optimize(problem, seed=cfg.seed)
    return opt.routing, opt, constants


def _step_size(cfg: TrainConfig, optimization) -> tuple[float, dict[str, Any]]:
    """The learning rate to train with and how it was set (docs/theory.md section 5, step size)."""
    lr = cfg.local.lr
    if optimization is None or cfg.routing.step_size == "fixed":
        return lr, {"rule": "fixed", "ratio": 1.0, "lr": lr}
    ratio = step_ratio(optimization)
    if ratio is None:
        return lr, {"rule": "fixed", "ratio": 1.0, "lr": lr,
                    "reason": f"the {optimization.objective} objective has no step size"}
    return lr * ratio, {"rule": "optimal", "ratio": ratio, "lr": lr * ratio, "eta": optimization.eta,
                        "eta_uniform": optimization.baseline["eta"], "base_lr": lr}


def prepare(cfg: TrainConfig, data=None, model=None) -> Prepared:
    """Resolve a configuration; ``data``/``model`` may be passed when already built from it
    (:func:`build_data_and_model`); the model is used only as an initial state and not modified."""
    if data is None or model is None:
        data, model = build_data_and_model(cfg)
    system = build_system(cfg, cfg.data.clients)
    n = system.n
    p, optimization, constants = _routing(cfg, system, data, model)
    if optimization is not None:
        system = system.with_concurrency(optimization.concurrency)
    system = system.with_routing(p)
    lr, step = _step_size(cfg, optimization)
    run = cfg.run
    if run.trace:
        trace = Trace.load(run.trace)
        require(trace.n_clients == n, "run.trace", f"has {trace.n_clients} clients, the data {n}")
        require(trace.routing is not None and bool(np.allclose(trace.routing, system.routing, rtol=0, atol=1e-12)),
                "run.trace", "was drawn with another routing than the configuration's routing section gives; "
                             "a replayed schedule is trained with the routing that produced it (set routing.kind = "
                             "\"explicit\" with the trace's routing, or simulate a new trace)")
        system = system.with_routing(trace.routing).with_concurrency(trace.concurrency)
    else:
        check_memory(system, run.updates, run.time_budget, run.max_memory_gb)
        trace = simulate_for_budget(system, cfg.seed, run.updates, run.time_budget, run.engine)
    predicted: dict[str, Any] = {}
    try:
        predicted = assess(OptimizationProblem(system, "wall-clock", constants=constants or _default_constants(),
                                               p_min=0.0, time_budget=run.time_budget), system.routing,
                           system.concurrency)
    except ValidationError:
        pass
    return Prepared(cfg, system, trace, data, model, optimization, constants, predicted, lr, step)


def _default_constants():
    return ProxyConstants()


def train(cfg: TrainConfig, resume: bool = False, progress: bool = False, prepared: Prepared | None = None,
          tensorboard: str | Path | None = None, force: bool = False):
    """Prepare (unless given) and train; write outputs under ``cfg.output``; return the result.
    ``resume``: continue from the folder's checkpoint; a folder that holds a run is otherwise
    refused unless ``force`` replaces it. ``tensorboard``: a folder for TensorBoard event files of
    the curves and per-arrival staleness (:mod:`aflqueue.fl.tensorboard`; off by default)."""
    # lazy: torch
    import aflqueue.fl  # noqa: F401  (without the fl extra: one ImportError naming it, before any work)

    logger = None
    if tensorboard is not None:
        from .fl.tensorboard import TensorBoardLogger  # lazy: the fl extra (torch)

        logger = TensorBoardLogger(tensorboard)  # fails before any work if tensorboard is missing
    try:
        return _train(cfg, resume, progress, prepared, logger, force)
    finally:
        if logger is not None:
            logger.close()


def engine_settings(cfg: TrainConfig):
    """The trainer's :class:`~aflqueue.fl.engine.EngineSettings` of a configuration."""
    from .fl.engine import EngineSettings  # lazy: torch

    run = cfg.run
    return EngineSettings(updates=run.updates, time_budget=run.time_budget, eval_every=run.eval_every,
                          eval_times=run.eval_times, checkpoint_every=run.checkpoint_every,
                          batched=run.batched, max_batch=run.max_batch, seed=cfg.seed)


def local_config(cfg: TrainConfig, pr: Prepared):
    """The local training of a run (:class:`~aflqueue.fl.local.LocalConfig`) at the prepared rate."""
    from .fl.local import LocalConfig  # lazy: torch

    lc = cfg.local
    return LocalConfig(steps=lc.steps, lr=pr.lr, batch_size=lc.batch_size, optimizer=lc.optimizer,
                       weight_decay=lc.weight_decay)


def run_meta(cfg: TrainConfig, pr: Prepared) -> dict[str, Any]:
    """What a result records about its run beyond what the trainer knows (``TrainResult.meta``)."""
    return {
        "dataset": cfg.data.dataset, "n_clients": int(pr.system.n),
        "rates": [float(x) for x in pr.system.rates], "seed": cfg.seed,
        "predicted": {k: v for k, v in pr.predicted.items() if k not in ("routing",)},
        "step_size": pr.step_size,
        "optimization": None if pr.optimization is None else {
            k: v for k, v in pr.optimization.to_dict().items() if k in ("objective", "objective_value", "concurrency",
                                                                        "eta", "throughput", "constants")},
        "data": {k: v for k, v in pr.data.summary().items() if k in ("name", "num_clients", "client_sizes",
                                                                     "label_skew", "partition", "test_size")},
    }


def evaluation_data(cfg: TrainConfig, pr: Prepared):
    """The prepared data with the split the run evaluates on as its test set (tuning evaluates on
    the validation split, so the test set stays unseen)."""
    if cfg.run.evaluate_on == "validation":
        return replace(pr.data, test=pr.data.validation)
    return pr.data


def _train(cfg: TrainConfig, resume: bool, progress: bool, prepared: Prepared | None, logger: Any, force: bool):
    import torch  # lazy: torch

    from .fl.engine import TraceTrainer  # lazy: torch

    pr = prepared or prepare(cfg)
    trainer = TraceTrainer(model=pr.model, data=evaluation_data(cfg, pr), trace=pr.trace,
                           algorithm=cfg.algorithm.name, algorithm_params=cfg.algorithm.params,
                           local=local_config(cfg, pr), settings=engine_settings(cfg), device=cfg.device,
                           output_dir=Path(cfg.output), meta=run_meta(cfg, pr), progress=progress,
                           inputs={k: v for k, v in cfg.to_dict().items() if k != "output"},
                           callbacks=() if logger is None else (logger,), output_files={"config.json": cfg.to_dict()})
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.run.threads)
    try:
        return trainer.run(resume=resume, force=force)
    finally:
        torch.set_num_threads(threads)
