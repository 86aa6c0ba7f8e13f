"""Benchmark: runs per core-hour, replica-batched (aflqueue.fl.replicas) vs one run per process.

The run shape of the paper preset (:mod:`aflqueue.experiments.paper`, ``validation/PROTOCOL.md``):
an MLP (two hidden layers of 200) on scikit-learn digits or MNIST-1D (8,000 samples), 10% of
the training set set aside for validation, the rest split over n = 100 clients of five device
types (rates 3 to 0.1), m = n, uniform routing (the AsyncSGD arm), Generalized AsyncSGD with one
local SGD step per task, batch 32, importance weights, test accuracy at ``eval_times`` equally
spaced times. The budget is the preset's (AsyncSGD's expected time for U0 = 2000 / 4000 updates)
times ``--fraction``, with ``eval_times`` = 50 times the same fraction (at least 1), so that
evaluations per arrival stay the preset's.

The runs: ``J = max(R)`` replays of one data split and schedule (seed 0); run ``j`` trains with
learning rate ``LR_GRID[j mod 5]`` (the preset's tuning grid) and minibatch seed ``j``: the
shape of a tuning stage.

*Serial*: each run alone with :class:`~aflqueue.fl.engine.TraceTrainer` in the engine's default
mode for the device (serial on CPU), as a study runs it (one run per process). *Replica-batched*:
the first ``R`` runs in one :class:`~aflqueue.fl.replicas.ReplicaTrainer`. On the CPU the cost is
the process's CPU time (``time.process_time``: core-seconds, the quantity a core-hour budget
counts, and less sensitive than wall time to other processes on a shared machine) of
``run()`` alone: data, schedule and trainer construction are excluded from both sides. The
ratio is the serial core-seconds of the same ``R`` runs over the batch's. On CUDA, wall time
(synchronised): the GPU is the resource.

Each row also reports how far the batched runs' final test losses are from the serial runs'
(float32: kernels round differently, see :mod:`aflqueue.fl.replicas`), whether replica 0 gives
the same bits alone (R = 1) as in the batch, and, with ``--repeat-check`` (default on CUDA),
whether the largest batch gives the same bits when run again.

Usage::

    python validation/bench_replicas.py [--device cpu|cuda] [--datasets digits,mnist1d]
        [--partitions iid] [--replicas 1,4,10,20,32] [--fraction 0.25] [--serial-runs J]
        [--threads 1] [--repeat-check] [--time-limit S] [--json out.json]

Defaults: CPU: R = 1, 4, 10, 20, 32, fraction 0.25, every run also serially (about 3 minutes on
one core); CUDA: R = 1, 10, 100, fraction 0.25, 2 serial runs (their mean is the serial cost
per run), the largest batch run twice, a batch out of GPU memory retried with half the
replicas, and nothing new started after 150 s (``--time-limit``), so that one call ends within
about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from aflqueue.config import TrainConfig
from aflqueue.errors import OneLineArgumentParser, ValidationError, require
from aflqueue.experiments.paper import DATASETS, LR_GRID, PAPER_PRESETS, PARTITIONS
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig
from aflqueue.fl.models import count_parameters
from aflqueue.fl.replicas import Replica, ReplicaTrainer
from aflqueue.pipeline import build_data_and_model, build_system, prepare
from aflqueue.queueing.analysis import analyze

PRESET = PAPER_PRESETS["paper"]


def scenario(dataset: str, partition: str, fraction: float, device: str) -> dict[str, Any]:
    """The preset's run shape for ``dataset`` x ``partition`` at ``fraction`` of its budget."""
    spec = DATASETS[dataset]
    part = dict(PARTITIONS[partition])
    data_cfg = {"dataset": dataset, "clients": PRESET.clients, "partition": part.pop("partition"), **part,
                "validation_fraction": PRESET.validation_fraction, "options": dict(spec.options)}
    raw = {"output": "unused", "seed": 0, "device": device, "data": data_cfg, "model": {"name": spec.model},
           "system": {"profile": "five-types", "spread": 30.0}, "local": {"steps": 1, "lr": 0.05, "batch_size": 32},
           "run": {"time_budget": 1.0, "eval_every": 0, "checkpoint_every": 0}}
    cfg = TrainConfig.from_dict(raw)
    data, model = build_data_and_model(cfg)
    system = build_system(cfg, cfg.data.clients)
    uniform = np.full(system.n, 1.0 / system.n)
    tau = spec.updates / analyze(system.with_routing(uniform)).throughput * fraction
    raw["run"]["time_budget"] = tau
    pr = prepare(TrainConfig.from_dict(raw), data, model)
    return {"prepared": pr, "time_budget": tau, "eval_times": max(1, round(PRESET.eval_times * fraction)),
            "parameters": count_parameters(pr.model), "client_sizes": [len(c) for c in pr.data.clients]}


