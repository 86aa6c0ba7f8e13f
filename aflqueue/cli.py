"""Command-line interface: ``aflqueue <command> ...``: each command parses its arguments (the
shared vocabulary is :mod:`aflqueue.options`), makes one library call, and prints.

Bad input prints one line on stderr naming the field and exits with status 2; an error while
running (a full disk, a bug) prints one line and exits with status 1 (``AFLQUEUE_DEBUG=1`` shows
the traceback). Nothing here imports torch: training commands reach it through the library.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .config import system_file_overrides
from .console import (analysis_table, budget_report, fmt, optimization_table, recommendation_report, simulation_table,
                      training_summary, validation_report)
from .errors import ValidationError
from .figures import make_all
from .optimization import optimize
from .options import (ANALYSES, APPROX_ACCURACY, BYTES_PER_SIMULATED_UPDATE, EXIT_FAILURE, EXIT_USAGE,
                      MAX_OPTIMIZE_CONCURRENCY, MIN_UPDATES_PER_BATCH, OBJECTIVE_CHOICES, Parser, UsageError,
                      add_backend_arguments, add_proxy_arguments, add_run_config_arguments, add_system_arguments, check,
                      check_backend, check_finite, colon_pair, config_from_args, float_list, join_negative_values,
                      nonempty_path, parse_range, print_json, problem_from_args, require_fl, system_from_args)
from .pilot import calibrate, predict
from .queueing.analysis import analyze
from .runs import compare, compare_table, group_runs, load_run, load_runs, plot_runs
from .sweep import PROXY_KEYS, SWEEP_OBJECTIVES, sweep
from .tuning import log_grid, tune

# --------------------------------------------------------------------------- argument types


# --------------------------------------------------------------------------- shared options


# --------------------------------------------------------------------------- analyze
def _cmd_analyze(args: argparse.Namespace) -> int:
    system = system_from_args(args)
    if args.analysis == "approx":
        return _analyze_approx(args, system)
    res = analyze(system, method=args.method, gradient=args.gradient)
    if args.json:
        d = res.to_dict(stations=system.is_multistage or args.stations)
        d["n"] = system.n
        d["rates"] = system.rates.tolist()
        d["exact"] = system.is_product_form
        if not system.is_product_form:
            d["approximation"] = system.product_form_violations
        if args.gradient:
            g = res.gradients
            d["gradient"] = {"d_throughput_d_routing": g.d_throughput.tolist(),
                             "d_log_normalizing_constant_d_routing": g.d_log_normalizing_constant.tolist()}
        print_json(d)
    else:
        analysis_table(system, res, show_stations=args.stations or system.is_multistage)
    return 0


def _analyze_approx(args: argparse.Namespace, system) -> int:
    """``analyze --analysis approx``: the approximation for general service laws."""
    from .queueing.approx import approx_analyze, approx_metrics_vjp  # lazy: scipy

    if args.method != "mva":
        raise ValidationError("method", "--method applies to the product form; drop it with --analysis approx")
    res = approx_analyze(system)
    grad = approx_metrics_vjp(system, d_throughput=1.0) if args.gradient else None
    if args.json:
        d = res.to_dict(stations=system.is_multistage or args.stations)
        d.update(n=system.n, rates=system.rates.tolist())
        if grad is not None:
            d["gradient"] = {"d_throughput_d_routing": [float(x) for x in grad]}
        print_json(d)
        return 0
    what = (f"approximation for general service at {len(res.approximated)} FIFO station(s): "
            + ", ".join(res.approximated[:6]) + (" ..." if len(res.approximated) > 6 else "")
            if res.approximated else "exact: every FIFO station is exponential (product form)")
    print(f"Approximate analysis (docs/theory.md section 9), n = {system.n}, concurrency m = {res.concurrency}; {what}")
    print("client  mu_i  p_i  E[X_i]  util  resp_time  E[D_i]")
    for i, cl in enumerate(system.clients):
        print("  ".join([cl.name or str(i), fmt(cl.rate), fmt(res.routing[i]), fmt(res.mean_queue_lengths[i]),
                         fmt(res.utilization[i]), fmt(res.mean_response_times[i]), fmt(res.relative_delay[i])]))
    print(f"throughput lambda = {fmt(res.throughput, 6)} updates per time unit")
    print(f"mean relative delay sum_i p_i E[D_i] = {fmt(res.mean_relative_delay, 6)} (m - 1 = {res.concurrency - 1})")
    if res.server is not None:
        print(f"central server: utilisation {fmt(res.server['utilization'])}, "
              f"E[X] {fmt(res.server['mean_queue_length'])}, resp. time {fmt(res.server['mean_response_time'])}")
    if grad is not None:
        print("d lambda / d p_i = [" + ", ".join(fmt(v) for v in grad) + "]")
    if res.approximated:
        print(f"accuracy: {APPROX_ACCURACY}")
    return 0


def _parser_analyze(sub) -> None:
    a = sub.add_parser("analyze", help="closed-form metrics of a system (throughput, queues, delays)",
                       description="""Closed-network analysis (MVA or log-space convolution): exact for product-form
                                   systems (exponential FIFO stations, delay stations, no availability windows), an
                                   approximation otherwise, and labelled so. Without FILE or --rates it analyses the
                                   built-in example (5 fast clients at rate 1, 5 slow at 0.1, uniform, m = 10).""")
    add_system_arguments(a)
    a.add_argument("--method", choices=["mva", "convolution"], default="mva", help="algorithm (default mva)")
    a.add_argument("--analysis", choices=ANALYSES, default="product-form",
                   help="product-form (default; exact for product-form systems) or approx (the approximation for "
                        "general service laws, docs/theory.md section 9)")
    a.add_argument("--gradient", action="store_true", help="also report d throughput / d routing and d log G / d routing")
    a.add_argument("--stations", action="store_true", help="show per-station detail")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=_cmd_analyze)


# --------------------------------------------------------------------------- simulate
def _cmd_simulate(args: argparse.Namespace) -> int:
    from .sim import estimate, estimate_replications, simulate_replications  # lazy: numba

    check_backend(args)
    system = system_from_args(args)
    check(1 <= args.replications <= 100_000, "replications",
           f"must be an integer in [1, 100000] (got {args.replications})")
    check(args.seed >= 0, "seed", f"must be an integer >= 0 (got {args.seed})")
    check(args.updates >= 1, "updates", f"must be an integer >= 1 (got {args.updates})")
    check_finite(args.warmup, "warmup", 0.0)
    check_finite(args.confidence, "confidence", 0.0, 1.0)
    check(0 < args.confidence < 1, "confidence", f"must be in (0, 1) (got {args.confidence})")
    check(args.batches >= 2, "batches", f"must be an integer >= 2 (got {args.batches})")
    check_finite(args.max_memory, "max-memory", 0.0, lo_open=True)
    if args.trace is not None:
        check(Path(args.trace).suffix.lower() in (".npz", ".csv"), "trace",
               f"must end in .npz (trace) or .csv (export) (got {args.trace!r})")
        check(not Path(args.trace).is_dir(), "trace", f"{args.trace!r} is a folder; give a file name")
    warm = int(round(args.warmup * args.updates)) if args.warmup < 1 else int(args.warmup)
    after = args.updates - warm
    per_run_batches = args.batches if args.replications == 1 else 2
    need = MIN_UPDATES_PER_BATCH * per_run_batches
    if after < need:
        raise ValidationError("updates", f"{args.updates} updates leave {max(after, 0)} after the warm-up, fewer than "
                                         f"{need} ({MIN_UPDATES_PER_BATCH} per batch x {per_run_batches} batches) for "
                                         f"a trustworthy interval; use --updates >= {need + warm}")
    mem = args.updates * args.replications * BYTES_PER_SIMULATED_UPDATE / 2**30
    if args.backend != "serial":
        mem = args.updates * min(args.replications, args.workers or os.cpu_count() or 1) * \
            BYTES_PER_SIMULATED_UPDATE / 2**30 + args.updates * args.replications * 72 / 2**30
    stream = args.trace is not None and args.trace.lower().endswith(".npz") and args.replications == 1
    check(stream or mem <= args.max_memory, "updates",
           f"{args.updates:,} updates x {args.replications} run(s) need about {mem:.1f} GB of traces "
           f"(> --max-memory {args.max_memory:g} GB); use fewer --updates or --replications, or raise --max-memory")
    seeds = [args.seed] if args.replications == 1 else \
        [int(x) for x in np.random.SeedSequence(args.seed).generate_state(args.replications, dtype=np.uint32)]
    t0 = time.perf_counter()
    out = None
    if stream:  # the trace goes to the file as the run goes; the estimates read it back in chunks
        from .sim import simulate_to_file  # lazy: numba

        traces = [simulate_to_file(system, args.updates, args.trace, seed=args.seed, engine=args.engine,
                                   max_memory_gb=args.max_memory)]
        out = traces[0].path
    else:
        traces = simulate_replications(system, args.updates, seeds, engine=args.engine, backend=args.backend,
                                       workers=args.workers, address=args.address)
    wall = time.perf_counter() - t0
    if args.trace and not stream:
        out = traces[0].save(args.trace) if not args.trace.lower().endswith(".csv") else traces[0].to_csv(args.trace)
    if len(traces) == 1:
        est = estimate(traces[0], warmup=args.warmup, batches=args.batches, confidence=args.confidence)
    else:
        est = estimate_replications(traces, warmup=args.warmup, confidence=args.confidence)
    closed = analyze(system)
    if args.json:
        d = est.to_dict()
        d.update({
            "updates": args.updates, "seed": args.seed, "seeds": seeds, "engine": traces[0].meta["engine"],
            "updates_per_second": args.updates * len(traces) / wall, "wall_time_s": wall,
            "closed_form": {"exact": system.is_product_form,
                            **({} if system.is_product_form else {"approximation": system.product_form_violations}),
                            **{k: v for k, v in closed.to_dict(stations=False).items()
                               if k in ("throughput", "mean_queue_lengths", "utilization", "relative_delay",
                                        "mean_response_times", "mean_relative_delay")}},
        })
        if out is not None:
            d["trace"] = str(out)
        print_json(d)
    else:
        simulation_table(system, est, closed, system.is_product_form, traces[0].meta["engine"],
                         args.updates * len(traces) / wall)
        if out is not None:
            print(f"trace written to {out}")
    return 0


def _parser_simulate(sub) -> None:
    s = sub.add_parser("simulate", help="discrete-event simulation with confidence intervals",
                       description="""Simulate the closed network (SimPy model, or the compiled fast path for
                                   single-stage systems) and estimate steady-state metrics with confidence intervals,
                                   next to the closed-form values (labelled exact only when they are).""")
    add_system_arguments(s)
    s.add_argument("--updates", type=int, default=100_000, help="updates to simulate per run (default 100000)")
    s.add_argument("--seed", type=int, default=0, help="random seed >= 0 (same seed, identical trace)")
    s.add_argument("--engine", choices=["auto", "simpy", "fast"], default="auto",
                   help="auto: fast path when the system is single-stage without availability windows")
    s.add_argument("--warmup", type=float, default=0.1, help="updates discarded: a fraction (< 1) or a count")
    s.add_argument("--batches", type=int, default=20, help="batch-means batches >= 2 (default 20)")
    s.add_argument("--replications", type=int, default=1, help="independent runs (> 1: intervals across runs)")
    s.add_argument("--confidence", type=float, default=0.95, help="confidence level in (0, 1) (default 0.95)")
    s.add_argument("--trace", type=nonempty_path, metavar="PATH",
                   help="save the (first run's) trace: .npz, or .csv to export")
    s.add_argument("--max-memory", type=float, default=4.0, metavar="GB",
                   help="refuse runs whose traces need more memory than this (default 4)")
    add_backend_arguments(s, "replications")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_simulate)


# --------------------------------------------------------------------------- optimize


def _cmd_optimize(args: argparse.Namespace) -> int:
    check(args.routing is None, "routing", "is what optimize computes; bound it with --p-min/--p-max instead")
    check(args.service is None or args.analysis == "approx", "service",
           "the product-form proxies use mean service times only, so a service law would be ignored; add "
           "--analysis approx to account for it, or give the rates as 1 / mean service time")
    if args.updates is not None and args.time_budget is not None:
        raise ValidationError("updates", "give --updates K or --time-budget TAU, not both")
    check(1 <= args.starts <= 1000, "starts", f"must be an integer in [1, 1000] (got {args.starts})")
    check(args.seed >= 0, "seed", f"must be an integer >= 0 (got {args.seed})")
    system = system_from_args(args)
    problem = problem_from_args(args, system)
    res = optimize(problem, starts=args.starts, seed=args.seed)
    note = None if math.isfinite(res.objective_value) else (
        "the objective is infinite at every routing examined: the target epsilon is below what a fixed step size "
        "can reach, or a client gets no task")
    if args.json:
        print_json({**res.to_dict(), "analysis": problem.analysis, **({"note": note} if note else {})})
    else:
        optimization_table(system, res)
        if note:
            print(f"note: {note}; no routing is better than another here")
        if problem.analysis == "approx":
            print("analysis: approximation for general service laws (docs/theory.md section 9)")
            print(f"accuracy: {APPROX_ACCURACY}")
    return 0


def _parser_optimize(sub) -> None:
    o = sub.add_parser("optimize", help="optimal routing (and concurrency) for a convergence proxy",
                       description="""Optimise routing p (and concurrency m over a range) for a convergence proxy of
                                   Generalized AsyncSGD, and compare with uniform routing (AsyncSGD).""")
    add_system_arguments(o, concurrency_help=f"fixed concurrency m (default: the system's, n; at most "
                                             f"{MAX_OPTIMIZE_CONCURRENCY})")
    o.add_argument("--objective", choices=OBJECTIVE_CHOICES + ("wallclock",), default="wall-clock",
                   metavar="{" + ",".join(OBJECTIVE_CHOICES) + "}",
                   help="what to minimise (default wall-clock; 'wallclock' is accepted too)")
    o.add_argument("--concurrency-range", type=parse_range, metavar="LO:HI", help="optimise m jointly over LO..HI")
    o.add_argument("--analysis", choices=ANALYSES, default="product-form",
                   help="analysis behind the objective: product-form (default) or approx (general service laws; "
                        "then --service is used)")
    add_proxy_arguments(o, epsilon_objectives="time-to-accuracy/energy/tradeoff")
    o.add_argument("--weight", type=float, default=0.5, help="r in [0, 1] in r E/E* + (1-r) T/T* for tradeoff")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.set_defaults(func=_cmd_optimize)


# --------------------------------------------------------------------------- train


def _cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import train  # lazy: numba

    require_fl("train")
    cfg = config_from_args(args)
    res = train(cfg, resume=args.resume, progress=not args.json and not args.quiet, tensorboard=args.tensorboard,
                force=args.force)
    if args.json:
        print_json(res.to_dict())
    else:
        training_summary(cfg, res)
    return 0


def _parser_train(sub) -> None:
    t = sub.add_parser("train", help="trace-driven FL training (real model and data)",
                       description="""Train with a real model and data set, replaying the simulated schedule of the
                                   queueing model. Without CONFIG the embedded default runs (digits, 10 clients, two
                                   speed groups 10x apart, Generalized AsyncSGD, 1500 updates); options override it.
                                   With a time budget and no update budget the time budget binds; the output says
                                   which limit ended the run.""")
    add_run_config_arguments(t, "TOML/YAML/JSON run configuration (sections data, model, system, routing, local, "
                                "algorithm, run)", concurrency_flags=("--concurrency", "-m"))
    t.add_argument("--output", "-o", type=nonempty_path, help="output folder (results.json, updates.csv, "
                                                              "checkpoint.pt, trace.npz, config.json)")
    t.add_argument("--seed", type=int, help="seed of data split, model init, schedule and minibatches")
    t.add_argument("--serial", action="store_true", help="compute tasks one at a time (default on CPU)")
    t.add_argument("--batched", action="store_true", help="compute in-flight tasks together with vmap (default on CUDA)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    t.add_argument("--force", action="store_true", help="replace the run OUTPUT already holds (refused without it)")
    t.add_argument("--tensorboard", type=nonempty_path, metavar="DIR",
                   help="also log the curves and per-arrival staleness as TensorBoard events in DIR (off by default; "
                        "needs pip install 'aflqueue[tensorboard]')")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the results JSON")
    t.set_defaults(func=_cmd_train)


# --------------------------------------------------------------------------- tune
def _cmd_tune(args: argparse.Namespace) -> int:
    require_fl("tune")
    check_backend(args)
    cfg = config_from_args(args)
    if args.lr_grid is not None:
        lrs = sorted(set(args.lr_grid))
        for x in lrs:
            check_finite(x, "lr-grid", 0.0, 100.0, lo_open=True)
        check(len(lrs) >= 2, "lr-grid", "needs at least 2 distinct rates")
    else:
        lrs = log_grid(cfg.local.lr / 10, cfg.local.lr * 10, 7)
    seeds = args.pilot_seeds if args.pilot_seeds is not None else [1000, 1001]
    for s in seeds:
        check(float(s).is_integer() and s >= 0, "pilot-seeds", f"must be integers >= 0 (got {s:g})")
    out = Path(args.output or "runs/tune")
    check(1 <= args.replicas <= 1024, "replicas", f"must be an integer in [1, 1024] (got {args.replicas})")
    res = tune(cfg, lrs, [int(s) for s in seeds], out, backend=args.backend, workers=args.workers,
               address=args.address, progress=None if args.quiet else print, batch=args.replicas)
    if args.json:
        print_json(res.to_dict())
    else:
        for row in res.table:
            mark = " <- best" if row["lr"] == res.best_lr else ""
            div = f"; {row['diverged']} diverged" if row["diverged"] else ""
            seeds_txt = ", ".join(f"{x:.4f}" for x in row["scores"])
            print(f"lr {row['lr']:<8g} score {row['score']:.4f} (seeds: {seeds_txt}{div}){mark}")
        ext = f" after {res.extensions} rate(s) added out of an edge" if res.extensions else ""
        edge = " -- still at the edge of the rates tried: flagged" if res.at_edge else ""
        print(f"best learning rate {res.best_lr:g}{ext}{edge}; results in {out}/tune.json")
    return 0


def _parser_tune(sub) -> None:
    t = sub.add_parser("tune", help="tune the learning rate of a run configuration on a validation split",
                       description="""Train the configuration at each learning rate of a log grid on pilot seeds,
                                   score each run by its mean validation accuracy over the budget (the test set is
                                   never used) and report the best rate. While the best rate is the smallest or
                                   largest tried, the next rate out is added (up to 6 times); a rate still at an edge
                                   is flagged. Needs data.validation_fraction > 0 (set with --set). Runs are saved as
                                   they finish; an interrupted tuning resumes.""")
    add_run_config_arguments(t, "TOML/YAML/JSON run configuration (default: the embedded one)",
                             set_example="data.validation_fraction=0.1")
    t.add_argument("--lr-grid", type=float_list, metavar="LR1,LR2,..",
                   help="learning rates to try (default: 7 values from local.lr/10 to local.lr*10, log-spaced)")
    t.add_argument("--pilot-seeds", type=float_list, metavar="S1,S2,..",
                   help="seeds of the tuning runs, kept apart from evaluation seeds (default 1000,1001)")
    t.add_argument("--output", "-o", type=nonempty_path, help="folder for the runs and tune.json (default runs/tune)")
    add_backend_arguments(t, "the tuning runs")
    t.add_argument("--replicas", type=int, default=1, help="runs trained together in lockstep per job (replica-"
                                                           "batched, about 2x the runs per core-hour from 10; default 1)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object")
    t.set_defaults(func=_cmd_tune, seed=None, serial=False, batched=False)


# --------------------------------------------------------------------------- calibrate
def _cmd_calibrate(args: argparse.Namespace) -> int:
    check(args.pilot != args.initial, "pilot", "give exactly one of --pilot (fit pilot runs) or --initial "
                                                "(zero-cost initial-model estimate)")
    pilot_flags = {"routings": args.routings, "lrs": args.lrs, "seed": args.pilot_seed,
                   "budget_fraction": args.budget_fraction, "bootstrap": args.bootstrap,
                   "bootstrap_method": args.bootstrap_method, "runs": args.runs}
    if not args.pilot:
        for flag, value in pilot_flags.items():
            check(value is None, {"seed": "pilot-seed"}.get(flag, flag.replace("_", "-")), "is used only with --pilot")
    check_backend(args)
    if args.routings is not None:
        pilot_flags["routings"] = [r.strip() for r in args.routings.split(",")]
    cfg = config_from_args(args)
    cf = calibrate(cfg, method="pilot" if args.pilot else "initial", output=args.constants_out,
                   backend=args.backend, workers=args.workers, address=args.address,
                   progress=None if args.quiet or args.json else print,
                   **{k: v for k, v in pilot_flags.items() if v is not None})
    if args.json:
        print_json({**cf.to_dict(), "output": cf.path})
    else:
        print(cf.report())
    return 0


def _parser_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="estimate the proxy constants: from pilot runs, or at the initial model",
                       description="""--pilot: train the configuration briefly (a few routings x learning rates, one
                                   pilot seed, a fraction of the budget, on a validation split), fit the bound's three
                                   terms to the loss curves with a bootstrap over the runs, and write a constants file
                                   that optimize --constants, predict --constants and train --set
                                   routing.constants=FILE accept (docs/theory.md section 10). --initial: the zero-cost
                                   estimate at the initial model (section 7).""")
    add_run_config_arguments(c, "TOML/YAML/JSON run configuration (default: the embedded configuration)",
                             algorithm=False)
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--pilot", action="store_true", help="fit pilot training runs")
    mode.add_argument("--initial", action="store_true", help="estimate at the initial model (no training)")
    c.add_argument("--output", "-o", dest="constants_out", type=nonempty_path, default="constants.toml", metavar="FILE",
                   help="constants file to write (.toml, .json, .yaml; default constants.toml)")
    c.add_argument("--routings", metavar="R1,R2,..",
                   help="pilot routings: uniform, p2 (the initial-model wall-clock optimum), mid (their midpoint), "
                        "mix:T (default uniform,p2,mid)")
    c.add_argument("--lrs", type=float_list, metavar="LR1,LR2,..", help="pilot learning rates (default 0.03,0.1)")
    c.add_argument("--pilot-seed", type=int, help="seed of the pilot runs (default 1000; keep it apart from "
                                                  "evaluation seeds)")
    c.add_argument("--budget-fraction", type=float, help="share of the budget each pilot trains for (default 0.5)")
    c.add_argument("--bootstrap", type=int, help="bootstrap refits for the intervals (default 200)")
    c.add_argument("--bootstrap-method", choices=["cases", "wild"],
                   help="resample the pilot runs (default) or the wild cluster bootstrap over runs")
    c.add_argument("--runs", type=nonempty_path, metavar="FOLDER", help="folder for the pilot runs (default: next to the output)")
    add_backend_arguments(c, "the pilot runs")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.add_argument("--json", action="store_true", help="print the written file as one JSON object")
    c.set_defaults(func=_cmd_calibrate, seed=None, serial=False, batched=False, output=None, algorithm=None,
                   routing=None, objective=None)


# --------------------------------------------------------------------------- predict
def _cmd_predict(args: argparse.Namespace) -> int:
    check(args.constants is not None, "constants", "missing: give --constants FILE (from aflqueue calibrate)")
    if args.config:  # a system file instead of a run configuration: its clients replace the speed profile
        extra = system_file_overrides(args.config)
        if extra is not None:
            args.set, args.config = list(args.set or []) + extra, None
    cfg = config_from_args(args)
    pred = predict(cfg, args.constants, objective=args.predict_objective, concurrency_range=args.concurrency_range,
                   p_min=args.p_min, target_fraction=args.target_fraction, confidence=args.confidence,
                   starts=args.starts)
    if args.json:
        print_json(pred.to_dict())
    else:
        print(pred.report())
    return 0


def _parser_predict(sub) -> None:
    p = sub.add_parser("predict", help="predict what optimising the routing gains over AsyncSGD, with intervals",
                       description="""Optimise the routing for the constants of a file written by aflqueue calibrate
                                   and predict, from the pilot fit, the optimum's time to a target accuracy and its
                                   accuracy at the budget relative to AsyncSGD (uniform routing), with bootstrap
                                   intervals; says 'optimisation not expected to pay' when the time ratio's interval
                                   covers 1, and 'no verdict' (with the reason) when the numbers support none
                                   (docs/theory.md section 10). Constants fitted on another number of clients are
                                   refused.""")
    add_run_config_arguments(p, "run configuration, or a system file (its clients replace the speed profile) "
                                "(default: the embedded configuration)", algorithm=False)
    p.add_argument("--constants", metavar="FILE", help="constants file from aflqueue calibrate --pilot (required)")
    p.add_argument("--objective", dest="predict_objective", choices=("wall-clock", "time-to-accuracy", "wallclock"),
                   default="wall-clock", help="which optimum to predict (default wall-clock)")
    p.add_argument("--concurrency-range", type=parse_range, metavar="LO:HI", help="optimise m jointly over LO..HI")
    p.add_argument("--p-min", type=float, help="lower bound on every p_i (default routing.p_min, 0.001)")
    p.add_argument("--target-fraction", type=float, default=0.9,
                   help="target accuracy = this x AsyncSGD's predicted accuracy at the budget (default 0.9)")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    p.add_argument("--starts", type=int, default=4, help="optimiser starting points (default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_predict, seed=None, serial=False, batched=False, output=None, algorithm=None,
                   routing=None, objective=None)


# --------------------------------------------------------------------------- run / validate
def _comparison(args: argparse.Namespace, cfg, target: float | None, what: str) -> int:
    """The paired comparison of :func:`aflqueue.comparison.validate`, with its budget printed first."""
    from .comparison import validate  # lazy: numba

    require_fl(args.command)
    check_backend(args)
    u = args.budget_updates
    check(u is None or 100 <= u <= 10**7, "updates", f"the budget must be 100 to 10000000 AsyncSGD updates (got {u})")
    if not args.quiet:
        budget_report(cfg, args.budget_updates)
    v = validate(cfg, seeds=args.seeds, seed=args.seed, updates=args.budget_updates, target=target,
                 output=args.output, backend=args.backend, workers=args.workers, address=args.address,
                 progress=None if args.quiet else print)
    validation_report(v, what=what)
    print(f"outputs: {args.output}/summary.json and one folder per run under {args.output}/ (results.json, "
          "updates.csv, trace.npz, config.json)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    # the embedded default's target: digits, where AsyncSGD reaches 90% within the budget
    return _comparison(args, None, 0.9, "the wall-clock operating point")


def _cmd_validate(args: argparse.Namespace) -> int:
    if args.preset is not None:
        raise ValidationError("preset", f"{args.preset!r}: {STUDIES_MOVED}")
    require_fl("validate")
    cfg = config_from_args(args)
    check(args.target is None or 0 < args.target < 1, "target", f"must be an accuracy in (0, 1) (got {args.target})")
    return _comparison(args, cfg, args.target, "the wall-clock operating point")


def _add_comparison_arguments(p: argparse.ArgumentParser, output: str) -> None:
    p.add_argument("--output", "-o", type=nonempty_path, default=output, help=f"output folder (default {output})")
    p.add_argument("--seed", type=int, default=0, help="first seed >= 0 (default 0)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, paired across the two arms (default 5)")
    add_backend_arguments(p, "the training runs", default="process")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _parser_run(sub) -> None:
    r = sub.add_parser("run", help="the main job: analyse -> optimise -> simulate -> train, and compare",
                       description="""aflqueue validate on the embedded default (10 clients, two speed groups 10x
                                   apart, digits): exact analysis, the wall-clock optimiser's operating point (routing
                                   and step size), simulation, and training of AsyncSGD (uniform routing) vs that
                                   operating point at an equal simulated-time budget, over several seeds; prints
                                   predicted and measured gains with intervals, and where the outputs are.""")
    _add_comparison_arguments(r, "runs/main")
    r.add_argument("--updates", "--budget-updates", dest="budget_updates", type=int, default=1500,
                   help="the time budget is AsyncSGD's expected time for this many updates (default 1500)")
    r.set_defaults(func=_cmd_run)


#: What ``aflqueue validate --preset`` says: the study presets it used to run left the package.
STUDIES_MOVED = ("the validation studies (presets paper, paper-n20, regimes, regimes-confirm, tiny, small, default, "
                 "full...) left the package: each study is run by its own command in the source repository, "
                 "python validation/<study>/run.py (paper, regimes, grid, approx, closed_forms, fedbuff_family, "
                 "recommend)")


def _parser_validate(sub) -> None:
    v = sub.add_parser("validate", help="AsyncSGD vs the operating point on your configuration, paired by seed",
                       description="""Train AsyncSGD (uniform routing) and the wall-clock operating point (routing,
                                   concurrency, step size; constants calibrated at each seed's initial model) on
                                   CONFIG for the same simulated time, over paired seeds, and report the accuracy
                                   difference and the time-to-target ratio with intervals (per-seed values below 3
                                   seeds). The target defaults to 0.9 x AsyncSGD's mean final accuracy.""")
    add_run_config_arguments(v, "TOML/YAML/JSON run configuration (default: the embedded configuration)",
                             algorithm=False)
    _add_comparison_arguments(v, "runs/validate")
    v.add_argument("--target", type=float, help="test accuracy whose time to reach is compared (default: 0.9 x "
                                                "AsyncSGD's mean final accuracy)")
    v.add_argument("--preset", help="no longer accepted: names the study command that replaces it")
    v.set_defaults(func=_cmd_validate, serial=False, batched=False, algorithm=None, routing=None, objective=None,
                   budget_updates=None)  # --updates (run.updates) is the budget: AsyncSGD's expected time for it


# --------------------------------------------------------------------------- recommend
def _cmd_recommend(args: argparse.Namespace) -> int:
    from .recommendation import Calibration, recommend  # lazy: numba

    require_fl("recommend")
    check_backend(args)
    cfg = config_from_args(args)
    calibration = Calibration.load(args.calibration) if args.calibration else Calibration()
    rec = recommend(cfg, output=args.output, backend=args.backend, workers=args.workers, calibration=calibration,
                    batched=args.backend != "serial", progress=None if args.quiet or args.json else print)
    if args.json:
        print_json(rec.to_dict())
    else:
        recommendation_report(rec)
    return 0


def _parser_recommend(sub) -> None:
    r = sub.add_parser("recommend", help="choose the operating point from pilot runs, or keep AsyncSGD",
                       description="""Spend a stated pilot budget (at most 10% of the compute of tuning and
                                   evaluating every candidate) on short runs of the candidates (AsyncSGD, P2, P2 with
                                   weights clipped at 4, P2 mixed with uniform routing, the bias-aware optimum, P3) by
                                   successive halving on a validation split, then print the recommended operating
                                   point (routing, concurrency, weight cap, learning rate) and its predicted
                                   time-to-target ratio against AsyncSGD with a prediction interval calibrated on
                                   held-in regimes (--calibration; docs/theory.md section 12), or 'keep AsyncSGD'.
                                   The time budget is AsyncSGD's expected time for run.updates (--updates).""")
    add_run_config_arguments(r, "TOML/YAML/JSON run configuration (default: the embedded configuration)",
                             algorithm=False)
    r.add_argument("--calibration", type=nonempty_path, metavar="FILE",
                   help="interval calibration (JSON from a study with held-in regimes; default: no interval)")
    r.add_argument("--output", "-o", type=nonempty_path, default="runs/recommend",
                   help="folder of the pilot runs, resumable and keyed by content (default runs/recommend)")
    add_backend_arguments(r, "the pilot runs", default="process")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--json", action="store_true", help="print the recommendation as one JSON object")
    r.set_defaults(func=_cmd_recommend, seed=None, serial=False, batched=False, algorithm=None, routing=None,
                   objective=None)


# --------------------------------------------------------------------------- figures
def _cmd_figures(args: argparse.Namespace) -> int:
    paths = make_all(args.output)
    print(f"{len(paths)} files written to {args.output}/")
    return 0


def _parser_figures(sub) -> None:
    f = sub.add_parser("figures", help="draw the analytic figures of the bundled example systems",
                       description="""The analytic figures: sweeps of the bundled example systems (as aflqueue sweep;
                                   aflqueue/data/two_groups.toml and five_types.toml): delay against routing, time
                                   against concurrency, optimal routing against speed, the time/energy Pareto front;
                                   PNG and PDF in one publishable style, with their data under data/.""")
    f.add_argument("--output", "-o", type=nonempty_path, default="figures", help="folder (default figures/)")
    f.set_defaults(func=_cmd_figures)


# --------------------------------------------------------------------------- sweep
#: Largest concurrency a sweep examines (uniform routing is analysed at up to 256 values of m).
MAX_SWEEP_CONCURRENCY = 10_000


def _cmd_sweep(args: argparse.Namespace) -> int:
    check(args.routing is None, "routing", "is what the sweep optimises; bound it with --p-min/--p-max instead")
    check(args.service is None, "service", "the sweep's proxies use mean service times only; give the rates as "
                                            "1 / mean service time")
    check(args.concurrency is None, "concurrency", "the sweep scans --concurrency-range; the system file's "
                                                    "concurrency is AsyncSGD's baseline")
    if args.updates is not None and args.time_budget is not None:
        raise ValidationError("updates", "give --updates K or --time-budget TAU, not both")
    check(1 <= args.starts <= 1000, "starts", f"must be an integer in [1, 1000] (got {args.starts})")
    check(args.seed >= 0, "seed", f"must be an integer >= 0 (got {args.seed})")
    check(0 <= args.pareto_points <= 101, "pareto-points", f"must be an integer in [0, 101] (got {args.pareto_points})")
    objectives: list[str] = []
    for item in args.objective or [",".join(SWEEP_OBJECTIVES)]:
        for o in filter(None, (x.strip() for x in item.split(","))):
            o = "wall-clock" if o == "wallclock" else o
            check(o in SWEEP_OBJECTIVES, "objective", f"must be among {', '.join(SWEEP_OBJECTIVES)} (got {o!r}; the "
                                                       "trade-off is drawn as the Pareto front, --pareto-points)")
            objectives.append(o)
    system = system_from_args(args, require_system=True)
    if args.concurrency_range is None:
        args.concurrency_range = (1, max(2 * system.n, system.concurrency))
    lo, hi = args.concurrency_range
    check(1 <= lo <= hi <= MAX_SWEEP_CONCURRENCY, "concurrency-range",
           f"must be LO:HI with 1 <= LO <= HI <= {MAX_SWEEP_CONCURRENCY} (got {lo}:{hi})")
    args.objective = objectives[0]
    args.analysis = "product-form"  # the sweep's proxies are the product-form ones (no --analysis flag)
    pb = problem_from_args(args, system)  # the settings aflqueue optimize would use, validated
    fields = {"constants": pb.constants, "updates": pb.updates, "time_budget": args.time_budget,
              "epsilon": pb.epsilon, "energy": pb.energy, "p_min": args.p_min, "p_max": args.p_max,
              "dispersion": pb.dispersion}
    name = Path(args.file).stem if args.file else "system"
    res = sweep(system, (lo, hi), objectives, name=name, pareto_points=args.pareto_points, starts=args.starts,
                seed=args.seed, progress=None if (args.quiet or args.json) else (lambda s: print(s, file=sys.stderr)),
                **fields)
    paths = res.save(args.output)
    if args.json:
        print_json({**res.to_dict(), "files": [str(p) for p in paths]})
        return 0
    print(f"{'objective':<18} {'m*':>6} {'optimum':>12} {'uniform':>12}  (uniform: AsyncSGD at m = "
          f"{min(max(system.concurrency, lo), hi)})")
    for o, r in res.optima.items():
        base = r["baseline"]
        print(f"{o:<18} {r['concurrency']:>6} {r['objective_value']:>12.5g} "
              f"{(f'{base:.5g}' if base is not None else '-'):>12}")
    print(f"{len(paths)} files written to {args.output}/ (sweep.csv: one row per m; columns "
          f"{', '.join(PROXY_KEYS[o] + '_optimal' for o in objectives)} hold the best value at each m)")
    return 0


def _parser_sweep(sub) -> None:
    s = sub.add_parser("sweep", help="sweep your own system over the concurrency: figures and CSV",
                       description="""For a system file (or --rates): throughput, relative delays and each convergence
                                   proxy against the concurrency m under uniform routing and the best routing at each
                                   m, each objective's optimum (the same problem and answer as aflqueue optimize with
                                   the same flags), optimal routing against client speed, the time/energy Pareto
                                   front, and the delays as routing mass moves to the slower clients. Writes
                                   sweep.csv, sweep_optima.csv, sweep_routing.csv, sweep.json and the figures (PNG and
                                   PDF).""")
    add_system_arguments(s)
    s.add_argument("--concurrency-range", type=parse_range, metavar="LO:HI",
                   help=f"concurrencies to sweep (default 1:max(2n, m); at most {MAX_SWEEP_CONCURRENCY})")
    s.add_argument("--objective", action="append", metavar="OBJ[,OBJ..]",
                   help="objectives to optimise (repeatable or comma-separated; default all of "
                        "per-update, wall-clock, time-to-accuracy, energy, max-throughput)")
    s.add_argument("--output", "-o", type=nonempty_path, default="sweep", help="output folder (default sweep/)")
    s.add_argument("--pareto-points", type=int, default=11,
                   help="trade-off weights on the time/energy Pareto front, 0 to skip (default 11)")
    # the sweep draws the trade-off as the Pareto front (--pareto-points), so epsilon serves two objectives
    add_proxy_arguments(s, epsilon_objectives="time-to-accuracy/energy")
    s.add_argument("--json", action="store_true", help="print the sweep as one JSON object")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=_cmd_sweep, weight=0.5)


