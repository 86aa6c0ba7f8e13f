"""The FedBuff-family study's reports (Markdown, and the same page as HTML): server algorithms
compared at equal simulated time (:func:`summarize_comparison`, :func:`write_comparison_report`:
accuracies and paired accuracy differences with bootstrap intervals, time ratios on the log scale)
and the papers' claims with every algorithm tuned (:func:`write_claims_report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from aflqueue.jobs import code_versions
from aflqueue.stats import Estimate, bootstrap_interval, log_ratio_interval
from validation.fedbuff_family.claims import claim_verdicts, posthoc_summary, protocol_lines, summarize_claims
from validation.fedbuff_family.figures import comparison_accuracy_figure
from validation.reporting import fixed, interval, write_pages

__all__ = ["summarize_comparison", "write_comparison_report", "write_claims_report", "BEFORE_TUNING"]


def _by_seed(records: list[dict[str, Any]], algorithm: str) -> dict[int, dict[str, Any]]:
    return {r["seed"]: r for r in records if r["algorithm"] == algorithm}


def summarize_comparison(records: list[dict[str, Any]], reference: str | None = None) -> dict[str, Any]:
    """Per algorithm, statistics over seeds of the comparison records, paired with ``reference``
    (default: the first algorithm in the records) by seed.

    Accuracies (bounded in ``[0, 1]``) and their paired differences get seeded BCa bootstrap
    intervals; time-to-target ratios, server-time ratios to the reference and server seconds per
    arrival (positive, skewed measurements) are geometric means with t-intervals on the log
    scale. Every interval is an :class:`~aflqueue.stats.Estimate` whose ``n`` is the number of
    seeds (or pairs) it rests on.
    A seed where the reference reached the target and the algorithm did not is *censored*
    against it (left out of the ratio, and counted)."""
    algorithms = list(dict.fromkeys(r["algorithm"] for r in records))
    ref = reference or (algorithms[0] if algorithms else None)
    base = _by_seed(records, ref) if ref else {}
    rows = []
    for alg in algorithms:
        runs = _by_seed(records, alg)
        seeds = sorted(runs)
        pairs = [s for s in seeds if s in base]
        ratios, censored = [], 0
        for s in pairs:
            tb, ta = base[s]["time_to_target"], runs[s]["time_to_target"]
            if tb is not None and ta is not None:
                ratios.append(ta / tb)
            elif tb is not None:
                censored += 1
        sec = [runs[s].get("timing", {}).get("server_seconds_per_arrival") for s in seeds]
        sec_ratio = [runs[s].get("timing", {}).get("server_seconds_per_arrival", math.nan)
                     / base[s].get("timing", {}).get("server_seconds_per_arrival", math.nan) for s in pairs
                     if base[s].get("timing", {}).get("server_seconds_per_arrival")]
        rows.append({
            "algorithm": alg, "seeds": seeds,
            "accuracy": bootstrap_interval([runs[s]["final_accuracy"] for s in seeds]),
            "accuracy_half": bootstrap_interval([runs[s]["accuracy_at_half_budget"] for s in seeds]),
            "difference": bootstrap_interval([runs[s]["final_accuracy"] - base[s]["final_accuracy"] for s in pairs])
            if alg != ref else None,
            "reached": sum(runs[s]["time_to_target"] is not None for s in seeds),
            "time_ratio": log_ratio_interval(ratios) if alg != ref else None, "censored": censored,
            "server_seconds_per_arrival": log_ratio_interval(sec),
            "server_time_ratio": log_ratio_interval(sec_ratio) if alg != ref else None,
            "memory_bytes": float(np.mean([runs[s]["memory_bytes"] for s in seeds])),
            "arrivals": float(np.mean([runs[s]["arrivals"] for s in seeds])),
            "versions": float(np.mean([runs[s]["versions"] for s in seeds])),
            "staleness_mean": float(np.mean([runs[s]["staleness_mean"] for s in seeds])),
            "wall_time": float(np.mean([runs[s].get("timing", {}).get("wall_time", math.nan) for s in seeds])),
            "final_accuracies": [runs[s]["final_accuracy"] for s in seeds],
        })
    return {"reference": ref, "rows": rows}


def _scenario_lines(preset: dict[str, Any]) -> list[str]:
    """The preset's shared configuration as report bullets."""
    c = preset["config"]
    d, s, loc, run = c["data"], c["system"], c["local"], c["run"]
    part = d.get("partition", "dirichlet") + (f"({d['alpha']})" if d.get("partition", "dirichlet") == "dirichlet"
                                              else "")
    opts = ", ".join(f"{k} {v}" for k, v in (d.get("options") or {}).items())
    if "profile" in s:
        system = (f"speed profile `{s['profile']}`" + "".join(f", {k} {s[k]}" for k in ("fast_rate", "slow_factor",
                                                                                          "spread", "service") if k in s)
                  + f", m = {s.get('concurrency') or 'n'} tasks in flight")
    else:
        system = "system description of the preset (see the title)"
    params = preset.get("algorithm_params") or {}
    return [
        f"- preset `{preset['name']}`: {preset['title']}",
        f"- data: {d['dataset']}{f' ({opts})' if opts else ''}, {d['clients']} clients, {part} labels, unlabeled "
        f"fraction {d.get('unlabeled_fraction', 0)} (held by the server for every algorithm; used by FedEcho)",
        f"- system: {system}; routing {c['routing']['kind']}",
        f"- local training (all): {loc['steps']} {loc['optimizer'].upper()} steps, lr {loc['lr']}, batch "
        f"{loc['batch_size']}; model: {c['model']['name'] or 'the data set default'}",
        f"- budget: simulated time {run['time_budget']:g} for every algorithm (same schedule per seed); target "
        f"accuracy {preset['target']:.2f}",
        "- algorithms: " + ", ".join(a + (f" ({', '.join(f'{k} = {v}' for k, v in params[a].items())})"
                                          if params.get(a) else "") for a in preset["algorithms"])
        + "; spec defaults of ALGORITHMS.md otherwise, nothing tuned",
    ]


