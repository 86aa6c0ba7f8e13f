"""Run independent jobs serially, in local processes, or on a Ray cluster.

``pmap(fn, items)`` returns ``[fn(x) for x in items]`` in input order whatever the backend, and
calls ``on_result(i, result)`` as each job finishes (in completion order), so callers can save
results incrementally. Jobs must be deterministic functions of their arguments (every seed is
part of the arguments): then results do not depend on the backend. ``fn`` must be a
module-level function (it is pickled).

Backends: ``serial`` (this process), ``process`` (a spawn-context process pool: fresh
interpreters, no torch/numba state inherited through fork) and ``ray`` (an existing cluster at
``address``, or the Ray instance this process already started; optional dependency).

The toolkit never starts a Ray instance itself: Ray's servers (GCS, raylet, workers) listen on
every network interface whatever node address they are given (measured with Ray 2.60: ``::``
with ``_node_ip_address="127.0.0.1"``), and a local instance writes a token file readable by
every user (``~/.ray/auth_token``, mode 644). For local parallelism ``process`` does the same
work with nothing listening; for Ray, start a cluster where the network is yours to expose and
pass its ``address``. An ``address`` where nothing listens fails at once; one that accepts
connections but is not a Ray cluster fails when Ray gives up (about 20 s with Ray 2.60), with
one line either way.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from .errors import ValidationError, require

__all__ = ["BACKENDS", "pmap"]

BACKENDS = ("serial", "process", "ray")
#: Seconds to wait for a Ray cluster's address to accept a connection.
CONNECT_TIMEOUT = 10.0


def check_ray_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast (one line) when ``address`` (``host:port`` or ``ray://host:port``) does not
    accept a TCP connection within ``timeout`` seconds; ``auto`` is left to Ray."""

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    require(bool(host) and port.isdigit() and 0 < int(port) < 65536, "address",
            f"must look like HOST:PORT, ray://HOST:PORT or auto (got {address!r})")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ValidationError("address", f"no Ray cluster answers at {address!r} within {timeout:g} s "
                                         f"({e.strerror or type(e).__name__}); start it with `ray start --head` "
                                         "or check the address") from None


def pmap(fn: Callable[[Any], Any], items: Sequence[Any], *, backend: str = "serial", workers: int | None = None,
         address: str | None = None, num_gpus: float = 0.0,
         on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(x) for x in items]`` on a backend (module docstring)."""
    require(backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if workers is not None:
        require(isinstance(workers, int) and workers >= 1, "workers", f"must be an integer >= 1 (got {workers!r})")
    require(num_gpus >= 0, "gpus", f"must be >= 0 (got {num_gpus})")
    require(backend != "ray" or workers is None, "workers",
            "is used only with --backend process (a Ray cluster brings its own CPUs)")
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
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(fn, x): i for i, x in enumerate(items)}
            for f in as_completed(futs):
                done(futs[f], f.result())
    else:
        try:
            import ray  # lazy: ray
        except ImportError:
            raise ValidationError("backend", "ray is not installed: pip install 'aflqueue[ray]'") from None
        started = False
        if not ray.is_initialized():
            if address:
                check_ray_address(address)
                try:  # Ray itself gives up after ~20 s (2.60) when the address is not a Ray cluster
                    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
                except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                    raise ValidationError("address", f"cannot use the Ray cluster at {address!r}: "
                                                     f"{(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None
            else:
                raise ValidationError("address", "--backend ray needs the address of a running Ray cluster "
                                                 "(HOST:PORT or auto): a local Ray instance would listen on every "
                                                 "network interface; use --backend process for local parallelism")
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
