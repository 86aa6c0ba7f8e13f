"""The paper study's report (Markdown): provenance, the protocol, the tuned rates and targets, the
results per scenario, the verdicts on the pre-registered criterion and on the papers' claims, and
the figures; from the saved runs of :func:`validation.paper.experiment.run_paper`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from aflqueue.io import atomic_write_text
from aflqueue.jobs import code_versions
from aflqueue.stats import familywise_confidence, t_quantile
from aflqueue.tuning import grid_edge
from validation.paper.experiment import DATASETS, SAFEGUARDS, TREATMENTS, PaperPreset, summarize_paper
from validation.paper.figures import paper_figures
from validation.reporting import figure_md

__all__ = ["write_paper_report"]


def _paper_ci(e: dict[str, Any] | None, scale: float = 1.0, fmt: str = "{:.3f}", signed: bool = False) -> str:
    if not e:
        return "-"
    f = (lambda x: ("+" if signed and x * scale >= 0 else "") + fmt.format(x * scale))
    ci = e.get("ci")
    return f"{f(e['mean'])} [{f(ci[0])}, {f(ci[1])}]" if ci else f"{f(e['mean'])}"


def write_paper_report(preset: PaperPreset, data: dict[str, Any], path: str | Path,
                       figures_dir: str | Path | None = None) -> Path:
    """Write the Markdown report (and its figures) of an experiment folder's saved runs."""
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
    lines += ["## Protocol (fixed before the evaluation runs; see validation/paper/PROTOCOL.md)", ""]
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
            lines.append(f"| {sc_id} | " + " | ".join(f"{v['best_lr']:g}{_edge_mark(v)}" for v in per.values()) + " |")
        lines += ["", _edges_line(sel), "",
                  "Targets (test accuracy): " + ", ".join(f"{d}: {t:.2f}" for d, t in sel["targets"].items()), ""]
    if ev and sel is not None:
        summary = summarize_paper(preset, sel, ev)
        lines += _paper_headline(summary, preset, sel)
        lines += _paper_verdicts(summary, preset)
        lines += _multiplicity(summary, preset, sel)
        if figures_dir is not None:
            for p, caption in paper_figures(preset, sel, ev, summary, figures_dir):
                lines += figure_md(Path(p), path.parent, caption).split("\n")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _edge_mark(result: dict[str, Any]) -> str:
    """`` (top of the grid, not extended)`` and the like for a tuned rate at an edge of its grid."""
    edge = grid_edge(result)
    if edge is None:
        return ""
    return f" ({edge} of the grid, {'extended' if result.get('extensions') else 'not extended'})"


def _edges_line(sel: dict[str, Any]) -> str:
    """How many tuned rates sit at an edge of their grid, per treatment, and what that means."""
    per: dict[str, list[str]] = {}
    total: dict[str, int] = {}
    for sc_id, rates in sel["learning_rates"].items():
        for name, res in rates.items():
            total[name] = total.get(name, 0) + 1
            if grid_edge(res):
                per.setdefault(name, []).append(f"{grid_edge(res)} {res['best_lr']:g} in {sc_id}")
    counts = "; ".join(f"{name}: {len(per.get(name, []))} of {n}" + (f" ({', '.join(per[name])})" if per.get(name)
                                                                       else "") for name, n in total.items())
    out = f"**Tuned rates at an edge of their grid** (the grid was fixed before the runs and never extended): {counts}."
    if any(per.values()):
        out += (" A rate at an edge may not be the treatment's best rate. AsyncSGD at the top of its grid may be "
                "under-tuned, which flatters every treatment of that scenario (the operating point too: its rate is "
                "AsyncSGD's times its step ratio); a treatment at the floor may be under-tuned, which handicaps it.")
    return out


def _paper_headline(summary: dict[str, Any], preset: PaperPreset, sel: dict[str, Any]) -> list[str]:
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
            tuned = sel["learning_rates"].get(sc["scenario"], {}).get(r["treatment"])
            edge = f" ({grid_edge(tuned)})" if tuned and grid_edge(tuned) else ""
            out.append(f"| {r['label']} | {r['seeds']} | {r['lr']:.3g}{edge} | {r['concurrency']:.0f} | "
                       f"{r['max_importance_weight']:.1f} | {r['reached']}/{r['seeds']} | {r['diverged']} | "
                       f"{_paper_ci(r['accuracy'], 100, '{:.1f}')} | {'1' if base else _paper_ci(r['time_ratio']) + cens} | "
                       f"{'-' if base else _paper_ci(r['accuracy_difference'], 100, '{:.1f}', True)} | "
                       f"{'1' if base else _paper_ci(r['predicted_time_ratio'])} | {crit} |")
        out.append("")
    return out


