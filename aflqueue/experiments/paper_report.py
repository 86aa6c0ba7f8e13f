"""Statistics and report of the paper-scale validation (:mod:`aflqueue.experiments.paper`).

The pre-registered criterion (``validation/PROTOCOL.md``): per scenario and treatment, the
geometric mean over evaluation seeds of the paired time ratio ``t_treatment / t_asyncsgd`` to
reach the data set's target accuracy, with a 95% t-interval on the log scale; the criterion is
met when the whole interval lies below ``criterion_ratio`` (0.71: at least 29% less time) and no
treatment run failed to reach the target. Times are interpolated between evaluations. A run that
does not reach the target within the budget (a diverged run never does) enters the ratio with
the budget ``tau`` as its time: for the treatment that is the most favourable value it could
have, so the criterion then also requires that no treatment run is censored; for AsyncSGD it
is unfavourable to the treatment, hence conservative. Secondary: the paired difference of test
accuracy at the end of the budget (equal time), with a bootstrap interval (accuracies live in
[0, 1]). Every number says how many seeds it rests on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..stats import bootstrap_interval, log_ratio_interval, t_quantile
from .outcomes import time_to_target
from .paper import DATASETS, SAFEGUARDS, TREATMENTS, PaperPreset, Scenario

__all__ = ["summarize_paper", "write_paper_report", "code_versions"]


def code_versions(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many records each code version (source hash) produced."""
    out: dict[str, int] = defaultdict(int)
    for r in records:
        v = r.get("code_version") or {}
        out[f"{v.get('source')} (commit {str(v.get('commit'))[:12]})"] += 1
    return dict(out)


def _times(rec: dict[str, Any], target: float) -> tuple[float, bool]:
    """(time to target or the budget if not reached, reached?)."""
    m = rec["measured"]
    t = time_to_target(m["curves"], target, diverged_at_time=m.get("diverged_at_time"))
    return (t, True) if t is not None else (rec["time_budget"], False)


def summarize_paper(preset: PaperPreset, selection: dict[str, Any], records: Sequence[dict[str, Any]],
                    confidence: float = 0.95) -> dict[str, Any]:
    """Per scenario and treatment: reached counts, paired time ratios and accuracy differences
    against tuned AsyncSGD with their intervals, divergences, predicted ratios (module docstring)."""
    by: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[Scenario(**r["scenario"]).id][r["treatment"]][r["seed"]] = r
    n_tests = sum(len([t for t in by[sc.id] if t != "asyncsgd"]) for sc in preset.scenarios() if sc.id in by)
    out = []
    for sc in preset.scenarios():
        runs = by.get(sc.id)
        if not runs or "asyncsgd" not in runs:
            continue
        target = selection["targets"][sc.dataset]
        base = runs["asyncsgd"]
        rows = []
        for name in [*preset.treatments, *preset.safeguards]:
            if name not in runs:
                continue
            rr = runs[name]
            seeds = sorted(set(rr) & set(base))
            ratios, diffs, censored_t, censored_b = [], [], 0, 0
            for s in seeds:
                tt, ok_t = _times(rr[s], target)
                tb, ok_b = _times(base[s], target)
                censored_t += not ok_t
                censored_b += not ok_b
                ratios.append(tt / tb)
                diffs.append(rr[s]["measured"]["final_accuracy"] - base[s]["measured"]["final_accuracy"])
            ratio = log_ratio_interval(ratios, confidence)
            # a family-wise (Bonferroni) interval over every treatment-vs-AsyncSGD comparison
            strict = log_ratio_interval(ratios, 1 - (1 - confidence) / max(n_tests, 1))
            acc = [rr[s]["measured"]["final_accuracy"] for s in sorted(rr)]
            pred_ratio = [_pred(rr[s]) / _pred(base[s]) for s in seeds if _pred(rr[s]) and _pred(base[s])]
            met = name != "asyncsgd" and math.isfinite(ratio.hi) and ratio.hi < preset.criterion_ratio \
                and censored_t == 0
            rows.append({
                "treatment": name, "label": (TREATMENTS.get(name) or SAFEGUARDS[name]).label, "seeds": len(seeds),
                "lr": float(np.mean([r["lr"] for r in rr.values()])),
                "concurrency": float(np.mean([r["concurrency"] for r in rr.values()])),
                "max_importance_weight": float(np.max([r["max_importance_weight"] for r in rr.values()])),
                "reached": int(sum(_times(r, target)[1] for r in rr.values())),
                "diverged": int(sum(bool(r["measured"]["diverged"]) for r in rr.values())),
                "accuracy": bootstrap_interval(acc).to_dict(),
                "time_ratio": ratio.to_dict(), "time_ratio_familywise": strict.to_dict(),
                "censored_treatment": censored_t, "censored_asyncsgd": censored_b,
                "accuracy_difference": bootstrap_interval(diffs).to_dict(),
                "predicted_time_ratio": log_ratio_interval(pred_ratio).to_dict(),
                "criterion_met": bool(met),
                "criterion_met_familywise": bool(met and strict.hi < preset.criterion_ratio),
            })
        out.append({"scenario": sc.id, "dataset": sc.dataset, "partition": sc.partition, "clients": sc.clients,
                    "target": target, "time_budget": float(next(iter(base.values()))["time_budget"]), "rows": rows})
    return {"scenarios": out, "comparisons": n_tests, "confidence": confidence,
            "criterion_ratio": preset.criterion_ratio}


