"""The training commands: ``train``, ``tune``, ``calibrate``, ``predict``, ``run``, ``validate`` and
``recommend``. Each parses its arguments (the shared vocabulary is :mod:`aflqueue.options`), makes
one library call and prints; torch is reached only through the library, when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import system_file_overrides
from ..console import budget_report, recommendation_report, training_summary, tuning_report, validation_report
from ..errors import ValidationError
from ..options import (add_backend_arguments, add_run_config_arguments, check, check_backend, check_finite,
                       config_from_args, float_list, nonempty_path, parse_range, print_json, require_fl)
from ..pilot import calibrate, predict
from ..tuning import log_grid, tune

# --------------------------------------------------------------------------- train


def _cmd_train(args: argparse.Namespace) -> int:
    from ..pipeline import train  # lazy: numba

    require_fl("train")
    cfg = config_from_args(args)
    res = train(cfg, resume=args.resume, progress=not args.json and not args.quiet, tensorboard=args.tensorboard,
                force=args.force)
    if args.json:
        print_json(res.to_dict())
    else:
        training_summary(cfg, res)
    return 0


def add_train_parser(sub) -> None:
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
        tuning_report(res, out)
    return 0


def add_tune_parser(sub) -> None:
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


def add_calibrate_parser(sub) -> None:
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


def add_predict_parser(sub) -> None:
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
    from ..comparison import validate  # lazy: numba

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


def add_run_parser(sub) -> None:
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


def add_validate_parser(sub) -> None:
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
    from ..recommendation import Calibration, recommend  # lazy: numba

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


def add_recommend_parser(sub) -> None:
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