def _paper_verdicts(summary: dict[str, Any], preset: PaperPreset) -> list[str]:
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
    for name in preset.safeguards:
        mine = [(sc, r) for sc, r in rows if r["treatment"] == name]
        for sc, r in mine:
            p2 = next((q for q in sc["rows"] if q["treatment"] == "p2"), None)
            out.append(f"- **{SAFEGUARDS[name].label}** ({sc['scenario']}): time ratio {_paper_ci(r['time_ratio'])}, "
                       f"accuracy difference {_paper_ci(r['accuracy_difference'], 100, '{:.1f}', True)} points, "
                       f"{r['diverged']} of {r['seeds']} diverged, largest weight {r['max_importance_weight']:.1f}, "
                       f"predicted ratio {_paper_ci(r['predicted_time_ratio'])}"
                       + (f" (P2 without it: time ratio {_paper_ci(p2['time_ratio'])}, {p2['diverged']} diverged, "
                          f"largest weight {p2['max_importance_weight']:.1f}, predicted {_paper_ci(p2['predicted_time_ratio'])})"
                          if p2 else "") + ".")
    out.append("")
    out += _paper_claims(summary, preset, rows)
    return out


def _paper_claims(summary: dict[str, Any], preset: PaperPreset, rows: list) -> list[str]:
    """The two papers' claims, each stated plainly as reproduced, partly reproduced, not
    reproduced or not testable, with the comparisons they rest on."""
    main = [(sc, r) for sc, r in rows if r["treatment"] in preset.treatments]
    out = ["## The papers' claims", ""]
    met = [f"{r['treatment']} in {sc['scenario']}" for sc, r in main if r["criterion_met"]]
    strict = [f"{r['treatment']} in {sc['scenario']}" for sc, r in main if r["criterion_met_familywise"]]
    word = ("**Not reproduced**" if not met else "**Reproduced**" if len(met) == len(main) else "**Partly reproduced**")
    out.append(f"- *29-46% less time to a target accuracy than AsyncSGD, 100 clients of five device types* "
               f"(Alahyane, Comte and Jonckheere, 2026): {word}. The pre-registered criterion (95% interval of the "
               f"time ratio below {preset.criterion_ratio}, no censored run) holds in {len(met)} of {len(main)} "
               f"comparisons" + (f" ({', '.join(met)})" if met else "") + f"; {len(strict)} survive the Bonferroni "
               f"correction over {summary['comparisons']} comparisons.")
    faster = [f"{r['treatment']} in {sc['scenario']} ({r['time_ratio']['mean']:.2f})" for sc, r in main
              if r["time_ratio"] and r["time_ratio"].get("ci") and r["time_ratio"]["ci"][1] < 1.0]
    out.append(f"- Descriptive, not a criterion: a speed-up of any size (95% interval of the time ratio below 1) in "
               f"{len(faster)} of {len(main)} comparisons" + (f": {', '.join(faster)}" if faster else "") + ".")
    # +10% relative accuracy is out of reach when AsyncSGD is already above 1/1.1 of perfect accuracy
    testable, rel_met = [], []
    for sc, r in main:
        base = next(q for q in sc["rows"] if q["treatment"] == "asyncsgd")["accuracy"]["mean"]
        if base * 1.10 > 1.0:
            continue
        testable.append((sc, r))
        d = r["accuracy_difference"]
        if d and d.get("ci") and d["ci"][0] >= 0.10 * base:
            rel_met.append(f"{r['treatment']} in {sc['scenario']}")
    if not testable:
        word = "**Not testable here**"
    else:
        word = ("**Not reproduced**" if not rel_met else "**Reproduced**" if len(rel_met) == len(testable)
                else "**Partly reproduced**")
    out.append(f"- *10-30% higher accuracy than AsyncSGD* (Alahyane et al., 2025), read as a relative gain at equal "
               f"time whose paired 95% interval lies above +10% of AsyncSGD's accuracy (a reading fixed after the "
               f"protocol, which pre-registered the difference and its interval only): {word}. Testable in "
               f"{len(testable)} of {len(main)} comparisons (elsewhere AsyncSGD's accuracy exceeds 1/1.1, so +10% "
               f"would pass 100%); met in {len(rel_met)}" + (f" ({', '.join(rel_met)})" if rel_met else "") + ".")
    out.append("")
    return out


