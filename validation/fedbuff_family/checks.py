"""FedBuff family checks: FedEcho's collapse, and the aggregation weights under non-uniform routing.

Every run is one cell of the grid study (``validation.grid.experiment``, preset ``default``): digits, 20
clients, speed profile ``two-groups`` or ``five-types``, partition IID / Dirichlet(0.5) /
Dirichlet(0.1), 10% of the training data held by the server without labels, local SGD with
lr 0.05, batch 32, ``K = 1`` step, and the grid's simulated-time budget (the time uniform
routing needs for 800 updates). Routing ``uniform`` is AsyncSGD's (``m = n``); ``wallclock`` is
the optimum of P2 with the grid's calibrated constants (``p_min = 1e-3``), i.e. the non-uniform
routing the queueing optimiser hands to every algorithm.

Experiments (``--experiment``):

* ``collapse``: FedEcho under uniform routing, before the fix (``hard_label_max_entropy = 1``:
  the code of commit e80b5b4; its runs on seeds 0-2 are checked bit for bit against the committed
  grid cells) and after it (0.9, the default), next to FedBuff, on the six settings where the grid
  saw the collapse.
* ``weighting``: FedBuff and FedEcho under wallclock routing with ``weighting = "uniform"`` and
  ``"importance"`` (``1/(n p_i)``), paired by seed, on three settings; FedEcho before the fix too,
  to see what the fix costs where FedEcho did not collapse.
* ``weighting-eta10``: FedBuff and FedEcho again with the server step ``eta_g = 10``.
* ``weighting-fedrevive``, ``weighting-fedrevive-eta1``: the same for FedRevive on one setting
  (a run costs ~20x FedEcho's), at its default ``eta_g = 0.1`` and at ``eta_g = 1``.

Server step sizes are the algorithms' defaults (FedBuff/FedEcho ``eta_g = 1``, FedRevive 0.1): the
comparison is between weightings at equal step size, paired by seed; tuning ``eta_g`` per
algorithm came later (the claims, ``run.py``) and is not needed for a paired comparison of
weightings.

Each run is saved under ``validation/fedbuff_family/results/checks/runs/<id>.json`` as it finishes
(deterministic content: wall-clock costs are dropped; stamped with the package's and the two
studies' code); a rerun skips saved runs, so the script resumes after an interruption.
``--summarize`` writes ``results.json`` and ``report.md`` from the runs; ``--report-only``
rewrites ``report.md`` from ``results.json`` (the committed runs/ of the first session were not
kept, only ``results.json``).

Usage (from anywhere)::

    nice -n 10 python validation/fedbuff_family/checks.py --experiment collapse --experiment weighting \
        --experiment weighting-fedrevive --seeds 5
    python validation/fedbuff_family/checks.py --summarize     # results.json and report.md only
    python validation/fedbuff_family/checks.py --report-only   # report.md from results.json
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from validation import code  # noqa: E402

OUT = REPO / "validation" / "fedbuff_family" / "results" / "checks"
#: The code outside the package behind these runs: this study's and the grid study's (its cells).
CODE = code("fedbuff_family", "grid")
SPEEDS = ("two-groups", "five-types")
PARTITIONS = ("iid", "dir0.5", "dir0.1")

#: FedEcho as committed before the fix (e80b5b4): the hard label at every teacher entropy
BEFORE = {"hard_label_max_entropy": 1.0}
AFTER = {"hard_label_max_entropy": 0.9}
UNIFORM, IMPORTANCE = {"weighting": "uniform"}, {"weighting": "importance"}

#: name -> routing, settings (speed, partition), runs (algorithm, parameters, label); every
#: parameter under study is explicit, so a later change of a default does not change a run
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "collapse": {
        "routing": "uniform",
        "settings": [(s, p) for s in SPEEDS for p in PARTITIONS],
        "runs": [("fedbuff", UNIFORM, "fedbuff"), ("fedecho", {**UNIFORM, **BEFORE}, "fedecho-before"),
                 ("fedecho", {**UNIFORM, **AFTER}, "fedecho-after")],
    },
    "weighting": {
        "routing": "wallclock",
        "settings": [("two-groups", "dir0.1"), ("five-types", "dir0.1"), ("five-types", "iid")],
        "runs": [("fedbuff", UNIFORM, "fedbuff-uniform"), ("fedbuff", IMPORTANCE, "fedbuff-importance"),
                 ("fedecho", {**UNIFORM, **AFTER}, "fedecho-uniform"),
                 ("fedecho", {**IMPORTANCE, **AFTER}, "fedecho-importance"),
                 ("fedecho", {**UNIFORM, **BEFORE}, "fedecho-before-uniform")],
    },
    # the same at a 10x larger server step (per arrival, FedBuff's default moves the model by 1/B of
    # Generalized AsyncSGD's step; eta_g = B = 10 matches it): does the choice depend on the step size?
    "weighting-eta10": {
        "routing": "wallclock",
        "settings": [("two-groups", "dir0.1"), ("five-types", "dir0.1"), ("five-types", "iid")],
        "runs": [(alg, {**wt, **extra, "eta_g": 10.0}, f"{alg}-{name}-eta10")
                 for alg, extra in (("fedbuff", {}), ("fedecho", AFTER))
                 for name, wt in (("uniform", UNIFORM), ("importance", IMPORTANCE))],
    },
    # FedRevive costs ~20x FedEcho per run (10 KD steps on 8 x 32 samples per stale arrival): one setting
    "weighting-fedrevive": {
        "routing": "wallclock",
        "settings": [("two-groups", "dir0.1")],
        "runs": [("fedrevive", UNIFORM, "fedrevive-uniform"), ("fedrevive", IMPORTANCE, "fedrevive-importance")],
    },
    # and at a 10x larger server step (eta_g = 1: per arrival, Generalized AsyncSGD's step, B = 1)
    "weighting-fedrevive-eta1": {
        "routing": "wallclock",
        "settings": [("two-groups", "dir0.1")],
        "runs": [("fedrevive", {**wt, "eta_g": 1.0}, f"fedrevive-{name}-eta1")
                 for name, wt in (("uniform", UNIFORM), ("importance", IMPORTANCE))],
    },
}
#: accuracy at or below this = the model predicts (nearly) one class of the 10
COLLAPSED = 0.12
GRID_CELLS = REPO / "validation" / "grid" / "results" / "default" / "cells"


# --------------------------------------------------------------------------------------------- one run
@lru_cache(maxsize=8)
def _prepared(speed: str, partition: str, routing: str, seed: int):
    """Configuration, data, model, routing and schedule of one grid cell (cached: calibration and
    the routing optimisation are shared by every algorithm of the cell)."""
    import torch

    from aflqueue.calibration import calibrate
    from aflqueue.config import with_updates
    from aflqueue.pipeline import build_data_and_model, build_system, prepare
    from aflqueue.protocol import target_epsilon, time_budget
    from validation.grid.experiment import DATASETS, PRESETS, Cell, cell_config

    torch.set_num_threads(1)
    spec, preset = DATASETS["digits"], PRESETS["default"]
    cell = Cell("digits", speed, partition, routing, "fedbuff", seed)
    cfg = cell_config(cell, spec, preset, None, "cpu", "unused")
    data, model = build_data_and_model(cfg)
    system = build_system(cfg, cfg.data.clients)
    tau = time_budget(system, spec.updates)
    if routing == "uniform":
        r = {"kind": "uniform"}
    else:  # as the grid's "wallclock" cells
        constants = calibrate(model, data.clients, seed=cfg.seed).constants
        eps = target_epsilon(system, constants, spec.updates)
        r = {"kind": "optimal", "objective": "wallclock", "constants": constants.to_dict(), "epsilon": eps,
             "p_min": 1e-3, "concurrency_range": []}
    cfg = with_updates(cfg, routing=r, run={"time_budget": tau})
    return cfg, prepare(cfg, data, model), tau


def run_id(routing: str, speed: str, partition: str, label: str, params: dict[str, Any], seed: int) -> str:
    tag = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{routing}__{speed}__{partition}__{label}__{tag}__s{seed}"


def run_one(routing: str, speed: str, partition: str, algorithm: str, params: dict[str, Any], seed: int,
            label: str) -> dict[str, Any]:
    """Train one cell with ``algorithm(**params)``; saved as ``runs/<id>.json`` (skipped if present)."""
    from aflqueue.config import with_updates
    from aflqueue.outcomes import split_timings
    from aflqueue.jobs import code_version
    from aflqueue.io import atomic_write_json
    from aflqueue.pipeline import train

    rid = run_id(routing, speed, partition, label, params, seed)
    path = OUT / "runs" / f"{rid}.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg, pr, tau = _prepared(speed, partition, routing, seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_updates(cfg, output=tmp, algorithm={"name": algorithm, "params": dict(params)})
        pr = dataclasses.replace(pr, config=cfg, model=copy.deepcopy(pr.model))
        t = time.perf_counter()
        res = train(cfg, prepared=pr)
        wall = time.perf_counter() - t
    counts, _ = split_timings(res.costs)
    rec = {"id": rid, "routing": routing, "speed": speed, "partition": partition, "algorithm": algorithm,
           "label": label, "params": params, "seed": seed, "time_budget": tau,
           "routing_p": [float(x) for x in pr.routing], "concurrency": int(pr.system.concurrency),
           "final_accuracy": res.final_accuracy, "final_loss": res.final_loss, "arrivals": res.arrivals,
           "curve": {"time": res.curves["time"], "test_accuracy": res.curves["test_accuracy"]}, "costs": counts,
           "code_version": code_version(CODE)}
    atomic_write_json(path, rec)
    print(f"{rid}: accuracy {res.final_accuracy:.4f} ({wall:.1f} s)", flush=True)
    return rec


def run_experiment(name: str, seeds: int) -> None:
    e = EXPERIMENTS[name]
    for seed in range(seeds):
        for speed, part in e["settings"]:
            for alg, params, label in e["runs"]:
                run_one(e["routing"], speed, part, alg, params, seed, label)
            _prepared.cache_clear()


# --------------------------------------------------------------------------------------------- statistics
def paired(diffs: list[float], boot: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Mean of paired differences with a 95% t-interval (:func:`aflqueue.stats.t_interval`) and a
    95% percentile bootstrap interval of the mean (``boot`` seeded resamples of the pairs)."""
    from aflqueue.stats import t_interval

    d = np.asarray(diffs, dtype=float)
    k = len(d)
    mean = float(d.mean()) if k else math.nan
    if k < 2:
        return {"n": k, "mean": mean, "t95": None, "boot95": None}
    t = t_interval(d, 0.95)
    rng = np.random.default_rng(seed)
    bm = d[rng.integers(0, k, size=(boot, k))].mean(1)
    return {"n": k, "mean": mean, "t95": [t.lo, t.hi],
            "boot95": [float(np.quantile(bm, 0.025)), float(np.quantile(bm, 0.975))]}


