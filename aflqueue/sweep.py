"""Sweep your own system: throughput, delays and every proxy against the concurrency ``m``, the
optimum of each objective, optimal routing against client speed, and the time/energy Pareto front.

``aflqueue sweep SYSTEM_FILE --concurrency-range LO:HI`` calls :func:`sweep` then
:meth:`SweepResult.save`; the built-in analytic figures of ``aflqueue figures`` are the same
calls on the bundled example systems (``aflqueue/data/*.toml``, see :mod:`aflqueue.figures`).

Everything comes from the exact analysis and the optimiser (docs/theory.md sections 3, 5 and 6):
* against ``m`` (every ``m`` of the range, or about 200 log-spaced values of a longer one):
  throughput ``lambda(m)``, the relative delays ``E[D_i]`` (fastest and slowest client, and the
  mean ``sum_i p_i E[D_i] = m - 1``) and each proxy (``U``, ``W``, ``E[T_eps]``, energy) under
  uniform routing (AsyncSGD), and for each objective the best value over routings at that ``m``
  (the optimiser's own concurrency profile);
* each objective's optimum ``(p*, m*)``: one :func:`aflqueue.optimization.optimize` call on the same
  problem ``aflqueue optimize`` builds from the same flags, so the sweep's optimum *is* that of
  ``aflqueue optimize``;
* the routing of each optimum against the client speeds ``mu_i``;
* the time/energy Pareto front (P4, :func:`aflqueue.optimization.pareto_front`) over routing and
  ``m`` in the range;
* the relative delays and throughput as routing mass moves to the slower clients (those whose
  rate is below the median), at the system's concurrency.

Outputs of :meth:`SweepResult.save`: ``sweep.csv`` (one row per ``m``), ``sweep_optima.csv``
(one row per objective), ``sweep_routing.csv`` (one row per client), ``sweep.json`` (all of it)
and the figures ``sweep_concurrency``, ``sweep_routing_vs_speed``, ``sweep_pareto`` and
``sweep_delay_vs_routing`` (PNG and PDF).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from . import plots
from ._results import Result
from .errors import ValidationError, require
from .io import atomic_write, atomic_write_json
from .optimization import OBJECTIVE_ALIASES, OptimizationProblem, assess, optimize, pareto_front
from .queueing.analysis import analyze
from .system import System

__all__ = ["SWEEP_OBJECTIVES", "PROXY_KEYS", "SweepResult", "sweep", "parse_objectives", "slow_group", "delay_vs_routing"]

#: Objectives a sweep can optimise (``tradeoff`` is the Pareto front).
SWEEP_OBJECTIVES = ("per-update", "wall-clock", "time-to-accuracy", "energy", "max-throughput")
#: Objective -> key of its value among the proxies (and the CSV column stem).
PROXY_KEYS = {"per-update": "per_update", "wall-clock": "wallclock", "time-to-accuracy": "time_to_accuracy",
              "energy": "energy", "max-throughput": "throughput"}
#: Largest number of concurrencies evaluated one by one; a longer range is sampled log-spaced.
MAX_POINTS = 256


def slow_group(rates: np.ndarray) -> np.ndarray:
    """Mask of the slower clients: rate strictly below the median rate (empty if all are equal)."""
    rates = np.asarray(rates, dtype=float)
    return rates < np.median(rates) - 1e-12 * np.median(rates) if rates.size > 1 else np.zeros(1, bool)


def delay_vs_routing(system: System, points: int = 60) -> dict[str, Any] | None:
    """``E[D_i]`` of the fastest and slowest client, the mean delay and the throughput as the routing
    mass on the slower clients (:func:`slow_group`) goes from 2% to 90%, split evenly inside each
    group, at the system's concurrency. None when all clients are equally fast."""

    slow = slow_group(system.rates)
    k = int(slow.sum())
    if k == 0 or k == system.n:
        return None
    fast_i = int(np.argmax(system.rates))
    slow_i = int(np.argmin(system.rates))
    q = np.linspace(0.02, 0.9, points)
    rows = []
    for x in q:
        p = np.where(slow, x / k, (1 - x) / (system.n - k))
        a = analyze(system.with_routing(p))
        rows.append((a.relative_delay[fast_i], a.relative_delay[slow_i], a.mean_relative_delay, a.throughput))
    R = np.asarray(rows, dtype=float)
    return {"slow_mass": q.tolist(), "slow_clients": int(k), "fast_rate": float(system.rates[fast_i]),
            "slow_rate": float(system.rates[slow_i]), "uniform_mass": k / system.n,
            "concurrency": int(system.concurrency), "delay_fast": R[:, 0].tolist(), "delay_slow": R[:, 1].tolist(),
            "mean_delay": R[:, 2].tolist(), "throughput": R[:, 3].tolist()}


