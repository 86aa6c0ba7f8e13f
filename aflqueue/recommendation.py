"""Recommend an operating point from pilot runs, or say "keep AsyncSGD" (docs/theory.md section 12).

The optimiser proposes *candidates* (routing, concurrency and weight cap, each from one proxy of
sections 5, 6 and 11); short training runs on a validation split decide among them:
1. **Successive halving.** Every candidate is tried at three learning rates around its own
   (``lr x step ratio``), on a short budget; the best third of the arms go on to a budget three
   times longer; a candidate whose best rate sits at the edge of the rates it tried gets the next
   rate out, so no rate is chosen at an edge unflagged. AsyncSGD's best arm always goes on: it is
   the baseline every ratio is measured against.
2. **Final round.** The two best candidates and AsyncSGD, each at its best rate, train for the
   whole budget on two pilot seeds. The target is ``0.9 x`` AsyncSGD's mean final validation
   accuracy; the time ratio of a candidate is its time to the target over AsyncSGD's, per seed.
3. **Prediction.** The candidate with the smaller geometric-mean ratio is recommended when that
   ratio is below 1, else AsyncSGD is kept. Its 90% prediction interval is
   ``ratio x exp(+- q sigma)`` with ``sigma`` the pilots' disagreement (the spread of the per-seed
   log ratios, with a floor), and ``q`` the conformal quantile of the normalised errors
   ``|log(measured / predicted)| / sigma`` on *held-in* regimes (:class:`Calibration`): the
   interval widens when the pilots disagree, and covers at the calibrated rate on regimes like the
   held-in ones.

The pilot budget is stated up front, in updates, against the comparison it replaces (every
candidate tuned on a 5-rate grid over 2 seeds and evaluated on 10 seeds): by default at most 10% of
it. Pilot runs are resumable jobs keyed by the content of their configuration.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from ._results import Result
from .bounds import ProxyConstants
from .config import TrainConfig, with_updates
from .errors import check_integer, check_number, require
from .io import file_errors, json_digest, read_json, source_name
from .jobs import JobStore, run_jobs
from .optimization import OptimizationProblem, optimize
from .outcomes import check_run_record, time_to_target
from .pilot import initial_constants
from .pipeline import build_system
from .protocol import step_ratio, target_epsilon, time_budget, uniform_routing
from .queueing import analyze
from .tuning import score_curves

__all__ = ["CANDIDATES", "Candidate", "PilotPlan", "Calibration", "Recommendation", "candidates_for",
           "plan_cost", "schedule_updates", "recommend", "pilot_run", "pilot_runs", "pilot_run_batched", "job_runner",
           "conformal_quantile", "prediction_interval", "check_pilot_score_record"]

#: The candidates :func:`recommend` considers, by name: how each one's routing, concurrency and
#: weight cap are chosen (docs/theory.md section 12).
CANDIDATES: dict[str, dict[str, Any]] = {
    "asyncsgd": {"objective": None},
    "p2": {"objective": "wall-clock"},
    "p2-clip4": {"objective": "wall-clock", "weight_cap": 4.0},
    "p2-mix0.5": {"objective": "wall-clock", "mix": 0.5},
    "bias-aware": {"objective": "wall-clock", "choose_cap": True, "choose_mix": True},
    "p3": {"objective": "time-to-accuracy", "joint_concurrency": True},
}


@dataclass(frozen=True, eq=False, repr=False)
class Candidate(Result):
    """One operating point a pilot can train: routing ``(n,)``, concurrency, the server's weight
    cap (None: unclipped importance weights ``1/(n p_i)``), the proxy's step ratio against
    AsyncSGD (docs/theory.md section 5) and the exact throughput (updates per time unit)."""

    name: str
    routing: np.ndarray
    concurrency: int
    weight_cap: float | None
    step_ratio: float
    throughput: float
    mix: float = 1.0

    def key(self) -> str:
        """Identity of the operating point (two names for one point are tried once)."""
        return json_digest({"p": self.routing.tolist(), "m": self.concurrency, "cap": self.weight_cap})


@dataclass(frozen=True)
class PilotPlan:
    """How the pilots are spent (docs/theory.md section 12).

    Attributes:
        fractions: budget fractions of the halving rounds (the final round is the whole budget).
        lr_factors: rates tried per candidate in the first round, times its own rate.
        keep: fraction of the arms kept after each halving round (at least one).
        extend_factor: the next rate out from an edge is this factor beyond it.
        finalists: candidates (besides AsyncSGD) in the final round.
        seeds: pilot seeds; the halving rounds use the first, the final round all of them.
        evaluations: validation evaluations per run.
        target_fraction: the target is this fraction of AsyncSGD's mean final validation accuracy.
        pilot_fraction: largest share of the comparison's updates the pilots may spend.
        comparison: the comparison the pilots replace: ``(rates, tuning seeds, evaluation seeds)``
            per candidate.
    """

    fractions: tuple[float, ...] = (1 / 9, 1 / 3)
    lr_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    keep: float = 1 / 3
    extend_factor: float = 3.0
    finalists: int = 2
    seeds: tuple[int, ...] = (2000, 2001)
    evaluations: int = 20
    target_fraction: float = 0.9
    pilot_fraction: float = 0.10
    comparison: tuple[int, int, int] = (5, 2, 10)

    def __post_init__(self):
        require(all(0 < f < 1 for f in self.fractions), "plan.fractions", "must lie in (0, 1)")
        require(len(self.lr_factors) >= 1 and all(f > 0 for f in self.lr_factors), "plan.lr_factors", "must be > 0")
        require(0 < self.keep <= 1 and self.extend_factor > 1, "plan.keep", "keep in (0, 1], extend_factor > 1")
        require(self.finalists >= 1 and len(self.seeds) >= 1, "plan.seeds", "needs >= 1 finalist and seed")
        require(0 < self.target_fraction <= 1 and 0 < self.pilot_fraction <= 1, "plan.pilot_fraction",
                "target_fraction and pilot_fraction must lie in (0, 1]")


@dataclass(frozen=True)
class Calibration:
    """The conformal quantile of normalised prediction errors (docs/theory.md section 12).

    Attributes:
        quantile: ``q`` (None: uncalibrated, no interval is stated).
        confidence: the interval's nominal coverage (0.9).
        sigma_floor: the floor of the pilots' spread ``sigma`` (log units).
        regimes: how many held-in regimes ``q`` rests on; source: where they are described.
    """

    quantile: float | None = None
    confidence: float = 0.9
    sigma_floor: float = 0.1
    regimes: int = 0
    source: str = "uncalibrated"

    @classmethod
    def from_errors(cls, errors: Sequence[float], confidence: float = 0.9, sigma_floor: float = 0.1,
                    source: str = "") -> "Calibration":
        """From held-in normalised errors ``|log(measured / predicted)| / sigma``."""
        return cls(conformal_quantile(errors, confidence), confidence, sigma_floor, len(list(errors)), source)

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        """A calibration file written by a study: every field of this class (``quantile`` null when
        uncalibrated; ``source`` optional) and nothing else, checked field by field; an error names
        the file."""
        d = read_json(path, "calibration")
        src = source_name(path)
        require(isinstance(d, dict), "calibration", f"{src} must hold a JSON object")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        require(not unknown, f"calibration.{unknown[0] if unknown else ''}", f"{src}: unknown key (a calibration "
                                                                           f"file holds {', '.join(names)})")
        missing = [k for k in names if k not in d and k != "source"]
        require(not missing, f"calibration.{missing[0] if missing else ''}",
                f"{src}: missing (a calibration file holds {', '.join(names)}; quantile null when uncalibrated)")
        with file_errors(src, "calibration."):
            q = None if d["quantile"] is None else check_number(d["quantile"], "quantile", 0.0, 1e6, hi_open=True)
            conf = check_number(d["confidence"], "confidence", 0.0, 1.0, lo_open=True, hi_open=True)
            floor = check_number(d["sigma_floor"], "sigma_floor", 0.0, 10.0, lo_open=True, hi_open=True)
            n = check_integer(d["regimes"], "regimes", 0, 10**6 - 1)
            source = d.get("source", "")
            require(isinstance(source, str) and len(source) <= 500, "source", "must be a text of at most 500 "
                                                                              "characters")
        return cls(q, conf, floor, n, source)


def conformal_quantile(errors: Sequence[float], confidence: float = 0.9) -> float | None:
    """Split-conformal quantile: the ``ceil(confidence (N + 1))``-th smallest of ``N`` errors
    (None, an unbounded interval, when that exceeds ``N``). With exchangeable regimes the
    interval ``+- q sigma`` then covers a new regime's error with probability >= ``confidence``."""
    e = np.sort(np.asarray([float(x) for x in errors], dtype=float))
    require(bool(np.all(np.isfinite(e))) and bool(np.all(e >= 0)), "errors", "must be finite and >= 0")
    k = math.ceil(confidence * (e.size + 1))
    return None if k > e.size or e.size == 0 else float(e[k - 1])


