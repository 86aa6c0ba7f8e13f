"""The top-level functions of ``import aflqueue as aq``.

* ``aq.analyze(system, method="mva", gradient=False)`` -> :class:`~aflqueue.queueing.analysis.Analysis`
  (exact steady state; :func:`aflqueue.queueing.analysis.analyze`);
* ``aq.simulate(system, updates, seed=0)`` -> :class:`~aflqueue.sim.trace.Trace`
  (:func:`aflqueue.sim.simulate`), and ``aq.estimate(trace)`` ->
  :class:`~aflqueue.sim.estimate.SimulationEstimates` (:func:`aflqueue.sim.estimate.estimate`);
* ``aq.optimize(system, objective="wall-clock", **problem_fields)`` ->
  :class:`~aflqueue.optimization.OptimizationResult` (:func:`optimize` below);
* ``aq.train(config=None, **overrides)`` -> :class:`~aflqueue.fl.engine.TrainResult` (:func:`train` below);
* ``aq.recommend(config=None, **overrides)`` -> :class:`~aflqueue.recommendation.Recommendation` and
  ``aq.validate(config=None, **overrides)`` -> :class:`~aflqueue.comparison.Validation`: the operating
  point chosen from pilots, and AsyncSGD against the optimiser's operating point paired by seed;
* ``aq.routing_gradients``, ``aq.routing_jacobians``, ``aq.metrics_vjp``: exact gradients
  (:mod:`aflqueue.queueing.gradients`).

Each checks its first argument: anything but a :class:`~aflqueue.system.System` (or a
:class:`~aflqueue.sim.trace.Trace` for ``estimate``) raises one
:class:`~aflqueue.errors.ValidationError` saying what to pass. The heavy modules are imported
only when a function is called, so ``import aflqueue`` stays light.
"""

from __future__ import annotations

import functools
import os
from dataclasses import fields as dataclass_fields
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import pilot
from .bounds import ProxyConstants
from .config import TrainConfig, apply_overrides, load_config
from .errors import ValidationError, check_integer, check_positive
from .optimization import OptimizationProblem
from .optimization import optimize as solve
from .system import System

if TYPE_CHECKING:
    from .config import TrainConfig
    from .fl.engine import TrainResult
    from .optimization import OptimizationProblem, OptimizationResult

__all__ = ["check_system", "check_trace", "checked", "make_problem", "optimize", "train_config", "train", "recommend",
           "validate", "calibrate", "predict"]


def check_system(system: Any, field: str = "system") -> System:
    """``system`` if it is a :class:`System`, else a one-line :class:`ValidationError` saying what to pass."""
    if isinstance(system, System):
        return system
    if isinstance(system, (str, os.PathLike)):
        hint = f"load the file first with aflqueue.load_system({os.fspath(system)!r})"
    else:
        hint = "build one with System.from_rates([1, 2, 3]) or load one with aflqueue.load_system('system.toml')"
    raise ValidationError(field, f"expected an aflqueue.System ({hint}), got {type(system).__name__}")


def check_trace(trace: Any, field: str = "trace") -> Any:
    """``trace`` if it is a :class:`~aflqueue.sim.trace.Trace`, else a one-line :class:`ValidationError`."""
    from .sim.trace import Trace  # lazy: numba

    if isinstance(trace, Trace):
        return trace
    raise ValidationError(field, "expected an aflqueue Trace (from aflqueue.simulate(system, updates) or "
                                 f"aflqueue.sim.Trace.load('trace.npz')), got {type(trace).__name__}")


def checked(module: str, name: str, check: Callable[[Any], Any] = check_system) -> Callable[..., Any]:
    """``module.name`` with its first argument checked by ``check``; same signature and docstring,
    and picklable as ``aflqueue.<name>``."""
    impl = getattr(import_module(module), name)

    @functools.wraps(impl)
    def entry(first: Any, *args: Any, **kwargs: Any) -> Any:
        check(first)
        return impl(first, *args, **kwargs)

    entry.__module__ = "aflqueue"
    entry.__qualname__ = name
    return entry


