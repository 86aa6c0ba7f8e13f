"""FedBuff vs FedEcho vs FedRevive on a stale, heterogeneous system, at equal simulated time.

Scenario (defaults): scikit-learn digits (8x8 images, 10 classes, offline), 20 clients with a
Dirichlet(0.1) label split, speed profile ``two-groups`` (10 clients at rate 1, 10 ten times
slower), uniform routing and ``m = 40`` tasks in flight (2n: the slow clients' queues hold most
tasks, so their updates arrive very stale). Every algorithm uses its spec defaults
(ALGORITHMS.md; nothing tuned here) and the same local training (5 SGD steps, lr 0.05, batch 32,
the data set's default model: an MLP 64-200-200-10). ``data.unlabeled_fraction = 0.1`` for all
three, so the clients hold the same data; only FedEcho uses the server's unlabeled slice.

For each seed (data split, model initialisation, schedule and minibatches all follow it) the
three algorithms replay the same simulated schedule up to the same ``run.time_budget``; the test
accuracy at the budget is compared across seeds: mean, standard deviation and a 95% t-interval
of the mean, plus the paired differences to FedBuff (same seed = same data and schedule). Server
overhead (seconds per arrival, memory) comes from each algorithm's cost report.

Usage::

    nice -n 10 python validation/stale_algorithms.py [--seeds 5] [--budget 1300] [--quick] [--fresh]

Results: ``validation/results/stale_algorithms/results.json`` (rewritten after every run; a
restart skips finished runs with the same settings and resumes an interrupted one from its
checkpoint under ``runs/stale_algorithms/``) and ``report.md`` next to it. ``--quick`` is a
smoke version (fewer clients, short budget) writing under ``.../stale_algorithms/quick/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FORMAT_VERSION = 1
ALGORITHMS = ("fedbuff", "fedecho", "fedrevive")


def scenario(args) -> dict[str, Any]:
    """The configuration shared by every run (seed, algorithm and output filled in per run)."""
    if args.quick:
        n, m, budget = 8, 16, args.budget or 250.0
    else:
        n, m, budget = 20, 40, args.budget or 1300.0
    return {
        "device": "cpu",
        "data": {"dataset": "digits", "clients": n, "partition": "dirichlet", "alpha": 0.1,
                 "unlabeled_fraction": 0.1},
        "model": {"name": None, "options": {}},
        "system": {"profile": "two-groups", "fast_rate": 1.0, "slow_factor": 10.0, "concurrency": m},
        "routing": {"kind": "uniform"},
        "local": {"steps": 5, "lr": 0.05, "batch_size": 32, "optimizer": "sgd", "weight_decay": 0.0},
        "run": {"updates": None, "time_budget": float(budget), "eval_every": 0, "eval_times": 10,
                "checkpoint_every": 500, "threads": 1},
    }


def t_quantile(df: int, q: float = 0.975) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(q, df))
    except ImportError:  # pragma: no cover - scipy is a dependency; table for small df
        return {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}.get(df, 1.96)


def summary(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and the 95% t-interval of the mean."""
    v = [float(x) for x in values]
    k = len(v)
    mean = statistics.fmean(v) if v else math.nan
    std = statistics.stdev(v) if k > 1 else math.nan
    half = t_quantile(k - 1) * std / math.sqrt(k) if k > 1 else math.nan
    return {"n": k, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": v}


def run_one(base: dict[str, Any], algorithm: str, seed: int, out: Path, fresh: bool = False) -> dict[str, Any]:
    """Train one (algorithm, seed); resumes from ``out/checkpoint.pt`` unless ``fresh``."""
    from aflqueue.config import TrainConfig
    from aflqueue.pipeline import train

    if fresh and (out / "checkpoint.pt").exists():
        shutil.rmtree(out)

    d = json.loads(json.dumps(base))
    d.update({"output": str(out), "seed": seed, "algorithm": {"name": algorithm, "params": {}}})
    cfg = TrainConfig.from_dict(d)
    t = time.perf_counter()
    res = train(cfg, resume=True)
    wall = time.perf_counter() - t
    r = res.to_dict()
    times, accs = r["time"], r["test_accuracy"]
    half = base["run"]["time_budget"] / 2
    acc_half = next((a for tt, a in zip(times, accs) if tt >= half - 1e-9), math.nan)
    stal = np.asarray(res.log["staleness"], dtype=float)
    return {"algorithm": algorithm, "seed": seed, "final_accuracy": r["final_accuracy"], "final_loss": r["final_loss"],
            "accuracy_at_half_budget": acc_half, "curve": {"time": times, "test_accuracy": accs},
            "arrivals": r["arrivals"], "simulated_time": r["simulated_time"], "versions": int(res.log["model_version"][-1]),
            "staleness_mean": float(stal.mean()), "staleness_p90": float(np.quantile(stal, 0.9)),
            "staleness_max": int(stal.max()), "costs": r["costs"], "wall_time_run": r["wall_time"], "wall_time_call": wall}


def memory_bytes(costs: dict[str, Any], parameters: int) -> int:
    """Server memory besides the model: the algorithm's own report; FedBuff reports none, and holds
    only its accumulation buffer (``P`` floats)."""
    return int(costs.get("memory_total_bytes", 4 * parameters))


def count_model_parameters(base: dict[str, Any]) -> int:
    from aflqueue.fl.data import default_model_for, load_dataset
    from aflqueue.fl.models import build_model, count_parameters

    train, _ = load_dataset(base["data"]["dataset"], None, seed=0)
    name = base["model"]["name"] or default_model_for(base["data"]["dataset"])
    return count_parameters(build_model(name, tuple(train.x.shape[1:]), train.num_classes, **base["model"]["options"]))


def fmt_ci(s: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    if s["n"] < 2:
        return f"{scale * s['mean']:.{digits}f}"
    lo, hi = s["ci95"]
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def analyse(results: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    runs = results["runs"]
    out: dict[str, Any] = {}
    for alg in ALGORITHMS:
        rs = [runs[f"{alg}/seed{s}"] for s in seeds if f"{alg}/seed{s}" in runs]
        if not rs:
            continue
        out[alg] = {
            "final_accuracy": summary([r["final_accuracy"] for r in rs]),
            "accuracy_at_half_budget": summary([r["accuracy_at_half_budget"] for r in rs]),
            "server_seconds_per_arrival": summary([r["costs"]["server_seconds_per_arrival"] for r in rs]),
            "memory_bytes": summary([memory_bytes(r["costs"], results["parameters"]) for r in rs]),
            "arrivals": summary([r["arrivals"] for r in rs]),
            "versions": summary([r["versions"] for r in rs]),
            "staleness_mean": summary([r["staleness_mean"] for r in rs]),
            "wall_time": summary([r["wall_time_run"] for r in rs]),
        }
        if alg != "fedbuff":
            pairs = [(runs[f"{alg}/seed{s}"]["final_accuracy"], runs[f"fedbuff/seed{s}"]["final_accuracy"])
                     for s in seeds if f"{alg}/seed{s}" in runs and f"fedbuff/seed{s}" in runs]
            if pairs:
                out[alg]["difference_to_fedbuff"] = summary([a - b for a, b in pairs])
    return out


def detail_costs(alg: str, costs: dict[str, Any]) -> str:
    ms = lambda x: f"{1e3 * x:.2f} ms"  # noqa: E731
    kb = lambda x: f"{x / 1024:.0f} KiB"  # noqa: E731
    if alg == "fedecho":
        return (f"inference {ms(costs['inference_seconds_per_arrival'])}/arrival, distillation "
                f"{ms(costs['distillation_seconds_per_round'])}/round ({costs['distillation_rounds']} rounds); memory: "
                f"start checkpoints {kb(costs['memory_checkpoints_bytes'])}, teacher logits {kb(costs['memory_logits_bytes'])}, "
                f"unlabeled set {kb(costs['memory_unlabeled_bytes'])}; mean alpha {costs['alpha_mean']:.3f}")
    if alg == "fedrevive":
        beta = costs.get("beta_mean")
        return (f"synthesis {ms(costs['synthesis_seconds_per_round'])}/round ({costs['syntheses']} rounds), "
                f"delta_KD {ms(costs['distillation_seconds_per_kd'])} each ({costs['distillations']} computed, "
                f"{costs['kd_skipped_beta0']} skipped at beta = 0, {costs['kd_skipped_warmup']} arrivals in warm-up), "
                f"probes {ms(costs['probe_seconds'])} in all; memory: start checkpoints "
                f"{kb(costs['memory_checkpoints_bytes'])}, teachers {kb(costs['memory_teacher_buffer_bytes'])}, pool "
                f"{kb(costs['memory_pool_bytes'])} ({costs['pool_samples']} samples), generator "
                f"{kb(costs['memory_generator_bytes'])} (+{kb(costs['memory_generator_peak_extra_bytes'])} during "
                f"synthesis); mean beta " + ("-" if beta is None else f"{beta:.3f}"))
    return "buffer only"


def write_report(path: Path, results: dict[str, Any], seeds: list[int]) -> None:
    a = analyse(results, seeds)
    base = results["scenario"]
    lines = ["# FedBuff vs FedEcho vs FedRevive at equal simulated time", "",
             f"Generated by `validation/stale_algorithms.py{' --quick' if results['quick'] else ''}` on "
             f"{results['updated']} ({results['machine']}).", "",
             "## Scenario", "",
             f"- data: {base['data']['dataset']}, {base['data']['clients']} clients, Dirichlet({base['data']['alpha']}) "
             f"labels, unlabeled fraction {base['data']['unlabeled_fraction']} (held by the server for all; used by FedEcho)",
             f"- system: `{base['system']['profile']}` (rates 1 and 1/{base['system']['slow_factor']:g}), uniform routing, "
             f"m = {base['system']['concurrency']} tasks in flight",
             f"- local training (all): {base['local']['steps']} SGD steps, lr {base['local']['lr']}, batch "
             f"{base['local']['batch_size']}; model: the data set's default (MLP 64-200-200-10)",
             f"- budget: simulated time {base['run']['time_budget']:g} for every algorithm (same schedule per seed); "
             f"seeds {seeds}",
             "- algorithms: spec defaults of ALGORITHMS.md (FedBuff B = 10, eta_g = 1; FedEcho on top of it; "
             "FedRevive B = 1, eta_g = 0.1, s_max = 75, warm-up 50/100 versions), nothing tuned", "",
             "## Test accuracy at the time budget", "",
             "Mean ± sample std [95% t-interval of the mean] over seeds, in %. The difference column is paired "
             "(same seed: same data, model initialisation and schedule).", "",
             "| algorithm | accuracy at T | accuracy at T/2 | difference to FedBuff at T | arrivals | versions | "
             "mean staleness (versions) | server s/arrival | server memory | wall time/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for alg, s in a.items():
        diff = fmt_ci(s["difference_to_fedbuff"]) if "difference_to_fedbuff" in s else "-"
        lines.append(f"| {alg} | {fmt_ci(s['final_accuracy'])} | {fmt_ci(s['accuracy_at_half_budget'])} | {diff} | "
                     f"{s['arrivals']['mean']:.0f} | {s['versions']['mean']:.0f} | {s['staleness_mean']['mean']:.1f} | "
                     f"{1e3 * s['server_seconds_per_arrival']['mean']:.3f} ms | "
                     f"{s['memory_bytes']['mean'] / 2**20:.2f} MiB | {s['wall_time']['mean']:.0f} s |")
    lines += ["", "Per-seed final accuracies (%):", ""]
    for alg, s in a.items():
        lines.append(f"- {alg}: " + ", ".join(f"{100 * v:.1f}" for v in s["final_accuracy"]["values"]))
    lines += ["", "## Server overhead (first seed)", ""]
    for alg in ALGORITHMS:
        key = f"{alg}/seed{seeds[0]}"
        if key in results["runs"]:
            lines.append(f"- {alg}: {detail_costs(alg, results['runs'][key]['costs'])}")
    lines += ["", "Server memory = what the algorithm holds besides the model (FedBuff: its accumulation buffer, "
              f"P = {results['parameters']} floats; FedEcho: the buffer, "
              "the m start checkpoints the engine keeps for it, the stored logits and the unlabeled set; FedRevive: "
              "the same m start checkpoints (it too rebuilds each client model as w_start + delta), teacher buffer, "
              "synthetic pool, generator, class proportions, cached delta_KD, buffer). FedBuff needs no start "
              "checkpoints (it only adds deltas). Seconds are wall "
              "time on a shared 2-core CPU machine (1 torch thread, nice 10) and are indicative only.", "",
              f"Total wall time of the runs in this file: {results['total_wall_time']:.0f} s.", ""]
    path.write_text("\n".join(lines))


def atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0, 1, ...); default 5 (quick: 2)")
    ap.add_argument("--budget", type=float, default=None, help="simulated time budget (default 1300; quick 250)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke version")
    ap.add_argument("--out", default=None, help="results folder (default validation/results/stale_algorithms[/quick])")
    ap.add_argument("--runs", default=None, help="per-run outputs and checkpoints (default runs/stale_algorithms[/quick])")
    ap.add_argument("--fresh", action="store_true", help="ignore finished runs in results.json and their checkpoints")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    sub = "quick" if args.quick else ""
    out = Path(args.out) if args.out else REPO / "validation" / "results" / "stale_algorithms" / sub
    runs_dir = Path(args.runs) if args.runs else REPO / "runs" / "stale_algorithms" / (sub or "full")
    out.mkdir(parents=True, exist_ok=True)
    base = scenario(args)
    seeds = list(range(2 if args.quick and args.seeds == 5 else args.seeds))
    path = out / "results.json"
    results: dict[str, Any] = {"format": FORMAT_VERSION, "scenario": base, "quick": args.quick, "runs": {},
                               "total_wall_time": 0.0}
    if path.exists() and not args.fresh:
        old = json.loads(path.read_text())
        if old.get("format") == FORMAT_VERSION and old.get("scenario") == base:
            results = old
        else:
            print("results.json belongs to other settings: starting over", file=sys.stderr)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    results["parameters"] = count_model_parameters(base)
    for seed in seeds:
        for alg in ALGORITHMS:
            key = f"{alg}/seed{seed}"
            if key in results["runs"]:
                print(f"{key}: done already ({100 * results['runs'][key]['final_accuracy']:.1f}%)")
                continue
            r = run_one(base, alg, seed, runs_dir / f"{alg}_seed{seed}", fresh=args.fresh)
            results["runs"][key] = r
            results["total_wall_time"] = sum(x["wall_time_run"] for x in results["runs"].values())
            results["updated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            results["summary"] = analyse(results, seeds)
            atomic_json(path, results)
            print(f"{key}: accuracy {100 * r['final_accuracy']:.1f}% at T = {base['run']['time_budget']:g} "
                  f"({r['arrivals']} arrivals, {r['versions']} versions, server "
                  f"{1e3 * r['costs']['server_seconds_per_arrival']:.2f} ms/arrival, {r['wall_time_run']:.0f} s)",
                  flush=True)
    results["updated"] = results.get("updated") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["summary"] = analyse(results, seeds)
    results["total_wall_time"] = sum(x["wall_time_run"] for x in results["runs"].values())
    atomic_json(path, results)
    write_report(out / "report.md", results, seeds)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