@dataclass(frozen=True, eq=False, repr=False)
class Recommendation(Result):
    """What :func:`recommend` found (docs/theory.md section 12).

    Attributes:
        candidate: the recommended candidate's name (``"asyncsgd"`` when AsyncSGD is kept).
        keep_asyncsgd: True when no candidate is predicted to reach the target sooner.
        routing, concurrency, weight_cap, lr: the operating point to train with.
        predicted_ratio: predicted time to the target over tuned AsyncSGD's (geometric mean of
            the pilot seeds' ratios; inf when the candidate never reached the target).
        interval: the prediction interval ``(lo, hi)`` at ``confidence`` (None: uncalibrated).
        sigma: the pilots' disagreement (log units, floored); pilot_ratios: per final seed.
        asyncsgd_lr: AsyncSGD's best pilot rate; target: the validation accuracy aimed at.
        time_budget: simulated time units; finalists: every finalist's ratios.
        arms: one row per pilot run (candidate, lr, fraction, seed, score, updates, ...).
        at_edge: candidates whose chosen rate stayed at the edge of the rates tried.
        pilot_updates, comparison_updates: updates the pilots spent, and the comparison they replace.
        calibration: the interval's calibration; points: every candidate's operating point
        (routing, concurrency, weight cap, step ratio, throughput); constants: the proxy constants
        the candidates were optimised with (None when the caller gave the candidates); wall_time:
        seconds.
    """

    candidate: str
    keep_asyncsgd: bool
    routing: np.ndarray
    concurrency: int
    weight_cap: float | None
    lr: float
    predicted_ratio: float
    interval: tuple[float, float] | None
    confidence: float
    sigma: float
    pilot_ratios: list[float]
    asyncsgd_lr: float
    target: float
    time_budget: float
    finalists: dict[str, Any]
    arms: list[dict[str, Any]]
    at_edge: list[str]
    pilot_updates: int
    comparison_updates: int
    calibration: dict[str, Any]
    points: dict[str, Any]
    constants: dict[str, Any] | None
    wall_time: float

    frame_fields: ClassVar[tuple[str, ...]] = ("routing",)
    repr_fields: ClassVar[tuple[str, ...]] = (
        "candidate", "keep_asyncsgd", "lr", "concurrency", "weight_cap", "predicted_ratio", "interval",
        "pilot_ratios", "asyncsgd_lr", "target", "at_edge", "pilot_updates", "comparison_updates", "wall_time")

    def title(self) -> str:
        return f"Recommendation: {self.verdict()}"

    def verdict(self) -> str:
        """One line: what to do, and the predicted gain with its interval."""
        if self.keep_asyncsgd:
            # the pilots' AsyncSGD rate comes from short runs on two seeds; in the recommendation
            # study's abstentions it was below the tuned rate and 1.14-1.20x slower
            return ("keep AsyncSGD, at a learning rate tuned for the full budget (aflqueue tune): no candidate "
                    f"is predicted to reach the target sooner (best: {self.best_finalist()} at "
                    f"x{self.predicted_ratio:.3g})")
        iv = ("no calibrated interval" if self.interval is None else
              f"{self.confidence:.0%} prediction interval [{self.interval[0]:.3g}, {self.interval[1]:.3g}]")
        return f"{self.candidate}: predicted time to target x{self.predicted_ratio:.3g} of tuned AsyncSGD ({iv})"

    def best_finalist(self) -> str:
        ranked = sorted(self.finalists.items(), key=lambda kv: kv[1]["ratio"])
        return ranked[0][0] if ranked else "none"


