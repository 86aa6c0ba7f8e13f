"""The command line's vocabulary: one spelling, meaning and default per concept, shared by every
command of :mod:`aflqueue.cli`.

``--updates`` is always a number of updates (arrivals applied at the server; in ``run`` and
``validate``, AsyncSGD's updates whose expected time is the budget), ``--time-budget`` a simulated
time, ``--concurrency`` the tasks in flight ``m``, ``--p-min`` the routing floor (one default,
:data:`aflqueue.config.DEFAULT_P_MIN`), ``--seed`` the first random seed, ``--output``/``-o`` where
results go, ``--device`` ``auto``/``cpu``/``cuda``, ``--backend``/``--workers``/``--address``
where independent jobs run, ``--json`` one JSON object on stdout, ``--quiet`` no progress output.
Argument types and checks raise :class:`UsageError` or :class:`~aflqueue.errors.ValidationError`:
one line naming the option and the allowed range, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from .bounds import EnergyModel, ProxyConstants
from .config import DEFAULT_P_MIN, load_config
from .errors import FL_EXTRA_MESSAGE, ValidationError, check_number, missing_fl_modules
from .io import dumps_json, naming_file
from .optimization import OptimizationProblem
from .pilot_fit import load_constants
from .system import System, example_system, read_mapping


EXIT_USAGE = 2


EXIT_FAILURE = 1


#: Largest concurrency the exact analysis and the simulator accept from the command line: the
#: MVA recursion costs O(stations x m), about 20 s at n = 100, m = 10^6 on one core.
MAX_CONCURRENCY = 1_000_000


#: Largest concurrency the optimiser scans (each objective evaluation is one MVA pass).
MAX_OPTIMIZE_CONCURRENCY = 100_000


OBJECTIVE_CHOICES = ("per-update", "wall-clock", "time-to-accuracy", "energy", "tradeoff", "max-throughput")


ANALYSES = ("product-form", "approx")  # as aflqueue.optimization.ANALYSES, without importing it at start-up


class UsageError(Exception):
    """Bad command-line input (reported as one line, exit status 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: error: {message}")


def float_list(text: str) -> list[float]:
    """Parse ``"1,1,0.1"`` into floats (non-finite values are left to the field's own check)."""
    items = [t.strip() for t in text.split(",")]
    if "" in items[:-1] or (items == [""]):  # "1,,1" is a typo, not two rates; a trailing comma is harmless
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
    try:
        vals = [float(t) for t in items if t != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not vals:
        raise argparse.ArgumentTypeError("empty list")
    return vals


def nonempty_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path (got an empty string)")
    return text


def colon_pair(text: str, number: Callable[[str], Any], form: str) -> tuple[Any, Any]:
    """``"A:B"`` as two numbers of type ``number``; ``form`` says what it must look like."""
    try:
        lo, hi = (number(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like {form}") from None
    return lo, hi


def parse_range(text: str) -> tuple[int, int]:
    """``"LO:HI"``: a range of concurrencies."""
    return colon_pair(text, int, "LO:HI (integers)")


def check(cond: bool, field: str, detail: str) -> None:
    if not cond:
        raise ValidationError(field, detail)


def require_fl(command: str) -> None:
    """Training commands need the ``fl`` extra (torch...): one line and exit 2 when it is missing."""

    missing = missing_fl_modules()
    if missing:
        raise UsageError(f"aflqueue {command}: {FL_EXTRA_MESSAGE} (missing: {', '.join(missing)})")


def check_finite(x: float | None, field: str, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> None:
    if x is None:
        return

    check_number(x, field, lo, hi, lo_open=lo_open)


# A token such as "-1,1" or "-2e-3" after an option is a value, never an option (no option of
# this CLI starts with a digit); argparse would otherwise call it an unknown option.
_NEGATIVE_VALUE = re.compile(r"^-[\d.]")


def join_negative_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    for tok in argv:
        if out and _NEGATIVE_VALUE.match(tok) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def add_system_arguments(p: argparse.ArgumentParser, concurrency_help: str | None = None) -> None:
    """Options describing a system; they override the fields of an optional system FILE."""
    p.add_argument("file", nargs="?", help="system file (.toml, .yaml/.yml or .json); "
                   "without it and without --rates the built-in example is used")
    p.add_argument("--rates", type=float_list, metavar="R1,R2,..", help="compute rates mu_i > 0 (tasks per time unit)")
    p.add_argument("--routing", type=float_list, metavar="P1,P2,..", help="routing probabilities p_i (default uniform)")
    p.add_argument("--concurrency", "-m", type=int, metavar="M",
                   help=concurrency_help or f"tasks in flight m, 1..{MAX_CONCURRENCY} (default n)")
    p.add_argument("--service", metavar="LAW", help="compute service law, e.g. exponential, deterministic, "
                   "lognormal:cv=1.5, gamma:shape=2, weibull:shape=0.7, pareto:shape=2.5")
    p.add_argument("--downlink-rates", type=float_list, metavar="R", help="downlink stage rates (one, or one per client)")
    p.add_argument("--uplink-rates", type=float_list, metavar="R", help="uplink stage rates (one, or one per client)")
    p.add_argument("--downlink-discipline", choices=["fifo", "delay"], help="downlink stations: fifo or delay "
                   "(needs --downlink-rates)")
    p.add_argument("--uplink-discipline", choices=["fifo", "delay"], help="uplink stations: fifo or delay "
                   "(needs --uplink-rates)")
    p.add_argument("--server-rate", type=float, metavar="MU", help="central-server processing rate (default: infinitely fast)")


def add_backend_arguments(p: argparse.ArgumentParser, what: str, default: str = "serial") -> None:
    p.add_argument("--backend", choices=["serial", "process", "ray"], default=default,
                   help=f"where {what} run (default {default}; ray needs pip install 'aflqueue[ray]')")
    p.add_argument("--workers", type=int, help="local processes (process) or local Ray CPUs (ray); default: all cores")
    p.add_argument("--address", help="address of an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto; "
                                     "needs --backend ray)")


def check_backend(args: argparse.Namespace) -> None:
    """Refuse backend flags that the chosen backend would ignore."""
    if args.address is not None:
        check(args.backend == "ray", "address", "is used only with --backend ray")
    if args.workers is not None:
        check(args.backend != "serial", "workers", "is used only with --backend process or ray")
        check(1 <= args.workers <= 4096, "workers", f"must be an integer in [1, 4096] (got {args.workers})")


def system_from_args(args: argparse.Namespace, require_system: bool = False):
    """Build the :class:`~aflqueue.system.System` described by a file and/or flags."""

    flags = {
        "rates": args.rates, "routing": args.routing, "concurrency": args.concurrency, "service": args.service,
        "downlink_rates": scalar_or_list(args.downlink_rates), "uplink_rates": scalar_or_list(args.uplink_rates),
        "downlink_discipline": args.downlink_discipline, "uplink_discipline": args.uplink_discipline,
        "server_rate": args.server_rate,
    }
    flags = {k: v for k, v in flags.items() if v is not None}
    if args.concurrency is not None:
        check(1 <= args.concurrency <= MAX_CONCURRENCY, "concurrency",
               f"must be an integer in [1, {MAX_CONCURRENCY}] (got {args.concurrency})")
    for stage in ("downlink", "uplink"):
        if f"{stage}_discipline" in flags:
            check(f"{stage}_rates" in flags or args.file, f"{stage}-discipline",
                   f"needs --{stage}-rates (there is no {stage} stage to apply it to)")
    if args.file:
        data = read_mapping(args.file)
        if "clients" in data:
            structural = set(flags) - {"routing", "concurrency"}
            if structural:
                raise ValidationError(sorted(structural)[0].replace("_", "-"),
                                      "cannot override a file with a 'clients' list; edit the file instead")
        try:
            return System.from_dict({**data, **flags}, base_dir=Path(args.file).parent)
        except ValidationError as e:  # a value from the file: the line names the file (a flag's does not)
            if re.split(r"[.\[]", e.field)[0] in flags:
                raise
            raise naming_file(e, str(args.file)) from None
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


def scalar_or_list(v: list[float] | None) -> float | list[float] | None:
    if v is None:
        return None
    return v[0] if len(v) == 1 else v


def print_json(obj: Any) -> None:
    """One strict JSON object on stdout (NaN and inf become null)."""

    print(dumps_json(obj, indent=2))


def parse_constants(text: str | None) -> dict[str, float]:
    """``"Delta=2,L=0.5,sigma2=1"`` or a TOML/YAML/JSON file (e.g. written by calibration)."""
    if not text:
        return {}
    looks_like_file = "=" not in text or os.sep in text or Path(text).suffix.lower() in (".toml", ".yaml", ".yml",
                                                                                          ".json")
    if looks_like_file:  # checked whole, as predict reads it (a pilot table must match its constants)
        return {k: v for k, v in load_constants(text).constants.to_dict().items() if v is not None}
    out: dict[str, float] = {}
    for part in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in part:
            raise ValidationError("constants", f"{part!r} must look like NAME=VALUE (e.g. Delta=2,L=0.5)")
        k, v = part.split("=", 1)
        check(k.strip() not in out, f"constants.{k.strip()}", "given twice")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValidationError(f"constants.{k.strip()}", f"must be a number (got {v!r})") from None
    return out


def add_proxy_arguments(p: argparse.ArgumentParser, epsilon_objectives: str) -> None:
    """Options of the convergence proxies and of the optimiser's search, read by :func:`problem_from_args`
    (optimize and sweep: the same flags pose the same problem)."""
    p.add_argument("--p-min", type=float, default=DEFAULT_P_MIN,
                   help=f"lower bound on every p_i, in [0, 1/n] (default {DEFAULT_P_MIN:g}, as routing.p_min)")
    p.add_argument("--p-max", type=float, default=1.0, help="upper bound on every p_i, in [1/n, 1]")
    p.add_argument("--updates", type=float, metavar="K", help="updates K of the per-update proxy (default 1000)")
    p.add_argument("--time-budget", type=float, metavar="TAU",
                   help="simulated time of the wall-clock proxy (default: AsyncSGD's time for 1000 updates)")
    p.add_argument("--epsilon", type=float, help=f"target proxy value for {epsilon_objectives} (default 0.1)")
    p.add_argument("--constants", metavar="K=V,..|FILE",
                   help="Delta, L, sigma2, M2, G2, c_opt, c_var, c_stale (default 1, 1, 1, 1, 1, 2, 1, 1), or a file")
    p.add_argument("--eta", type=float, help="fixed step size (default: optimised under eta_max)")
    p.add_argument("--eta-max", type=float, help="step-size cap (default 1/L)")
    p.add_argument("--kappa", type=float, help="busy power kappa mu^3 of the DVFS energy model (default 1)")
    p.add_argument("--idle-power", type=float, help="idle power as a fraction of busy power, in [0, 1] (default 0)")
    p.add_argument("--dispersion", type=float, help="renewal correction of wall-clock, >= 0 (default 0)")
    p.add_argument("--starts", type=int, default=4, help="starting points >= 1 (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed >= 0 of the random starting points")


#: The options of :func:`add_proxy_arguments` (and ``--weight``) each objective reads (docs/theory.md
#: sections 5-6): one given for an objective that does not read it is refused, as it would be ignored.
#: The energy model (``--kappa``, ``--idle-power``) is reported by every proxy objective but the
#: per-update one, and optimised by ``energy`` and ``tradeoff``.
PROXY_OPTIONS: dict[str, frozenset[str]] = {
    "per-update": frozenset({"updates", "constants", "eta", "eta_max"}),
    "wall-clock": frozenset({"time_budget", "dispersion", "constants", "eta", "eta_max"}),
    "time-to-accuracy": frozenset({"epsilon", "constants", "eta", "eta_max", "kappa", "idle_power"}),
    "energy": frozenset({"epsilon", "constants", "eta", "eta_max", "kappa", "idle_power"}),
    "tradeoff": frozenset({"epsilon", "weight", "constants", "eta", "eta_max", "kappa", "idle_power"}),
    "max-throughput": frozenset(),
}


def check_proxy_options(args: argparse.Namespace, objectives: Sequence[str]) -> None:
    """Refuse an option of :data:`PROXY_OPTIONS` given (not None) for objectives that do not read it."""
    used = frozenset().union(*(PROXY_OPTIONS[o] for o in objectives))
    for name in sorted(frozenset().union(*PROXY_OPTIONS.values()) - used):
        if getattr(args, name, None) is not None:
            readers = [o for o in OBJECTIVE_CHOICES if name in PROXY_OPTIONS[o]]
            raise ValidationError(name.replace("_", "-"), f"the {' and '.join(objectives)} objective does not use it "
                                                          f"(it would be ignored); it is read by {', '.join(readers)}")


def problem_from_args(args: argparse.Namespace, system):
    consts = parse_constants(args.constants)
    if args.eta is not None:
        consts["eta"] = args.eta
    if args.eta_max is not None:
        consts["eta_max"] = args.eta_max
    energy = None
    if args.kappa is not None or args.idle_power is not None:
        check_finite(args.kappa, "kappa", 0.0, 1e12, lo_open=True)
        check_finite(args.idle_power, "idle-power", 0.0, 1.0)
        energy = EnergyModel.dvfs(system.rates, kappa=args.kappa if args.kappa is not None else 1.0,
                                  idle_fraction=args.idle_power if args.idle_power is not None else 0.0)
    rng = args.concurrency_range
    if rng is not None:
        check(args.concurrency is None, "concurrency", "give --concurrency or --concurrency-range, not both")
        check(1 <= rng[0] <= rng[1] <= MAX_OPTIMIZE_CONCURRENCY, "concurrency-range",
               f"must be LO:HI with 1 <= LO <= HI <= {MAX_OPTIMIZE_CONCURRENCY} (got {rng[0]}:{rng[1]})")
    check(system.concurrency <= MAX_OPTIMIZE_CONCURRENCY, "concurrency",
           f"the optimiser scans m <= {MAX_OPTIMIZE_CONCURRENCY} (got {system.concurrency})")
    for name in ("updates", "time_budget", "epsilon", "dispersion", "weight", "p_min", "p_max"):
        check_finite(getattr(args, name), name.replace("_", "-"))
    return OptimizationProblem(
        system=system, objective=args.objective, constants=ProxyConstants.from_dict(consts),
        updates=args.updates, time_budget=args.time_budget, epsilon=args.epsilon, energy=energy,
        weight=0.5 if args.weight is None else args.weight, p_min=args.p_min, p_max=args.p_max, concurrency=rng,
        dispersion=0.0 if args.dispersion is None else args.dispersion,
        analysis=args.analysis)


def add_run_config_arguments(p: argparse.ArgumentParser, config_help: str, *, algorithm: bool = True,
                             set_example: str = "local.lr=0.1",
                             concurrency_flags: tuple[str, ...] = ("--concurrency",)) -> None:
    """A run configuration CONFIG and the options that override its fields, read by :func:`config_from_args`
    (train, tune, calibrate, predict). ``algorithm``: also --algorithm, --routing and --objective (calibrate
    and predict choose those themselves); ``concurrency_flags``: train alone also takes ``-m``."""
    p.add_argument("config", nargs="?", help=config_help)
    if algorithm:
        p.add_argument("--algorithm", help="generalized-asyncsgd, asyncsgd, fedasync, fedbuff, fedecho, fedrevive")
        p.add_argument("--routing", choices=["uniform", "optimal", "explicit"], help="routing kind")
        p.add_argument("--objective", choices=OBJECTIVE_CHOICES + ("wallclock",), metavar="OBJECTIVE",
                       help="proxy for --routing optimal (default wall-clock)")
    p.add_argument("--dataset", help="digits, mnist1d, synthetic, mnist, fashionmnist, kmnist, emnist, cifar10, cifar100")
    p.add_argument("--data-root", help="folder holding torchvision data sets (never downloaded)")
    p.add_argument("--clients", type=int, help="number of clients")
    p.add_argument("--rates", type=float_list, metavar="R1,R2,..", help="compute rates of the clients (custom profile)")
    p.add_argument(*concurrency_flags, dest="concurrency", type=int, metavar="M", help="tasks in flight (default n)")
    p.add_argument("--updates", type=int, help="updates (arrivals) to apply")
    p.add_argument("--time-budget", type=float, help="simulated time budget")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=f"override any field, e.g. {set_example}")


def config_from_args(args: argparse.Namespace):
    # 0 is the configuration's "n", never a concurrency one types: -m counts tasks in flight
    check(args.concurrency is None or args.concurrency >= 1, "concurrency",
          f"must be an integer >= 1, the tasks in flight (got {args.concurrency})")
    sets = list(args.set or [])
    pairs = [("output", getattr(args, "output", None)), ("algorithm.name", args.algorithm), ("routing.kind", args.routing),
             ("routing.objective", args.objective), ("data.dataset", args.dataset), ("data.data_root", args.data_root),
             ("data.clients", args.clients), ("run.updates", args.updates), ("run.time_budget", args.time_budget),
             ("device", args.device), ("seed", args.seed), ("system.concurrency", args.concurrency)]
    if args.rates is not None:
        sets += ['system.profile="custom"', f"system.rates={json.dumps(args.rates)}"]
        if args.clients is None:
            sets.append(f"data.clients={len(args.rates)}")
    for key, value in pairs:
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")
    if args.serial and args.batched:
        raise ValidationError("batched", "give --serial or --batched, not both")
    if args.serial:
        sets.append("run.batched=false")
    if args.batched:
        sets.append("run.batched=true")
    return load_config(args.config, sets)
