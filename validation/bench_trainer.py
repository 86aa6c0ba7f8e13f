"""Benchmark: trainer updates per second, batched (torch.func.vmap) vs serial, same model and trace,
and the engine's serial mode against a minimal loop (:func:`minimal_loop`) on the same trace.

Issue 5 targets: batched >= 1.5x serial on CPU (small CNN, m = 100), >= 5x on GPU. The data are
random inputs (speed does not depend on content), n clients of five speed types, uniform
routing, m tasks in flight (n = m unless --clients says otherwise); both modes replay the same
trace with the same minibatches, and the final losses are reported side by side. Runs alternate
and the median is reported (shared, noisy machine). No assertion on time.

Models (--models, comma-separated): ``mlp`` (the digits MLP: 64 inputs, two hidden layers of 200),
``cnn28`` (McMahan et al.'s CNN on 1x28x28, --channels/--hidden), ``resnet18`` (CIFAR ResNet-18 with
GroupNorm on 3x32x32). On CUDA the number of updates per timed run can follow a time target
(--seconds), and a batched run that runs out of GPU memory is retried with half the vmap batch.

    python validation/bench_trainer.py [--device cpu|cuda] [--models cnn28] [--concurrency 100[,1000]]
                                       [--updates 600] [--steps 1] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from aflqueue import System
from aflqueue.system import FIVE_TYPES
from aflqueue.fl.data import Dataset, FederatedData
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig
from aflqueue.fl.models import build_model, count_parameters
from aflqueue.sim import simulate

TYPES = np.asarray(FIVE_TYPES)
#: input shape and default options of each benchmarked model
MODELS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "mlp": ((64,), {"hidden": (200, 200)}),
    "cnn28": ((1, 28, 28), {"channels": (32, 64), "hidden": 512}),
    "resnet18": ((3, 32, 32), {"norm": "group", "groups": 2}),
}


def fake_data(n_clients: int, per_client: int, seed: int = 0, shape: tuple[int, ...] = (1, 28, 28),
              test: int = 500) -> FederatedData:
    g = torch.Generator().manual_seed(seed)
    clients = [Dataset(torch.rand(per_client, *shape, generator=g), torch.randint(0, 10, (per_client,), generator=g), 10,
                       "fake") for _ in range(n_clients)]
    test_set = Dataset(torch.rand(test, *shape, generator=g), torch.randint(0, 10, (test,), generator=g), 10, "fake")
    return FederatedData(clients, test_set, None, 10, shape, "fake")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


class Bench:
    """One model at one (n, m): builds the data and a trace once, then times replays."""

    def __init__(self, model: str, device: str = "cpu", clients: int = 100, concurrency: int = 100,
                 max_updates: int = 600, steps: int = 1, batch_size: int = 32, per_client: int | None = None,
                 max_batch: int | None = None, options: dict[str, Any] | None = None, seed: int = 0,
                 test_size: int = 500):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODELS)}")
        self.model_name, self.device = model, device
        self.shape, defaults = MODELS[model]
        self.options = {**defaults, **(options or {})}
        self.n, self.m = clients, concurrency
        self.system = System.from_rates(np.resize(TYPES, clients), concurrency=concurrency)
        self.trace = simulate(self.system, max_updates, seed=seed)
        self.data = fake_data(clients, per_client or max(batch_size, 64), seed, self.shape, test_size)
        self.local = LocalConfig(steps=steps, lr=0.05, batch_size=batch_size)
        self.max_batch = max_batch
        self.seed = seed
        self.parameters = count_parameters(self.build())

    def build(self) -> torch.nn.Module:
        return build_model(self.model_name, self.shape, 10, seed=self.seed, **self.options)

    def run(self, batched: bool, updates: int, max_batch: int | None = None) -> tuple[float, float]:
        """Seconds for ``updates`` arrivals (and one final evaluation on the test samples) and
        the final test loss."""
        tr = TraceTrainer(model=self.build(), data=self.data, trace=self.trace,
                          algorithm="generalized-asyncsgd", local=self.local,
                          settings=EngineSettings(updates=updates, eval_every=0, checkpoint_every=0, batched=batched,
                                                  max_batch=max_batch or self.max_batch, seed=self.seed),
                          device=self.device)
        _sync(self.device)
        t = time.perf_counter()
        res = tr.run()
        _sync(self.device)
        return time.perf_counter() - t, res.final_loss


def minimal_loop(b: Bench, updates: int) -> float:
    """Seconds for ``updates`` arrivals of the plainest asynchronous SGD that replays the same trace,
    written as a PyTorch user would: each arrival loads the flat parameter vector of its dispatch
    version into the model, takes one ``backward()`` on a minibatch of its client and applies the
    gradient with the importance weight ``1 / (n p_c)``; no evaluation, logging, checks or
    checkpoints. The named baseline of the engine's overhead (its own minibatch draws: speed only,
    not the same numbers)."""
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    model = b.build().to(b.device)
    tr = b.trace
    applied = np.flatnonzero((tr.applied_version >= 1) & (tr.applied_version <= updates))
    order = applied[np.argsort(tr.applied_version[applied], kind="stable")]
    need: dict[int, int] = {}
    for u in order:
        need[int(tr.dispatch_version[u])] = need.get(int(tr.dispatch_version[u]), 0) + 1
    weight = 1.0 / (b.n * np.asarray(tr.routing, dtype=float))
    gen = torch.Generator().manual_seed(b.seed)
    xs = [c.x.to(b.device) for c in b.data.clients]
    ys = [c.y.to(b.device) for c in b.data.clients]
    lr, bs = b.local.lr, b.local.batch_size
    _sync(b.device)
    t = time.perf_counter()
    versions = {0: parameters_to_vector(model.parameters()).detach().clone()}
    for k, u in enumerate(order, start=1):
        v, c = int(tr.dispatch_version[u]), int(tr.client[u])
        idx = torch.randint(0, len(ys[c]), (bs,), generator=gen).to(b.device)
        vector_to_parameters(versions[v], model.parameters())
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xs[c][idx]), ys[c][idx]).backward()
        g = parameters_to_vector(p.grad for p in model.parameters())
        need[v] -= 1
        versions[k] = versions[k - 1] - float(lr * weight[c]) * g
        if need[v] == 0 and v != k - 1:
            del versions[v]  # no task still to arrive was dispatched at version v
        if need.get(k - 1, 0) == 0:
            versions.pop(k - 1, None)
    _sync(b.device)
    return time.perf_counter() - t


def bench(b: Bench, updates: int, repeats: int = 3, seconds: float | None = None, min_updates: int = 20,
          deadline: float | None = None, log=print) -> dict[str, Any]:
    """Warm up both modes, then alternate ``repeats`` timed runs of each; report medians.

    With ``seconds``, each mode's updates are chosen from the rate of untimed runs (grown until one
    lasts a quarter of ``seconds``) so that one timed run
    takes about that long (between ``min_updates``, at least 2 m for batched runs where the trace
    allows, and ``updates``). A batched run out of GPU memory is retried with half the vmap batch
    (down to 8). ``deadline`` (``time.perf_counter()`` value): fewer repeats when time runs out."""
    row: dict[str, Any] = {"model": b.model_name, "options": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in b.options.items()},
                           "parameters": b.parameters, "device": b.device, "threads": torch.get_num_threads(),
                           "clients": b.n, "concurrency": b.m, "local_steps": b.local.steps,
                           "batch_size": b.local.batch_size, "test_size": len(b.data.test.y)}
    max_batch = b.max_batch
    warm = {False: max(1, min(updates, min_updates)), True: max(1, min(updates, max(min_updates, b.m)))}

    def timed(batched: bool, u: int) -> tuple[float, float]:
        nonlocal max_batch
        while True:
            try:
                return b.run(batched, u, max_batch)
            except RuntimeError as e:
                if not (batched and b.device.startswith("cuda") and _is_oom(e)):
                    raise
                torch.cuda.empty_cache()
                current = max_batch or 256
                if current <= 8:
                    raise
                max_batch = current // 2
                log(f"  {b.model_name} m={b.m}: out of GPU memory, vmap batch -> {max_batch}")

    if b.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    used = {}
    for batched in (True, False):
        u = warm[batched]
        timed(batched, u)  # warm-up: kernels, allocator, vmap's first trace
        if seconds:  # grow the run until it is long enough to time (fixed costs per run dominate short ones)
            dt, _ = timed(batched, u)
            while dt < seconds / 4 and u < updates:
                u = min(updates, max(2 * u, int(u * seconds / 4 / max(dt, 1e-3))))
                dt, _ = timed(batched, u)
            lo = min(updates, 2 * b.m) if batched else min_updates
            used[batched] = int(min(updates, max(lo, u * seconds / dt)))
        else:
            used[batched] = updates
    times: dict[bool, list[float]] = {True: [], False: []}
    finals: dict[bool, float] = {}
    for r in range(repeats):
        if r and deadline is not None and time.perf_counter() + sum(times[k][-1] for k in times) > deadline:
            log(f"  {b.model_name} m={b.m}: {r} repeat(s), time budget")
            break
        for batched in (True, False):
            dt, loss = timed(batched, used[batched])
            times[batched].append(dt)
            finals[batched] = loss
    minimal_loop(b, min(used[False], warm[False]))  # warm-up
    plain = [minimal_loop(b, used[False]) for _ in range(len(times[False]))]
    tp = statistics.median(plain)
    row.update({"minimal_updates_per_s": used[False] / tp, "minimal_seconds": plain})
    tb, ts = statistics.median(times[True]), statistics.median(times[False])
    row.update({"updates_batched": used[True], "updates_serial": used[False], "repeats": len(times[True]),
                "max_batch": max_batch, "batched_updates_per_s": used[True] / tb, "serial_updates_per_s": used[False] / ts,
                "speedup": (used[True] / tb) / (used[False] / ts), "serial_over_minimal": tp / ts, "batched_seconds": times[True],
                "serial_seconds": times[False], "final_loss_batched": finals[True], "final_loss_serial": finals[False]})
    if used[True] == used[False]:
        row["final_loss_rel_diff"] = abs(finals[True] - finals[False]) / max(abs(finals[False]), 1e-300)
    if b.device.startswith("cuda"):
        row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    return row


def describe(row: dict[str, Any]) -> str:
    return (f"{row['device']} ({row['threads']} threads), {row['model']} ({row['parameters']} params), "
            f"n = {row['clients']}, m = {row['concurrency']}, K = {row['local_steps']}: "
            f"batched {row['batched_updates_per_s']:.1f} upd/s, serial {row['serial_updates_per_s']:.1f} upd/s, "
            f"speed-up {row['speedup']:.2f}x (final loss {row['final_loss_batched']:.6f} vs {row['final_loss_serial']:.6f}); "
            f"minimal loop {row['minimal_updates_per_s']:.1f} upd/s: the engine's serial mode runs at "
            f"{row['serial_over_minimal']:.2f}x its speed")


def _ints(text: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise SystemExit(f"bench_trainer: --{name} must list integers >= 1 (got {text!r})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--models", default="cnn28", help=f"comma-separated, of {', '.join(MODELS)} (default cnn28)")
    ap.add_argument("--clients", type=int, default=None, help="n (default: = m)")
    ap.add_argument("--concurrency", default="100", help="m, comma-separated for several (default 100)")
    ap.add_argument("--updates", type=int, default=600, help="updates per timed run (with --seconds: at most)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="aim each timed run at this many seconds (updates chosen from the warm-up rate)")
    ap.add_argument("--steps", type=int, default=1, help="local steps K per task")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--max-batch", type=int, default=None, help="tasks per vmap batch (default: the engine's)")
    ap.add_argument("--channels", default="32,64", help="cnn28 conv channels (default 32,64: McMahan et al.)")
    ap.add_argument("--hidden", type=int, default=512, help="cnn28 hidden units (default 512)")
    ap.add_argument("--test-size", type=int, default=500, help="test samples of the final evaluation (default 500)")
    ap.add_argument("--json", help="write results to this file (one object; a list for several rows)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise SystemExit(f"bench_trainer: unknown model(s) {', '.join(bad) or '(none)'}; allowed: {', '.join(MODELS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_trainer: --device cuda but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for m in _ints(args.concurrency, "concurrency"):
        for name in models:
            opts = ({"channels": tuple(_ints(args.channels, "channels")), "hidden": args.hidden}
                    if name == "cnn28" else {})
            b = Bench(name, args.device, args.clients or m, m, args.updates, args.steps, args.batch_size,
                      max_batch=args.max_batch, options=opts, test_size=args.test_size)
            row = bench(b, args.updates, args.repeats, args.seconds)
            print(describe(row), flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows[0] if len(rows) == 1 else rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