def _cost_details(costs: dict[str, Any]) -> str:
    """One line of an algorithm's cost report: seconds per event as ms, memory as KiB, counts and
    means as they are (totals of seconds and running sums are left out)."""
    parts = []
    for k, v in costs.items():
        if (not isinstance(v, (int, float)) or isinstance(v, bool) or k == "arrivals" or k.endswith("_sum")
                or ("seconds" in k and "_per_" not in k)):
            continue
        if "seconds" in k:
            parts.append(f"{k.replace('_seconds', '')} {1e3 * v:.2f} ms")
        elif k.startswith("memory_") and k.endswith("_bytes"):
            parts.append(f"{k[len('memory_'):-len('_bytes')]} memory {v / 1024:.0f} KiB")
        else:
            parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts) or "nothing reported"


def write_comparison_report(records: list[dict[str, Any]], path: str | Path, preset: dict[str, Any],
                            figures_dir: str | Path | None = None, quick: bool = False) -> tuple[Path, Path]:
    """Markdown (and HTML) report of an algorithm comparison from its records; ``preset`` is
    :func:`validation.fedbuff_family.comparison.preset_summary` of the resolved preset."""
    path = Path(path)
    summary = summarize_comparison(records)
    ref = summary["reference"]
    figs = comparison_accuracy_figure(records, figures_dir, preset["name"]) if figures_dir is not None else []
    seeds = sorted({r["seed"] for r in records})
    acc = lambda e: interval(e, lambda v: f"{100 * v:.1f}", show_n=True)  # noqa: E731
    ratio = lambda e: interval(e, lambda v: f"{v:.2f}", show_n=True)  # noqa: E731
    title = "Server algorithms at equal simulated time: " + " vs ".join(preset["algorithms"])
    L = [f"# {title}", "",
         f"Generated by `validation/fedbuff_family/stale_algorithms.py --preset {preset['name']}{' --quick' if quick else ''}` from "
         f"{len(records)} runs, seeds {seeds}.", "", "## Scenario", ""] + _scenario_lines(preset) + [
        "", "## Results", "",
        "Accuracies in %, at the time budget T and at T/2: mean over seeds [95% BCa bootstrap interval] (n = seeds); "
        "a bootstrap interval stays within the range of the data, hence within [0, 100]. Differences are paired by "
        f"seed (same data, model initialisation and schedule) against {ref}, with bootstrap intervals too "
        "(n = pairs). Time-to-target and server-time ratios are geometric means of per-seed ratios with a "
        "t-interval on the log scale (n = pairs, for time to target those where both reached the target; "
        f"'censored' counts seeds where {ref} reached it and the algorithm did not); server ms per arrival too "
        "(geometric mean, log-scale interval). Server seconds are wall-clock measurements, indicative only.",
        "",
        f"| algorithm | accuracy at T | accuracy at T/2 | difference to {ref} at T | reached target | "
        f"time to target / {ref} (censored) | arrivals | versions | mean staleness | server ms/arrival | "
        f"server time / {ref} | server memory | wall time/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        ms = r["server_seconds_per_arrival"]
        server_ms = interval(Estimate(1e3 * ms.mean, 1e3 * ms.lo, 1e3 * ms.hi, ms.n), lambda v: f"{v:.3f}", True)
        if r["algorithm"] == ref:
            diff = time_ratio = server_ratio = "-"
        else:
            diff = interval(r["difference"], lambda v: f"{100 * v:+.1f}", show_n=True)
            time_ratio = f"{ratio(r['time_ratio'])} ({r['censored']})"
            server_ratio = ratio(r["server_time_ratio"])
        L.append(f"| {r['algorithm']} | {acc(r['accuracy'])} | {acc(r['accuracy_half'])} | {diff} | "
                 f"{r['reached']}/{len(r['seeds'])} | {time_ratio} | {r['arrivals']:.0f} | {r['versions']:.0f} | "
                 f"{r['staleness_mean']:.1f} | {server_ms} | {server_ratio} | {r['memory_bytes'] / 2**20:.2f} MiB | "
                 f"{fixed(r['wall_time'], 0)} s |")
    L += ["", "Per-seed final accuracies (%):", ""]
    for r in summary["rows"]:
        L.append(f"- {r['algorithm']}: " + ", ".join(f"{100 * v:.1f}" for v in r["final_accuracies"]))
    L += ["", f"## Server overhead (seed {seeds[0] if seeds else '-'})", ""]
    for r in records:
        if seeds and r["seed"] == seeds[0]:
            timing = {k: v for k, v in r.get("timing", {}).items() if not k.startswith("wall_time")}
            L.append(f"- {r['algorithm']}: {_cost_details({**r['costs'], **timing})}")
    params = next((r["parameters"] for r in records), None)
    L += ["", "Server memory = what the algorithm holds besides the model (FedBuff: its accumulation buffer, "
          f"P = {params} floats; FedEcho: the buffer, the m start checkpoints the engine keeps for it, the stored "
          "logits and the unlabeled set; FedRevive: the same m start checkpoints, teacher buffer, synthetic pool, "
          "generator, class proportions, cached delta_KD, buffer).", ""]
    return write_pages(path, L, title, figs)


#: the numbers before this experiment (untuned spec defaults), quoted from the committed reports:
#: ``results/stale_algorithms`` and the grid study's ``validation/grid/results/default``
BEFORE_TUNING = (
    "FedRevive - FedBuff, `stale` scenario, spec defaults: -4.4 points [t -8.0, -0.8] (5 seeds; "
    "validation/fedbuff_family/results/stale_algorithms/report.md)",
    "FedEcho - FedBuff, `stale` scenario, spec defaults: +1.8 points [t -0.1, +3.8] (5 seeds; same report)",
    "validation grid (digits, K = 1): FedBuff 0.28 vs Generalized AsyncSGD 0.91 at equal time, FedBuff's server "
    "step eta_g = 1 untuned (issue 16)",
)


def _est(d: dict[str, Any] | None) -> Estimate:
    return Estimate.from_dict(d)


def _points(e: dict[str, Any] | None, signed: bool = True) -> str:
    """An accuracy (or accuracy difference) estimate in percentage points."""
    return interval(_est(e), (lambda v: f"{100 * v:+.1f}") if signed else (lambda v: f"{100 * v:.1f}"),
                     show_n=True)


def _ratio_text(e: dict[str, Any] | None) -> str:
    return interval(_est(e), lambda v: f"{v:.2f}", show_n=True)


def _claims_selection(sel: dict[str, Any]) -> list[str]:
    L = ["## Tuning and selection (frozen in each scenario's selection.json before its evaluation)", "",
         f"Rule: {sel['rule']}.", ""]
    if not sel.get("complete", True):
        L += ["Not every scenario is tuned yet: the others follow.", ""]
    for name, sc in sel["scenarios"].items():
        L += [f"### {name}: target accuracy {sc['target']:.2f}", "",
              "| algorithm / routing | chosen eta_g | chosen weighting | pilot score | pilot final val. accuracy | "
              "mean pilot score per eta_g (weighting) |", "|---|---|---|---|---|---|"]
        for key, c in sc["chosen"].items():
            cells = "; ".join(f"{w}: " + ", ".join(f"{row['lr']:g} -> {row['score']:.3f}"
                                                    + (f" ({row['diverged']} div.)" if row["diverged"] else "")
                                                    for row in t["table"]) for w, t in c["tables"].items())
            L.append(f"| {key} | {c['eta_g']:g}{' (grid edge)' if c['at_edge'] else ''} | {c['weighting']} | "
                     f"{c['score']:.3f} | {100 * c['pilot_final_accuracy']:.1f} | {cells} |")
        L.append("")
    return L


def _claims_results(summary: dict[str, Any]) -> list[str]:
    L = ["## Results at equal simulated time (evaluation seeds, test set)", "",
         "Accuracy: test accuracy at the budget, % (mean [95% BCa bootstrap interval], n = seeds; within [0, 100]). "
         "Difference: paired by seed against tuned FedBuff-uniform, points (bootstrap). Time to target: geometric "
         "mean over seeds and the geometric-mean paired ratio to FedBuff-uniform with a 95% t-interval on the log "
         "scale; a run that never reaches the target enters with the budget and is counted in 'censored' (this "
         "algorithm / FedBuff-uniform). Server ms per arrival: wall clock on a shared 2-core CPU, indicative only. "
         "Memory: what the algorithm holds besides the model, as it reports it (with the start checkpoints the "
         "engine keeps for FedEcho and FedRevive), and in brackets the bytes of its state measured on its "
         "state_dict (ServerAlgorithm.state_bytes).", ""]
    for sc in summary["scenarios"]:
        L += [f"### {sc['scenario']} (budget {sc['time_budget']:g}, target {sc['target']:.2f})", "",
              "| algorithm / routing | eta_g, weighting | accuracy at T | difference to FedBuff-uniform | reached | "
              "time to target | time ratio to FedBuff-uniform (censored) | server ms/arrival | memory MiB (state) | "
              "arrivals | diverged |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sc["rows"]:
            v = r["vs_reference"]
            diff = _points(v["accuracy_difference"]) if v else "-"
            ratio = f"{_ratio_text(v['time_ratio'])} ({v['censored']}/{v['censored_reference']})" if v else "-"
            ms = interval(_est(r["server_ms_per_arrival"]), lambda x: f"{x:.2f}")
            flag = f" (censored seeds {r['censored_seeds']})" if r["censored_seeds"] else ""
            L.append(f"| {r['key']} | {r['eta_g']:g}, {r['weighting']} | {_points(r['accuracy'], False)} | {diff} | "
                     f"{r['reached']}/{len(r['seeds'])}{flag} | {_ratio_text(r['time_to_target'])} | {ratio} | {ms} | "
                     f"{r['memory_bytes'] / 2**20:.2f} ({r['state_bytes'] / 2**20:.2f}) | {r['arrivals']:.0f} | "
                     f"{r['diverged']} |")
        L += ["", "Per-seed test accuracy at T (%): " + "; ".join(
            f"{r['key']} " + ", ".join(f"{100 * a:.1f}" for a in r["final_accuracies"]) for r in sc["rows"]), ""]
        same = [r for r in sc["rows"] if r["vs_same_routing"]]
        if same:
            L += ["Against tuned FedBuff under the same (P2) routing: " + "; ".join(
                f"{r['key']}: accuracy {_points(r['vs_same_routing']['accuracy_difference'])} points, time ratio "
                f"{_ratio_text(r['vs_same_routing']['time_ratio'])} (censored {r['vs_same_routing']['censored']}/"
                f"{r['vs_same_routing']['censored_reference']})" for r in same) + ".", ""]
    return L


def _claims_verdicts(verdicts: list[dict[str, Any]], mixed: bool) -> list[str]:
    L = ["## The papers' claims", ""]
    if mixed:
        L += ["**Mixed code versions among the records: the verdicts below are provisional.**", ""]
    L += ["| paper | claim | scenario | verdict | measured (95% interval) | paper's magnitude inside the interval? |",
          "|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v["claim"]
        if v["verdict"] == "not testable here":
            L.append(f"| {c.paper} | {c.text} | {c.scenario or '-'} | **not testable here** | {v['why']} | - |")
            continue
        cmp = v["comparison"]
        if c.kind == "accuracy":
            got = (f"{c.algorithm} - FedBuff ({c.routing}): {_points(v['estimate'])} points (bootstrap; t-interval "
                   f"{_points(cmp['accuracy_difference_t'])})")
            mag = f"{100 * c.magnitude:+.2f} points" if c.magnitude is not None else "-"
        else:
            got = (f"time to target {c.algorithm} / FedBuff ({c.routing}): {_ratio_text(v['estimate'])}, censored "
                   f"{cmp['censored']} ({c.algorithm}) / {cmp['censored_reference']} (FedBuff)")
            mag = f"ratio {c.magnitude:.2f}" if c.magnitude is not None else "-"
        inside = {None: "-", True: f"yes ({mag})", False: f"no ({mag})"}[v["magnitude_inside"]]
        L.append(f"| {c.paper} | {c.text} | {c.scenario} | **{v['verdict']}** | {got} | {inside} |")
    return L + [""]


def _claims_gap(sel: dict[str, Any] | None, summary: dict[str, Any] | None) -> list[str]:
    L = ["## Gap to FedBuff before and after tuning", "", "Before (untuned spec defaults, earlier experiments):", ""]
    L += [f"- {b}" for b in BEFORE_TUNING] + [""]
    if sel is not None:
        L += ["In this experiment, uniform routing, pilot seeds, validation split (mean final validation accuracy, "
              "%; the spec default is a point of each tuning grid):", "",
              "| scenario | algorithm | spec default eta_g | default | tuned | default - FedBuff default | "
              "tuned - FedBuff tuned |", "|---|---|---|---|---|---|---|"]
        for name, sc in sel["scenarios"].items():
            d, ch = sc["defaults"], sc["chosen"]
            fb_d, fb_t = d.get("fedbuff"), ch.get("fedbuff/uniform")
            for alg, dd in d.items():
                t = ch[f"{alg}/uniform"]
                gap_d = "-" if fb_d is None or alg == "fedbuff" else f"{100 * (dd['pilot_final_accuracy'] - fb_d['pilot_final_accuracy']):+.1f}"
                gap_t = "-" if fb_t is None or alg == "fedbuff" else f"{100 * (t['pilot_final_accuracy'] - fb_t['pilot_final_accuracy']):+.1f}"
                L.append(f"| {name} | {alg} | {dd['eta_g']:g} | {100 * dd['pilot_final_accuracy']:.1f} | "
                         f"{100 * t['pilot_final_accuracy']:.1f} (eta_g {t['eta_g']:g}) | {gap_d} | {gap_t} |")
        L.append("")
    after = [f"{sc['scenario']} {r['algorithm']} {_points(r['vs_reference']['accuracy_difference'])} points"
             for sc in (summary or {}).get("scenarios", []) for r in sc["rows"]
             if r["routing"] == "uniform" and r["vs_reference"]]
    if after:
        L += ["After (tuned, evaluation seeds, test set, uniform routing), paired difference to tuned FedBuff: "
              + "; ".join(after) + ".", ""]
    return L


def _claims_caveats(preset: Any, sel: dict[str, Any] | None, summary: dict[str, Any] | None) -> list[str]:
    """What limits the reading, found in the data: choices at a grid edge (the best step may lie
    outside the grid), censored and diverged evaluation runs, the number of pilot seeds."""
    L = []
    if sel is not None:
        edge = []
        for sc, v in sel["scenarios"].items():
            for key, c in v["chosen"].items():
                if c["at_edge"]:
                    table = c["tables"][c["weighting"]]["table"]
                    k = next(i for i, row in enumerate(table) if row["lr"] == c["eta_g"])
                    inner = table[1 if k == 0 else k - 1]
                    edge.append(f"{sc} {key} (eta_g {c['eta_g']:g}, score {c['score']:.3f}; inner neighbour "
                                f"{inner['lr']:g}: {inner['score']:.3f})")
        if edge:
            L.append("Chosen at an edge of the eta_g grid (the best step may lie outside it): " + ", ".join(edge) + ".")
        L.append(f"Tuning rests on {len(preset.pilot_seeds)} pilot seed(s) {list(preset.pilot_seeds)}: a choice "
                 "between two neighbouring grid points whose scores differ by less than the seed-to-seed spread "
                 "is not resolved.")
    if summary is not None:
        for sc in summary["scenarios"]:
            for r in sc["rows"]:
                if r["censored_seeds"] or r["diverged"]:
                    L.append(f"{sc['scenario']} {r['key']}: {len(r['censored_seeds'])} evaluation run(s) never reached "
                             f"the target (seeds {r['censored_seeds']}), {r['diverged']} diverged.")
    return (["## Caveats", ""] + [f"- {x}" for x in L] + [""]) if L else []


def _claims_posthoc(preset: Any, data: dict[str, Any], checks: list[dict[str, Any]]) -> list[str]:
    """The post-hoc grid extensions (claims.POSTHOC): the extended score table, the choice, and
    the claims' verdicts recomputed against the re-tuned reference."""
    L = ["## Post-hoc check: extended grid (added after the evaluation; not pre-registered)", ""]
    for c in checks:
        recs = [*c["tuning"], *c["evaluation"]]
        table = ", ".join(f"{row['lr']:g} -> {row['score']:.3f}" for row in c["table"]["table"])
        L += [f"- {c['scenario']} {c['algorithm']}/{c['routing']} ({c['weighting']} weighting), steps {c['etas']} "
              f"added on the pilot seeds; mean pilot score per eta_g: {table}. Frozen choice {c['frozen_eta']:g}, best "
              f"over the extended grid {c['best_eta']:g}{' (grid edge)' if c['table']['at_edge'] else ''}. Code "
              f"version of these {len(recs)} runs: " + ", ".join(f"`{k}`" for k in code_versions(recs)) + "."]
        summary = posthoc_summary(preset, data["selection"], data["evaluation"], c)
        if summary is None:
            L.append("  The frozen choice stands: nothing re-evaluated.")
            continue
        row = next(r for sc in summary["scenarios"] if sc["scenario"] == c["scenario"] for r in sc["rows"]
                   if r["key"] == f"{c['algorithm']}/{c['routing']}")
        L.append(f"  Re-evaluated at eta_g {c['best_eta']:g} on the evaluation seeds: test accuracy at T "
                 f"{_points(row['accuracy'], False)} %, reached the target {row['reached']}/{len(row['seeds'])}.")
        L += ["", "  The claims of this scenario against the re-tuned reference:", ""]
        for v in claim_verdicts(summary):
            cl = v["claim"]
            if cl.scenario != c["scenario"] or v["verdict"] == "not testable here":
                continue
            est = (f"{_points(v['estimate'])} points" if cl.kind == "accuracy" else
                   f"time ratio {_ratio_text(v['estimate'])}, censored {v['comparison']['censored']}/"
                   f"{v['comparison']['censored_reference']}")
            L.append(f"  - {cl.paper}: {cl.text}: **{v['verdict']}** ({est}).")
    return L + [""]


def write_claims_report(preset: Any, data: dict[str, Any], path: str | Path,
                        figures_dir: str | Path | None = None, command: str = "",
                        posthoc: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Markdown (and HTML) report of :mod:`validation.fedbuff_family.claims` from an experiment
    folder's data (:func:`validation.fedbuff_family.claims.load_claims`): provenance and code
    versions (mixed versions are flagged and the verdicts marked provisional), the protocol, the
    selection, the results and the verdict on each claim. Writable at any stage: before the
    evaluation it holds the protocol and (once tuned) the selection."""
    path = Path(path)
    sel, ev, tun = data.get("selection"), data.get("evaluation") or [], data.get("tuning") or []
    title = "The FedBuff-family papers' claims, every algorithm tuned"
    L = [f"# {title}", ""]
    if command:
        L += [f"Generated by `{command}`.", ""]
    versions = code_versions([*tun, *ev])
    per_scenario: dict[str, dict[str, int]] = {}
    for sc in preset.scenarios:
        recs = [r for r in [*tun, *ev] if (r.get("settings") or {}).get("scenario") == sc.name]
        if recs:
            per_scenario[sc.name] = code_versions(recs)
    mixed = any(len(v) > 1 for v in per_scenario.values())
    L += ["## Provenance", ""]
    if len(versions) <= 1:
        L.append(f"All {len(tun) + len(ev)} records come from one code version: "
                 f"`{next(iter(versions), 'none yet')}`.")
    elif not mixed:
        L.append("Each scenario's records come from one code version (every claim is tested within one scenario, so "
                 "no comparison mixes versions); the scenarios differ: " + "; ".join(
                     f"{k}: `{next(iter(v))}` ({sum(v.values())} records)" for k, v in per_scenario.items()) + ".")
    else:
        L.append("**Mixed code versions within a scenario: these records are not from one version of the code and must "
                 "not be read as one experiment.** " + "; ".join(
                     f"{k}: " + ", ".join(f"`{a}` {b} records" for a, b in v.items()) for k, v in per_scenario.items()))
    wall = sum((r.get("timing") or {}).get("wall_time", 0.0) for r in [*tun, *ev])
    L += [f"Compute: {len(tun)} tuning and {len(ev)} evaluation runs, {wall / 60:.1f} core-minutes of wall time "
          "(sum over runs, one torch thread each).", "",
          "## Protocol (fixed in validation/fedbuff_family/claims.py before any evaluation run)", ""]
    L += protocol_lines(preset) + [""]
    summary, figs = None, []
    if sel is not None:
        L += _claims_selection(sel)
    if sel is not None and ev:
        summary = summarize_claims(preset, sel, ev)
        L += _claims_verdicts(claim_verdicts(summary), mixed)
        L += _claims_results(summary)
        if figures_dir is not None:
            for sc in summary["scenarios"]:
                recs = [{**r, "algorithm": f"{r['settings']['algorithm']} / {r['settings']['routing']}"}
                        for r in ev if r["settings"]["scenario"] == sc["scenario"]]
                recs = [{**r, "target": sc["target"]} for r in recs]
                figs += comparison_accuracy_figure(recs, figures_dir, f"claims_{sc['scenario']}")
    else:
        L += ["## The papers' claims", "", "No evaluation records yet: verdicts follow the evaluation stage.", ""]
    L += _claims_gap(sel, summary)
    L += _claims_caveats(preset, sel, summary)
    if posthoc and sel is not None and ev:
        L += _claims_posthoc(preset, data, posthoc)
    return write_pages(path, L, title, figs)
