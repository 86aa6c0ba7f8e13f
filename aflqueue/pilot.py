"""Pilot-run calibration and prediction, as the commands run them (docs/theory.md section 10).

The pilots train a run configuration briefly; the fit of their loss curves and what it predicts
live in :mod:`aflqueue.pilot_fit`.

**The commands** (:func:`calibrate`, :func:`predict`: what ``aflqueue calibrate`` and ``aflqueue
predict`` run). :func:`calibrate` fits the pilots of a run configuration (or estimates at the
initial model) and writes a constants file; its pilot runs are keyed by the content of their
configuration, never by a name, so a calibration with other settings never reuses another's runs.
:func:`predict` returns a :class:`Prediction` whose :meth:`~Prediction.verdict` states a verdict
only when the numbers support one: a pilot fit, a target with a time to it (above the accuracy
map's floor, within its reach), every bootstrap refit giving a time ratio, enough refits for the
interval's tails (:func:`min_bootstrap`) and a finite interval; otherwise "no verdict" and why.
(The regime studies ran with an older, more lenient rule, kept in ``validation/regimes/gain.py``.)
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._results import Result
from .bounds import ProxyConstants, s1, s2
from .calibration import calibrate as estimate_at_initial_model
from .config import TrainConfig, with_updates
from .errors import ValidationError, check_integer, check_number, require
from .io import DATA_FORMATS, file_errors, json_digest, source_name
from .jobs import JobStore, run_jobs
from .optimization import OptimizationProblem, optimize
from .pilot_fit import (BOOTSTRAP_METHODS, MAX_BOOTSTRAP, ConstantsFile, PilotCurve, PilotFit, fit_pilots, gain_samples,
                        load_constants, operating_point, percentile_interval, write_constants)
from .protocol import largest_importance_weight, step_ratio, time_budget, uniform_routing
from .queueing.analysis import analyze

__all__ = ["PILOT_ROUTINGS", "MAX_SCAN_CONCURRENCY", "budget_of", "initial_calibration", "initial_constants",
           "mix_weight", "pilot_routings", "pilot_run", "check_pilot_record", "curve_of", "pilot_identity",
           "pilot_jobs", "calibrate_pilot", "calibrate", "Verdict", "min_bootstrap", "Prediction", "predict"]


def budget_of(cfg) -> tuple[float, int]:
    """``(tau, U0)``: the configuration's time budget, or AsyncSGD's expected time for its update
    budget (``run.updates``; :func:`aflqueue.protocol.time_budget`: uniform routing at the
    system's concurrency, exact throughput)."""
    from .pipeline import build_system  # lazy: numba

    system = build_system(cfg, cfg.data.clients)
    if cfg.run.time_budget is not None:
        lam = analyze(system.with_routing(uniform_routing(system.n))).throughput
        return float(cfg.run.time_budget), int(round(lam * cfg.run.time_budget))
    U0 = int(cfg.run.updates)
    return time_budget(system, U0), U0


def initial_calibration(cfg, seed: int | None = None, **kw: Any):
    """The zero-cost option: :func:`aflqueue.calibration.calibrate` at the configuration's initial
    model (seed ``cfg.seed`` unless given), 4 minibatches per client and 4 directions by default.
    Returns its :class:`~aflqueue.calibration.Calibration`."""
    from .pipeline import build_data_and_model  # lazy: numba

    c = cfg if seed is None else with_updates(cfg, seed=int(seed))
    data, model = build_data_and_model(c)
    kw = {"num_batches": 4, "num_directions": 4, **kw}
    return estimate_at_initial_model(model, data.clients, seed=int(c.seed), **kw)


def initial_constants(cfg, seed: int | None = None, **kw: Any) -> ProxyConstants:
    """The constants of :func:`initial_calibration`."""
    return initial_calibration(cfg, seed, **kw).constants


def mix_weight(name: str) -> float:
    """The weight ``T`` of P2 in the pilot routing ``name``: ``uniform`` 0, ``mid`` 1/2, ``p2`` 1,
    ``mix:T`` T (in ``[0, 1]``); anything else is a :class:`ValidationError`."""
    t = {"uniform": 0.0, "mid": 0.5, "p2": 1.0}.get(name)
    if t is None and name.startswith("mix:"):
        try:
            t = float(name[4:])
        except ValueError:
            t = None
        t = t if t is not None and 0 <= t <= 1 else None
    require(t is not None, "routings", f"unknown pilot routing {name!r}; use uniform, p2, mid or mix:T with T in "
                                       "[0, 1]")
    return t


def pilot_routings(names: Sequence[str], system, constants: ProxyConstants, time_budget: float,
                   p_min: float = 1e-3) -> dict[str, np.ndarray]:
    """Routings named ``uniform``, ``p2`` (the wall-clock optimum for ``constants`` at the
    system's concurrency), ``mid`` (their midpoint) or ``mix:T`` (``(1-T) uniform + T p2``)."""

    n = system.n
    u = np.full(n, 1.0 / n)
    p2 = None
    out: dict[str, np.ndarray] = {}
    for name in names:
        t = mix_weight(name)
        if name == "uniform":
            out[name] = u
            continue
        if p2 is None:
            p2 = optimize(OptimizationProblem(system, "wall-clock", constants=constants, p_min=p_min,
                                              time_budget=time_budget)).routing
        out[name] = (1 - t) * u + t * p2
    return out


def pilot_run(args: Mapping[str, Any]) -> dict[str, Any]:
    """One pilot (or evaluation) training run, a job of :func:`aflqueue.jobs.run_jobs`.

    ``args``: ``config`` (a :class:`~aflqueue.config.TrainConfig` dict), ``routing`` (list, or
    None for uniform), ``concurrency``, ``lr``, ``seed``, ``time_budget``, ``evaluate_on``
    (``"validation"`` or ``"test"``), ``eval_times``, and optional ``tags`` copied to the record."""

    import torch  # lazy: torch

    from .pipeline import prepare, train  # lazy: numba

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(args["config"])
    routing = {"kind": "uniform"} if args.get("routing") is None else \
        {"kind": "explicit", "values": [float(x) for x in args["routing"]]}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_updates(cfg, output=tmp, seed=int(args["seed"]), routing=routing,
                           system={"concurrency": int(args["concurrency"])}, local={"lr": float(args["lr"])},
                           run={"time_budget": float(args["time_budget"]), "updates": None,
                                "evaluate_on": args.get("evaluate_on", "validation"), "eval_every": 0,
                                "eval_times": int(args.get("eval_times", 20)), "checkpoint_every": 0})
        pr = prepare(cfg)
        res = train(cfg, prepared=pr)
    p = np.asarray(pr.system.routing)
    a = analyze(pr.system)
    return {"tags": dict(args.get("tags", {})), "lr": float(args["lr"]), "seed": int(args["seed"]),
            "concurrency": int(pr.system.concurrency), "time_budget": float(args["time_budget"]),
            "evaluate_on": args.get("evaluate_on", "validation"),
            "S1": s1(p)[0], "S2": s2(a.relative_delay, p), "throughput": float(a.throughput),
            "max_importance_weight": largest_importance_weight(p),
            "measured": {"final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "arrivals": res.arrivals,
                         "diverged": res.diverged,
                         "diverged_at_time": (float(res.log["time"][-1]) if res.diverged else None),
                         "curves": {k: res.curves[k] for k in ("time", "updates", "test_loss", "test_accuracy")}},
            "timing": {"wall_time": time.perf_counter() - t0}}


def check_pilot_record(record: Any, source: str) -> Mapping[str, Any]:
    """``record`` (a :func:`pilot_run` record read back from its job store) if it holds what
    :func:`curve_of` reads: ``lr > 0``, ``S1 > 0``, ``S2 >= 0``, ``concurrency >= 1``, and
    ``measured.curves`` with lists ``updates`` (integers >= 0), ``test_loss`` (numbers >= 0 or
    null) and ``test_accuracy`` (in ``[0, 1]`` or null) of one length; else one
    :class:`ValidationError` naming ``source``."""
    src = source
    if not isinstance(record, Mapping):
        raise ValidationError("record", f"{src}: must be a table")
    with file_errors(src, "record"):
        check_number(record.get("lr"), "lr", 0.0, lo_open=True)
        check_number(record.get("S1"), "S1", 0.0, lo_open=True)
        check_number(record.get("S2"), "S2", 0.0)
        check_integer(record.get("concurrency"), "concurrency", 1)
    m = record.get("measured")
    c = m.get("curves") if isinstance(m, Mapping) else None
    if not isinstance(c, Mapping):
        raise ValidationError("record.measured.curves", f"{src}: missing (the pilot's curves)")
    n = None
    for k, lo, hi, nullable in (("updates", 0.0, None, False), ("test_loss", 0.0, None, True),
                                ("test_accuracy", 0.0, 1.0, True)):
        v = c.get(k)
        if not isinstance(v, list) or (n is not None and len(v) != n):
            raise ValidationError(f"record.measured.curves.{k}", f"{src}: must be a list, one entry per evaluation"
                                                                 + (f" ({n})" if n is not None else ""))
        n = len(v)
        for i, x in enumerate(v):
            if x is None and nullable:
                continue
            with file_errors(src):
                check_number(x, f"record.measured.curves.{k}[{i}]", lo, hi)
    return record


def curve_of(record: Mapping[str, Any]) -> PilotCurve:
    """The :class:`PilotCurve` of a :func:`pilot_run` record (a diverged run's loss is NaN)."""
    c = record["measured"]["curves"]
    loss = [math.nan if x is None else x for x in c["test_loss"]]
    if record["measured"].get("diverged"):
        loss = loss + [math.nan]
    return PilotCurve(lr=record["lr"], S1=record["S1"], S2=record["S2"], concurrency=record["concurrency"],
                      updates=tuple(c["updates"]) + ((c["updates"][-1] if c["updates"] else 1.0,)
                                                     if record["measured"].get("diverged") else ()),
                      loss=tuple(loss), accuracy=tuple(c["test_accuracy"]) + ((math.nan,) if record["measured"].get(
                          "diverged") else ()), label=str(record.get("tags", {}).get("label", "")))


def pilot_identity(args: Mapping[str, Any]) -> dict[str, Any]:
    """What a :func:`pilot_run` job's result depends on: its arguments without ``tags`` and
    without the configuration's ``output`` and ``seed`` (the run overrides both)."""
    config = {k: v for k, v in dict(args["config"]).items() if k not in ("output", "seed")}
    return {**{k: v for k, v in args.items() if k not in ("tags", "config")}, "config": config}


def pilot_jobs(prefix: str, config: Mapping[str, Any], routings: Mapping[str, np.ndarray], concurrency: int,
               lrs: Sequence[float], seed: int, time_budget: float, eval_times: int = 20,
               tags: Mapping[str, Any] | None = None, *, content_key: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Jobs ``(id, args)`` of :func:`pilot_run`: every routing at every rate, one seed, on the
    validation split. ``content_key``: end each id with a digest of the job's content
    (:func:`pilot_identity`), so that a store never hands a job the record of another one with
    the same name (:func:`calibrate_pilot` does; the studies' ids predate it)."""

    jobs = []
    for name, p in routings.items():
        for lr in lrs:
            jid = f"{prefix}__{name.replace(':', '')}__lr{lr:g}"
            args = {"config": dict(config), "routing": None if name == "uniform" else [float(x) for x in p],
                    "concurrency": int(concurrency), "lr": float(lr), "seed": int(seed),
                    "time_budget": float(time_budget), "evaluate_on": "validation", "eval_times": int(eval_times),
                    "tags": {**(tags or {}), "routing": name, "label": f"{name} lr {lr:g}"}}
            if content_key:
                jid += f"__{json_digest(pilot_identity(args))}"
            jobs.append((jid, args))
    return jobs


def calibrate_pilot(cfg, output: str | Path, *, routings: Sequence[str] = ("uniform", "p2", "mid"),
                    lrs: Sequence[float] = (0.03, 0.1), seed: int = 1000, budget_fraction: float = 0.5,
                    bootstrap: int = 200, skip_fraction: float = 0.5, method: str = "cases", eval_times: int = 20,
                    backend: str = "serial",
                    workers: int | None = None, address: str | None = None, progress: Callable[[str], None] | None = print) -> PilotFit:
    """Run the pilots of a configuration (saved under ``output``, resumable) and fit them.

    The pilots train ``cfg`` with every routing of ``routings`` (:func:`pilot_routings`, the
    wall-clock optimum from the initial-model constants at ``seed``) at every rate of ``lrs``,
    on one ``seed``, for ``budget_fraction`` of the budget (:func:`budget_of`), evaluated on a
    validation split (``data.validation_fraction``, 0.1 if unset)."""
    from .pipeline import build_system  # lazy: numba

    require(0 < budget_fraction <= 1, "budget-fraction", f"must be in (0, 1] (got {budget_fraction})")
    require(len(lrs) >= 1 and all(math.isfinite(x) and x > 0 for x in lrs), "lrs", f"must be > 0 (got {list(lrs)})")
    require(len(routings) >= 1, "routings", "needs at least one routing")
    if cfg.data.validation_fraction <= 0:
        cfg = with_updates(cfg, data={"validation_fraction": 0.1})
    tau, U0 = budget_of(cfg)
    system = build_system(cfg, cfg.data.clients)
    consts = initial_constants(cfg, seed=seed)
    rts = pilot_routings(list(routings), system, consts, tau)
    raw = cfg.to_dict()
    raw["routing"] = {"kind": "uniform"}
    # keyed by content: a second calibration with other settings never reuses the first one's runs
    jobs = pilot_jobs("pilot", raw, rts, system.concurrency, lrs, seed, budget_fraction * tau, eval_times,
                      content_key=True)
    t0 = time.perf_counter()
    store = JobStore(Path(output))
    records = run_jobs(jobs, pilot_run, store, backend=backend, workers=workers, address=address,
                       progress=progress, describe=lambda r: f"final validation loss {r['measured']['final_loss']}",
                       settings=pilot_identity)
    wanted = {j for j, _ in jobs}
    records = [check_pilot_record(r, source_name(store.path(r["id"]))) for r in records if r["id"] in wanted]
    require(len(records) == len(wanted), "pilot", f"{len(wanted) - len(records)} pilot run(s) have no record in "
                                                  f"{str(store.cells)!r}")
    fit = fit_pilots([curve_of(r) for r in records], bootstrap=bootstrap, seed=seed, skip_fraction=skip_fraction,
                     method=method)
    cost = sum(r.get("timing", {}).get("wall_time", 0.0) for r in records)
    fit.settings.update({"clients": int(system.n), "concurrency": int(system.concurrency),
                         "routings": list(routings), "lrs": [float(x) for x in lrs], "pilot_seed": int(seed),
                         "budget_fraction": budget_fraction, "time_budget": tau, "pilot_time_budget": budget_fraction * tau,
                         "reference_updates": U0, "initial_constants": {k: v for k, v in consts.to_dict().items()
                                                                        if v is not None},
                         "pilot_runs": len(records), "pilot_wall_time_s": cost,
                         "session_wall_time_s": time.perf_counter() - t0})
    return fit


# --------------------------------------------------------------------------- calibrate and predict
#: Pilot routings :func:`calibrate` accepts (and ``mix:T`` with ``T`` in ``[0, 1]``).
PILOT_ROUTINGS = ("uniform", "p2", "mid")
#: Largest concurrency :func:`predict` scans (each objective evaluation is one MVA pass; as
#: ``aflqueue optimize``).
MAX_SCAN_CONCURRENCY = 100_000
_MAX_LR = 100.0


def _check_routing_names(routings: Sequence[str]) -> list[str]:
    names = [str(r).strip() for r in routings]
    require(bool(names) and all(names), "routings", "needs at least one routing (uniform, p2, mid or mix:T)")
    for r in names:
        mix_weight(r)
    return names


def _check_output(output: str | Path | None) -> Path | None:
    if output is None:
        return None

    out = Path(output)
    require(out.suffix.lower() in DATA_FORMATS, "output", f"must end in .toml, .json, .yaml or .yml (got {str(out)!r})")
    require(not out.is_dir(), "output", f"{str(out)!r} is a folder; give a file name")
    return out


def calibrate(cfg, *, method: str = "pilot", output: str | Path | None = None, runs: str | Path | None = None,
              routings: Sequence[str] = ("uniform", "p2", "mid"), lrs: Sequence[float] = (0.03, 0.1), seed: int = 1000,
              budget_fraction: float = 0.5, bootstrap: int = 200, bootstrap_method: str = "cases",
              backend: str = "serial", workers: int | None = None, address: str | None = None,
              progress: Callable[[str], None] | None = print) -> ConstantsFile:
    """The proxy constants of a run configuration ``cfg`` (a :class:`~aflqueue.config.TrainConfig`),
    as ``aflqueue calibrate`` computes them, written to ``output`` when given.

    ``method="pilot"`` (docs/theory.md section 10): train ``cfg`` briefly with every routing of
    ``routings`` at every learning rate of ``lrs`` (one pilot ``seed``, ``budget_fraction`` of the
    budget, on a validation split) and fit the family to the loss curves, with ``bootstrap``
    refits (``bootstrap_method`` ``cases`` or ``wild``). The runs are saved in ``runs`` (default:
    next to ``output``, ``<output stem>_pilots``) and resumed from there, each keyed by the
    content of its configuration (:func:`pilot_jobs` with ``content_key``): a calibration with
    other settings never reuses another's runs. ``backend``, ``workers``, ``address``: where the
    runs train (:func:`aflqueue.jobs.run_jobs`). ``method="initial"`` (section 7): the zero-cost
    estimate at the initial model (:func:`initial_calibration`, seed ``cfg.seed``); the pilot
    arguments must keep their defaults.

    Every argument is checked before anything runs (one :class:`ValidationError` naming it). The
    result records the system size (``clients``), which :func:`predict` requires to match.
    """
    require(method in ("pilot", "initial"), "method", f"must be pilot or initial (got {method!r})")
    out = _check_output(output)
    names = _check_routing_names(routings)
    lrs = [check_number(x, "lrs", 0.0, _MAX_LR, lo_open=True) for x in (lrs if isinstance(lrs, (list, tuple)) else [lrs])]
    require(bool(lrs), "lrs", "needs at least one learning rate")
    seed = check_integer(seed, "pilot-seed", 0, 2**32 - 1)
    budget_fraction = check_number(budget_fraction, "budget-fraction", 0.0, 1.0, lo_open=True)
    bootstrap = check_integer(bootstrap, "bootstrap", 0, MAX_BOOTSTRAP)
    require(bootstrap_method in BOOTSTRAP_METHODS, "bootstrap-method",
            f"must be one of {', '.join(BOOTSTRAP_METHODS)} (got {bootstrap_method!r})")
    from .pipeline import build_system  # lazy: numba

    n = build_system(cfg, cfg.data.clients).n
    if method == "initial":
        cal = initial_calibration(cfg)
        initial = {"settings": cal.settings,
                   "spread": {k: {kk: vv for kk, vv in v.items() if kk != "values"} for k, v in cal.spread.items()}}
        cf = ConstantsFile(cal.constants, "initial", n, None, initial, None if out is None else str(out))
    else:
        if runs is None:
            require(out is not None, "runs", "give a folder for the pilot runs (or an output file to put them next to)")
            runs = str(out.with_suffix("")) + "_pilots"
        fit = calibrate_pilot(cfg, Path(runs), routings=names, lrs=sorted(set(lrs)), seed=seed,
                              budget_fraction=budget_fraction, bootstrap=bootstrap, method=bootstrap_method,
                              backend=backend, workers=workers, address=address, progress=progress)
        cf = ConstantsFile(fit.constants, "pilot", n, fit, None, None if out is None else str(out), str(runs))
    if out is not None:
        write_constants(out, cf)
    return cf


@dataclass(frozen=True)
class Verdict:
    """What a :class:`Prediction` allows one to say, and why.

    Attributes:
        kind: ``"pays"`` (the whole interval of the time ratio is below 1), ``"not expected to
            pay"`` (it covers 1), ``"not expected to pay: expected to lose"`` (it is above 1) or
            ``"no verdict"`` (the numbers support none).
        reason: the numbers behind it, or why there is none.
    """

    kind: str
    reason: str

    def __str__(self) -> str:
        lead = {"pays": "optimisation pays", "not expected to pay": "optimisation not expected to pay",
                "not expected to pay: expected to lose": "optimisation not expected to pay: expected to lose",
                "no verdict": "no verdict"}[self.kind]
        return f"verdict: {lead} ({self.reason})"


def min_bootstrap(confidence: float) -> int:
    """Fewest bootstrap refits for a two-sided ``confidence`` interval whose tails each rest on at
    least one refit: ``ceil(2 / (1 - confidence))`` (40 at 95%)."""
    return int(math.ceil(2.0 / (1.0 - confidence) - 1e-9))


@dataclass(frozen=True, eq=False, repr=False)
class Prediction(Result):
    """What optimising the routing is predicted to gain over AsyncSGD (uniform routing, the
    system's concurrency), as ``aflqueue predict`` reports it (:func:`predict`).

    Attributes:
        objective: the optimiser's objective (``wall-clock`` or ``time-to-accuracy``).
        n: clients; concurrency_uniform: AsyncSGD's ``m``; concurrency: the optimum's ``m``.
        routing: the optimum's routing, shape ``(n,)``.
        time_budget: ``tau`` (time units): AsyncSGD's expected time for ``reference_updates``.
        max_importance_weight, step_ratio: of the optimum (step size over AsyncSGD's; None if none).
        constants_file: where the constants came from; source: ``"pilot fit"`` or ``"constants
            without a pilot fit"``; proxy_ratio: the proxy's optimum / AsyncSGD (no pilot fit).
        time_ratio: ``{"point", "lo", "hi"}``: predicted time to the target accuracy, optimum /
            AsyncSGD (< 1: faster), interval over the bootstrap refits (inf: never reaches it);
            None without a pilot fit.
        accuracy_difference: accuracy at the budget, optimum minus AsyncSGD (same layout).
        target_accuracy: the target (``target_fraction`` x AsyncSGD's predicted accuracy).
        loss, eta: predicted losses and step sizes at the budget ``{"routing", "baseline"}``.
        confidence: the intervals' level; samples: bootstrap refits; defined: refits that give a
            time ratio (a target out of a refit's reach gives none).
        unreachable: why no time to the target exists (target at or below the accuracy map's
            floor, or beyond what the map reaches), else None.

    :meth:`verdict` says what the numbers allow; :meth:`to_dict` adds it (``verdict``,
    ``verdict_reason``); :meth:`to_frame` has one row per client (the optimum's routing).
    """

    objective: str
    n: int
    concurrency_uniform: int
    concurrency: int
    routing: np.ndarray
    time_budget: float
    reference_updates: int
    max_importance_weight: float
    step_ratio: float | None
    constants_file: str | None
    source: str
    proxy_ratio: float | None = None
    time_ratio: dict[str, float | None] | None = None
    accuracy_difference: dict[str, float | None] | None = None
    target_accuracy: float | None = None
    loss: dict[str, float] | None = None
    eta: dict[str, float] | None = None
    confidence: float = 0.95
    samples: int = 0
    defined: int = 0
    unreachable: str | None = None

    frame_fields = ("routing",)

    def title(self) -> str:
        return f"Prediction ({self.objective} optimum against AsyncSGD, n = {self.n}): {self.verdict().kind}"

    def verdict(self) -> Verdict:
        """The verdict the numbers support (docs/theory.md section 10), or ``no verdict`` and why:
        no pilot fit, a target with no time to it, an undefined point prediction, too few
        bootstrap refits for the interval's tails (:func:`min_bootstrap`), refits without a time
        ratio, or no interval."""
        if self.source != "pilot fit":
            return Verdict("no verdict", "the constants carry no pilot fit: the proxy ranks routings but predicts no "
                                         "time or accuracy, and carries no interval (run aflqueue calibrate --pilot)")
        if self.unreachable:
            return Verdict("no verdict", self.unreachable)
        tr = self.time_ratio or {}
        pct = f"{100 * self.confidence:g}%"
        pt = tr.get("point")
        if pt is None or not math.isfinite(pt):
            return Verdict("no verdict", "the point fit predicts no finite time ratio")
        need = min_bootstrap(self.confidence)
        if self.samples < need:
            return Verdict("no verdict", f"{self.samples} bootstrap refits cannot bound a {pct} interval (each tail needs "
                                         f"one: at least {need}; calibrate --pilot --bootstrap {need} or more)")
        if self.defined < self.samples:
            return Verdict("no verdict", f"{self.samples - self.defined} of {self.samples} bootstrap refits give no time "
                                         "ratio (the target is out of their reach): an interval over the others "
                                         "would be too narrow")
        lo, hi = tr.get("lo"), tr.get("hi")
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return Verdict("no verdict", "the time ratio has no interval")
        iv = f"the {pct} interval of the time ratio over {self.samples} bootstrap refits, [{lo:.3g}, {hi:.3g}],"
        if hi < 1:
            return Verdict("pays", f"{iv} is below 1")
        if lo > 1:
            return Verdict("not expected to pay: expected to lose", f"{iv} is above 1")
        return Verdict("not expected to pay", f"{iv} covers 1")

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict()
        return {**super().to_dict(), "verdict": v.kind, "verdict_reason": v.reason}

    def report(self) -> str:
        """What ``aflqueue predict`` prints."""
        lines = [f"system: n = {self.n}, m = {self.concurrency_uniform}; budget tau = {self.time_budget:.4g} time units "
                 f"(AsyncSGD's expected time for {self.reference_updates} updates)",
                 f"optimum ({self.objective}, constants from {self.constants_file}): m = {self.concurrency}, largest "
                 f"importance weight {self.max_importance_weight:.1f}, step size "
                 f"{'-' if self.step_ratio is None else f'{self.step_ratio:.3g}'} x AsyncSGD's"]
        if self.source != "pilot fit":
            r = self.proxy_ratio
            lines.append(f"proxy ratio (optimum / AsyncSGD): {'-' if r is None else f'{r:.3f}'}")
            lines.append(str(self.verdict()))
            return "\n".join(lines)
        pct = f"{100 * self.confidence:g}%"

        def iv(d: Mapping[str, Any] | None, scale: float = 1.0, signed: bool = False) -> str:
            def f(x: Any) -> str:
                if x is None or (isinstance(x, float) and math.isnan(x)):
                    return "-"
                return f"{scale * x:+.1f}" if signed else f"{scale * x:.3f}"

            d = d or {}
            if d.get("lo") is None:
                return f(d.get("point"))
            return f"{f(d['point'])} [{f(d['lo'])}, {f(d['hi'])}] ({pct}, {self.samples} refits)"

        tgt = self.target_accuracy
        if self.unreachable:
            lines.append(f"predicted time to the target: none ({self.unreachable})")
        else:
            lines.append(f"predicted time to {'the target' if tgt is None else f'accuracy {tgt:.3f}'} (optimum / "
                         f"AsyncSGD): {iv(self.time_ratio)}")
        lines.append(f"predicted accuracy difference at the budget (points): "
                     f"{iv(self.accuracy_difference, 100, signed=True)}")
        lines.append(str(self.verdict()))
        return "\n".join(lines)


def _safe_interval(point: float, samples: Sequence[float], confidence: float) -> dict[str, float | None]:
    """:func:`percentile_interval` (linear percentiles of the defined samples) that keeps ``inf`` (a refit
    that never reaches the target) instead of turning a quantile between two of them into NaN."""
    big = 1e300
    v = [min(x, big) for x in samples if x is not None and not math.isnan(x)]
    out = percentile_interval(point, v, confidence)
    for k in ("lo", "hi"):
        if out[k] is not None and out[k] >= big:
            out[k] = math.inf
    return out


def _unreachable(amap: Any, target: float, target_fraction: float, time_ratio: float) -> str | None:
    """Why the predicted time to ``target`` does not exist (the accuracy map's floor is at or above
    it, the map never reaches it, or AsyncSGD never does under the point fit), else None."""
    if amap is not None and math.isfinite(target):
        base_acc = target / target_fraction
        if target <= amap.floor:
            return (f"the target accuracy {target:.3f} ({target_fraction:g} x AsyncSGD's predicted {base_acc:.3f}) "
                    f"is at or below the accuracy map's floor {amap.floor:.3f}, which every loss reaches: there is "
                    "no time to reach it (raise --target-fraction)")
        if not target < 1 or math.isnan(amap.inverse(target)):
            return (f"the accuracy map never reaches the target accuracy {target:.3f}: there is no time to reach "
                    "it (lower --target-fraction)")
    elif amap is not None:
        return "AsyncSGD's predicted accuracy at the budget is undefined: there is no target to time"
    if math.isnan(time_ratio):
        return "AsyncSGD never reaches the target under the point fit: the time ratio is undefined"
    return None


def predict(cfg, constants: str | Path | ConstantsFile, *, objective: str = "wall-clock",
            concurrency_range: Sequence[int] | None = None, p_min: float | None = None, target_fraction: float = 0.9,
            confidence: float = 0.95, starts: int = 4,
            sim_seeds: Sequence[int] = (5000, 5001, 5002)) -> Prediction:
    """What optimising the routing of ``cfg`` (a :class:`~aflqueue.config.TrainConfig`) is
    predicted to gain over AsyncSGD, from ``constants`` (a constants file or a
    :class:`ConstantsFile`), as ``aflqueue predict`` reports it (docs/theory.md section 10).

    The optimum of ``objective`` (``wall-clock`` or ``time-to-accuracy``; over the concurrency
    range ``[lo, hi]`` when given; every ``p_i >= p_min``, default ``cfg.routing.p_min``) on the
    configuration's system and budget; with a pilot fit, its predicted time to a target accuracy
    (``target_fraction`` in ``(0, 1]`` x AsyncSGD's predicted accuracy at the budget) and accuracy
    at the budget against AsyncSGD's, with ``confidence`` bootstrap intervals (update counts from
    simulated schedules with ``sim_seeds``). :meth:`Prediction.verdict` says what they allow.

    Refused (:class:`ValidationError`): constants fitted on another number of clients than the
    configuration's system has (both sizes named), an empty or malformed constants file,
    arguments out of range. A target the accuracy map puts at or below its floor, or cannot
    reach, is reported as unreachable (no time, no verdict).
    """
    from .pipeline import build_system  # lazy: numba

    objective = {"wallclock": "wall-clock"}.get(objective, objective)
    require(objective in ("wall-clock", "time-to-accuracy"), "objective",
            f"must be wall-clock or time-to-accuracy (got {objective!r})")
    confidence = check_number(confidence, "confidence", 0.0, 1.0, lo_open=True, hi_open=True)
    target_fraction = check_number(target_fraction, "target-fraction", 0.0, 1.0, lo_open=True)
    starts = check_integer(starts, "starts", 1, 1000)
    rng = None
    if concurrency_range is not None:
        require(len(concurrency_range) == 2, "concurrency-range", f"must be LO:HI (got {concurrency_range!r})")
        lo_m = check_integer(concurrency_range[0], "concurrency-range", 1, MAX_SCAN_CONCURRENCY)
        hi_m = check_integer(concurrency_range[1], "concurrency-range", lo_m, MAX_SCAN_CONCURRENCY)
        rng = (lo_m, hi_m)
    cf = constants if isinstance(constants, ConstantsFile) else load_constants(constants)
    src = source_name(cf.path) if cf.path else "the constants"
    tau, U0 = budget_of(cfg)
    system = build_system(cfg, cfg.data.clients)
    n, m = system.n, system.concurrency
    if cf.clients is not None and cf.clients != n:
        raise ValidationError("constants", f"{src} were fitted on {cf.clients} clients, but this configuration's system "
                                           f"has {n}: constants do not carry over between system sizes (calibrate on "
                                           "this configuration)")
    p_min = check_number(cfg.routing.p_min if p_min is None else p_min, "p-min", 0.0, 1.0 / n)
    res = optimize(OptimizationProblem(system, objective, constants=cf.constants, p_min=p_min, time_budget=tau,
                                       concurrency=rng, updates=float(U0)), starts=starts)
    common = dict(objective=res.objective, n=n, concurrency_uniform=m, concurrency=int(res.concurrency),
                  routing=np.asarray(res.routing, dtype=float), time_budget=float(tau), reference_updates=int(U0),
                  max_importance_weight=float(largest_importance_weight(res.routing)), step_ratio=step_ratio(res),
                  constants_file=cf.path, confidence=confidence)
    fit = cf.fit
    if fit is None:
        base_value = (res.baseline or {}).get("objective_value")
        ratio = res.objective_value / base_value if base_value else None
        return Prediction(**common, source="constants without a pilot fit",
                          proxy_ratio=None if ratio is None or not math.isfinite(ratio) else float(ratio))
    u = uniform_routing(n)
    op_u = operating_point(system, u, m, 3 * tau, sim_seeds=sim_seeds)
    op_c = operating_point(system, res.routing, res.concurrency, 3 * tau, sim_seeds=sim_seeds)
    point, boots = gain_samples(fit, op_c, op_u, tau, target_fraction)
    ratio_iv = _safe_interval(point[0], [b[0] for b in boots], confidence)
    acc_iv = percentile_interval(point[1], [b[1] for b in boots], confidence)
    defined = sum(1 for b in boots if not math.isnan(b[0]))
    target = point[4]
    unreachable = _unreachable(fit.accuracy_map, target, target_fraction, point[0])
    return Prediction(**common, source="pilot fit", time_ratio=ratio_iv, accuracy_difference=acc_iv,
                      target_accuracy=None if math.isnan(target) else float(target),
                      loss={"routing": point[2], "baseline": point[3]}, eta={"routing": point[5], "baseline": point[6]},
                      samples=len(boots), defined=defined, unreachable=unreachable)