def _upper(ratio: dict[str, Any] | None, confidence: float | None = None, level: float | None = None) -> float:
    """Upper bound of a time ratio's interval (``log_ratio_interval(...).to_dict()``; inf when it has
    none); with ``confidence`` and ``level``, the bound of the same t-interval at ``level`` instead:
    on the log scale its half-width scales with the t quantile of the level (docs/theory.md section 8)."""
    if not ratio or not ratio.get("ci") or ratio["ci"][1] is None or not math.isfinite(ratio["ci"][1]):
        return math.inf
    if confidence is None or level is None:
        return float(ratio["ci"][1])
    dof = ratio["n"] - 1
    if dof < 1:
        return math.inf
    half = math.log(ratio["ci"][1]) - math.log(ratio["mean"])
    return math.exp(math.log(ratio["mean"]) + half * t_quantile(level, dof) / t_quantile(confidence, dof))


def _multiplicity(summary: dict[str, Any], preset: PaperPreset, sel: dict[str, Any]) -> list[str]:
    """How many comparisons the report makes, which of its verdicts are family-wise, and what the
    per-comparison ones are worth (every count from the summary and the selection)."""
    main = [r for sc in summary["scenarios"] for r in sc["rows"] if r["treatment"] in preset.treatments
            and r["treatment"] != "asyncsgd"]
    # scenarios whose AsyncSGD rate is the top of its grid: the baseline may be under-tuned there
    top = [sc for sc in summary["scenarios"] if "asyncsgd" in sel["learning_rates"].get(sc["scenario"], {})
           and grid_edge(sel["learning_rates"][sc["scenario"]]["asyncsgd"]) == "top"]
    on_top = sum(_upper(r["time_ratio"]) < 1.0 for sc in top for r in sc["rows"]
                 if r["treatment"] in preset.treatments and r["treatment"] != "asyncsgd")
    k, fam = len(main), summary["comparisons"]
    conf = summary["confidence"]
    met = sum(r["criterion_met"] for r in main)
    strict = sum(r["criterion_met_familywise"] for r in main)

    faster = sum(_upper(r["time_ratio"]) < 1.0 for r in main)
    faster_fam = sum(_upper(r["time_ratio_familywise"]) < 1.0 for r in main)
    # the protocol's family (the main comparisons only): the same t-interval at its Bonferroni level
    faster_k = sum(_upper(r["time_ratio"], conf, familywise_confidence(conf, k)) < 1.0 for r in main)
    alpha = 1 - conf
    return ["## Multiplicity", "",
            f"- Comparisons: {k} on the pre-registered criterion ({len(preset.treatments) - 1} treatments x "
            f"{len(summary['scenarios'])} scenarios), and {fam - k} safeguard comparisons, {fam} in all. The protocol "
            f"names the family of the {k} (Bonferroni level {familywise_confidence(conf, k):.2%}); the family-wise "
            f"column of the tables corrects over all {fam} ({familywise_confidence(conf, fam):.2%} per interval), "
            "slightly more strictly.",
            f"- Per comparison, not family-wise: the criterion column ('met' / 'not met'), every 95% interval of a "
            f"time ratio or an accuracy difference, the 'speed-up of any size' count and the accuracy claim's count. "
            f"With {k} comparisons, some 95% intervals exclude the null value by chance alone: if no treatment "
            f"differed from AsyncSGD, about {k * alpha / 2:.2f} intervals would lie wholly below 1 (one-sided "
            f"{alpha / 2:.1%} each) and {k * alpha:.1f} would exclude 1 on either side.",
            f"- Family-wise: the parenthesised verdict of the criterion column (Bonferroni over {fam}), met in "
            f"{strict} of {k}; per comparison the criterion is met in {met} of {k}. A correction can only remove "
            "'met' verdicts, so " + ("no verdict of the criterion depends on it." if met == strict else
                                     "the verdicts met per comparison but not family-wise are not claimed."),
            f"- The descriptive speed-ups (95% interval of the time ratio below 1): {faster} of {k} per comparison; "
            f"{faster_fam} of them survive Bonferroni over {fam} and {faster_k} over the protocol's {k}. Only those "
            "are speed-ups at a family-wise 5% error rate; the others are not established at that rate. "
            + (f"{on_top} of the {faster} are in {', '.join(sc['scenario'] for sc in top)}, where tuned AsyncSGD's "
               "rate is the top of its grid (not extended): there the baseline may be under-tuned, which would "
               "flatter the treatments. "
               if on_top else "") + "The accuracy differences' intervals are not corrected.", ""]
