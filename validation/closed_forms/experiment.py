"""Closed forms vs discrete-event simulation (docs/theory.md sections 2-4 and 8, step 2).

For a list of named systems (scenarios) and service-time laws, simulate the network, estimate
every steady-state metric with a 95% batch-means confidence interval and compare it with the
exact product-form value of :func:`aflqueue.queueing.analyze`:

* exponential service: the closed forms are exact, so every metric should sit inside (or, for
  about 5% of them, just outside) its interval;
* deterministic, gamma, lognormal and Weibull compute times: the closed forms only use the
  mean, and the deviation is quantified (relative deviation and z-score);
* multi-stage systems (FIFO and delay communication stages, FIFO and delay central server):
  the per-client delay formula of docs/theory.md section 4,
  ``E[D_i] = E_{m-1}[Y_i] / p_i + E_{m-1}[X_cs]``, is checked against simulation next to three
  plausible wrong variants, to show the check has the power to reject a wrong formula;
* two small exponential systems: the whole law of the relative delay ``D`` against the exact
  tagged-task CTMC (total variation distance and tail probabilities).

Every (scenario, law) pair and every delay-law system is one job of
:func:`aflqueue.jobs.run_jobs`, so an interrupted experiment resumes job by job (records stamped
with the package's and this study's code, :data:`CODE`).

Results folder (``out``):

* ``cells/<id>.json`` -- one record per job, id ``<scenario>__<law>__<quick|full>__s<seed>`` or
  ``delaylaw__<system>__<quick|full>__s<seed>``; each holds its ``settings`` (updates, seed,
  estimator settings, system), and a record with other settings is recomputed;
* ``timings/<id>.json`` -- simulation and estimation seconds of that job;
* ``closed_forms.json`` -- the records of one invocation (quick or full, one base seed)
  assembled into ``{"meta", "scenarios": {name: {"title", "multistage", "groups", "runs"}},
  "delay_distribution": {name: record}}``, timings merged back under ``sim_seconds`` and
  ``estimate_seconds``; the report (:func:`validation.closed_forms.report.write_closed_forms_report`)
  and the figures (:func:`validation.closed_forms.figures.closed_forms_figures`) read only this file.

Conventions: relative deviation = (simulated - closed form) / closed form, so "+2%" means the
simulation is 2% above the formula. z = (simulated - closed form) / se with
``se = half_width / t_{0.975, B-1}`` (the standard error behind the batch-means t-interval with
``B`` batches; 1.96 would overstate z by ~7% at B = 20).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aflqueue.errors import check_integer
from aflqueue.io import atomic_write_json, read_json
from aflqueue.jobs import JobStore, run_jobs
from aflqueue.laws import law_from_spec
from aflqueue.stats import Estimate, batch_means, t_interval, z_score
from aflqueue.system import System
from validation import code

__all__ = ["Scenario", "scenarios", "small_systems", "client_types", "compare", "run_law", "delay_formula_check",
           "delay_law_check", "jobs_of", "run_closed_forms", "assemble", "load_results", "LAWS", "QUICK_LAWS",
           "SEED_STRIDE", "UPDATES", "UPDATES_QUICK", "RESULTS_FILE", "CODE"]

FORMAT_VERSION = 2  # 1: one JSON file rewritten per scenario; 2: one record per job (module docstring)
RESULTS_FILE = "closed_forms.json"
#: The code outside the package that computes this study's records (stamped into them).
CODE = code("closed_forms")
WARMUP = 0.1  # fraction of updates discarded as warm-up
BATCHES = 20
CONFIDENCE = 0.95

# Compute-time laws (spec, short label). The CV is read from the law itself.
LAWS: tuple[tuple[str, str], ...] = (
    ("exponential", "exponential"),
    ("deterministic", "deterministic"),
    ("gamma:cv=0.5", "gamma cv=0.5"),
    ("lognormal:cv=0.5", "lognormal cv=0.5"),
    ("lognormal:cv=1.5", "lognormal cv=1.5"),
    ("lognormal:cv=3", "lognormal cv=3"),
    ("weibull:shape=0.7", "weibull k=0.7"),
)
QUICK_LAWS = ("exponential", "deterministic", "lognormal:cv=1.5")
# Run k of an invocation with seed s is seeded SEED_STRIDE * s + k: distinct within a run, and
# runs of different seeds never share a seed (hence never share random streams).
SEED_STRIDE = 10_000
DELAY_LAW_SEED_OFFSET = 1000  # delay-law system k uses SEED_STRIDE * s + 1000 + k

# Updates per run. The compiled fast path does millions of updates per second (estimation then
# dominates, ~1 s per million); the SimPy model does ~25-40k/s on the multi-stage systems here.
UPDATES = {"fast": 4_000_000, "simpy": 800_000}
UPDATES_QUICK = {"fast": 100_000, "simpy": 20_000}


# --------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    """A named system; ``build(service)`` returns it with the given compute-time law spec."""

    name: str
    title: str
    build: Callable[[str], System]
    multistage: bool

    def laws(self, quick: bool) -> list[tuple[str, str]]:
        """Laws simulated for this scenario. Multi-stage: exponential only (the formula check)."""
        if self.multistage:
            return [LAWS[0]]
        return [law for law in LAWS if not quick or law[0] in QUICK_LAWS]


EXAMPLE_RATES = [1.0] * 5 + [0.1] * 5
EXAMPLE_NAMES = [f"fast{i}" for i in range(5)] + [f"slow{i}" for i in range(5)]
TYPE_RATES = {"A": 3.0, "B": 1.5, "C": 0.6, "D": 0.25, "E": 0.1}  # 30x spread
FIVE_RATES = [TYPE_RATES[t] for t in TYPE_RATES for _ in range(4)]
FIVE_NAMES = [f"{t}{k}" for t in TYPE_RATES for k in range(4)]
# Non-uniform routing: p_i proportional to sqrt(mu_i) (between uniform and rate-proportional).
FIVE_ROUTING_SQRT = (np.sqrt(FIVE_RATES) / np.sqrt(FIVE_RATES).sum()).tolist()
# Multi-stage systems on the example clients; slow devices also have slow links, and the central
# server (rate 1, about 1.7x the throughput) holds ~1.2 tasks on average, so every term of the
# section-4 formula carries real weight.
DL_RATES = [2.0] * 5 + [0.5] * 5
UL_RATES = [1.0] * 5 + [0.25] * 5


def _example(service: str, **stages: Any) -> System:
    return System.from_rates(EXAMPLE_RATES, concurrency=10, service=service, names=EXAMPLE_NAMES, **stages)


def _five(service: str, routing: list[float] | None = None) -> System:
    return System.from_rates(FIVE_RATES, routing, 20, service=service, names=FIVE_NAMES)


def scenarios() -> list[Scenario]:
    """The scenarios, in report order (single-stage first, then the multi-stage formula check)."""
    links = {"downlink_rates": DL_RATES, "uplink_rates": UL_RATES}
    return [
        Scenario("example", "built-in example: 5 clients at rate 1, 5 at 0.1, uniform, m=10", _example, False),
        Scenario("five_types", "five device types A-E (rates 3, 1.5, 0.6, 0.25, 0.1; 4 each), uniform, m=20",
                 _five, False),
        Scenario("five_types_sqrt", "five device types, routing p_i ~ sqrt(mu_i), m=20",
                 lambda s: _five(s, FIVE_ROUTING_SQRT), False),
        Scenario("ms_fifo", "example + FIFO downlink, FIFO uplink, FIFO central server (rate 1)",
                 lambda s: _example(s, **links, server_rate=1.0), True),
        Scenario("ms_delay_links", "example + delay (infinite-server) downlink and uplink, FIFO central server "
                 "(rate 1)", lambda s: _example(s, **links, downlink_discipline="delay", uplink_discipline="delay",
                                                server_rate=1.0), True),
        Scenario("ms_delay_server", "example + FIFO downlink and uplink, delay central server (rate 0.5)",
                 lambda s: _example(s, **links, server_rate=0.5, server_discipline="delay"), True),
    ]


def small_systems() -> list[tuple[str, str, System]]:
    """Small exponential systems whose exact delay law the tagged-task CTMC can give."""
    return [
        ("small3", "3 clients (rates 1, 0.5, 0.2), routing (0.5, 0.3, 0.2), m=4",
         System.from_rates([1.0, 0.5, 0.2], [0.5, 0.3, 0.2], 4, names=["c0", "c1", "c2"])),
        ("small_multistage", "2 clients (rates 1, 0.25), routing (0.6, 0.4), FIFO downlink 2, FIFO uplink 1, "
         "FIFO server 2, m=3",
         System.from_rates([1.0, 0.25], [0.6, 0.4], 3, downlink_rates=2.0, uplink_rates=1.0, server_rate=2.0,
                           names=["c0", "c1"])),
    ]


def client_types(system: System) -> dict[str, list[int]]:
    """Clients grouped by type: their name without the trailing index (``slow3`` -> ``slow``)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(system.clients):
        groups.setdefault(c.name.rstrip("0123456789") or c.name, []).append(i)
    return groups


