"""aflqueue: asynchronous federated learning as a closed queueing network.

Describe a system (:class:`System`), compute exact metrics (:func:`analyze`), simulate it
(:func:`simulate`, :func:`estimate`), optimise routing and concurrency (:func:`optimize`), and
replay the schedule with real training (:func:`train`); then look at it: :func:`sweep_system`
(a system against the concurrency, as ``aflqueue sweep``), :func:`schedule_figures` (a trace or
run's schedule), :func:`plot_runs` and :func:`compare_runs` (your own run folders)::

    import aflqueue as aq

    system = aq.System.from_rates([1, 1, 0.1], routing=[0.3, 0.3, 0.4], concurrency=5)
    exact = aq.analyze(system)                          # Analysis
    est = aq.estimate(aq.simulate(system, 20_000, seed=1))  # SimulationEstimates with CIs
    best = aq.optimize(system, "wallclock", p_min=1e-3)     # OptimizationResult
    exact.to_frame()                                    # pandas, if installed

Heavy subpackages (simulation, optimisation, torch-based training) are imported lazily so that
``import aflqueue`` and the analysis commands stay fast: importing the package imports neither
torch, numba, scipy.optimize, matplotlib nor pandas.

``aq.optimize`` is a function (:func:`aflqueue.api.optimize`); the optimiser itself is the module
:mod:`aflqueue.optimization`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .laws import law_from_spec
from .system import Availability, Client, Stage, System, example_system, load_system

if TYPE_CHECKING:  # what the lazy attributes below resolve to, for type checkers and IDEs
    from .api import optimize as optimize
    from .api import calibrate as calibrate
    from .api import predict as predict
    from .api import recommend as recommend
    from .api import train as train
    from .api import validate as validate
    from .bounds import EnergyModel as EnergyModel
    from .bounds import ProxyConstants as ProxyConstants
    from .config import TrainConfig as TrainConfig
    from .config import load_config as load_config
    from .fl.engine import TrainResult as TrainResult
    from .optimization import OptimizationProblem as OptimizationProblem
    from .optimization import OptimizationResult as OptimizationResult
    from .optimization import pareto_front as pareto_front
    from .queueing.analysis import Analysis as Analysis
    from .queueing.analysis import analyze as analyze
    from .queueing.gradients import metrics_vjp as metrics_vjp
    from .queueing.gradients import routing_gradients as routing_gradients
    from .queueing.gradients import routing_jacobians as routing_jacobians
    from .sim import simulate as simulate
    from .sim.estimate import SimulationEstimates as SimulationEstimates
    from .sim.estimate import estimate as estimate
    from .runs import compare_paths as compare_runs  # noqa: F401 (TYPE_CHECKING re-export)
    from .runs import plot_runs as plot_runs
    from .schedule import schedule_figures as schedule_figures
    from .sim.trace import Trace as Trace
    from .stats import Estimate as Estimate
    from .sweep import sweep as sweep_system  # noqa: F401 (TYPE_CHECKING re-export)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:  # pyproject.toml is the one place the version is written
        return version("aflqueue")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

#: Attributes resolved on first use (importing ``aflqueue`` imports none of these modules):
#: module -> the names the package takes from it.
_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "aflqueue.api": ("train", "optimize", "recommend", "validate", "calibrate", "predict"),
    "aflqueue.queueing.analysis": ("analyze", "Analysis"),
    "aflqueue.queueing.gradients": ("routing_gradients", "routing_jacobians", "metrics_vjp"),
    "aflqueue.sim": ("simulate",),
    "aflqueue.sim.estimate": ("estimate", "SimulationEstimates"),
    "aflqueue.sim.trace": ("Trace",),
    "aflqueue.stats": ("Estimate",),
    "aflqueue.optimization": ("OptimizationProblem", "OptimizationResult", "pareto_front"),
    "aflqueue.bounds": ("ProxyConstants", "EnergyModel"),
    "aflqueue.config": ("TrainConfig", "load_config"),
    "aflqueue.fl.engine": ("TrainResult",),  # imports torch
    # researcher tools (figures and CSV files; no torch)
    "aflqueue.sweep": ("sweep_system",),
    "aflqueue.runs": ("plot_runs", "compare_runs"),
    "aflqueue.schedule": ("schedule_figures",),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}
#: Names the package gives to attributes called otherwise in their module.
_RENAMED = {"sweep_system": "sweep", "compare_runs": "compare_paths"}
#: Functions whose first argument is checked (a System, or a Trace for ``estimate``): name -> check
#: of :mod:`aflqueue.api`.
_CHECKED = {"analyze": "check_system", "simulate": "check_system", "estimate": "check_trace",
            "routing_gradients": "check_system", "routing_jacobians": "check_system", "metrics_vjp": "check_system"}

__all__ = ["ValidationError", "law_from_spec", "Availability", "Client", "Stage", "System", "example_system",
           "load_system", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'aflqueue' has no attribute {name!r}")
    module, attr = _LAZY[name], _RENAMED.get(name, name)
    if name in _CHECKED:
        from . import api

        value = api.checked(module, attr, getattr(api, _CHECKED[name]))
    else:
        value = getattr(import_module(module), attr)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
