"""Run independent jobs serially, in local processes, or on a Ray cluster.

``pmap(fn, items)`` returns ``[fn(x) for x in items]`` in input order whatever the backend, and
calls ``on_result(i, result)`` as each job finishes (in completion order), so callers can save
results incrementally. Jobs must be deterministic functions of their arguments (every seed is
part of the arguments): then results do not depend on the backend. ``fn`` must be a
module-level function (it is pickled).

Backends: ``serial`` (this process), ``process`` (a spawn-context process pool: fresh
interpreters, no torch/numba state inherited through fork) and ``ray`` (an existing cluster at
``address``, or a local instance with ``workers`` CPUs; optional dependency).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from .errors import ValidationError, require

__all__ = ["BACKENDS", "pmap"]

BACKENDS = ("serial", "process", "ray")


def pmap(fn: Callable[[Any], Any], items: Sequence[Any], *, backend: str = "serial", workers: int | None = None,
         address: str | None = None, num_gpus: float = 0.0,
         on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(x) for x in items]`` on a backend (module docstring)."""
    require(backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if workers is not None:
        require(isinstance(workers, int) and workers >= 1, "workers", f"must be an integer >= 1 (got {workers!r})")
    require(num_gpus >= 0, "gpus", f"must be >= 0 (got {num_gpus})")
    results: list[Any] = [None] * len(items)

    def done(i: int, r: Any) -> None:
        results[i] = r
        if on_result is not None:
            on_result(i, r)

    if not items:
        return results
    if backend == "serial":
        for i, x in enumerate(items):
            done(i, fn(x))
    elif backend == "process":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(fn, x): i for i, x in enumerate(items)}
            for f in as_completed(futs):
                done(futs[f], f.result())
    else:
        try:
            import ray
        except ImportError:
            raise ValidationError("backend", "ray is not installed: pip install 'aflqueue[ray]'") from None
        started = False
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else (workers or os.cpu_count()),
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            started = True
        try:
            # a lost worker's task is retried (max_retries); results are still deterministic
            remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=2)(fn)
            pending = {remote.remote(x): i for i, x in enumerate(items)}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    done(pending.pop(ref), ray.get(ref))
        finally:
            if started:
                ray.shutdown()
    return results