# --------------------------------------------------------------------------- comparisons
def _batch_estimate(values: np.ndarray) -> Estimate:
    """Mean and t-interval over ``BATCHES`` contiguous batch means of a (correlated) sequence."""
    return t_interval(batch_means(values, BATCHES), CONFIDENCE)


def compare(metric: str, closed: float, est: Estimate, client: int | None = None,
            group: str | None = None) -> dict[str, Any]:
    """One comparison row: closed form, simulated mean and CI, relative deviation, z, containment."""
    row: dict[str, Any] = {"metric": metric}
    if client is not None:
        row["client"] = client
    if group is not None:
        row["group"] = group
    row.update({"closed_form": float(closed), "sim_mean": float(est.mean), "ci": [float(est.lo), float(est.hi)],
                "rel_dev": (est.mean - closed) / closed if closed != 0 else math.nan,
                "z": z_score(est, closed, CONFIDENCE), "contains": bool(est.contains(closed))})
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates of the primary comparison rows of one run."""
    z = np.array([abs(r["z"]) for r in rows], dtype=float)
    inside = np.array([r["contains"] for r in rows], dtype=bool)
    delay = [r["rel_dev"] for r in rows if r["metric"] == "relative_delay"]
    thr = next(r for r in rows if r["metric"] == "throughput")
    k = int(np.argmax(np.abs(delay)))
    return {"n_metrics": len(rows), "max_abs_z": float(z.max()), "n_abs_z_over_3": int((z > 3).sum()),
            "n_abs_z_over_4": int((z > 4).sum()), "fraction_in_ci": float(inside.mean()),
            "max_rel_dev_delay": float(delay[k]), "rel_dev_throughput": float(thr["rel_dev"]),
            "z_throughput": float(thr["z"])}


# --------------------------------------------------------------------------- one (scenario, law)
def run_law(system: System, updates: int, seed: int, groups: dict[str, list[int]]) -> dict[str, Any]:
    """Simulate ``system`` for ``updates`` updates and compare every metric with its closed form.

    Returns the record: closed form, simulated estimates, comparison rows (primary: throughput,
    mean delay, per-client E[X_i], utilisation, response time, E[D_i], central-server queue),
    per-type delay rows and, for multi-stage systems, the alternative delay formulas; wall-clock
    seconds under ``timing``.
    """
    from aflqueue.queueing import analyze
    from aflqueue.sim import estimate, simulate

    a = analyze(system)
    t0 = time.perf_counter()
    trace = simulate(system, updates, seed=seed, engine="auto")
    t1 = time.perf_counter()
    e = estimate(trace, warmup=WARMUP, batches=BATCHES, confidence=CONFIDENCE)
    t2 = time.perf_counter()
    rows = [compare("throughput", a.throughput, e.throughput),
            compare("mean_relative_delay", a.mean_relative_delay, e.mean_relative_delay)]
    for key in ("mean_queue_lengths", "utilization", "mean_response_times", "relative_delay"):
        cf, sim = getattr(a, key), getattr(e, key)
        rows += [compare(key, float(cf[i]), sim[i], client=i) for i in range(system.n)]
    if a.server is not None:
        rows.append(compare("server_queue", a.server["mean_queue_length"], e.server["mean_queue_length"]))

    # Per type: delay of a task sent to the type, pooled over its clients (task-weighted):
    # closed form sum p_i E[D_i] / sum p_i.
    up = trace.updates()
    k0 = e.warmup_updates
    cl, dl = up["client"][k0:], up["relative_delay"][k0:].astype(float)
    p = system.routing
    group_rows = []
    for g, members in groups.items():
        cf = float(np.sum(p[members] * a.relative_delay[members]) / np.sum(p[members]))
        row = compare("group_relative_delay", cf, _batch_estimate(dl[np.isin(cl, members)]), group=g)
        row["rate"] = float(system.clients[members[0]].rate)
        row["members"] = list(members)
        group_rows.append(row)

    rec: dict[str, Any] = {
        "seed": seed, "updates": updates, "engine": trace.meta.get("engine"),
        "closed_form": a.to_dict(stations=system.is_multistage),
        "simulated": e.to_dict(),
        "comparisons": rows, "group_comparisons": group_rows, "summary": _summary(rows),
        "timing": {"sim_seconds": t1 - t0, "estimate_seconds": t2 - t1, "wall_time": t2 - t0},
    }
    if system.is_multistage:
        rec["delay_formulas"] = delay_formula_check(system, a, e, group_rows, groups)
    return rec


def delay_formula_check(system: System, a: Any, e: Any, group_rows: list[dict[str, Any]],
                        groups: dict[str, list[int]]) -> dict[str, Any]:
    """docs/theory.md section 4's E[D_i] next to three plausible wrong variants, each vs simulation.

    * ``theory``: ``(E_{m-1}[X_d] + E_{m-1}[X_c] + E_{m-1}[X_u]) / p_i + E_{m-1}[X_cs]`` (implemented);
    * ``no_server_term``: drops ``E_{m-1}[X_cs]`` (tasks waiting at the CS update first);
    * ``compute_only``: the single-stage formula ``E_{m-1}[X_c] / p_i + E_{m-1}[X_cs]``;
    * ``time_average``: time-average queues ``E_m[.]`` instead of the arrival theorem's ``E_{m-1}[.]``.

    ``a``/``e``: the closed form and the simulated estimates of ``system``.
    """
    from aflqueue.queueing import analyze

    m = system.concurrency
    prev = analyze(system.with_concurrency(m - 1)) if m > 1 else None
    p = system.routing
    if prev is None:
        x_c_prev = np.zeros(system.n)
        y_prev = np.zeros(system.n)
        cs_prev = 0.0
    else:
        sp = prev.stations
        comp = np.array([s == "compute" for s in sp.stage])
        x_c_prev = np.zeros(system.n)
        x_c_prev[sp.client[comp]] = sp.mean_queue_length[comp]
        y_prev = prev.mean_queue_lengths
        cs_prev = prev.server["mean_queue_length"] if prev.server is not None else 0.0
    cs_now = a.server["mean_queue_length"] if a.server is not None else 0.0
    formulas = {
        "theory": y_prev / p + cs_prev,
        "no_server_term": y_prev / p,
        "compute_only": x_c_prev / p + cs_prev,
        "time_average": a.mean_queue_lengths / p + cs_now,
    }
    # sanity: the implemented formula is what analyze() returns
    assert np.allclose(formulas["theory"], a.relative_delay, rtol=1e-10), "analyze() and section 4 disagree"
    out: dict[str, Any] = {}
    for name, values in formulas.items():
        per_client = [compare("relative_delay", float(values[i]), e.relative_delay[i], client=i)
                      for i in range(system.n)]
        per_group = []
        for g, members in groups.items():
            cf = float(np.sum(p[members] * values[members]) / np.sum(p[members]))
            gr = next(r for r in group_rows if r["group"] == g)
            est = Estimate(gr["sim_mean"], gr["ci"][0], gr["ci"][1], BATCHES)
            per_group.append(compare("group_relative_delay", cf, est, group=g))
        out[name] = {"values": [float(v) for v in values], "sum_p_delay": float(np.sum(p * values)),
                     "per_client": per_client, "per_group": per_group,
                     "max_abs_z": float(max(abs(r["z"]) for r in per_client)),
                     "fraction_in_ci": float(np.mean([r["contains"] for r in per_client]))}
    return out


# --------------------------------------------------------------------------- delay law
def delay_law_check(name: str, title: str, system: System, updates: int, seed: int) -> dict[str, Any]:
    """Empirical law of D per client vs the exact tagged-task CTMC law.

    Records, per client: the TV distance and its sampling-noise reference, a per-bin z-test of
    ``P(D = d)``, tail probabilities ``P(D >= d)`` with batch-means CIs, and both pmfs (the last
    bin holds ``D >= max_delay``; the exact tail beyond it is below 1e-9).
    """
    from aflqueue.queueing import analyze, ctmc
    from aflqueue.sim import delay_distribution, simulate

    exact_full = ctmc.relative_delay_distribution(system, max_delay=400)
    # truncate where the exact tail mass is negligible; the last bin then means "D >= top"
    tail_exact = 1.0 - np.cumsum(exact_full, axis=1)
    top = int(max(np.argmax(tail_exact[i] < 1e-9) for i in range(system.n))) + 1
    exact = exact_full[:, : top + 1].copy()
    exact[:, top] = 1.0 - exact[:, :top].sum(axis=1)
    t0 = time.perf_counter()
    trace = simulate(system, updates, seed=seed, engine="auto")
    sim_s = time.perf_counter() - t0
    emp = delay_distribution(trace, warmup=WARMUP, max_delay=top)
    up = trace.updates()
    k0 = int(round(WARMUP * up["client"].size))
    cl, dl = up["client"][k0:], up["relative_delay"][k0:]
    analysis = analyze(system)
    clients = []
    for i in range(system.n):
        di = dl[cl == i]
        # Per-bin batch means give a standard error for every P(D = d): a per-bin z-test (mean z^2
        # ~ 1.1 for t_19 errors if the laws agree) and the TV distance that sampling noise alone
        # would produce, E sum |N(0, se_d^2)| / 2 = sqrt(2 / pi) sum se_d / 2.
        chunks = np.array([np.bincount(np.minimum(c, top), minlength=top + 1) / c.size
                           for c in np.array_split(di, BATCHES)])
        se = chunks.std(axis=0, ddof=1) / math.sqrt(BATCHES)
        noise = 0.5 * math.sqrt(2.0 / math.pi) * float(se.sum())
        informative = (exact[i] * di.size >= 50) & (se > 0)
        zb = (emp[i] - exact[i])[informative] / se[informative]
        # tail points where the exact tail crosses 0.5, 0.1, 1e-2, ...; only where the run holds
        # enough samples beyond them (>= 20 expected) to say anything
        tail_ex = np.concatenate([[1.0], 1.0 - np.cumsum(exact_full[i])[:-1]])
        points = sorted({int(np.argmax(tail_ex <= lev)) for lev in (0.5, 0.1, 1e-2, 1e-3, 1e-4)
                         if np.any(tail_ex <= lev) and tail_ex[int(np.argmax(tail_ex <= lev))] * di.size >= 20})
        tails = [{"d": d, **compare("tail", float(tail_ex[d]), _batch_estimate((di >= d).astype(float)))}
                 for d in points]
        clients.append({
            "client": i, "name": system.clients[i].name, "samples": int(di.size),
            "tv": 0.5 * float(np.abs(emp[i] - exact[i]).sum()), "tv_noise_reference": noise,
            "bins_tested": int(informative.sum()), "bins_mean_z2": float(np.mean(zb**2)),
            "bins_max_abs_z": float(np.max(np.abs(zb))),
            "exact_mean": float(np.sum(np.arange(exact_full.shape[1]) * exact_full[i])),
            "closed_form_mean": float(analysis.relative_delay[i]),
            "empirical_mean": float(di.mean()),
            "exact_pmf": exact[i].tolist(), "empirical_pmf": emp[i].tolist(), "tails": tails,
        })
    return {"name": name, "title": title, "system": system.to_dict(), "updates": updates, "seed": seed,
            "max_delay": top, "clients": clients,
            "timing": {"sim_seconds": sim_s, "wall_time": time.perf_counter() - t0}}


# --------------------------------------------------------------------------- jobs
def _mode(quick: bool) -> str:
    return "quick" if quick else "full"


def _law_slug(spec: str) -> str:
    return spec.replace(":", "_").replace("=", "")


def _settings(seed: int, updates: int, system: System, law: str) -> dict[str, Any]:
    """What a record must have been computed with to be reused (see :func:`run_jobs`)."""
    return {"format": FORMAT_VERSION, "seed": seed, "updates": updates, "law": law, "warmup": WARMUP,
            "batches": BATCHES, "confidence": CONFIDENCE, "system": system.to_dict()}


def jobs_of(quick: bool, seed: int) -> list[tuple[str, tuple]]:
    """The jobs ``(id, args)`` of one invocation, in report order.

    ``args`` is ``("law", scenario, spec, label, updates, seed)`` or ``("delay_law", index,
    updates, seed)``. Seeds follow the full plan, so ``quick`` (which skips laws) leaves every
    remaining job's seed unchanged."""
    seed = check_integer(seed, "seed", 0)
    budget = UPDATES_QUICK if quick else UPDATES
    jobs: list[tuple[str, tuple]] = []
    index = 0  # global run index over the full plan
    for sc in scenarios():
        updates = budget["simpy" if sc.multistage else "fast"]
        full_plan = sc.laws(False)
        seeds = {spec: SEED_STRIDE * seed + index + k for k, (spec, _) in enumerate(full_plan)}
        index += len(full_plan)
        for spec, label in sc.laws(quick):
            jobs.append((f"{sc.name}__{_law_slug(spec)}__{_mode(quick)}__s{seed}",
                         ("law", sc.name, spec, label, updates, seeds[spec])))
    for k, (name, _, system) in enumerate(small_systems()):
        # a 2-client system is cheap per update in SimPy too, and tails need many samples
        updates = min(2 * budget["simpy"], 1_000_000) if system.is_multistage else 4 * budget["fast"]
        jobs.append((f"delaylaw__{name}__{_mode(quick)}__s{seed}",
                     ("delay_law", k, updates, SEED_STRIDE * seed + DELAY_LAW_SEED_OFFSET + k)))
    return jobs