# --------------------------------------------------------------------------- optimisation
def make_problem(system: System, objective: str = "wall-clock", **problem_fields: Any) -> "OptimizationProblem":
    """An :class:`~aflqueue.optimization.OptimizationProblem` from keyword fields.

    Conveniences: ``constants`` may be a mapping (``{"Delta": 2.3, "L": 0.5, ...}``, see
    :class:`~aflqueue.bounds.ProxyConstants`); ``concurrency`` may be one integer (fixed ``m``) or
    ``(lo, hi)`` (optimise ``m`` jointly in ``lo..hi``). Unknown fields are refused by name."""

    check_system(system)
    allowed = [f.name for f in dataclass_fields(OptimizationProblem) if f.name not in ("system", "objective")]
    unknown = sorted(set(problem_fields) - set(allowed))
    if unknown:
        raise ValidationError(unknown[0], f"not a field of the optimisation problem; allowed: {', '.join(allowed)}")
    kw = dict(problem_fields)
    if isinstance(kw.get("constants"), Mapping):
        kw["constants"] = ProxyConstants.from_dict(kw["constants"])
    m = kw.get("concurrency")
    if m is not None and not isinstance(m, bool):
        if isinstance(m, int):
            kw["concurrency"] = (m, m)
        elif isinstance(m, (list, tuple)) and len(m) == 2:
            kw["concurrency"] = tuple(m)
        else:
            raise ValidationError("concurrency", f"must be an integer m or a range (lo, hi) (got {m!r})")
    if not isinstance(objective, str):
        raise ValidationError("objective", f"must be a string such as 'wall-clock' (got {objective!r})")
    return OptimizationProblem(system, objective, **kw)


def optimize(system: "System | OptimizationProblem", objective: str | None = None, *, starts: int = 4,
             seed: int = 0, scan_limit: int = 256, max_iter: int = 500, tol: float = 1e-10,
             progress: Callable[[str], None] | None = None, **problem_fields: Any) -> "OptimizationResult":
    """Optimal routing (and concurrency, given a range) for a convergence proxy.

    ``aq.optimize(system, "wall-clock", p_min=1e-3, concurrency=(1, 30))`` builds the problem with
    :func:`make_problem` (``objective`` defaults to ``"wall-clock"``; the fields are those of
    :class:`~aflqueue.optimization.OptimizationProblem`: ``constants``, ``updates``, ``time_budget``,
    ``epsilon``, ``energy``, ``weight``, ``p_min``, ``p_max``, ``concurrency``, ``dispersion``,
    ``reference``) and solves it with :func:`aflqueue.optimization.optimize` (``starts``, ``seed``,
    ``scan_limit``, ``max_iter``, ``tol``; ``progress``, e.g. ``print``, receives a line every few
    seconds of a long solve). An ``OptimizationProblem`` may be passed instead of the system, then
    without ``objective`` or fields.

    Objectives: ``per-update`` (P1), ``wall-clock`` (P2; ``wallclock`` is accepted too), ``time-to-accuracy`` (P3), ``energy``,
    ``tradeoff`` (P4) and ``max-throughput`` (P5); see docs/theory.md sections 5-6."""

    starts = check_integer(starts, "starts", 1)
    seed = check_integer(seed, "seed", 0)
    scan_limit = check_integer(scan_limit, "scan_limit", 1)
    max_iter = check_integer(max_iter, "max_iter", 1)
    tol = check_positive(tol, "tol")
    if isinstance(system, OptimizationProblem):
        if objective is not None or problem_fields:
            given = ["objective"] * (objective is not None) + sorted(problem_fields)
            raise ValidationError(given[0], "give the problem's fields either in the OptimizationProblem or as "
                                            "keywords with a System, not both")
        problem = system
    else:
        check_system(system, "system")
        problem = make_problem(system, "wall-clock" if objective is None else objective, **problem_fields)
    return solve(problem, starts=starts, seed=seed, scan_limit=scan_limit, max_iter=max_iter, tol=tol,
                 progress=progress)


# --------------------------------------------------------------------------- training
_SECTIONS = ("data", "model", "system", "routing", "local", "algorithm", "run")


def train_config(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None" = None,
                 **overrides: Any) -> "TrainConfig":
    """The :class:`~aflqueue.config.TrainConfig` that :func:`train` runs (arguments as there)."""

    for name, value in overrides.items():
        if name in _SECTIONS and not isinstance(value, Mapping):
            raise ValidationError(name, f"a section: give a mapping of its fields, e.g. {name}={{...}} "
                                        f"(got {type(value).__name__})")
    if config is None or isinstance(config, (str, os.PathLike)):
        return load_config(config, mapping=overrides)
    if isinstance(config, TrainConfig):
        return apply_overrides(config, mapping=overrides)
    if isinstance(config, Mapping):
        merged = {**config, **{k: ({**config.get(k, {}), **v} if isinstance(v, Mapping) else v)
                               for k, v in overrides.items()}}
        return load_config(mapping=merged)
    raise ValidationError("config", "expected a path to a run configuration, a TrainConfig, a mapping or None "
                                    f"(the embedded default), got {type(config).__name__}")


