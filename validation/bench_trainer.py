"""Benchmark: trainer updates per second, batched (torch.func.vmap) vs serial, same model and trace.

Issue 5 targets: batched >= 1.5x serial on CPU (small CNN, m = 100), >= 5x on GPU. The data are
random 28x28 images (speed does not depend on content), 100 clients of five speed types,
uniform routing, m = 100; both modes replay the same trace with the same minibatches, and the
final models are compared. Runs alternate and the median is reported (shared, noisy machine).

    python validation/bench_trainer.py [--device cpu|cuda] [--updates 600] [--steps 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from aflqueue import System
from aflqueue.fl.data import Dataset, FederatedData
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig
from aflqueue.fl.models import build_model
from aflqueue.sim import simulate

TYPES = np.array([3.0, 1.5, 0.6, 0.25, 0.1])


def fake_data(n_clients: int, per_client: int, seed: int = 0) -> FederatedData:
    g = torch.Generator().manual_seed(seed)
    clients = [Dataset(torch.rand(per_client, 1, 28, 28, generator=g), torch.randint(0, 10, (per_client,), generator=g), 10, "fake")
               for _ in range(n_clients)]
    test = Dataset(torch.rand(500, 1, 28, 28, generator=g), torch.randint(0, 10, (500,), generator=g), 10, "fake")
    return FederatedData(clients, test, None, 10, (1, 28, 28), "fake")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--updates", type=int, default=600)
    ap.add_argument("--steps", type=int, default=1, help="local steps K per task")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--max-batch", type=int, default=None, help="tasks per vmap batch (default: the engine's)")
    ap.add_argument("--channels", default="32,64", help="cnn28 conv channels (default 32,64: McMahan et al.)")
    ap.add_argument("--hidden", type=int, default=512, help="cnn28 hidden units (default 512)")
    ap.add_argument("--json", help="write results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, m = args.clients, args.concurrency
    system = System.from_rates(np.resize(TYPES, n), concurrency=m)
    trace = simulate(system, args.updates, seed=0)
    data = fake_data(n, 64)
    local = LocalConfig(steps=args.steps, lr=0.05, batch_size=args.batch_size)
    channels = tuple(int(c) for c in args.channels.split(","))

    def run(batched: bool):
        model = build_model("cnn28", (1, 28, 28), 10, seed=0, channels=channels, hidden=args.hidden)
        tr = TraceTrainer(model=model, data=data, trace=trace, routing=system.routing, algorithm="generalized-asyncsgd",
                          local=local, settings=EngineSettings(eval_every=0, checkpoint_every=0, batched=batched,
                                                               max_batch=args.max_batch, seed=0), device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        res = tr.run()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t, res

    run(True)  # warm-up (kernels, allocator)
    run(False)
    times = {True: [], False: []}
    finals = {}
    for _ in range(args.repeats):
        for b in (True, False):
            dt, res = run(b)
            times[b].append(dt)
            finals[b] = res.final_loss
    tb, ts = statistics.median(times[True]), statistics.median(times[False])
    from aflqueue.fl.models import count_parameters

    params = count_parameters(build_model("cnn28", (1, 28, 28), 10, channels=channels, hidden=args.hidden))
    row = {"device": args.device, "threads": torch.get_num_threads(), "clients": n, "concurrency": m,
           "model": f"cnn28 channels={channels} hidden={args.hidden}", "parameters": params,
           "updates": args.updates, "local_steps": args.steps, "batched_updates_per_s": args.updates / tb,
           "serial_updates_per_s": args.updates / ts, "speedup": ts / tb,
           "final_loss_batched": finals[True], "final_loss_serial": finals[False]}
    print(f"{args.device} ({torch.get_num_threads()} threads), cnn28 {channels}/{args.hidden} ({params} params), "
          f"n = {n}, m = {m}, K = {args.steps}: "
          f"batched {row['batched_updates_per_s']:.1f} upd/s, serial {row['serial_updates_per_s']:.1f} upd/s, "
          f"speed-up {row['speedup']:.2f}x (final loss {finals[True]:.6f} vs {finals[False]:.6f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