def _job_settings(args: tuple) -> dict[str, Any]:
    if args[0] == "law":
        _, name, spec, _, updates, seed = args
        return _settings(seed, updates, _scenario(name).build("exponential"), spec)
    _, k, updates, seed = args
    return _settings(seed, updates, small_systems()[k][2], "exponential")


def _scenario(name: str) -> Scenario:
    return next(sc for sc in scenarios() if sc.name == name)


def _run_job(args: tuple) -> dict[str, Any]:
    """Job function of :func:`run_jobs` (module level: picklable for every backend)."""
    if args[0] == "delay_law":
        _, k, updates, seed = args
        name, title, system = small_systems()[k]
        return {"kind": "delay_law", **delay_law_check(name, title, system, updates, seed)}
    _, name, spec, label, updates, seed = args
    sc = _scenario(name)
    rec = run_law(sc.build(spec), updates, seed, client_types(sc.build("exponential")))
    law = law_from_spec(spec, mean=1.0)
    return {"kind": "law", "scenario": name,
            "law": {"spec": spec, "label": label, "family": law.name, "cv": float(law.cv)}, **rec}


def _describe(rec: dict[str, Any]) -> str:
    if rec["kind"] == "delay_law":
        return "TV per client: " + ", ".join(
            f"{c['tv']:.4f} (noise ~{c['tv_noise_reference']:.4f}, bins max|z| {c['bins_max_abs_z']:.1f})"
            for c in rec["clients"])
    s = rec["summary"]
    return (f"max|z|={s['max_abs_z']:.2f}  in CI={s['fraction_in_ci']:.2f}  "
            f"dThr={100 * s['rel_dev_throughput']:+.2f}%  max dE[D]={100 * s['max_rel_dev_delay']:+.1f}%")