def train(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None" = None, *,
          resume: bool = False, force: bool = False, progress: bool = False,
          tensorboard: "str | os.PathLike[str] | None" = None, **overrides: Any) -> "TrainResult":
    """Trace-driven training (what ``aflqueue train`` runs) -> :class:`~aflqueue.fl.engine.TrainResult`.

    ``config``: None (the embedded default: digits, 10 clients, two speed groups), a path to a
    TOML/YAML/JSON run configuration, a :class:`~aflqueue.config.TrainConfig`, or a mapping with
    some of its fields. ``overrides``: top-level fields (``output``, ``seed``, ``device``) or
    sections given as mappings, merged field by field, e.g.
    ``aq.train("examples/run.toml", output="runs/a", run={"updates": 200}, local={"lr": 0.1})``.
    Unknown keys are refused by name. Outputs are written under ``output`` (``results.json``,
    ``updates.csv``, ``checkpoint.pt``, ``trace.npz``, ``config.json``); ``resume=True`` continues
    from ``output/checkpoint.pt``; a folder that already holds a run is otherwise refused, unless
    ``force=True`` replaces it; ``tensorboard``: a folder for TensorBoard event files (off by default)."""
    cfg = train_config(config, **overrides)
    from .pipeline import train as run  # lazy: numba

    return run(cfg, resume=resume, progress=progress, tensorboard=tensorboard, force=force)


def recommend(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None" = None, *,
              output: "str | os.PathLike[str] | None" = None, backend: str = "serial", workers: int | None = None,
              calibration: "str | os.PathLike[str] | None" = None, **overrides: Any):
    """The operating point chosen from pilot runs (what ``aflqueue recommend`` runs) ->
    :class:`~aflqueue.recommendation.Recommendation`. ``config`` and ``overrides`` as for :func:`train`;
    ``calibration``: a calibration file for the prediction interval (none: no interval); the pilots
    are resumable jobs under ``output`` (a temporary folder when None)."""
    from .recommendation import Calibration  # lazy: numba
    from .recommendation import recommend as run  # lazy: numba

    cal = Calibration.load(calibration) if calibration is not None else Calibration()
    return run(train_config(config, **overrides), output=output, backend=backend, workers=workers,
               calibration=cal, batched=backend != "serial")


def validate(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None" = None, *, seeds: int = 5,
             seed: int = 0, target: float | None = None, output: "str | os.PathLike[str]" = "runs/validate",
             backend: str = "serial", workers: int | None = None, **overrides: Any):
    """AsyncSGD against the wall-clock operating point on one's configuration, paired by seed (what
    ``aflqueue validate`` runs) -> :class:`~aflqueue.comparison.Validation`. ``config`` and
    ``overrides`` as for :func:`train`."""
    from .comparison import validate as run  # lazy: numba

    return run(train_config(config, **overrides), seeds=seeds, seed=seed, target=target, output=output,
               backend=backend, workers=workers)


def calibrate(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None" = None, *,
              method: str = "pilot", output: "str | os.PathLike[str] | None" = None, **kwargs: Any):
    """The proxy constants of a run configuration (what ``aflqueue calibrate`` computes) ->
    :class:`~aflqueue.pilot_fit.ConstantsFile`: ``method="pilot"`` fits short pilot runs
    (docs/theory.md section 10), ``"initial"`` estimates at the initial model (section 7); written to
    ``output`` when given. ``kwargs``: the pilot design of :func:`aflqueue.pilot.calibrate`
    (``routings``, ``lrs``, ``seed``, ``budget_fraction``, ``bootstrap``, ``runs``, ``backend``...)."""
    return pilot.calibrate(train_config(config), method=method, output=output, **kwargs)


def predict(config: "TrainConfig | str | os.PathLike[str] | Mapping[str, Any] | None", constants: "str | os.PathLike[str]",
            **kwargs: Any):
    """What optimising the routing is predicted to gain over AsyncSGD on ``config`` with the
    constants file ``constants`` (what ``aflqueue predict`` prints) -> :class:`~aflqueue.pilot.Prediction`,
    whose ``verdict()`` states only what its interval supports. ``kwargs``: as
    :func:`aflqueue.pilot.predict` (``objective``, ``confidence``, ``target_fraction``...)."""
    return pilot.predict(train_config(config), constants, **kwargs)