# --------------------------------------------------------------------------- plot / compare
def _cmd_plot(args: argparse.Namespace) -> int:
    check_finite(args.target, "target", 0.0, 1.0)
    paths, data = plot_runs(args.runs, args.output, target=args.target, title=args.title)
    for g in data["groups"]:
        print(f"{g['legend']}: {len(g['seeds'])} run(s), seeds {', '.join(str(s) for s in g['seeds'])}")
    print(f"{len(paths)} files written to {args.output}/ ({', '.join(Path(p).name for p in paths)})")
    return 0


def _parser_plot(sub) -> None:
    p = sub.add_parser("plot", help="plot your own runs: accuracy and loss against time and updates",
                       description="""Draw test accuracy and loss against simulated time and against updates for one
                                   or many run folders (written by aflqueue train). Runs whose configurations differ
                                   only in the seed are one group: their mean with a 95% bootstrap band; the legend
                                   names the settings that differ between groups. A folder holding run folders stands
                                   for all of them. Writes runs_curves.png, .pdf and .json.""")
    p.add_argument("runs", nargs="+", type=nonempty_path, metavar="RUN_DIR", help="run folders (or folders of them)")
    p.add_argument("--output", "-o", type=nonempty_path, default="plots", help="output folder (default plots/)")
    p.add_argument("--target", type=float, help="draw a target accuracy line, in [0, 1]")
    p.add_argument("--title", help="figure title (default: how many configurations and runs)")
    p.set_defaults(func=_cmd_plot)