# --------------------------------------------------------------------------- driver
def assemble(records: list[dict[str, Any]], quick: bool, seed: int) -> dict[str, Any]:
    """The records of one invocation as the results dict (module docstring), in plan order.

    ``records`` may hold other invocations' records (other modes or seeds): they are left out."""
    by_id = {r["id"]: r for r in records}
    scen: dict[str, Any] = {}
    delay: dict[str, Any] = {}
    for sc in scenarios():
        groups = client_types(sc.build("exponential"))
        scen[sc.name] = {"title": sc.title, "multistage": sc.multistage, "groups": groups, "runs": []}
    used = []
    for job_id, args in jobs_of(quick, seed):
        if job_id not in by_id:
            continue
        used.append(by_id[job_id])
        rec = {k: v for k, v in by_id[job_id].items() if k not in ("timing", "kind")}
        rec.update(by_id[job_id].get("timing") or {})
        if args[0] == "law":
            scen[args[1]]["runs"].append(rec)
        else:
            delay[rec["name"]] = rec
    versions = sorted({(r["code_version"]["source"], r["code_version"].get("commit") or "") for r in used})
    meta = {"format": FORMAT_VERSION, "quick": quick, "seed": seed, "warmup": WARMUP, "batches": BATCHES,
            "confidence": CONFIDENCE, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "z_definition": "(sim - closed) / (half_width / t_{(1+confidence)/2, B-1})",
            "rel_dev_definition": "(sim - closed) / closed",
            "code_versions": [{"source": s, "commit": c or None} for s, c in versions]}
    return {"meta": meta, "scenarios": {k: v for k, v in scen.items() if v["runs"]}, "delay_distribution": delay}


def run_closed_forms(out: str | Path, quick: bool = False, seed: int = 0, fresh: bool = False,
                     progress: Callable[[str], None] | None = print, backend: str = "serial",
                     workers: int | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run every missing job (records with the same settings are reused unless ``fresh``), write
    ``out/closed_forms.json`` and return the assembled results (module docstring).

    ``quick``: ~40x fewer updates and three laws instead of seven (well under a minute);
    ``seed``: base seed ``s`` (run ``k`` uses ``SEED_STRIDE * s + k``); ``limit``: stop after that
    many new jobs (used to test interruption)."""
    out = Path(out)
    jobs = jobs_of(quick, seed)
    records = run_jobs(jobs, _run_job, JobStore(out), backend=backend, workers=workers, progress=progress,
                       limit=limit, describe=_describe, settings=_job_settings, fresh=fresh, code=CODE)
    results = assemble(records, quick, seed)
    atomic_write_json(out / RESULTS_FILE, results)
    return results


def load_results(path: str | Path) -> dict[str, Any]:
    """The results dict saved by :func:`run_closed_forms` (a ``closed_forms.json`` file)."""
    return read_json(path, "closed_forms")