@dataclass(frozen=True, eq=False, repr=False)
class SweepResult(Result):
    """What :func:`sweep` computed (all JSON-serialisable through :meth:`to_dict`).

    Attributes:
        name: a label of the system (its file name, or ``"system"``).
        rates: ``mu_i``; names: client names; concurrency_range: ``(lo, hi)``.
        rows: one dict per ``m`` examined: ``m``, ``throughput_uniform``,
            ``mean_relative_delay_uniform``, ``relative_delay_fastest_uniform``,
            ``relative_delay_slowest_uniform``, ``<proxy>_uniform`` for ``per_update``,
            ``wallclock``, ``time_to_accuracy``, ``energy``, and ``<key>_optimal`` (the best value
            over routings at that ``m``, where the optimiser examined it) with ``optimum_<key>``
            (1 at the objective's ``m*``) for each objective.
        optima: objective -> ``concurrency`` (``m*``), ``objective_value``, ``routing``, ``eta``,
            ``throughput``, ``relative_delay``, ``baseline`` (uniform routing's value) and
            ``success``.
        pareto: ``weights``, ``time``, ``energy``, ``concurrency`` along the front, and the uniform
            routing's ``uniform_time``/``uniform_energy`` (None if not computed).
        delay_routing: :func:`delay_vs_routing` (None for equally fast clients).
        settings: the problem's settings (p_min, p_max, constants, time budget, epsilon, ...).
    """

    name: str
    rates: list[float]
    names: list[str]
    concurrency_range: tuple[int, int]
    objectives: list[str]
    rows: list[dict[str, Any]]
    optima: dict[str, dict[str, Any]]
    pareto: dict[str, Any] | None
    delay_routing: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)

    frame_index: ClassVar[str] = "row"
    frame_attrs: ClassVar[tuple[str, ...]] = ("name", "rates", "concurrency_range", "objectives", "optima",
                                              "settings")
    repr_fields: ClassVar[tuple[str, ...]] = ("name", "rates", "concurrency_range", "objectives")

    def title(self) -> str:
        return f"SweepResult: {len(self.rows)} concurrencies, {len(self.optima)} optima (see .to_frame())"

    def frame_columns(self) -> dict[str, np.ndarray]:
        """One row per ``m`` examined: the columns of ``sweep.csv`` (:meth:`column_names`), NaN where
        a value is undefined."""
        return {c: np.array([np.nan if r.get(c) is None else r.get(c) for r in self.rows], dtype=float)
                for c in self.column_names()}

    def to_frame(self) -> Any:
        """The sweep per concurrency (index ``m``; the columns of ``sweep.csv``), the optima and
        settings in ``df.attrs``. Needs pandas."""
        df = super().to_frame()
        return df.set_index(df["m"].astype(int)).drop(columns="m")

    def column_names(self) -> list[str]:
        cols = ["m", "throughput_uniform", "mean_relative_delay_uniform", "relative_delay_fastest_uniform",
                "relative_delay_slowest_uniform", "per_update_uniform", "wallclock_uniform",
                "time_to_accuracy_uniform", "energy_uniform"]
        for obj in self.objectives:
            k = PROXY_KEYS[obj]
            cols += [f"{k}_optimal", f"optimum_{k}"]
        return cols

    def write_csv(self, out: str | Path) -> list[Path]:
        """``sweep.csv`` (per ``m``), ``sweep_optima.csv`` (per objective), ``sweep_routing.csv``
        (per client) under ``out``; empty cells where a value is undefined."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)

        def cell(v: Any) -> str:
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                return ""
            return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)

        def write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
            def w(tmp: Path) -> None:
                with tmp.open("w", newline="") as f:
                    wr = csv.writer(f)
                    wr.writerow(header)
                    wr.writerows([[cell(v) for v in r] for r in rows])

            return atomic_write(path, w)

        cols = self.column_names()
        paths = [write(out / "sweep.csv", cols, [[r.get(c) for c in cols] for r in self.rows])]
        head = ["objective", "concurrency", "objective_value", "uniform_value", "throughput", "eta",
                "mean_relative_delay", "success"]
        rows = []
        for obj, o in self.optima.items():
            p, d = np.asarray(o["routing"]), np.asarray(o["relative_delay"], dtype=float)
            rows.append([obj, o["concurrency"], o["objective_value"], o["baseline"], o["throughput"], o["eta"],
                         float(np.nansum(p * d)), int(bool(o["success"]))])
        paths.append(write(out / "sweep_optima.csv", head, rows))
        head = ["client", "name", "rate", "uniform"] + [f"routing_{PROXY_KEYS[o]}" for o in self.optima]
        rows = [[i, self.names[i], self.rates[i], 1.0 / len(self.rates)] + [o["routing"][i] for o in self.optima.values()]
                for i in range(len(self.rates))]
        paths.append(write(out / "sweep_routing.csv", head, rows))
        return paths

    def save(self, out: str | Path, figures: bool = True) -> list[Path]:
        """Write the CSVs, ``sweep.json`` and (unless ``figures=False``) the four figures."""

        out = Path(out)
        paths = self.write_csv(out)
        paths.append(atomic_write_json(out / "sweep.json", self.to_dict(), indent=1))
        if figures:
            d = self.to_dict()
            paths += plots.sweep_concurrency_figure(d, out)
            paths += plots.sweep_routing_figure(d, out)
            if self.pareto is not None:
                paths += plots.sweep_pareto_figure(d, out)
            if self.delay_routing is not None:
                paths += plots.sweep_delay_routing_figure(d, out)
        return paths


def _problem(system: System, objective: str, concurrency: tuple[int, int], kw: Mapping[str, Any]):
    return OptimizationProblem(system, objective, concurrency=concurrency, **dict(kw))


def _grid(lo: int, hi: int, extra: Sequence[int]) -> list[int]:
    if hi - lo + 1 <= MAX_POINTS:
        return list(range(lo, hi + 1))
    g = set(int(x) for x in np.unique(np.round(np.geomspace(lo, hi, MAX_POINTS - 16)).astype(int)))
    return sorted(g | {int(x) for x in extra})


def parse_objectives(items: Sequence[str] | None) -> list[str]:
    """The objectives of ``--objective`` values (each comma-separated; ``wallclock`` spells
    ``wall-clock``; none: all of :data:`SWEEP_OBJECTIVES`), checked one by one."""
    objectives: list[str] = []
    for item in items or [",".join(SWEEP_OBJECTIVES)]:
        for o in filter(None, (x.strip() for x in item.split(","))):
            o = "wall-clock" if o == "wallclock" else o
            require(o in SWEEP_OBJECTIVES, "objective", f"must be among {', '.join(SWEEP_OBJECTIVES)} (got {o!r}; "
                                                        "the trade-off is drawn as the Pareto front, --pareto-points)")
            objectives.append(o)
    return objectives


def sweep(system: System, concurrency: tuple[int, int], objectives: Sequence[str] = SWEEP_OBJECTIVES, *,
          name: str = "system", pareto_points: int = 11, routing_points: int = 60, starts: int = 4, seed: int = 0,
          progress: Any = None, **problem: Any) -> SweepResult:
    """Sweep ``system`` over ``concurrency = (lo, hi)`` (module docstring).

    ``problem``: the other fields of :class:`~aflqueue.optimization.OptimizationProblem` (``constants``,
    ``p_min``, ``p_max``, ``updates``, ``time_budget``, ``epsilon``, ``energy``, ``dispersion``),
    shared by every objective, as ``aflqueue optimize`` would use them. ``pareto_points = 0``
    skips the front; ``progress``: a callable given one line per step."""

    say = progress or (lambda s: None)
    lo, hi = (int(concurrency[0]), int(concurrency[1]))
    require(1 <= lo <= hi, "concurrency_range", f"must be LO:HI with 1 <= LO <= HI (got {lo}:{hi})")
    objs: list[str] = []
    for o in objectives:
        o = OBJECTIVE_ALIASES.get(o, o)
        if o == "tradeoff":
            raise ValidationError("objective", "the sweep draws the trade-off as the Pareto front (pareto points); "
                                               f"choose among {', '.join(SWEEP_OBJECTIVES)}")
        require(o in SWEEP_OBJECTIVES, "objective", f"unknown objective {o!r}; allowed: {', '.join(SWEEP_OBJECTIVES)}")
        if o not in objs:
            objs.append(o)
    require(bool(objs), "objective", "give at least one objective")
    require(isinstance(pareto_points, int) and 0 <= pareto_points <= 101, "pareto_points",
            f"must be an integer in [0, 101] (got {pareto_points!r})")
    optima: dict[str, dict[str, Any]] = {}
    profiles: dict[str, dict[int, float]] = {}
    for o in objs:
        say(f"optimising {o} over m = {lo}..{hi}")
        r = optimize(_problem(system, o, (lo, hi), problem), starts=starts, seed=seed)
        optima[o] = {"concurrency": int(r.concurrency), "objective_value": float(r.objective_value),
                     "routing": [float(x) for x in r.routing], "eta": float(r.eta), "throughput": float(r.throughput),
                     "relative_delay": [float(x) for x in r.relative_delay],
                     "baseline": (r.baseline or {}).get("objective_value"), "success": bool(r.success),
                     "proxies": {k: float(v) for k, v in r.proxies.items()}}
        profiles[o] = {int(m): float(v) for m, v in r.concurrency_profile}
    # uniform routing at every m: one problem with the shared settings resolves tau and epsilon once
    base = _problem(system, "time-to-accuracy", (lo, hi), problem)
    tau = base.resolved_time_budget() if problem.get("time_budget") is None else float(problem["time_budget"])

    base = replace(base, time_budget=tau)
    uniform = np.full(system.n, 1.0 / system.n)
    fastest, slowest = int(np.argmax(system.rates)), int(np.argmin(system.rates))
    ms = _grid(lo, hi, [o["concurrency"] for o in optima.values()] + [m for pr in profiles.values() for m in pr])
    say(f"uniform routing at {len(ms)} concurrencies")
    rows: list[dict[str, Any]] = []
    for m in ms:
        a = assess(base, uniform, m)
        d = np.asarray(a["relative_delay"], dtype=float)
        row = {"m": m, "throughput_uniform": a["throughput"], "mean_relative_delay_uniform": a["mean_relative_delay"],
               "relative_delay_fastest_uniform": float(d[fastest]), "relative_delay_slowest_uniform": float(d[slowest]),
               "per_update_uniform": a.get("per_update"), "wallclock_uniform": a.get("wallclock"),
               "time_to_accuracy_uniform": a.get("time_to_accuracy"), "energy_uniform": a.get("energy")}
        for o in objs:
            k = PROXY_KEYS[o]
            row[f"{k}_optimal"] = profiles[o].get(m)
            row[f"optimum_{k}"] = int(m == optima[o]["concurrency"])
        rows.append(row)
    front = None
    if pareto_points:
        say(f"Pareto front: {pareto_points} trade-off weights")
        weights = np.linspace(0.0, 1.0, pareto_points) if pareto_points > 1 else np.array([0.5])
        res = pareto_front(_problem(system, "tradeoff", (lo, hi), problem), weights=weights, starts=starts, seed=seed)
        u = assess(base, uniform, base.baseline_concurrency)
        front = {"weights": weights.tolist(), "time": [r.proxies["time_to_accuracy"] for r in res],
                 "energy": [r.proxies["energy"] for r in res], "concurrency": [int(r.concurrency) for r in res],
                 "uniform_time": u.get("time_to_accuracy"), "uniform_energy": u.get("energy"),
                 "uniform_concurrency": base.baseline_concurrency}
    dr = delay_vs_routing(system, routing_points) if routing_points else None
    settings = {"p_min": problem.get("p_min", 0.0),
                "p_max": base.p_max, "constants": base.constants.to_dict(), "time_budget": tau,
                "updates": base.updates, "epsilon": base.epsilon, "dispersion": base.dispersion,
                "system_concurrency": int(system.concurrency), "exact": bool(system.is_product_form)}
    names = [c.name or f"client{i}" for i, c in enumerate(system.clients)]
    return SweepResult(name=name, rates=[float(x) for x in system.rates], names=names, concurrency_range=(lo, hi),
                       objectives=objs, rows=rows, optima=optima, pareto=front, delay_routing=dr, settings=settings)
