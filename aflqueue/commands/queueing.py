"""The queueing commands: ``analyze``, ``simulate``, ``optimize``, ``sweep``, ``schedule`` and
``figures``. Each parses its arguments (the shared vocabulary is :mod:`aflqueue.options`), makes
one library call and prints; none imports torch."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..console import (APPROX_ACCURACY, analysis_table, approx_table, optimization_table, simulation_table,
                       sweep_table)
from ..errors import ValidationError
from ..figures import make_all
from ..optimization import optimize
from ..options import (ANALYSES, MAX_OPTIMIZE_CONCURRENCY, OBJECTIVE_CHOICES, add_backend_arguments,
                       add_proxy_arguments, add_system_arguments, check, check_backend, check_finite, colon_pair,
                       check_proxy_options, float_list, nonempty_path, parse_range, print_json, problem_from_args,
                       system_from_args)
from ..queueing.analysis import analyze
from ..sweep import parse_objectives, sweep


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
    from ..queueing.approx import approx_analyze, approx_metrics_vjp  # lazy: scipy

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
    approx_table(system, res, grad)
    return 0


def add_analyze_parser(sub) -> None:
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
    from ..sim import simulate_and_estimate  # lazy: numba

    check_backend(args)
    system = system_from_args(args)
    run = simulate_and_estimate(system, args.updates, replications=args.replications, seed=args.seed,
                                engine=args.engine, warmup=args.warmup, batches=args.batches,
                                confidence=args.confidence, trace=args.trace, max_memory_gb=args.max_memory,
                                backend=args.backend, workers=args.workers, address=args.address)
    closed = analyze(system)
    if args.json:
        d = run.estimates.to_dict()
        d.update({
            "updates": args.updates, "seed": args.seed, "seeds": run.seeds, "engine": run.engine,
            "updates_per_second": run.updates_per_second, "wall_time_s": run.wall_time,
            "closed_form": {"exact": system.is_product_form,
                            **({} if system.is_product_form else {"approximation": system.product_form_violations}),
                            **{k: v for k, v in closed.to_dict(stations=False).items()
                               if k in ("throughput", "mean_queue_lengths", "utilization", "relative_delay",
                                        "mean_response_times", "mean_relative_delay")}},
        })
        if run.trace is not None:
            d["trace"] = run.trace
        print_json(d)
    else:
        simulation_table(system, run.estimates, closed, system.is_product_form, run.engine, run.updates_per_second)
        if run.trace is not None:
            print(f"trace written to {run.trace}")
    return 0


def add_simulate_parser(sub) -> None:
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
    check_proxy_options(args, [args.objective])
    system = system_from_args(args)
    problem = problem_from_args(args, system)
    # progress on stderr, with --json too: stdout keeps the one JSON object
    res = optimize(problem, starts=args.starts, seed=args.seed,
                   progress=None if args.quiet else (lambda s: print(s, file=sys.stderr)))
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


def add_optimize_parser(sub) -> None:
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
    o.add_argument("--weight", type=float, help="r in [0, 1] in r E/E* + (1-r) T/T* for tradeoff (default 0.5)")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--quiet", action="store_true", help="no progress lines (a long run prints one on stderr every "
                                                        "few seconds)")
    o.set_defaults(func=_cmd_optimize)


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
    objectives = parse_objectives(args.objective)
    check_proxy_options(args, objectives + (["tradeoff"] if args.pareto_points else []))
    check(not Path(args.output).exists() or Path(args.output).is_dir(), "output",
          f"{args.output!r} is a file; the sweep writes a folder")  # before the sweep's work, not after
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
    sweep_table(res, system, (lo, hi), paths, args.output)
    return 0


def add_sweep_parser(sub) -> None:
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
    s.set_defaults(func=_cmd_sweep, weight=None)


# --------------------------------------------------------------------------- schedule
def parse_window(text: str) -> tuple[float, float]:
    """``"START:END"``: a window of simulated time."""
    return colon_pair(text, float, "START:END (simulated times)")


def _cmd_schedule(args: argparse.Namespace) -> int:
    from ..schedule import schedule_figures  # lazy: matplotlib

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


def add_schedule_parser(sub) -> None:
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


# --------------------------------------------------------------------------- figures
def _cmd_figures(args: argparse.Namespace) -> int:
    paths = make_all(args.output)
    print(f"{len(paths)} files written to {args.output}/")
    return 0


def add_figures_parser(sub) -> None:
    f = sub.add_parser("figures", help="draw the analytic figures of the bundled example systems",
                       description="""The analytic figures: sweeps of the bundled example systems (as aflqueue sweep;
                                   aflqueue/data/two_groups.toml and five_types.toml): delay against routing, time
                                   against concurrency, optimal routing against speed, the time/energy Pareto front;
                                   PNG and PDF in one publishable style, with their data under data/.""")
    f.add_argument("--output", "-o", type=nonempty_path, default="figures", help="folder (default figures/)")
    f.set_defaults(func=_cmd_figures)
