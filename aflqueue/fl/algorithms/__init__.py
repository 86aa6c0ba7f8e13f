"""Server algorithms behind one narrow, abstract interface (:class:`base.ServerAlgorithm`: its module
docstring states the hooks, call order and invariants), one module per algorithm."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ...errors import ValidationError
from .base import AlgorithmContext, Arrival, ServerAlgorithm

__all__ = ["ALGORITHM_NAMES", "make_algorithm", "algorithm_class", "AlgorithmContext", "Arrival", "ServerAlgorithm"]

_REGISTRY = {
    "generalized-asyncsgd": ("asyncsgd", "GeneralizedAsyncSGD"),
    "asyncsgd": ("asyncsgd", "AsyncSGD"),
    "fedasync": ("fedasync", "FedAsync"),
    "fedbuff": ("fedbuff", "FedBuff"),
    "fedecho": ("fedecho", "FedEcho"),
    "fedrevive": ("fedrevive", "FedRevive"),
}
ALGORITHM_NAMES = tuple(_REGISTRY)


def algorithm_class(name: str) -> type[ServerAlgorithm]:
    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValidationError("algorithm", f"unknown algorithm {name!r}; allowed: {', '.join(ALGORITHM_NAMES)}")
    mod, cls = _REGISTRY[key]
    return getattr(import_module(f"{__name__}.{mod}"), cls)


def make_algorithm(name: "str | type[ServerAlgorithm]", params, ctx: AlgorithmContext, **hyper: Any) -> ServerAlgorithm:
    """Instantiate a server algorithm by registered name (or a ``ServerAlgorithm`` subclass, for
    experiments) with hyper-parameters (unknown ones are rejected)."""
    cls = name if isinstance(name, type) and issubclass(name, ServerAlgorithm) else algorithm_class(name)
    return cls(params, ctx, **hyper)