# ----------------------------------------------------------------------------------- candidates
def candidates_for(cfg: TrainConfig, names: Sequence[str], budget: float, updates: float,
                   constants: ProxyConstants | None = None) -> list[Candidate]:
    """The operating points of ``names`` (keys of :data:`CANDIDATES`) for the configuration's
    system at the time budget ``budget``; ``constants``: the proxy constants (default: calibrated
    at the seed's initial model, docs/theory.md section 7). Points equal to an earlier one are
    dropped (e.g. every candidate is uniform routing on a homogeneous system)."""
    unknown = [x for x in names if x not in CANDIDATES]
    require(not unknown, "candidates", f"unknown {unknown}; choose from {', '.join(CANDIDATES)}")
    require("asyncsgd" in names, "candidates", "must include asyncsgd, the baseline")
    system = build_system(cfg, cfg.data.clients)
    n = system.n
    if constants is None:
        constants = initial_constants(cfg)
    eps = target_epsilon(system, constants, updates)
    out: list[Candidate] = []
    for name in names:
        spec = CANDIDATES[name]
        if spec["objective"] is None:
            u = system.with_routing(uniform_routing(n))
            point = Candidate(name, uniform_routing(n), system.concurrency, None, 1.0, analyze(u).throughput)
        else:
            point = _optimised(name, spec, system, constants, budget, eps)
        if all(point.key() != c.key() for c in out):
            out.append(point)
    return out