def _cmd_compare(args: argparse.Namespace) -> int:
    check_finite(args.target, "target", 0.0, 1.0)
    check_finite(args.time, "time", 0.0, lo_open=True)
    groups = group_runs(load_runs(args.runs))
    reference = 0
    if args.reference is not None:
        ref = load_run(args.reference).path.resolve()
        hits = [k for k, g in enumerate(groups) if any(r.path.resolve() == ref for r in g.runs)]
        check(bool(hits), "reference", f"{args.reference!r} is not one of the runs compared")
        reference = hits[0]
    res = compare(groups, target=args.target, at_time=args.time, reference=reference)
    if args.json:
        print_json(res)
    else:
        print(compare_table(res))
    return 0


def _parser_compare(sub) -> None:
    c = sub.add_parser("compare", help="paired table of your own runs: time to a target, accuracy at equal time",
                       description="""For run folders grouped as in aflqueue plot (seeds of one configuration): test
                                   accuracy at an equal simulated time, time to a target accuracy, and against a
                                   reference group, paired by seed, the accuracy difference (bootstrap interval) and
                                   the time ratio (log-scale interval).""")
    c.add_argument("runs", nargs="+", type=nonempty_path, metavar="RUN_DIR", help="run folders (or folders of them)")
    c.add_argument("--target", type=float, help="target test accuracy in [0, 1] (default: 90%% of the best accuracy "
                                                "the weakest run reached)")
    c.add_argument("--time", type=float, help="the equal simulated time (default: the shortest run's last evaluation)")
    c.add_argument("--reference", type=nonempty_path, metavar="RUN_DIR",
                   help="a run of the reference group (default: the first group)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_cmd_compare)


# --------------------------------------------------------------------------- schedule
def parse_window(text: str) -> tuple[float, float]:
    """``"START:END"``: a window of simulated time."""
    return colon_pair(text, float, "START:END (simulated times)")


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .schedule import schedule_figures  # lazy: matplotlib

    if args.window is not None:
        lo, hi = args.window
        check_finite(lo, "window", 0.0)
        check_finite(hi, "window", 0.0)
        check(hi > lo, "window", f"must be START:END with START < END (got {lo:g}:{hi:g})")
    clients = None
    if args.clients is not None:
        clients = []
        for c in args.clients:
            check(float(c).is_integer() and c >= 0, "clients", f"must be client indices >= 0 (got {c:g})")
            clients.append(int(c))
    paths, data = schedule_figures(args.source, args.output, window=args.window, clients=clients,
                                   exact=not args.no_exact)
    note = data["delays"]["note"]
    print(f"{data['updates']:,} updates of {data['n_clients']} clients, m = {data['concurrency']}"
          + (f"; {note}" if note else "") + ("; exact delay law drawn" if data["delays"]["exact"] else ""))
    print(f"{len(paths)} files written to {args.output}/ ({', '.join(Path(p).name for p in paths)})")
    return 0


def _parser_schedule(sub) -> None:
    s = sub.add_parser("schedule", help="see a schedule: timeline, per-client delays, arrival share",
                       description="""From a trace (.npz, aflqueue simulate --trace) or a run folder (its trace.npz,
                                   up to the arrivals the run applied): a timeline of each client's tasks (waiting, in
                                   service, in transit) and of the m tasks in flight; per-client histograms of the
                                   relative delay with the closed-form mean E[D_i] and, for small exponential systems,
                                   the exact law on top; each client's share of the arrivals against its routing
                                   probability. Writes schedule_*.png/.pdf and schedule.json.""")
    s.add_argument("source", type=nonempty_path, metavar="TRACE_OR_RUN", help="trace .npz or run folder")
    s.add_argument("--output", "-o", type=nonempty_path, default="schedule", help="output folder (default schedule/)")
    s.add_argument("--window", type=parse_window, metavar="START:END",
                   help="simulated-time window of the timeline (default: the first few hundred arrivals)")
    s.add_argument("--clients", type=float_list, metavar="I,J,..",
                   help="clients of the timeline (default: all, or 24 spread over the speeds)")
    s.add_argument("--no-exact", action="store_true", help="skip the exact delay law (closed-form mean only)")
    s.set_defaults(func=_cmd_schedule)


# --------------------------------------------------------------------------- main
PARSERS = (_parser_analyze, _parser_simulate, _parser_optimize, _parser_train, _parser_tune, _parser_run,
           _parser_validate, _parser_figures, _parser_sweep, _parser_plot, _parser_compare,
           _parser_schedule, _parser_calibrate, _parser_predict, _parser_recommend)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aflqueue", description="Asynchronous FL as a closed queueing network.")
    parser.add_argument("--version", action="version", version=f"aflqueue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aflqueue`` console script."""
    parser = build_parser()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
        if getattr(args, "objective", None) == "wallclock":
            args.objective = "wall-clock"
        return int(args.func(args) or 0)
    except (UsageError, ValidationError) as e:
        msg = f"{e}" if isinstance(e, UsageError) else f"aflqueue: error: {e}"
        print((msg.splitlines() or ["aflqueue: error"])[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("AFLQUEUE_DEBUG"):
            raise
        what = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
        detail = (str(getattr(e, "strerror", None) or e).strip().splitlines() or [""])[0]
        print(f"aflqueue: failed: {what}{type(e).__name__}: {detail} (AFLQUEUE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "analyze": _cmd_analyze, "simulate": _cmd_simulate, "optimize": _cmd_optimize, "train": _cmd_train,
    "tune": _cmd_tune, "run": _cmd_run, "validate": _cmd_validate, "figures": _cmd_figures, "sweep": _cmd_sweep,
    "plot": _cmd_plot, "compare": _cmd_compare, "schedule": _cmd_schedule, "calibrate": _cmd_calibrate,
    "predict": _cmd_predict}

if __name__ == "__main__":
    sys.exit(main())
