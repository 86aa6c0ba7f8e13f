"""The study's report (PROTOCOL.md, statistics and criteria), from the saved records only."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from aflqueue.io import atomic_write, atomic_write_json, read_json
from aflqueue.jobs import JobStore, code_versions
from aflqueue.outcomes import time_to_target
from aflqueue.recommendation import Calibration, conformal_quantile
from aflqueue.stats import holm, log_ratio_interval, sign_flip_test
from validation.recommend.experiment import HELD_IN, HELD_OUT, Regime
from validation.reporting import figure_md

CRITERION = 0.71
CONFIDENCE = 0.90


def load(out: Path) -> dict[str, Any]:
    """Everything saved so far (no computation)."""
    recs = {}
    for p in sorted((out / "recommendations").glob("*.json")):
        recs[p.stem] = read_json(p, "recommendation")
    tuned = read_json(out / "tuned.json", "tuned") if (out / "tuned.json").is_file() else {}
    cells = JobStore(out / "cells").load() if (out / "cells").is_dir() else []
    tuning = JobStore(out / "tuning").load() if (out / "tuning").is_dir() else []
    pilots = {d.name: JobStore(d).load() for d in sorted((out / "pilots").glob("*")) if d.is_dir()}
    return {"tuned": tuned, "recommendations": recs, "cells": cells, "tuning": tuning, "pilots": pilots}


def versions(data: dict[str, Any]) -> tuple[dict[str, dict[str, int]], bool]:
    """The code versions of every kind of record, and whether they are one version (PROTOCOL.md:
    a report refuses verdicts over mixed versions)."""
    by = {"evaluation runs": code_versions(data["cells"]), "tuning runs": code_versions(data.get("tuning", [])),
          "pilot runs": code_versions(r for runs in data.get("pilots", {}).values() for r in runs),
          "recommendations": code_versions(data["recommendations"].values())}
    return by, len({v for counts in by.values() for v in counts}) <= 1


def _times(rec: dict[str, Any], target: float) -> tuple[float, bool, float | None]:
    """(time to target or the budget, reached?, updates applied by then)."""
    m = rec["measured"]
    t = time_to_target(m["curves"], target)
    if t is None:
        return rec["time_budget"], False, None
    k = float(np.interp(t, m["curves"]["time"], m["curves"]["updates"]))
    return t, True, k


def regime_rows(data: dict[str, Any], catalogue: list[Regime]) -> list[dict[str, Any]]:
    """Per regime: the measured ratios over its evaluation seeds and what the criteria need."""
    rows = []
    for r in catalogue:
        rec, tuned = data["recommendations"].get(r.id), data["tuned"].get(r.id)
        if rec is None or tuned is None:
            continue
        by = {}
        for c in data["cells"]:
            rid, arm, *_ = c["id"].split("__")
            if rid == r.id:
                by.setdefault(arm, {})[c["seed"]] = c
        seeds = sorted(set(by.get("asyncsgd", {})) & set(by.get("recommended", {})))
        if len(seeds) < len(r.eval_seeds):
            continue  # the regime's evaluation is not complete
        fam = sum(1 for x in catalogue if x.tier == r.tier)
        rows.append(_row(r, rec, tuned, by, seeds, fam))
    return rows


def _arm_stats(by: dict[str, dict], arm: str, seeds: list[int], target: float, fam: int) -> dict[str, Any]:
    """One arm against tuned AsyncSGD over the paired seeds (PROTOCOL.md, statistics)."""
    logs, censored, k_ratio, lam_ratio = [], 0, [], []
    for s in seeds:
        ta, _, ka = _times(by["asyncsgd"][s], target)
        tr, reached, kr = _times(by[arm][s], target)
        censored += not reached
        logs.append(math.log(tr / ta))
        if ka and kr:
            k_ratio.append(kr / ka)
        ma, mr = by["asyncsgd"][s]["measured"], by[arm][s]["measured"]
        lam_ratio.append((mr["arrivals"] / mr["simulated_time"]) / (ma["arrivals"] / ma["simulated_time"]))
    logs = np.asarray(logs)
    # one-sided at 1 - 0.05/fam (Bonferroni over the tier): the upper end of the two-sided interval
    # at 1 - 2 (0.05/fam)
    ub = log_ratio_interval(np.exp(logs), 1 - 2 * 0.05 / fam).hi if logs.size > 1 else math.inf
    ci = log_ratio_interval(np.exp(logs), 0.95) if logs.size > 1 else None
    return {"ratio": math.exp(logs.mean()), "upper": ub, "censored": censored,
            "interval": None if ci is None else (ci.lo, ci.hi),
            "p_slower": sign_flip_test(logs, "greater").p_value,
            "update_ratio": float(np.exp(np.mean(np.log(k_ratio)))) if k_ratio else None,
            "throughput_ratio": float(np.exp(np.mean(np.log(lam_ratio))))}


def _row(r: Regime, rec: dict[str, Any], tuned: dict[str, Any], by: dict[str, dict], seeds: list[int],
         fam: int) -> dict[str, Any]:
    target = tuned["target"]
    main = _arm_stats(by, "recommended", seeds, target, fam)
    finalist = _arm_stats(by, "finalist", seeds, target, fam) if "finalist" in by else None
    best = _best(rec)
    predicted = rec["finalists"][best]["ratio"] if best else None
    point = rec["points"].get(rec["candidate"] if not rec["keep_asyncsgd"] else best, {})
    return {"regime": r, "candidate": rec["candidate"], "keep": rec["keep_asyncsgd"], "best_finalist": best,
            "lr": rec["lr"], "asyncsgd_lr": tuned["lr"], "tuned_at_edge": tuned["at_edge"],
            "pilot_at_edge": rec["at_edge"], "target": target, "seeds": len(seeds), **main,
            # the prediction is the best finalist's: measured on the recommended arm, or on the finalist's
            # own arm where AsyncSGD was kept
            "predicted_measured": (finalist or main)["ratio"], "finalist": finalist,
            "predicted": predicted, "sigma": rec["sigma"], "pilot_ratios": rec["pilot_ratios"],
            "pilot_updates": rec["pilot_updates"], "comparison_updates": rec["comparison_updates"],
            "pilot_wall": rec.get("wall"),
            "exact_throughput_ratio": point.get("throughput", math.nan) / rec["points"]["asyncsgd"]["throughput"]}


def _best(rec: dict[str, Any]) -> str | None:
    f = rec.get("finalists") or {}
    if not f:
        return None
    return min(f, key=lambda k: math.inf if f[k]["ratio"] is None else f[k]["ratio"])


def calibration(rows: list[dict[str, Any]], held_in: int) -> tuple[float | None, list[float]]:
    """The held-in quantile ``q`` of ``|log(measured / predicted)| / sigma`` (PROTOCOL.md)."""
    errors = [abs(math.log(x["predicted_measured"] / x["predicted"])) / x["sigma"] for x in rows
              if x["regime"].tier == "held-in" and x["predicted"] and math.isfinite(x["predicted"])
              and math.isfinite(x["sigma"])]
    complete = sum(1 for x in rows if x["regime"].tier == "held-in") == held_in
    return (conformal_quantile(errors, CONFIDENCE) if complete else None), errors


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def write_report(out: str | Path, catalogue: list[Regime] | None = None, figures: str | Path | None = None) -> Path:
    """``report.md`` in ``out`` from the saved records (PROTOCOL.md), with the study's figures
    (:mod:`validation.recommend.figures`) drawn into ``figures`` and linked when it is given."""
    out = Path(out)
    catalogue = list(catalogue or HELD_IN + HELD_OUT)
    n_in = sum(1 for r in catalogue if r.tier == "held-in")
    n_out = len(catalogue) - n_in
    data = load(out)
    rows = regime_rows(data, catalogue)
    q, errors = calibration(rows, n_in)
    held_out = [x for x in rows if x["regime"].tier == "held-out"]
    lines = ["# The recommendation on held-out regimes", "",
             "Protocol: `validation/recommend/PROTOCOL.md` (committed before any run). Every number below is "
             "computed by `validation/recommend/report.py` from the saved records.", ""]
    by_kind, one_version = versions(data)
    lines += [f"Records: {len(data['cells'])} evaluation runs, {len(data['recommendations'])} recommendations; "
              f"code versions of the evaluation runs: {by_kind['evaluation runs']}.", ""]
    if not one_version:
        lines += ["**Mixed code versions: no verdict** (every record must be at one version): "
                  + "; ".join(f"{k}: {v}" for k, v in by_kind.items()) + ".", ""]
    lines += _calibration_lines(q, errors, n_in)
    lines += _table(rows, q)
    lines += _verdicts(held_out, q, n_out) if one_version else []
    lines += _cost(data, catalogue)
    if figures is not None and rows:
        from validation.recommend.figures import recommend_figures

        lines += ["## Figures", ""] + [figure_md(f, out, cap) for f, cap in
                                       recommend_figures(rows, q, CRITERION, figures)]
    atomic_write(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n"))
    if q is not None and one_version:  # what aflqueue recommend --calibration reads
        cal = Calibration.from_errors(errors, CONFIDENCE, source=f"{len(errors)} held-in regimes of "
                                      "validation/recommend (MNIST-1D, MLP, n = 100, five speed types)")
        atomic_write_json(out / "calibration.json", asdict(cal))
    return out / "report.md"


def _calibration_lines(q: float | None, errors: list[float], n_in: int) -> list[str]:
    if q is None:
        return [f"**Calibration:** {len(errors)} of {n_in} held-in regimes complete (or too few for a finite "
                "quantile); no interval yet.", ""]
    return [f"**Calibration:** the 90% split-conformal quantile of the {len(errors)} held-in normalised errors is "
            f"q = {q:.3g} (errors: {', '.join(f'{e:.2f}' for e in sorted(errors))}).", ""]


def _table(rows: list[dict[str, Any]], q: float | None) -> list[str]:
    head = ["| regime | n | model | spread | partition | m | recommended | lr | AsyncSGD lr | target | measured "
            "ratio (seeds) | 95% FW upper | censored | p slower | predicted [90% PI] | pilot share |",
            "|" + "---|" * 16]
    body = []
    for x in rows:
        r = x["regime"]
        pi = "" if q is None or not x["predicted"] or not math.isfinite(x["predicted"]) else \
            f" [{_fmt(x['predicted'] * math.exp(-q * x['sigma']))}, {_fmt(x['predicted'] * math.exp(q * x['sigma']))}]"
        name = ("keep AsyncSGD (finalist " + str(x["best_finalist"]) + ")") if x["keep"] else x["candidate"]
        edge = " (edge)" if x["tuned_at_edge"] else ""
        fin = x["finalist"]
        measured = _fmt(x["ratio"]) + (f"; finalist {_fmt(fin['ratio'])}" if fin else "")
        body.append(f"| {r.id} | {r.n} | {r.model} | {r.spread:g} | {r.partition} | {r.m} | {name} | {_fmt(x['lr'])} | "
                    f"{_fmt(x['asyncsgd_lr'])}{edge} | {x['target']:.2f} | {measured} ({x['seeds']}) | "
                    f"{_fmt(x['upper'])} | {x['censored']} | {_fmt(x['p_slower'])} | {_fmt(x['predicted'])}{pi} | "
                    f"{x['pilot_updates'] / x['comparison_updates']:.1%} |")
    return ["## Per regime", ""] + head + body + [""]


def _verdicts(held_out: list[dict[str, Any]], q: float | None, n_out: int) -> list[str]:
    if len(held_out) < n_out or n_out == 0:
        return [f"**Held-out:** {len(held_out)} of {n_out} regimes complete; no verdict yet.", ""]
    passed = [x for x in held_out if x["upper"] < CRITERION and x["censored"] == 0]
    adj = holm([x["p_slower"] for x in held_out])
    slower = [x for x, p in zip(held_out, adj) if p < 0.05]
    need = math.ceil(2 * n_out / 3)
    primary = len(passed) >= need and not slower
    lines = ["## Verdicts (held-out)", "",
             f"- **Primary: {'PASSED' if primary else 'NOT PASSED'}.** The family-wise 95% upper bound is below "
             f"{CRITERION} in {len(passed)} of {len(held_out)} regimes (needed: {need}); "
             f"significantly slower (Holm, 0.05) in {len(slower)}."]
    if q is not None:
        covered = [x for x in held_out if x["predicted"] and math.isfinite(x["predicted"])
                   and abs(math.log(x["predicted_measured"] / x["predicted"])) <= q * x["sigma"]]
        need_cov = math.ceil(0.8 * n_out)
        lines.append(f"- **Calibration: {'PASSED' if len(covered) >= need_cov else 'NOT PASSED'}.** The 90% prediction "
                     f"interval contains the measured ratio in {len(covered)} of {len(held_out)} regimes "
                     f"(needed: {need_cov}).")
    keeps = [x for x in held_out if x["keep"]]
    wrong = [x for x in keeps if x["finalist"] and x["finalist"]["upper"] < CRITERION and x["finalist"]["censored"] == 0]
    lines.append(f"- **Abstentions:** {len(keeps)} (keep AsyncSGD); wrong (the best finalist met the criterion): "
                 f"{len(wrong)}{' (' + ', '.join(x['regime'].id for x in wrong) + ')' if wrong else ''}.")
    lines += ["", "## Diagnosis: queueing part and learning part", "",
              "| regime | throughput ratio measured (exact) | update ratio to target measured |", "|---|---|---|"]
    for x in held_out:
        lines.append(f"| {x['regime'].id} | {_fmt(x['throughput_ratio'])} ({_fmt(x['exact_throughput_ratio'])}) | "
                     f"{_fmt(x['update_ratio'])} |")
    return lines + [""]


def _cost(data: dict[str, Any], catalogue: list[Regime]) -> list[str]:
    """Pilot cost and compute per stage (PROTOCOL.md, reported besides). A run's compute is its
    saved wall time (a replica batch's time split evenly over its runs), summed over the runs:
    core-seconds, not elapsed time."""
    def compute(records: list[dict[str, Any]]) -> tuple[int, float]:
        return len(records), sum(float((r.get("timing") or {}).get("wall_time") or 0.0) for r in records)

    def of(records: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
        return [r for r in records if r["id"].split("__")[0] == rid]

    lines = ["## Cost and compute", "",
             "Core-seconds: the runs' saved wall times summed over a stage (not elapsed time).", "",
             "| regime | tuning runs (core-s) | pilot runs (core-s) | pilot updates (share of the comparison) | "
             "evaluation runs (core-s) |", "|---|---|---|---|---|"]
    totals = np.zeros(6)
    for reg in catalogue:
        rec = data["recommendations"].get(reg.id)
        t = compute(of(data.get("tuning", []), reg.id))
        p = compute(data.get("pilots", {}).get(reg.id, []))
        c = compute(of(data["cells"], reg.id))
        if not (rec or t[0] or p[0] or c[0]):
            continue
        totals += [*t, *p, *c]
        share = (f"{rec['pilot_updates']:,} ({rec['pilot_updates'] / rec['comparison_updates']:.1%})" if rec
                 else "no recommendation")
        lines.append(f"| {reg.id} | {t[0]} ({t[1]:.0f}) | {p[0]} ({p[1]:.0f}) | {share} | {c[0]} ({c[1]:.0f}) |")
    lines += [f"| total | {totals[0]:.0f} ({totals[1]:.0f}) | {totals[2]:.0f} ({totals[3]:.0f}) | | "
              f"{totals[4]:.0f} ({totals[5]:.0f}) |", ""]
    return lines