def load_runs() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((OUT / "runs").glob("*.json"))]


def _index(runs: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(routing, speed, partition, label, seed) -> run, for the runs of the current definitions."""
    wanted = {run_id(e["routing"], sp, pa, label, params, seed)
              for e in EXPERIMENTS.values() for sp, pa in e["settings"] for _, params, label in e["runs"]
              for seed in range(100)}
    return {(r["routing"], r["speed"], r["partition"], r["label"], r["seed"]): r for r in runs if r["id"] in wanted}


def _grid_cell(routing: str, speed: str, partition: str, algorithm: str, seed: int) -> dict[str, Any] | None:
    p = GRID_CELLS / f"digits__{speed}__{partition}__{routing}__{algorithm}__s{seed}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _compare(by, routing, settings, a_label, b_label) -> dict[str, Any]:
    """Paired differences ``a - b`` of final accuracy per setting and pooled over settings."""
    rows, pooled = [], []
    for sp, pa in settings:
        seeds = sorted(s for (ro, s1, p1, lb, s) in by if (ro, s1, p1, lb) == (routing, sp, pa, a_label)
                       and (routing, sp, pa, b_label, s) in by)
        d = [by[(routing, sp, pa, a_label, s)]["final_accuracy"] - by[(routing, sp, pa, b_label, s)]["final_accuracy"]
             for s in seeds]
        pooled += d
        rows.append({"speed": sp, "partition": pa, "seeds": seeds, **paired(d)})
    return {"a": a_label, "b": b_label, "rows": rows, "pooled": paired(pooled)}


def summarize() -> dict[str, Any]:
    """Collect the saved runs into ``results.json`` and ``report.md``."""
    from aflqueue.fl.algorithms import algorithm_class

    runs = load_runs()
    by = _index(runs)
    out: dict[str, Any] = {"format": 1, "collapsed_at_or_below": COLLAPSED, "experiments": {}}
    for name, e in EXPERIMENTS.items():
        table = []
        for sp, pa in e["settings"]:
            row = {"speed": sp, "partition": pa}
            for _, params, label in e["runs"]:
                acc = [by[k]["final_accuracy"] for k in sorted(by) if k[:4] == (e["routing"], sp, pa, label)]
                row[label] = {"n": len(acc), "mean": statistics.fmean(acc) if acc else None, "values": acc,
                              "collapsed": sum(a <= COLLAPSED for a in acc)}
            table.append(row)
        out["experiments"][name] = {"routing": e["routing"], "table": table,
                                    "runs": [{"algorithm": a, "params": p, "label": lb} for a, p, lb in e["runs"]]}
    c, w, wr = EXPERIMENTS["collapse"], EXPERIMENTS["weighting"], EXPERIMENTS["weighting-fedrevive"]
    out["experiments"]["collapse"]["after_minus_before"] = _compare(by, "uniform", c["settings"], "fedecho-after",
                                                                    "fedecho-before")
    out["experiments"]["collapse"]["after_minus_fedbuff"] = _compare(by, "uniform", c["settings"], "fedecho-after",
                                                                     "fedbuff")
    out["experiments"]["weighting"]["importance_minus_uniform"] = {
        alg: _compare(by, "wallclock", w["settings"], f"{alg}-importance", f"{alg}-uniform")
        for alg in ("fedbuff", "fedecho")}
    out["experiments"]["weighting"]["importance_minus_uniform"]["fedrevive"] = _compare(
        by, "wallclock", wr["settings"], "fedrevive-importance", "fedrevive-uniform")
    w10 = EXPERIMENTS["weighting-eta10"]
    out["experiments"]["weighting-eta10"]["importance_minus_uniform"] = {
        alg: _compare(by, "wallclock", w10["settings"], f"{alg}-importance-eta10", f"{alg}-uniform-eta10")
        for alg in ("fedbuff", "fedecho")}
    out["experiments"]["weighting-eta10"]["importance_minus_uniform"]["fedrevive"] = _compare(
        by, "wallclock", wr["settings"], "fedrevive-importance-eta1", "fedrevive-uniform-eta1")
    out["experiments"]["weighting"]["fedecho_after_minus_before"] = _compare(
        by, "wallclock", w["settings"], "fedecho-uniform", "fedecho-before-uniform")
    # the "before" runs and FedBuff against the committed grid cells (same code path, seeds 0-2)
    checks = []
    for (ro, sp, pa, lb, seed), r in sorted(by.items()):
        alg = {"fedbuff": "fedbuff", "fedbuff-uniform": "fedbuff", "fedecho-before": "fedecho",
               "fedecho-before-uniform": "fedecho"}.get(lb)
        cell = _grid_cell(ro, sp, pa, alg, seed) if alg else None
        if cell is not None:
            checks.append({"run": r["id"], "grid_accuracy": cell["measured"]["final_accuracy"],
                           "identical": cell["measured"]["curves"]["test_accuracy"] == r["curve"]["test_accuracy"]})
    out["grid_reproduction"] = {"runs": len(checks), "identical": sum(x["identical"] for x in checks),
                                "details": checks}
    # the range of the importance weights 1/(n p_i) under each setting's wall-clock routing
    from aflqueue.protocol import largest_importance_weight

    out["importance_weight_range"] = {
        f"{sp} {pa}": [min(1 / (len(r["routing_p"]) * x) for x in r["routing_p"]),
                       largest_importance_weight(r["routing_p"])]
        for (ro, sp, pa, lb, seed), r in sorted(by.items()) if lb == "fedbuff-uniform" and seed == 0}
    out["defaults"] = {a: {k: algorithm_class(a).defaults.get(k) for k in ("weighting", "eta_g", "buffer",
                                                                            "hard_label_max_entropy")}
                       for a in ("fedbuff", "fedecho", "fedrevive")}
    from aflqueue.io import atomic_write_json, atomic_write_text

    stamps = sorted({json.dumps(r.get("code_version"), sort_keys=True) for r in runs})
    out["code_versions"] = [json.loads(s) for s in stamps]
    atomic_write_json(OUT / "results.json", out)
    atomic_write_text(OUT / "report.md", report(out))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ci(d: dict[str, Any]) -> str:
    if d["n"] < 2:
        return "-" if d["n"] == 0 else f"{100 * d['mean']:+.1f} (n = 1)"
    t, b = d["t95"], d["boot95"]
    return f"{100 * d['mean']:+.1f} [t {100 * t[0]:+.1f}, {100 * t[1]:+.1f}; boot {100 * b[0]:+.1f}, {100 * b[1]:+.1f}]"


def _weighting_rows(alg: str, suffix: str, table: list[dict[str, Any]], imu: dict[str, Any]) -> list[str]:
    """Table rows of one algorithm: uniform and importance accuracy per setting, their paired
    difference, and the pooled difference (``suffix`` names the server-step variant)."""
    diffs = {(r["speed"], r["partition"]): r for r in imu["rows"]}
    rows = []
    for row in table:
        k = (row["speed"], row["partition"])
        rows.append(f"| {alg} | {k[0]} | {k[1]} | {_pct(row[f'{alg}-uniform{suffix}']['mean'])} | "
                    f"{_pct(row[f'{alg}-importance{suffix}']['mean'])} | {_ci(diffs[k])} |")
    return rows + [f"| {alg} | all | pooled | | | {_ci(imu['pooled'])} |"]


def report(out: dict[str, Any]) -> str:
    ex = out["experiments"]
    L = ["# FedBuff family checks: FedEcho's collapse and the aggregation weights", "",
         "Generated by `validation/fedbuff_family/checks.py` from the runs under `runs/` (one JSON per run).",
         "Code version(s) of the runs: " + "; ".join(
             "not stamped (runs of branch issue-algos, commits 63488b4-9c56705, made before stamping)" if v is None
             else f"source {v.get('source', '')[:12]}, commit {str(v.get('commit'))[:12]}" for v in out["code_versions"]) + ".",
         "Every run is a cell of the validation grid (preset `default`): digits, 20 clients, 10% unlabeled on the "
         "server, local SGD lr 0.05, batch 32, K = 1 step, budget = the simulated time uniform routing needs for "
         "800 updates. Accuracy = test accuracy at the budget, in %. Differences are paired by seed (same data, "
         "initial model and schedule); intervals are 95%: t on the paired differences and a percentile bootstrap "
         "(10 000 resamples of the seeds).", ""]
    # ---- collapse
    c = ex["collapse"]
    L += ["## 1. FedEcho under uniform routing (m = n), where the grid saw it collapse", "",
          f"Collapsed = accuracy <= {100 * out['collapsed_at_or_below']:.0f}% (one class of 10). Before = "
          "`hard_label_max_entropy = 1` (the code before the fix), after = 0.9 (the default).", "",
          "| speeds | partition | FedBuff | FedEcho before (collapsed) | FedEcho after (collapsed) | after - before | "
          "after - FedBuff |", "|---|---|---|---|---|---|---|"]
    amb = {(r["speed"], r["partition"]): r for r in c["after_minus_before"]["rows"]}
    amf = {(r["speed"], r["partition"]): r for r in c["after_minus_fedbuff"]["rows"]}
    for row in c["table"]:
        k = (row["speed"], row["partition"])
        fb, be, af = row["fedbuff"], row["fedecho-before"], row["fedecho-after"]
        L.append(f"| {k[0]} | {k[1]} | {_pct(fb['mean'])} | {_pct(be['mean'])} ({be['collapsed']}/{be['n']}) | "
                 f"{_pct(af['mean'])} ({af['collapsed']}/{af['n']}) | {_ci(amb[k])} | {_ci(amf[k])} |")
    tot = {lb: (sum(r[lb]["collapsed"] for r in c["table"]), sum(r[lb]["n"] for r in c["table"]))
           for lb in ("fedecho-before", "fedecho-after")}
    (n_be, t_be), (n_af, t_af) = tot["fedecho-before"], tot["fedecho-after"]
    L += [f"| all | pooled | | {n_be}/{t_be} collapsed | {n_af}/{t_af} collapsed | "
          f"{_ci(c['after_minus_before']['pooled'])} | {_ci(c['after_minus_fedbuff']['pooled'])} |", ""]
    g = out["grid_reproduction"]
    L += [f"Reproduction: {g['identical']} of {g['runs']} runs that have a committed grid cell (FedBuff and FedEcho "
          "before the fix, seeds 0-2, `validation/grid/results/default`) give the identical accuracy curve.", ""]
    # ---- weighting
    w = ex["weighting"]
    L += ["## 2. Uniform vs importance weights (1/(n p_i)) under the wall-clock-optimal routing", "",
          "Routing: the grid's `wallclock` cells (P2 optimum, calibrated constants, p_min = 1e-3, m = n). "
          "Server step sizes at their defaults, equal for both weightings (FedBuff, FedEcho eta_g = 1; "
          "FedRevive 0.1).", "",
          "| algorithm | speeds | partition | uniform | importance | importance - uniform |", "|---|---|---|---|---|---|"]
    for alg in ("fedbuff", "fedecho", "fedrevive"):
        L += _weighting_rows(alg, "", ex["weighting-fedrevive"]["table"] if alg == "fedrevive" else w["table"],
                             w["importance_minus_uniform"][alg])
    w10 = ex["weighting-eta10"]
    L += ["", "The same with a 10x larger server step, which per arrival equals Generalized AsyncSGD's "
          "(FedBuff, FedEcho eta_g = 10 = B; FedRevive eta_g = 1, B = 1):", "",
          "| algorithm | speeds | partition | uniform | importance | importance - uniform |", "|---|---|---|---|---|---|"]
    for alg, tag in (("fedbuff", "eta10"), ("fedecho", "eta10"), ("fedrevive", "eta1")):
        L += _weighting_rows(alg, f"-{tag}", ex["weighting-fedrevive-eta1"]["table"] if alg == "fedrevive"
                             else w10["table"], w10["importance_minus_uniform"][alg])
    fab = w["fedecho_after_minus_before"]
    L += ["", "FedEcho after minus before the fix under this routing (uniform weights), where FedEcho did not "
          f"collapse: pooled {_ci(fab['pooled'])}; per setting "
          + "; ".join(f"{r['speed']} {r['partition']} {_ci(r)}" for r in fab["rows"]) + ".", "",
          "## Reading", "",
          "- FedEcho no longer collapses: " + f"{n_be}/{t_be} runs at one class before the fix, {n_af}/{t_af} after; "
          "after the fix FedEcho tracks FedBuff (pooled difference above), since with K = 1 the teachers carry "
          "almost no information beyond the server model. Where FedEcho did not collapse (wall-clock routing), "
          "the fix changes nothing measurable.",
          "- Weighting: the sign of importance - uniform depends on the server step. At the default step "
          "(per arrival 1/10 of Generalized AsyncSGD's) importance weights help FedBuff and FedEcho on the "
          "non-IID splits; at the 10x larger step, which gives far higher accuracy for both weightings, uniform "
          "weights are as good or better, and FedRevive (buffer 1) prefers them at both steps. Under the P2 routing "
          "the weights 1/(n p_i) range over " + ", ".join(f"[{a:.2f}, {b:.2f}] ({k})" for k, (a, b) in
                                                           out["importance_weight_range"].items())
          + ": they amplify the rarely routed, slowest and stalest "
          "clients, which costs more than the bias they remove once the step is large enough to learn. The default "
          "therefore stays `uniform` (FedBuff as published, and its numbers unchanged); `weighting` should be tuned "
          "together with `eta_g` (issue 16, item 4).", "",
          "## Defaults in the code", ""]
    for a, d in out["defaults"].items():
        L.append(f"- {a}: " + ", ".join(f"{k} = {v}" for k, v in d.items() if v is not None))
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    from aflqueue.errors import OneLineArgumentParser, ValidationError
    from aflqueue.io import atomic_write_text, read_json

    ap = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", choices=sorted(EXPERIMENTS), action="append", default=[])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--summarize", action="store_true", help="results.json and report.md from the saved runs")
    ap.add_argument("--report-only", action="store_true", help="report.md from the saved results.json")
    try:
        a = ap.parse_args(argv)
        if a.report_only:
            atomic_write_text(OUT / "report.md", report(read_json(OUT / "results.json", "results")))
            return 0
        for name in a.experiment:
            run_experiment(name, a.seeds)
        if a.summarize or a.experiment:
            summarize()
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
