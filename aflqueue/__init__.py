"""aflqueue: asynchronous federated learning as a closed queueing network.

Describe a system (:class:`System`), compute exact metrics (:func:`analyze`), simulate it,
optimise routing and concurrency, and replay the schedule with real training.

Heavy subpackages (simulation, optimisation, torch-based training) are imported lazily so that
``import aflqueue`` and the analysis commands stay fast and never import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import ValidationError
from .laws import law_from_spec
from .system import Availability, Client, Stage, System, example_system, load_system

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:  # pyproject.toml is the one place the version is written
        return version("aflqueue")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

_LAZY = {
    "analyze": ("aflqueue.queueing.analysis", "analyze"),
    "Analysis": ("aflqueue.queueing.analysis", "Analysis"),
    "routing_gradients": ("aflqueue.queueing.gradients", "routing_gradients"),
    "routing_jacobians": ("aflqueue.queueing.gradients", "routing_jacobians"),
    "metrics_vjp": ("aflqueue.queueing.gradients", "metrics_vjp"),
}

__all__ = ["ValidationError", "law_from_spec", "Availability", "Client", "Stage", "System",
           "example_system", "load_system", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(import_module(mod), attr)
    raise AttributeError(f"module 'aflqueue' has no attribute {name!r}")