def _optimised(name: str, spec: Mapping[str, Any], system, constants: ProxyConstants, budget: float,
               eps: float) -> Candidate:
    n = system.n
    rng = (1, 2 * n) if spec.get("joint_concurrency") else None
    opt = optimize(OptimizationProblem(system, spec["objective"], constants=constants, p_min=1e-3, concurrency=rng,
                                       epsilon=eps, time_budget=budget, choose_cap=spec.get("choose_cap", False),
                                       choose_mix=spec.get("choose_mix", False)), seed=0)
    routing, m = np.asarray(opt.routing, dtype=float), int(opt.concurrency)
    cap, mix = spec.get("weight_cap", opt.cap), float(spec.get("mix", opt.mix))
    if "mix" in spec:  # a fixed mix of the unclipped optimum with uniform routing (section 11)
        routing = mix * routing + (1 - mix) * uniform_routing(n)
    cap = None if cap is None or not math.isfinite(cap) else float(cap)
    lam = analyze(system.with_routing(routing).with_concurrency(m)).throughput
    return Candidate(name, routing, m, cap, step_ratio(opt) or 1.0, float(lam), mix)


# ----------------------------------------------------------------------------------- the runs
def arm_config(cfg: TrainConfig, c: Candidate, lr: float, budget: float, seed: int, evaluations: int) -> dict[str, Any]:
    """The run configuration of one pilot (a plain dict: the job's content and its identity)."""
    params = {} if c.weight_cap is None else {"weight_cap": c.weight_cap}
    run = with_updates(cfg, seed=int(seed), output="unused", local={"lr": float(lr)},
                       routing={"kind": "explicit", "values": [float(x) for x in c.routing]},
                       system={"concurrency": int(c.concurrency)},
                       algorithm={"name": "generalized-asyncsgd", "params": params},
                       run={"time_budget": float(budget), "updates": None, "eval_every": 0,
                            "eval_times": int(evaluations), "checkpoint_every": 0, "evaluate_on": "validation",
                            "trace": None})
    return run.to_dict()


def pilot_run(config: dict[str, Any]) -> dict[str, Any]:
    """One pilot (a job of :func:`aflqueue.jobs.run_jobs`): train on the validation split and
    return the curves, the score (mean validation accuracy over the run's budget) and the cost."""

    from .pipeline import prepare, train  # lazy: numba

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_updates(TrainConfig.from_dict(config), output=tmp)
        res = train(cfg, prepared=prepare(cfg))
    return {**_pilot_record(cfg, res, time.perf_counter() - t0), "execution": "serial"}


Runner = Callable[[list[tuple[str, dict[str, Any]]]], list[dict[str, Any]]]


