"""Command-line interface: ``aflqueue <command> ...``.

Argument parsing lives here and stays light; each command imports its implementation lazily so
that ``aflqueue analyze`` never imports torch. Bad input prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from .errors import ValidationError

EXIT_USAGE = 2
ANALYSES = ("product-form", "approx")  # as aflqueue.optimize.ANALYSES, without importing it at start-up


class UsageError(Exception):
    """Bad command-line input (reported as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: error: {message}")


# --------------------------------------------------------------------------- parsing helpers
def float_list(text: str) -> list[float]:
    """Parse ``"1,1,0.1"`` into floats."""
    try:
        vals = [float(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not vals:
        raise argparse.ArgumentTypeError("empty list")
    return vals


def add_system_arguments(p: argparse.ArgumentParser, concurrency_help: str | None = None) -> None:
    """Options describing a system; they override the fields of an optional system FILE."""
    p.add_argument("file", nargs="?", help="system file (.toml, .yaml/.yml or .json); "
                   "without it and without --rates the built-in example is used")
    p.add_argument("--rates", type=float_list, metavar="R1,R2,..", help="compute rates mu_i (tasks per time unit)")
    p.add_argument("--routing", type=float_list, metavar="P1,P2,..", help="routing probabilities p_i (default uniform)")
    p.add_argument("--concurrency", "-m", type=int, metavar="M",
                   help=concurrency_help or "tasks in flight m >= 1 (default n)")
    p.add_argument("--service", metavar="LAW", help="compute service law, e.g. exponential, deterministic, "
                   "lognormal:cv=1.5, gamma:shape=2, weibull:shape=0.7, pareto:shape=2.5")
    p.add_argument("--downlink-rates", type=float_list, metavar="R", help="downlink stage rates (one, or one per client)")
    p.add_argument("--uplink-rates", type=float_list, metavar="R", help="uplink stage rates (one, or one per client)")
    p.add_argument("--downlink-discipline", choices=["fifo", "delay"], help="downlink stations: fifo or delay")
    p.add_argument("--uplink-discipline", choices=["fifo", "delay"], help="uplink stations: fifo or delay")
    p.add_argument("--server-rate", type=float, metavar="MU", help="central-server processing rate (default: infinitely fast)")


def system_from_args(args: argparse.Namespace, require_system: bool = False):
    """Build the :class:`~aflqueue.system.System` described by a file and/or flags."""
    from .system import System, example_system, read_mapping

    flags = {
        "rates": args.rates, "routing": args.routing, "concurrency": args.concurrency, "service": args.service,
        "downlink_rates": _scalar_or_list(args.downlink_rates), "uplink_rates": _scalar_or_list(args.uplink_rates),
        "downlink_discipline": args.downlink_discipline, "uplink_discipline": args.uplink_discipline,
        "server_rate": args.server_rate,
    }
    flags = {k: v for k, v in flags.items() if v is not None}
    if args.file:
        data = read_mapping(args.file)
        if "clients" in data:
            structural = set(flags) - {"routing", "concurrency"}
            if structural:
                raise ValidationError(sorted(structural)[0].replace("_", "-"),
                                      "cannot override a file with a 'clients' list; edit the file instead")
        from pathlib import Path

        return System.from_dict({**data, **flags}, base_dir=Path(args.file).parent)
    if "rates" not in flags:
        extra = set(flags) - {"concurrency", "routing"}
        if extra or require_system:
            raise ValidationError("rates", "missing: give --rates or a system FILE")
        sysm = example_system()
        if "routing" in flags:
            sysm = sysm.with_routing(flags["routing"])
        if "concurrency" in flags:
            sysm = sysm.with_concurrency(flags["concurrency"])
        return sysm
    return System.from_dict(flags)


def _scalar_or_list(v: list[float] | None) -> float | list[float] | None:
    if v is None:
        return None
    return v[0] if len(v) == 1 else v


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False))


# --------------------------------------------------------------------------- commands
def _cmd_analyze(args: argparse.Namespace) -> int:
    from .queueing.analysis import analyze
    from .report import analysis_table

    system = system_from_args(args)
    if args.analysis == "approx":
        return _analyze_approx(args, system)
    res = analyze(system, method=args.method, gradient=args.gradient)
    if args.json:
        d = res.to_dict(stations=system.is_multistage or args.stations)
        d["n"] = system.n
        d["rates"] = system.rates.tolist()
        if args.gradient:
            g = res.extras["gradients"]
            d["gradient"] = {
                "d_throughput_d_routing": [None if x != x else float(x) for x in g.d_throughput],
                "d_log_normalizing_constant_d_routing": [None if x != x else float(x) for x in g.d_log_normalizing_constant],
            }
        print_json(d)
    else:
        analysis_table(system, res, show_stations=args.stations or system.is_multistage)
    return 0


def _analyze_approx(args: argparse.Namespace, system) -> int:
    """``analyze --analysis approx``: the approximation for general service laws."""
    from .queueing.approx import approx_analyze, approx_metrics_vjp
    from .report import fmt

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
    print(f"Approximate analysis (docs/approx_analysis.md), n = {system.n}, concurrency m = {res.concurrency}; {what}")
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
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from .queueing.analysis import analyze
    from .report import simulation_table
    from .sim import estimate, estimate_replications, simulate_replications

    system = system_from_args(args)
    if args.replications < 1:
        raise ValidationError("replications", f"must be an integer >= 1 (got {args.replications})")
    seeds = [args.seed] if args.replications == 1 else \
        [int(x) for x in np.random.SeedSequence(args.seed).generate_state(args.replications, dtype=np.uint32)]
    t0 = time.perf_counter()
    traces = simulate_replications(system, args.updates, seeds, engine=args.engine, backend=args.backend,
                                   workers=args.workers, address=args.address)
    wall = time.perf_counter() - t0
    if args.trace:
        out = traces[0].save(args.trace) if not args.trace.endswith(".csv") else traces[0].to_csv(args.trace)
    if len(traces) == 1:
        est = estimate(traces[0], warmup=args.warmup, batches=args.batches, confidence=args.confidence)
    else:
        est = estimate_replications(traces, warmup=args.warmup, confidence=args.confidence)
    exact = analyze(system)
    product_form_exact = all(c.compute.law.is_exponential for c in system.clients) and all(
        st.law.is_exponential or st.discipline == "delay"
        for c in system.clients for st in (c.downlink, c.uplink) if st is not None) and (
        system.server is None or system.server.law.is_exponential or system.server.discipline == "delay")
    if args.json:
        d = est.to_dict()
        d.update({
            "updates": args.updates, "seed": args.seed, "seeds": seeds, "engine": traces[0].meta["engine"],
            "updates_per_second": args.updates * len(traces) / wall, "wall_time_s": wall,
            "closed_form": {"exact": product_form_exact, **{k: v for k, v in exact.to_dict(stations=False).items()
                                                              if k in ("throughput", "mean_queue_lengths", "utilization",
                                                                       "relative_delay", "mean_response_times",
                                                                       "mean_relative_delay")}},
        })
        if args.trace:
            d["trace"] = str(out)
        print_json(d)
    else:
        simulation_table(system, est, exact, product_form_exact, traces[0].meta["engine"],
                         args.updates * len(traces) / wall)
        if args.trace:
            print(f"trace written to {out}")
    return 0


def parse_constants(text: str | None) -> dict[str, float]:
    """``"Delta=2,L=0.5,sigma2=1"`` or a TOML/YAML/JSON file (e.g. written by calibration)."""
    if not text:
        return {}
    from pathlib import Path

    if Path(text).suffix.lower() in (".toml", ".yaml", ".yml", ".json") and Path(text).exists():
        from .system import read_mapping

        data = read_mapping(text)
        return dict(data.get("constants", data))
    out: dict[str, float] = {}
    for part in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in part:
            raise ValidationError("constants", f"{part!r} must look like NAME=VALUE (e.g. Delta=2,L=0.5)")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValidationError(f"constants.{k.strip()}", f"must be a number (got {v!r})") from None
    return out


def parse_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like LO:HI (integers)") from None
    return lo, hi


def problem_from_args(args: argparse.Namespace, system):
    from .bounds import EnergyModel, ProxyConstants
    from .optimize import OptimizationProblem

    consts = parse_constants(args.constants)
    if args.eta is not None:
        consts["eta"] = args.eta
    if args.eta_max is not None:
        consts["eta_max"] = args.eta_max
    energy = None
    if args.kappa is not None or args.idle_power is not None:
        energy = EnergyModel.dvfs(system.rates, kappa=args.kappa if args.kappa is not None else 1.0,
                                  idle_fraction=args.idle_power if args.idle_power is not None else 0.0)
    rng = args.concurrency_range
    if rng is not None and args.concurrency is not None:
        raise ValidationError("concurrency", "give --concurrency or --concurrency-range, not both")
    return OptimizationProblem(
        system=system, objective=args.objective, constants=ProxyConstants.from_dict(consts),
        updates=args.updates, time_budget=args.time_budget, epsilon=args.epsilon, energy=energy,
        weight=args.weight, p_min=args.p_min, p_max=args.p_max, concurrency=rng, dispersion=args.dispersion,
        analysis=args.analysis)


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .optimize import optimize
    from .report import optimization_table

    if args.updates is not None and args.time_budget is not None:
        raise ValidationError("updates", "give --updates K or --time-budget TAU, not both")
    system = system_from_args(args)
    problem = problem_from_args(args, system)
    res = optimize(problem, starts=args.starts, seed=args.seed)
    if args.json:
        print_json({**res.to_dict(), "analysis": problem.analysis})
    else:
        optimization_table(system, res)
        if problem.analysis == "approx":
            print("analysis: approximation for general service laws (docs/approx_analysis.md)")
    return 0


def config_from_args(args: argparse.Namespace):
    from .config import load_config

    sets = list(args.set or [])
    pairs = [("output", args.output, True), ("algorithm.name", args.algorithm, True),
             ("routing.kind", args.routing, True), ("routing.objective", args.objective, True),
             ("data.dataset", args.dataset, True), ("data.data_root", args.data_root, True),
             ("data.clients", args.clients, False), ("run.updates", args.updates, False),
             ("run.time_budget", args.time_budget, False), ("device", args.device, True), ("seed", args.seed, False)]
    for key, value, quoted in pairs:
        if value is not None:
            sets.append(f"{key}={json.dumps(value) if quoted else value}")
    if args.time_budget is not None and args.updates is None:
        sets.append("run.updates=null")
    if args.serial:
        sets.append("run.batched=false")
    if args.batched:
        sets.append("run.batched=true")
    return load_config(args.config, sets)


def _cmd_train(args: argparse.Namespace) -> int:
    from .fl.run import train
    from .report import training_summary

    cfg = config_from_args(args)
    res = train(cfg, resume=args.resume, progress=not args.json and not args.quiet)
    if args.json:
        print_json(res.to_dict())
    else:
        training_summary(cfg, res)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .mainjob import main_job

    main_job(output=args.output, seed=args.seed, updates=args.updates, quiet=args.quiet)
    return 0


def _torchvision_sets_under(root: str) -> list[str]:
    """Torchvision data sets whose folders exist under ``root`` (the loader checks the files)."""
    from pathlib import Path

    folders = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST", "emnist": "EMNIST",
               "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
    found = [k for k, f in folders.items() if (Path(root) / f).is_dir()]
    if not found:
        raise ValidationError("data-root", f"no torchvision data set folder under {root!r} (expected one of "
                                           f"{', '.join(folders.values())})")
    return found


def _cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .experiments.grid import PRESETS, run_grid
    from .experiments.report import write_report

    if args.preset not in PRESETS:
        raise ValidationError("preset", f"must be one of {', '.join(PRESETS)} (got {args.preset!r})")
    preset = PRESETS[args.preset]
    datasets = args.datasets.split(",") if args.datasets else (
        _torchvision_sets_under(args.data_root) if args.data_root else None)
    tag = args.preset + ("_" + "_".join(datasets) if datasets else "")
    output = Path(args.output or f"validation/results/grid_{tag}")
    default = args.preset == "default" and not datasets
    report = Path(args.report) if args.report else (Path("validation/report.md") if default else output / "report.md")
    figures = Path(args.figures) if args.figures else (Path("figures") if default else output / "figures")
    if not args.report_only:
        records = run_grid(preset, output, seeds=args.seeds, datasets=datasets, data_root=args.data_root,
                           device=args.device, backend=args.backend, workers=args.workers, address=args.address,
                           gpus_per_cell=args.gpus_per_cell, progress=None if args.quiet else print)
    else:
        from .experiments.grid import load_cells

        records = load_cells(output)
    if not records:
        raise ValidationError("output", f"no finished cells under {str(output)!r}")
    md, html = write_report(records, report, figures)
    print(f"report: {md} and {html} ({len(records)} runs); cells in {output}/cells")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from .figures import make_all

    grids = args.grid or ["validation/results/grid_default"]
    paths = make_all(args.output, args.closed_forms, grids)
    print(f"{len(paths)} files written to {args.output}/")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "analyze": _cmd_analyze, "simulate": _cmd_simulate, "optimize": _cmd_optimize, "train": _cmd_train,
    "run": _cmd_run, "validate": _cmd_validate, "figures": _cmd_figures}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aflqueue", description="Asynchronous FL as a closed queueing network.")
    parser.add_argument("--version", action="version", version="aflqueue 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    a = sub.add_parser("analyze", help="exact metrics of a system (throughput, queues, delays)",
                       description="Exact closed-network analysis (MVA or log-space convolution). "
                                   "Without FILE or --rates it analyses the built-in example "
                                   "(5 fast clients at rate 1, 5 slow at 0.1, uniform routing, m = 10).")
    add_system_arguments(a)
    a.add_argument("--method", choices=["mva", "convolution"], default="mva", help="exact algorithm (default mva)")
    a.add_argument("--gradient", action="store_true", help="also report d throughput / d routing and d log G / d routing")
    a.add_argument("--stations", action="store_true", help="show per-station detail")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.add_argument("--analysis", choices=ANALYSES, default="product-form",
                   help="product-form (exact for exponential service) or approx (general service laws)")
    a.set_defaults(func=_cmd_analyze)

    s = sub.add_parser("simulate", help="discrete-event simulation with confidence intervals",
                       description="Simulate the closed network (SimPy model, or the compiled fast path for "
                                   "single-stage systems) and estimate steady-state metrics with confidence "
                                   "intervals, next to the product-form values.")
    add_system_arguments(s)
    s.add_argument("--updates", type=int, default=100_000, help="updates to simulate per run (default 100000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, identical trace)")
    s.add_argument("--engine", choices=["auto", "simpy", "fast"], default="auto",
                   help="auto: fast path when the system is single-stage without availability windows")
    s.add_argument("--warmup", type=float, default=0.1, help="updates discarded: a fraction (< 1) or a count")
    s.add_argument("--batches", type=int, default=20, help="batch-means batches (default 20)")
    s.add_argument("--replications", type=int, default=1, help="independent runs (> 1: CIs across runs)")
    s.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    s.add_argument("--trace", metavar="PATH", help="save the (first run's) trace: .npz, or .csv to export")
    s.add_argument("--backend", choices=["serial", "process", "ray"], default="serial",
                   help="where replications run (default serial)")
    s.add_argument("--workers", type=int, help="processes / local Ray CPUs (default: all cores)")
    s.add_argument("--address", help="address of an existing Ray cluster")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_simulate)

    o = sub.add_parser("optimize", help="optimal routing (and concurrency) for a convergence proxy",
                       description="Optimise routing p (and concurrency m over a range) for a convergence proxy "
                                   "of Generalized AsyncSGD, and compare with uniform routing (AsyncSGD).")
    add_system_arguments(o, concurrency_help="fixed concurrency m (default: the system's, n)")
    o.add_argument("--objective", choices=["per-update", "wallclock", "time-to-accuracy", "energy", "tradeoff",
                                           "max-throughput"], default="wallclock", help="what to minimise (default wallclock)")
    o.add_argument("--concurrency-range", type=parse_range, metavar="LO:HI", help="optimise m jointly over LO..HI")
    o.add_argument("--p-min", type=float, default=0.0, help="lower bound on every p_i")
    o.add_argument("--p-max", type=float, default=1.0, help="upper bound on every p_i")
    o.add_argument("--updates", type=float, metavar="K", help="K for per-update (default 1000)")
    o.add_argument("--time-budget", type=float, metavar="TAU", help="tau for wallclock (default: AsyncSGD's time for 1000 updates)")
    o.add_argument("--epsilon", type=float, help="target proxy value for time-to-accuracy/energy/tradeoff (default 0.1)")
    o.add_argument("--weight", type=float, default=0.5, help="r in r E/E* + (1-r) T/T* for tradeoff")
    o.add_argument("--constants", metavar="K=V,..|FILE", help="Delta, L, sigma2, M2, G2, c_opt, c_var, c_stale (default 1, 1, 1, 1, 1, 2, 1, 1)")
    o.add_argument("--eta", type=float, help="fixed step size (default: optimised under eta_max)")
    o.add_argument("--eta-max", type=float, help="step-size cap (default 1/L)")
    o.add_argument("--kappa", type=float, help="busy power kappa mu^3 of the DVFS energy model (default 1)")
    o.add_argument("--idle-power", type=float, help="idle power as a fraction of busy power (default 0)")
    o.add_argument("--dispersion", type=float, default=0.0, help="renewal correction of wallclock (default 0)")
    o.add_argument("--starts", type=int, default=4, help="starting points (default 4)")
    o.add_argument("--seed", type=int, default=0, help="seed of the random starting points")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--analysis", choices=ANALYSES, default="product-form",
                   help="analysis behind the objective: product-form or approx (general service laws)")
    o.set_defaults(func=_cmd_optimize)

    t = sub.add_parser("train", help="trace-driven FL training (real model and data)",
                       description="Train with a real model and data set, replaying the simulated schedule of the "
                                   "queueing model. Without CONFIG the embedded default runs (digits, 10 clients, "
                                   "two speed groups 10x apart, Generalized AsyncSGD); options override it.")
    t.add_argument("config", nargs="?", help="TOML/YAML/JSON run configuration (sections data, model, system, "
                                             "routing, local, algorithm, run)")
    t.add_argument("--output", "-o", help="output folder (results.json, updates.csv, checkpoint.pt, trace.npz)")
    t.add_argument("--algorithm", help="generalized-asyncsgd, asyncsgd, fedasync, fedbuff, fedecho, fedrevive")
    t.add_argument("--routing", choices=["uniform", "optimal", "explicit"], help="routing kind")
    t.add_argument("--objective", help="proxy for --routing optimal (default wallclock)")
    t.add_argument("--dataset", help="digits, mnist1d, synthetic, mnist, fashionmnist, kmnist, emnist, cifar10, cifar100")
    t.add_argument("--data-root", help="folder holding torchvision data sets (never downloaded)")
    t.add_argument("--clients", type=int, help="number of clients")
    t.add_argument("--updates", type=int, help="arrivals to apply")
    t.add_argument("--time-budget", type=float, help="simulated time budget")
    t.add_argument("--device", help="auto, cpu or cuda")
    t.add_argument("--seed", type=int, help="seed of data split, model init, schedule and minibatches")
    t.add_argument("--serial", action="store_true", help="compute tasks one at a time (default on CPU)")
    t.add_argument("--batched", action="store_true", help="compute in-flight tasks together with vmap (default on CUDA)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any field, e.g. local.lr=0.1")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the results JSON")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("run", help="the main job: analyse -> optimise -> simulate -> train, and compare",
                       description="On the embedded default (10 clients, two speed groups 10x apart, digits): exact "
                                   "analysis, wall-clock-optimal routing, simulation, and training of AsyncSGD "
                                   "(uniform routing) vs the optimal routing at an equal simulated-time budget; "
                                   "prints predicted and measured gains.")
    r.add_argument("--output", "-o", default="runs/main", help="output folder (default runs/main)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--updates", type=int, default=1500, help="AsyncSGD updates that define the time budget")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("validate", help="validation grid: predicted vs measured gains, report with CIs",
                       description="Train every cell of a validation grid (speed scenarios x data heterogeneity x "
                                   "routings x algorithms x seeds), saving each as it finishes (an interrupted grid "
                                   "resumes), then write the Markdown/HTML report. Preset 'small' runs in under 15 "
                                   "minutes on 2 CPU cores; 'default' writes validation/report.md.")
    v.add_argument("--preset", default="small", help="small, default or full (default small)")
    v.add_argument("--output", help="results folder (default validation/results/grid_<preset>)")
    v.add_argument("--seeds", type=int, help="number of seeds (default: the preset's, 3)")
    v.add_argument("--datasets", help="comma-separated data sets (default: the preset's; with --data-root: the "
                                      "torchvision sets found there)")
    v.add_argument("--data-root", help="folder with torchvision data sets (MNIST/, cifar-10-batches-py/, ...)")
    v.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    v.add_argument("--backend", choices=["serial", "process", "ray"], default="serial",
                   help="where cells run (default serial; ray needs pip install 'aflqueue[ray]')")
    v.add_argument("--workers", type=int, help="processes (process backend) or local Ray CPUs (default: all cores)")
    v.add_argument("--address", help="address of an existing Ray cluster (e.g. ray://head:10001 or auto)")
    v.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs reserved per cell on Ray (default 0)")
    v.add_argument("--report", help="report path (default validation/report.md for the default preset)")
    v.add_argument("--figures", help="folder for the report's figures (default figures/ for the default preset)")
    v.add_argument("--report-only", action="store_true", help="only rebuild the report from saved cells")
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=_cmd_validate)

    f = sub.add_parser("figures", help="regenerate all figures from saved results",
                       description="Analytic figures (exact analysis and optimiser), closed form vs simulation, and "
                                   "accuracy against simulated time from validation grids; PNG and PDF.")
    f.add_argument("--output", default="figures", help="folder (default figures/)")
    f.add_argument("--closed-forms", help="closed-forms results JSON (default validation/results/closed_forms/closed_forms.json)")
    f.add_argument("--grid", action="append", help="validation-grid results folder (repeatable; default "
                                                   "validation/results/grid_default)")
    f.set_defaults(func=_cmd_figures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aflqueue`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except (UsageError, ValidationError) as e:
        msg = f"{e}" if isinstance(e, UsageError) else f"aflqueue: error: {e}"
        print(msg.splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