def _pred(rec: dict[str, Any]) -> float | None:
    """The proxy's predicted time to the P3 target (time units) at the run's routing and m."""
    v = rec.get("predicted", {}).get("time_to_accuracy")
    return v if v is not None and math.isfinite(v) and v > 0 else None


# --------------------------------------------------------------------------- formatting
def _ci(e: dict[str, Any] | None, scale: float = 1.0, fmt: str = "{:.3f}", signed: bool = False) -> str:
    if not e:
        return "-"
    f = (lambda x: ("+" if signed and x * scale >= 0 else "") + fmt.format(x * scale))
    ci = e.get("ci")
    return f"{f(e['mean'])} [{f(ci[0])}, {f(ci[1])}]" if ci else f"{f(e['mean'])}"


def write_paper_report(preset: PaperPreset, data: dict[str, Any], path: str | Path,
                       figures_dir: str | Path | None = None) -> Path:
    """Write the Markdown report (and its figures) of an experiment folder's saved runs."""
    from ..io import atomic_write_text

    sel, ev, tun = data["selection"], data["evaluation"], data["tuning"]
    path = Path(path)
    lines = [f"# Paper-scale validation (`{preset.name}`): the operating point against tuned baselines", ""]
    versions = code_versions([*tun, *ev])
    lines += ["## Provenance", ""]
    if len(versions) == 1:
        lines.append(f"All {len(tun) + len(ev)} runs come from one code version: `{next(iter(versions))}`.")
    else:
        lines.append("**Mixed code versions: these results are not from one version of the code and must not be "
                     "read as one experiment.** " + "; ".join(f"`{k}`: {v} runs" for k, v in versions.items()))
    wall = sum(r.get("timing", {}).get("wall_time", 0.0) for r in [*tun, *ev])
    lines += [f"Compute: {len(tun)} tuning runs and {len(ev)} evaluation runs, {wall / 3600:.2f} core-hours of "
              "wall time in all (sum over runs).", ""]
    lines += ["## Protocol (fixed before the evaluation runs; see validation/PROTOCOL.md)", ""]
    lines += [f"- Scenarios: {', '.join(sc.id for sc in preset.scenarios())}; five device types (rates 3, 1.5, "
              "0.6, 0.25, 0.1), AsyncSGD at m = n.",
              "- Budget: AsyncSGD's expected time for U0 updates (" + ", ".join(
                  f"{d}: U0 = {DATASETS[d].updates}, model {DATASETS[d].model}" for d in preset.datasets) + ").",
              f"- Tuning: learning rates {list(DATASETS[preset.datasets[0]].lr_grid)} on pilot seeds "
              f"{list(preset.pilot_seeds)}, scored on a {preset.validation_fraction:.0%} validation split "
              "(mean validation accuracy over the budget); evaluation seeds "
              f"{list(preset.eval_seeds)} ({len(preset.eval_seeds)}), test set, {preset.eval_times} evaluations.",
              f"- Primary criterion: geometric-mean paired time ratio to the target (treatment / tuned AsyncSGD) "
              f"with a 95% t-interval on the log scale entirely below {preset.criterion_ratio}, and no treatment "
              "run censored. Secondary: paired accuracy difference at equal time (bootstrap).", ""]
    if sel is not None:
        lines += ["## Tuning and targets", "", f"Rule: {sel['rule']}.", "",
                  "| scenario | " + " | ".join(f"{t} lr" for t in sel["learning_rates"][next(iter(sel['learning_rates']))]) +
                  " |", "|---" * (1 + len(sel["learning_rates"][next(iter(sel["learning_rates"]))])) + "|"]
        for sc_id, per in sel["learning_rates"].items():
            lines.append(f"| {sc_id} | " + " | ".join(f"{v['best_lr']:g}{' (grid edge)' if v['at_edge'] else ''}"
                                                      for v in per.values()) + " |")
        lines += ["", "Targets (test accuracy): " + ", ".join(f"{d}: {t:.2f}" for d, t in sel["targets"].items()), ""]
    if ev and sel is not None:
        summary = summarize_paper(preset, sel, ev)
        lines += _headline(summary, preset)
        lines += _verdicts(summary, preset)
        if figures_dir is not None:
            for p, caption in paper_figures(preset, sel, ev, summary, figures_dir):
                rel = Path(p).resolve().relative_to(path.parent.resolve()) if Path(p).resolve().is_relative_to(
                    path.parent.resolve()) else Path(p)
                lines += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _headline(summary: dict[str, Any], preset: PaperPreset) -> list[str]:
    out = ["## Results per scenario", "",
           f"Time ratio: geometric mean of t(treatment) / t(AsyncSGD), paired by seed, 95% interval on the log scale "
           f"(and the Bonferroni interval over all {summary['comparisons']} comparisons in the last column). Accuracy "
           "difference: test accuracy at equal time minus AsyncSGD's, percentage points, bootstrap interval.", ""]
    for sc in summary["scenarios"]:
        out += [f"### {sc['scenario']} (target {sc['target']:.2f}, budget {sc['time_budget']:.0f} time units)", "",
                "| treatment | seeds | lr | m | max weight | reached | diverged | accuracy | time ratio | "
                "accuracy difference | predicted ratio | criterion (familywise) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sc["rows"]:
            base = r["treatment"] == "asyncsgd"
            crit = "-" if base else (("met" if r["criterion_met"] else "not met") +
                                      (" (met)" if r["criterion_met_familywise"] else " (not met)"))
            cens = f", {r['censored_treatment']} censored" if r["censored_treatment"] else ""
            out.append(f"| {r['label']} | {r['seeds']} | {r['lr']:.3g} | {r['concurrency']:.0f} | "
                       f"{r['max_importance_weight']:.1f} | {r['reached']}/{r['seeds']} | {r['diverged']} | "
                       f"{_ci(r['accuracy'], 100, '{:.1f}')} | {'1' if base else _ci(r['time_ratio']) + cens} | "
                       f"{'-' if base else _ci(r['accuracy_difference'], 100, '{:.1f}', True)} | "
                       f"{'1' if base else _ci(r['predicted_time_ratio'])} | {crit} |")
        out.append("")
    return out


def _verdicts(summary: dict[str, Any], preset: PaperPreset) -> list[str]:
    rows = [(sc, r) for sc in summary["scenarios"] for r in sc["rows"] if r["treatment"] != "asyncsgd"]
    out = ["## Verdicts", ""]
    for name in preset.treatments:
        if name == "asyncsgd":
            continue
        mine = [(sc, r) for sc, r in rows if r["treatment"] == name]
        met = [sc["scenario"] for sc, r in mine if r["criterion_met"]]
        gm = [r["time_ratio"]["mean"] for _, r in mine if r["time_ratio"]]
        acc = [r["accuracy_difference"]["mean"] for _, r in mine if r["accuracy_difference"]]
        out.append(f"- **{TREATMENTS[name].label}**: criterion met in {len(met)} of {len(mine)} scenarios"
                   + (f" ({', '.join(met)})" if met else "") + (f"; time ratios {min(gm):.2f} to {max(gm):.2f}" if gm
                                                                else "")
                   + (f"; accuracy differences {100 * min(acc):+.1f} to {100 * max(acc):+.1f} points" if acc else "")
                   + ".")
    out.append("")
    return out


def familywise_quantile(confidence: float, comparisons: int, dof: int) -> float:
    """t quantile of a Bonferroni-adjusted two-sided interval (for readers checking the table)."""
    return t_quantile(1 - (1 - confidence) / max(comparisons, 1), dof)


# --------------------------------------------------------------------------- figures
#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
OKABE_ITO = {"asyncsgd": "#000000", "p2": "#E69F00", "p3": "#0072B2", "op": "#D55E00", "p2-pmin4": "#009E73",
             "p2-clip4": "#CC79A7"}


def _band(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a seeded percentile-bootstrap 95% band of the mean, per time point."""
    A = np.asarray(curves, dtype=float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, A.shape[0], size=(2000, A.shape[0]))
    boot = A[idx].mean(axis=1)
    return A.mean(0), np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)


def paper_figures(preset: PaperPreset, selection: dict[str, Any], records: Sequence[dict[str, Any]],
                  summary: dict[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Accuracy against simulated time (bootstrap bands), per-seed paired time ratios, and
    predicted against measured time ratios; PNG and PDF, returns ``[(png path, caption)]``."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    scen = summary["scenarios"]
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by[Scenario(**r["scenario"]).id][r["treatment"]].append(r)
    names = [*preset.treatments, *preset.safeguards]
    # 1. accuracy against simulated time
    ncol = len(preset.partitions)
    nrow = int(math.ceil(len(scen) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False, sharey="row")
    for k, sc in enumerate(scen):
        ax = axes[k // ncol][k % ncol]
        for name in names:
            runs = [r for r in by[sc["scenario"]].get(name, []) if len(r["measured"]["curves"]["time"]) > 1]
            if not runs:
                continue
            t = np.asarray(runs[0]["measured"]["curves"]["time"])
            curves = [r["measured"]["curves"]["test_accuracy"] for r in runs if
                      len(r["measured"]["curves"]["test_accuracy"]) == t.size]
            if not curves:
                continue
            mean, lo, hi = _band(curves)
            ax.plot(t, mean, color=OKABE_ITO.get(name, "grey"), lw=1.3,
                    label=(TREATMENTS.get(name) or SAFEGUARDS[name]).label)
            ax.fill_between(t, lo, hi, color=OKABE_ITO.get(name, "grey"), alpha=0.15, lw=0)
        ax.axhline(sc["target"], color="grey", ls=":", lw=0.8)
        ax.set_title(f"{sc['dataset']}, {sc['partition']} (n = {sc['clients']})", fontsize=9)
        ax.set_xlabel("simulated time (time units)")
        if k % ncol == 0:
            ax.set_ylabel("test accuracy")
    for k in range(len(scen), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 3)))
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_accuracy")[0]
    made.append((p, "Test accuracy against simulated time: mean over evaluation seeds with a 95% bootstrap band; "
                    "dotted line: the target"))
    # 2. per-seed paired time ratios
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(scen), 3.0))
    offs = {n: (i - (len(names) - 2) / 2) * 0.14 for i, n in enumerate(n for n in names if n != "asyncsgd")}
    for k, sc in enumerate(scen):
        base = {r["seed"]: r for r in by[sc["scenario"]].get("asyncsgd", [])}
        for name, dx in offs.items():
            rr = {r["seed"]: r for r in by[sc["scenario"]].get(name, [])}
            ratios = [_times(rr[s], sc["target"])[0] / _times(base[s], sc["target"])[0] for s in rr if s in base]
            if not ratios:
                continue
            ax.scatter(np.full(len(ratios), k + dx), ratios, s=9, color=OKABE_ITO.get(name, "grey"), alpha=0.7,
                       label=(TREATMENTS.get(name) or SAFEGUARDS[name]).label if k == 0 else None)
            row = next((r for r in sc["rows"] if r["treatment"] == name), None)
            if row and row["time_ratio"] and row["time_ratio"]["ci"]:
                lo, hi = row["time_ratio"]["ci"]
                ax.errorbar(k + dx, row["time_ratio"]["mean"], yerr=[[row["time_ratio"]["mean"] - lo],
                                                                    [hi - row["time_ratio"]["mean"]]],
                            color=OKABE_ITO.get(name, "grey"), fmt="_", ms=10, lw=1.2, capsize=2)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(preset.criterion_ratio, color="grey", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(scen)), [f"{sc['dataset']}\n{sc['partition']}" for sc in scen], fontsize=8)
    ax.set_ylabel("time to target, treatment / AsyncSGD")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_time_ratios")[0]
    made.append((p, f"Per-seed paired time-to-target ratios (dots), geometric mean and 95% log-scale interval "
                    f"(bars); dashed: the criterion {preset.criterion_ratio}, solid: no gain"))
    # 3. predicted against measured
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    for sc in scen:
        for r in sc["rows"]:
            if r["treatment"] == "asyncsgd" or not r["time_ratio"] or not r["predicted_time_ratio"]:
                continue
            ax.scatter(r["predicted_time_ratio"]["mean"], r["time_ratio"]["mean"], s=18,
                       color=OKABE_ITO.get(r["treatment"], "grey"), marker="o" if sc["dataset"] == "digits" else "s")
    lims = [0.05, 5]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted time ratio (proxy T_eps)")
    ax.set_ylabel("measured time ratio (geometric mean)")
    fig.tight_layout()
    p = save_figure(fig, out, f"{preset.name}_predicted_vs_measured")[0]
    made.append((p, "Predicted (proxy) against measured time-to-target ratio vs AsyncSGD, one point per scenario "
                    "and treatment (circles: digits, squares: MNIST-1D); diagonal: perfect prediction"))
    return made