def runs(sc: dict[str, Any], J: int) -> list[Replica]:
    pr = sc["prepared"]
    return [Replica(model=pr.model, data=pr.data, trace=pr.trace,
                    algorithm="generalized-asyncsgd", local=LocalConfig(lr=float(LR_GRID[j % len(LR_GRID)])),
                    settings=EngineSettings(time_budget=sc["time_budget"], eval_every=0, eval_times=sc["eval_times"],
                                            checkpoint_every=0, seed=j)) for j in range(J)]


class Clock:
    """Core-seconds on the CPU, synchronised wall seconds on CUDA."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()


def serial(rep: Replica, device: str, clock: Clock) -> tuple[float, Any]:
    tt = TraceTrainer(model=rep.model, data=rep.data, trace=rep.trace, algorithm=rep.algorithm,
                      local=rep.local, settings=rep.settings, device=device)
    t = clock.now()
    res = tt.run()
    return clock.now() - t, res


def batched(reps: Sequence[Replica], device: str, clock: Clock, log=print) -> tuple[float, list, ReplicaTrainer, int]:
    """Run ``reps`` in one batch; on CUDA out of memory, fewer replicas (halved) until it fits.
    Returns ``(seconds, results, trainer, R actually run)``."""
    R = len(reps)
    while True:
        try:
            rt = ReplicaTrainer(reps[:R], device=device, max_memory_gb=1e9)
            t = clock.now()
            out = rt.run()
            return clock.now() - t, out, rt, R
        except RuntimeError as e:
            if not (device.startswith("cuda") and "out of memory" in str(e).lower()) or R <= 1:
                raise
            torch.cuda.empty_cache()
            R //= 2
            log(f"  out of GPU memory: R -> {R}")


def rel(a: float, b: float) -> float:
    if not (np.isfinite(a) and np.isfinite(b)):
        return 0.0 if (np.isfinite(a) == np.isfinite(b)) else float("inf")
    return abs(a - b) / max(abs(b), 1e-300)


def bench(dataset: str, partition: str, Rs: list[int], fraction: float, device: str, serial_runs: int | None,
          repeat_check: bool, deadline: float | None = None, log=print) -> list[dict[str, Any]]:
    """Rows of one data set and partition (module docstring). Past ``deadline``
    (``time.perf_counter()``), the remaining batches and the repeat check are skipped."""

    def late(what: str) -> bool:
        if deadline is not None and time.perf_counter() > deadline:
            log(f"  time limit reached: {what} skipped")
            return True
        return False

    clock = Clock(device)
    t0 = time.perf_counter()
    try:
        sc = scenario(dataset, partition, fraction, device)
    except ImportError as e:  # e.g. the mnist1d package on a bare GPU image
        log(f"{dataset}/{partition}: skipped, {e} (validation/gpu_wheels.sh carries the missing wheels)")
        return []
    J = max(Rs)
    reps = runs(sc, J)
    log(f"{dataset}/{partition}: {sc['parameters']:,} parameters, client sizes {min(sc['client_sizes'])}.."
        f"{max(sc['client_sizes'])} (mean {np.mean(sc['client_sizes']):.1f}), budget {sc['time_budget']:.3g} "
        f"({fraction:g} of the preset's), {sc['eval_times']} evaluations; setup {time.perf_counter() - t0:.1f} s")
    if device.startswith("cuda"):  # warm-up: context, kernels, allocator
        batched(reps[:2], device, clock)
        serial(reps[0], device, clock)
    n_serial = J if serial_runs is None else min(J, serial_runs)
    # the serial runs are timed in two halves, before and after the batches, so that a change of
    # load on a shared machine shows (the two means are reported) and biases neither side
    ser: dict[int, tuple[float, Any]] = {j: serial(reps[j], device, clock) for j in range(0, n_serial, 2)}
    batches = []
    for R in Rs:
        if late(f"R = {R}"):
            break
        batches.append(batched(reps[:R], device, clock, log))
    ser.update({j: serial(reps[j], device, clock) for j in range(1, n_serial, 2)})
    ser = [ser[j] for j in range(n_serial)]
    s_sec = [s for s, _ in ser]
    s_arr = [r.arrivals for _, r in ser]
    halves = [float(np.mean(s_sec[h::2])) for h in (0, 1) if s_sec[h::2]]
    log(f"  serial: {n_serial} runs, {np.mean(s_sec):.3f} s/run (before the batches {halves[0]:.3f}"
        + (f", after {halves[1]:.3f}" if len(halves) > 1 else "") + f"), {sum(s_arr) / sum(s_sec):.0f} updates/s")
    rows = []
    alone = None
    for sec, res, rt, R in batches:
        arrivals = sum(r.arrivals for r in res)
        k = min(R, n_serial)  # runs with a serial twin
        ser_sec = sum(s_sec[:k]) / k * R  # serial cost of these R runs (mean of the twins when not all ran)
        row = {"dataset": dataset, "partition": partition, "device": device, "threads": torch.get_num_threads(),
               "parameters": sc["parameters"], "fraction": fraction, "time_budget": sc["time_budget"],
               "eval_times": sc["eval_times"], "R": R, "arrivals": arrivals,
               "batched_seconds": sec, "batched_seconds_per_run": sec / R,
               "serial_seconds_per_run": ser_sec / R, "serial_runs_timed": k, "serial_seconds_halves": halves,
               "batched_updates_per_s": arrivals / sec, "serial_updates_per_s": sum(s_arr[:k]) / sum(s_sec[:k]),
               "batched_runs_per_hour": 3600 * R / sec, "serial_runs_per_hour": 3600 * R / ser_sec,
               "ratio": ser_sec / sec,
               "final_loss_max_rel_diff": max(rel(res[j].final_loss, ser[j][1].final_loss) for j in range(k)),
               "final_loss_max_rel_diff_by_lr": {
                   f"{lr:g}": max(rel(res[j].final_loss, ser[j][1].final_loss) for j in range(k)
                                  if reps[j].local.lr == lr)
                   for lr in sorted({reps[j].local.lr for j in range(k)})},
               "same_schedules": all(res[j].log == ser[j][1].log for j in range(k)),
               "diverged": sum(r.diverged for r in res)}
        if R == 1:
            alone = rt.params(0)
        elif alone is not None:
            row["replica0_alone_equal_bits"] = bool(torch.equal(alone, rt.params(0)))
        if device.startswith("cuda"):
            row["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        unit = "GPU-s" if device.startswith("cuda") else "core-s"
        log(f"  R={R:4d}: {row['batched_seconds_per_run']:.3f} {unit}/run vs serial {row['serial_seconds_per_run']:.3f}"
            f" -> {row['batched_runs_per_hour']:.0f} vs {row['serial_runs_per_hour']:.0f} runs/hour, "
            f"{row['batched_updates_per_s']:.0f} vs {row['serial_updates_per_s']:.0f} updates/s, ratio "
            f"{row['ratio']:.2f}x; final loss max rel diff by lr "
            + ", ".join(f"{lr}: {d:.1g}" for lr, d in row["final_loss_max_rel_diff_by_lr"].items())
            + (f", replica 0 alone = in batch: {row['replica0_alone_equal_bits']}"
               if "replica0_alone_equal_bits" in row else ""))
        rows.append(row)
    if repeat_check and rows and not late("the repeat check"):  # the largest batch once more: the same bits?
        _, a, rt1, R = batches[-1]
        _, b, rt2, R2 = batched(reps[:R], device, clock, log)
        same = R2 == R and all(torch.equal(rt1.params(j), rt2.params(j)) for j in range(R)) and all(
            json.dumps(x.curves) == json.dumps(y.curves) for x, y in zip(a, b))
        rows[-1]["repeat_equal_bits"] = bool(same)
        log(f"  R={R}: run twice, same bits: {same}")
    return rows


def _list(text: str, name: str, allowed: Sequence[str] | None = None) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    require(bool(out), f"--{name}", f"must list at least one value (got {text!r})")
    if allowed is not None:
        bad = [x for x in out if x not in allowed]
        require(not bad, f"--{name}", f"unknown {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--datasets", default="digits,mnist1d", help="comma-separated: digits, mnist1d")
    ap.add_argument("--partitions", default="iid", help=f"comma-separated, of {', '.join(PARTITIONS)} (default iid)")
    ap.add_argument("--replicas", default=None, help="R values, comma-separated (default 1,4,10,20,32; CUDA 1,10,100)")
    ap.add_argument("--fraction", type=float, default=0.25, help="fraction of the preset's budget (default 0.25)")
    ap.add_argument("--serial-runs", type=int, default=None,
                    help="runs timed serially (default: all on CPU, 2 on CUDA); the others use their mean")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeat-check", action="store_true", help="run the largest batch twice (default on CUDA)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds after which remaining batches are skipped (default: none; CUDA 150)")
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    try:
        args = ap.parse_args(argv)
        datasets = _list(args.datasets, "datasets", ("digits", "mnist1d"))
        partitions = _list(args.partitions, "partitions", tuple(PARTITIONS))
        cuda = args.device.startswith("cuda")
        require(args.device == "cpu" or cuda, "--device", f"must be cpu or cuda[:k] (got {args.device!r})")
        require(not cuda or torch.cuda.is_available(), "--device", "cuda requested but torch sees no CUDA device")
        try:
            Rs = [int(x) for x in _list(args.replicas or ("1,10,100" if cuda else "1,4,10,20,32"), "replicas")]
        except ValueError:
            raise ValidationError("--replicas", f"must list integers >= 1 (got {args.replicas!r})") from None
        require(min(Rs) >= 1, "--replicas", f"must list integers >= 1 (got {args.replicas!r})")
        require(0 < args.fraction <= 1, "--fraction", f"must be in (0, 1] (got {args.fraction})")
        require(args.threads >= 1, "--threads", f"must be >= 1 (got {args.threads})")
        serial_runs = args.serial_runs if args.serial_runs is not None else (2 if cuda else None)
        require(serial_runs is None or serial_runs >= 1, "--serial-runs", f"must be >= 1 (got {serial_runs})")
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = []
    t0 = time.perf_counter()
    limit = args.time_limit if args.time_limit is not None else (150.0 if cuda else None)
    deadline = None if limit is None else t0 + limit
    for d in datasets:
        for p in partitions:
            if deadline is not None and time.perf_counter() > deadline:
                print(f"time limit reached: {d}/{p} skipped")
                continue
            rows += bench(d, p, sorted(set(Rs)), args.fraction, args.device, serial_runs, args.repeat_check or cuda,
                          deadline)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