def pilot_runs(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pilots replica-batched (a batched job: :func:`aflqueue.replicated.train_replicas`); the
    records of :func:`pilot_run`, each saying how it was computed (``execution``)."""
    import torch  # lazy: torch

    from .replicated import train_replicas  # lazy: numba

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    cfgs = [TrainConfig.from_dict(c) for c in configs]
    results = train_replicas(cfgs, write_outputs=False)
    wall = (time.perf_counter() - t0) / max(len(cfgs), 1)
    return [_pilot_record(cfg, res, wall) for cfg, res in zip(cfgs, results)]


def pilot_run_batched(config: dict[str, Any]) -> dict[str, Any]:
    """One pilot through the replica trainer (R = 1): the record :func:`pilot_runs` gives it in a
    batch of any size, bit for bit."""
    return pilot_runs([config])[0]


def check_pilot_score_record(record: dict[str, Any]) -> None:
    """A saved pilot record (:func:`pilot_run`) holds what the recommendation reads: ``score`` in
    ``[0, 1]`` and the fields of every run record (:func:`~aflqueue.outcomes.check_run_record`);
    else :class:`~aflqueue.errors.ValidationError` naming the field."""
    check_number(record.get("score"), "score", 0.0, 1.0)
    check_run_record(record)


def _pilot_record(cfg: TrainConfig, res, wall: float) -> dict[str, Any]:
    return {"score": score_curves(res.curves, float(cfg.run.time_budget)), "curves": res.curves,
            "arrivals": int(res.arrivals), "diverged": bool(res.diverged), "final_accuracy": res.final_accuracy,
            "execution": res.meta.get("execution", "serial"), "timing": {"wall_time": wall}}


def job_runner(output: str | Path, *, backend: str = "serial", workers: int | None = None,
               progress: Callable[[str], None] | None = None, code: Sequence[str | Path] = (),
               batched: bool = False, max_batch: int = 32) -> Runner:
    """Pilots as resumable jobs under ``output``, keyed by the content of their configuration: an
    interrupted recommendation resumes, and one with other settings never reuses another's runs.
    ``code``: code outside the package that calls it, stamped into the records (a study's).
    ``batched``: replica-batched (:func:`pilot_runs`), the arms of a round split evenly over the
    workers, at most ``max_batch`` per batch (a lone one still replica-batched, so that no record
    depends on the number of workers); else one run per job (:func:`pilot_run`)."""
    store = JobStore(Path(output))

    def run(jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        size = min(max_batch, max(1, math.ceil(len(jobs) / max(workers or 1, 1)))) if batched else 1
        fn = (pilot_runs if size > 1 else pilot_run_batched) if batched else pilot_run
        records = {r["id"]: r for r in run_jobs(jobs, fn, store, backend=backend, workers=workers, progress=progress,
                                                  code=code, batch=size, check=check_pilot_score_record)}
        return [records[i] for i, _ in jobs]

    return run


# ----------------------------------------------------------------------------------- the plan
UpdatesOf = Callable[[Candidate, float, int], float]
#: A plan over its limit shortens every halving round by this factor at a time ...
SHORTEN = 2 / 3
#: ... while the first round keeps at least this fraction of the budget (3x below the default 1/9).
MIN_FIRST_FRACTION = 1 / 27


def plan_cost(cands: Sequence[Candidate], budget: float, plan: PilotPlan,
              updates: UpdatesOf | None = None) -> dict[str, Any]:
    """Updates the plan spends at most, before any extension (docs/theory.md section 12):
    per halving round (``rounds``), in the final round, in all (``planned``), against the
    comparison it replaces and the ``limit``. ``updates(candidate, fraction, seed)``: the updates
    one run applies in ``fraction`` of the budget (default: its expectation ``lambda x time``;
    :func:`recommend` counts them on the runs' own schedules, so the bound is exact). Rounds after
    the first are bounded by their costliest possible survivors."""
    upd = updates or (lambda c, f, s: c.throughput * f * budget)
    rates, tune_seeds, eval_seeds = plan.comparison
    comparison = sum(c.throughput * budget * (rates * tune_seeds + eval_seeds) for c in cands)
    base = next(c for c in cands if c.name == "asyncsgd")
    others = [c for c in cands if c.name != "asyncsgd"]
    s0, k = plan.seeds[0], len(plan.lr_factors)
    rounds = [k * sum(upd(c, plan.fractions[0], s0) for c in cands)]
    alive = len(others)
    for frac in plan.fractions[1:]:  # survivors of the round before (AsyncSGD always among them)
        alive = min(len(others), max(plan.finalists, math.ceil((alive + 1) * plan.keep)))
        dearest = sorted((upd(c, frac, s0) for c in others), reverse=True)[:alive]
        rounds.append(3 * (upd(base, frac, s0) + sum(dearest)))
    n_final = min(len(others), plan.finalists)
    final = sum(upd(base, 1.0, s) + sum(sorted((upd(c, 1.0, s) for c in others), reverse=True)[:n_final])
                for s in plan.seeds)
    return {"rounds": rounds, "halving": sum(rounds), "final": final, "planned": sum(rounds) + final,
            "comparison": comparison, "limit": plan.pilot_fraction * comparison,
            "fractions": list(plan.fractions), "finalists": n_final}


def schedule_updates(cfg: TrainConfig, budget: float) -> UpdatesOf:
    """``updates(candidate, fraction, seed)`` counted on the schedule that pilot would replay (the
    trace :func:`aflqueue.pipeline.simulate_for_budget` draws for it: the same seed, routing and
    concurrency), so a plan's cost is known exactly before any training."""
    from .pipeline import simulate_for_budget  # lazy: numba

    system = build_system(cfg, cfg.data.clients)
    memo: dict[tuple[str, float, int], int] = {}

    def count(c: Candidate, fraction: float, seed: int) -> int:
        key = (c.key(), float(fraction), int(seed))
        if key not in memo:
            t = fraction * budget
            tr = simulate_for_budget(system.with_routing(c.routing).with_concurrency(c.concurrency), int(seed),
                                     None, t)
            memo[key] = int(np.sum(tr.completion_time[tr.update_order] <= t))
        return memo[key]

    return count


def _arms_of(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r["candidate"] == name]


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # ties: the smaller rate, the safer choice (as in aflqueue.tuning)
    return max(rows, key=lambda r: (round(r["score"], 12), -r["lr"]))


def _extension(rows: list[dict[str, Any]], factor: float) -> float | None:
    """The next rate out when the best of ``rows`` (one candidate, one round) is at an edge."""
    lrs = sorted({r["lr"] for r in rows})
    best = _best(rows)["lr"]
    if len(lrs) >= 1 and best == lrs[-1]:
        return best * factor
    if len(lrs) >= 1 and best == lrs[0]:
        return best / factor
    return None


def _halving(cfg, cands: dict[str, Candidate], budget: float, plan: PilotPlan, runner: Runner,
             log: list[dict[str, Any]], cost: dict[str, Any], count: UpdatesOf) -> dict[str, float]:
    """The halving rounds; returns the best rate of AsyncSGD and of each finalist. An extension
    runs only while the later rounds' planned updates still fit under the limit."""
    lrs = {c.name: sorted(cfg.local.lr * c.step_ratio * f for f in plan.lr_factors) for c in cands.values()}
    alive, seed, best = list(cands), plan.seeds[0], {}
    rows: list[dict[str, Any]] = []
    for i, frac in enumerate(plan.fractions):
        rows = _run_arms(cfg, cands, [(nm, lr) for nm in alive for lr in lrs[nm]], frac, budget, seed, plan, runner,
                         log, round_=i)
        for nm in alive:
            # out from an edge until the best rate is interior (or the pilot budget is spent: flagged)
            reserve = sum(cost["rounds"][i + 1:]) + cost["final"]
            while (nxt := _extension(_arms_of(rows, nm), plan.extend_factor)) is not None and \
                    sum(r["updates"] for r in log) + count(cands[nm], frac, seed) + reserve <= cost["limit"]:
                rows += _run_arms(cfg, cands, [(nm, nxt)], frac, budget, seed, plan, runner, log, round_=i)
            best[nm] = _best(_arms_of(rows, nm))["lr"]
        ranked = [nm for nm in sorted(alive, key=lambda nm: -_best(_arms_of(rows, nm))["score"]) if nm != "asyncsgd"]
        last = i + 1 == len(plan.fractions)
        keep = plan.finalists if last else max(plan.finalists, math.ceil(len(alive) * plan.keep))  # as in plan_cost
        alive = ["asyncsgd", *ranked[:keep]]
        step = math.sqrt(plan.extend_factor)  # the next round looks closer around each best rate
        lrs = {nm: [best[nm] / step, best[nm], best[nm] * step] for nm in alive}
    return {nm: best[nm] for nm in alive}


def _run_arms(cfg, cands, arms, frac, budget, seed, plan, runner, log, round_) -> list[dict[str, Any]]:
    jobs, meta = [], []
    for name, lr in arms:
        conf = arm_config(cfg, cands[name], lr, frac * budget, seed, plan.evaluations)
        jobs.append((f"{name}__lr{lr:.4g}__f{frac:.4g}__s{seed}__{json_digest(conf)}", conf))
        meta.append({"candidate": name, "lr": float(lr), "fraction": float(frac), "seed": int(seed), "round": round_})
    rows = []
    for m, rec in zip(meta, runner(jobs)):
        row = {**m, "score": float(rec["score"]), "updates": int(rec["arrivals"]), "diverged": bool(rec["diverged"]),
               "final_accuracy": rec["final_accuracy"], "curves": rec["curves"]}
        rows.append(row)
        log.append({k: v for k, v in row.items() if k != "curves"})
    return rows


def _final(cfg, cands, best, budget, plan, runner, log) -> tuple[float, dict[str, dict[str, Any]]]:
    """Whole-budget runs of the finalists and AsyncSGD on every pilot seed: the target and the
    per-seed time ratios."""
    rows = {s: {} for s in plan.seeds}
    for s in plan.seeds:
        for r in _run_arms(cfg, cands, list(best.items()), 1.0, budget, s, plan, runner, log, round_=len(plan.fractions)):
            rows[s][r["candidate"]] = r
    base = [rows[s]["asyncsgd"]["final_accuracy"] for s in plan.seeds]
    base = [a for a in base if a is not None and math.isfinite(a)]
    require(bool(base), "pilots", "AsyncSGD's pilot runs all diverged: lower local.lr")
    target = math.floor(plan.target_fraction * float(np.mean(base)) * 100) / 100
    out = {}
    for name in best:
        if name == "asyncsgd":
            continue
        ratios = []
        for s in plan.seeds:
            ta = time_to_target(rows[s]["asyncsgd"]["curves"], target)
            tc = time_to_target(rows[s][name]["curves"], target)
            ratios.append(math.inf if tc is None or ta is None or ta <= 0 else tc / ta)
        out[name] = {"lr": best[name], "ratios": ratios, "ratio": _geomean(ratios)}
    return target, out


def _geomean(x: Sequence[float]) -> float:
    x = np.asarray(x, dtype=float)
    if np.any(~np.isfinite(x)):
        return math.inf
    return float(np.exp(np.mean(np.log(x))))


def prediction_interval(ratios: Sequence[float], calibration: Calibration) -> tuple[float, tuple[float, float] | None]:
    """``(sigma, interval)`` of a finalist's pilot ratios (docs/theory.md section 12):
    ``sigma = sqrt(s^2 / S + floor^2)`` with ``s`` the standard deviation of the ``S`` per-seed log
    ratios, and the interval ``ratio x exp(+- q sigma)`` (None without a calibrated ``q`` or for a
    candidate that never reached the target)."""
    x = np.asarray(ratios, dtype=float)
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        return math.inf, None
    logs = np.log(x)
    s2 = float(np.var(logs, ddof=1)) / logs.size if logs.size > 1 else 0.0
    sigma = math.sqrt(s2 + calibration.sigma_floor ** 2)
    if calibration.quantile is None:
        return sigma, None
    r, h = float(np.exp(logs.mean())), calibration.quantile * sigma
    return sigma, (r * math.exp(-h), r * math.exp(h))


# ----------------------------------------------------------------------------------- entry point
def recommend(cfg: TrainConfig, *, updates: float | None = None, names: Sequence[str] = tuple(CANDIDATES),
              plan: PilotPlan = PilotPlan(), calibration: Calibration = Calibration(),
              output: str | Path | None = None, backend: str = "serial", workers: int | None = None,
              runner: Runner | None = None, constants: ProxyConstants | None = None,
              candidates: Sequence[Candidate] | None = None, updates_of: UpdatesOf | None = None,
              batched: bool = False, progress: Callable[[str], None] | None = None) -> Recommendation:
    """Choose an operating point for ``cfg`` from pilot runs (module docstring; section 12).

    ``updates``: ``U0``, the AsyncSGD updates whose expected time is the budget (default
    ``cfg.run.updates``; ``cfg.run.time_budget``, when set, is the budget itself). The pilots are
    resumable jobs under ``output`` (a temporary folder when None) on ``backend``, replica-batched
    with ``batched`` (:func:`job_runner`); ``runner``
    replaces that (e.g. replica-batched training); ``constants``: the proxy constants the
    candidates are optimised with (default: calibrated at the initial model); ``candidates``: the
    operating points to try instead of those of ``names`` (one must be named ``"asyncsgd"``);
    ``updates_of``: how many updates a pilot applies (default: counted on its schedule)."""

    t0 = time.perf_counter()
    require(cfg.data.validation_fraction > 0, "data.validation_fraction",
            "the pilots score on a validation split: set data.validation_fraction (e.g. 0.1)")
    require(cfg.local.steps == 1, "local.steps", "the candidates' step rule assumes one local step per task")
    system = build_system(cfg, cfg.data.clients)
    lam_u = analyze(system.with_routing(uniform_routing(system.n))).throughput
    if cfg.run.time_budget is not None and updates is None:
        budget = float(cfg.run.time_budget)
        U0 = budget * lam_u
    else:
        U0 = float(updates if updates is not None else (cfg.run.updates or 0))
        require(U0 > 0, "run.updates", "the budget needs run.updates (U0) or run.time_budget")
        budget = time_budget(system, U0)
    if candidates is None and constants is None:
        constants = initial_constants(cfg)
    points = list(candidates) if candidates is not None else candidates_for(cfg, names, budget, U0, constants)
    require(any(c.name == "asyncsgd" for c in points), "candidates", "must include asyncsgd, the baseline")
    cands = {c.name: c for c in points}
    count = updates_of or schedule_updates(cfg, budget)
    cost = plan_cost(list(cands.values()), budget, plan, count)
    while cost["planned"] > cost["limit"] and plan.finalists > 1:  # fewer finalists before refusing
        plan = replace(plan, finalists=plan.finalists - 1)
        cost = plan_cost(list(cands.values()), budget, plan, count)
    # then shorter halving rounds: a ranking on less of the budget beats no recommendation, down to
    # a floor below which the first round's runs say little (section 12)
    while cost["planned"] > cost["limit"] and plan.fractions[0] * SHORTEN >= MIN_FIRST_FRACTION * (1 - 1e-12):
        plan = replace(plan, fractions=tuple(f * SHORTEN for f in plan.fractions))
        cost = plan_cost(list(cands.values()), budget, plan, count)
    require(cost["planned"] <= cost["limit"], "plan",
            f"the pilots would spend about {cost['planned']:.3g} updates, more than {plan.pilot_fraction:.0%} of the "
            f"{cost['comparison']:.3g} of the comparison they replace; use fewer candidates or rates")
    log: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aflqueue-pilots-") as tmp:
        run = runner or job_runner(output if output is not None else tmp, backend=backend, workers=workers,
                                   progress=progress, batched=batched)
        best = _halving(cfg, cands, budget, plan, run, log, cost, count)
        target, finalists = _final(cfg, cands, best, budget, plan, run, log)
    return _decide(cands, best, finalists, target, budget, log, cost, calibration, constants, time.perf_counter() - t0)


def _decide(cands, best, finalists, target, budget, log, cost, calibration, constants, wall) -> Recommendation:
    name = min(finalists, key=lambda nm: finalists[nm]["ratio"]) if finalists else "asyncsgd"
    ratio = finalists[name]["ratio"] if finalists else math.inf
    sigma, interval = prediction_interval(finalists[name]["ratios"], calibration) if finalists else (math.inf, None)
    keep = not ratio < 1.0
    chosen = cands["asyncsgd"] if keep else cands[name]
    edges = sorted({r["candidate"] for r in log if _at_edge(log, r["candidate"], best.get(r["candidate"]))})
    return Recommendation(
        candidate=chosen.name, keep_asyncsgd=keep, routing=chosen.routing, concurrency=chosen.concurrency,
        weight_cap=chosen.weight_cap, lr=float(best["asyncsgd"] if keep else best[name]), predicted_ratio=ratio,
        interval=interval, confidence=calibration.confidence, sigma=sigma,
        pilot_ratios=list(finalists[name]["ratios"]) if finalists else [], asyncsgd_lr=float(best["asyncsgd"]),
        target=target, time_budget=budget, finalists=finalists, arms=log, at_edge=edges,
        pilot_updates=int(sum(r["updates"] for r in log)), comparison_updates=int(cost["comparison"]),
        calibration=asdict(calibration), points={c.name: c.to_dict() for c in cands.values()},
        constants=None if constants is None else constants.to_dict(), wall_time=wall)


def _at_edge(log: list[dict[str, Any]], name: str, lr: float | None) -> bool:
    """Whether ``lr`` is the smallest or largest rate ``name`` tried at the budget it was chosen at."""
    if lr is None:
        return False
    rows = [r for r in log if r["candidate"] == name and r["round"] < max(x["round"] for x in log)]
    if not rows:
        return False
    last = max(r["round"] for r in rows)
    lrs = sorted({r["lr"] for r in rows if r["round"] == last})
    return len(lrs) > 1 and lr in (lrs[0], lrs[-1])
