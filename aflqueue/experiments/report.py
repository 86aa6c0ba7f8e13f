"""Every experiment report (Markdown, and the same page as standalone HTML).

One module writes the reports of all experiments, sharing the number and interval formatting
and the HTML conversion:

* the validation grid (:func:`summarize`, :func:`write_report`): predicted vs measured gains of
  the routings. Statistics are over seeds. A seed fixes the data split, the initial model and
  the schedule's random streams for every routing and algorithm, so comparisons with AsyncSGD are
  *paired* by seed: the gain of a routing is the mean of per-seed gains, with a t-interval. Time
  to target is the first evaluation time (20 equally spaced points of the budget) at which test
  accuracy reaches the data set's target; a run that never reaches it within the budget is
  censored.
* closed forms vs simulation (:func:`write_closed_forms_report`), from the results dict of
  :mod:`aflqueue.experiments.closed_forms`;
* the algorithm comparison (:func:`summarize_comparison`, :func:`write_comparison_report`), from
  the records of :mod:`aflqueue.experiments.comparison`: accuracies and paired accuracy
  differences with bootstrap intervals, time ratios on the log scale;
* the FedBuff-family papers' claims with every algorithm tuned (:func:`write_claims_report`),
  from :mod:`aflqueue.experiments.claims`.

Figures are drawn by :mod:`aflqueue.plots`; a report only links (and in HTML embeds) them.
"""

from __future__ import annotations

import base64
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..io import atomic_write_text
from ..stats import Estimate, bonferroni_threshold, t_quantile, bootstrap_interval, log_ratio_interval, t_interval, t_two_sided_p
from .grid import ROUTING_LABELS, ROUTINGS
from .paper import DATASETS, SAFEGUARDS, TREATMENTS, PaperPreset, code_versions, summarize_paper

__all__ = ["summarize", "write_report", "mean_ci", "write_closed_forms_report", "summarize_comparison",
           "write_comparison_report", "write_paper_report", "write_regimes_report", "write_approx_report",
           "write_claims_report", "write_delay_oracle_report", "BEFORE_TUNING"]


# --------------------------------------------------------------------------- shared formatting
def _f(x: float | None, d: int = 3) -> str:
    """Fixed-point number, "-" when undefined (None, NaN, inf)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{d}f}"


def _pct(x: float | None, d: int = 1) -> str:
    """Signed percentage of a fraction (0.021 -> "+2.1%"), "-" when undefined."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.{d}f}%"


def _interval(e: Estimate | tuple, fmt, show_n: bool = False) -> str:
    """``mean [lo, hi]`` with ``fmt`` applied to each number; the mean alone when the interval is
    undefined, "-" when the mean is; ``show_n`` appends how many values it rests on."""
    m, lo, hi, n = (e.mean, e.lo, e.hi, e.n) if isinstance(e, Estimate) else e
    if not math.isfinite(m):
        return "-"
    text = f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else fmt(m)
    return f"{text} (n={n})" if show_n else text


def _figure_md(path: Path, rel_to: Path, caption: str) -> str:
    # relative links, so that the report renders in any clone (and on a forge), wherever it was written from
    rel = Path(os.path.relpath(Path(path).resolve(), Path(rel_to).resolve()))
    return f"![{caption}]({rel.as_posix()})\n\n*{caption}*\n"


def _write_pages(path: Path, lines: list[str], title: str,
                 figures: list[tuple[Path, str]] = ()) -> tuple[Path, Path]:
    """Write the Markdown ``lines`` (plus a Figures section) to ``path`` and the same page as
    standalone HTML next to it (``.html``, figures embedded); returns both paths."""
    lines = list(lines)
    if figures:
        lines += ["## Figures", ""]
        for f, cap in figures:
            lines.append(_figure_md(f, path.parent, cap))
    text = "\n".join(lines) + "\n"
    atomic_write_text(path, text)
    html = atomic_write_text(path.with_suffix(".html"), _to_html(text, path.parent, title))
    return path, html


def _to_html(md_text: str, base: Path, title: str) -> str:
    """Markdown to a standalone HTML page; images are embedded as base64 data URIs."""
    import re

    import markdown

    body = markdown.markdown(md_text, extensions=["tables"])

    def embed(m: re.Match) -> str:
        src = m.group(1)
        p = (base / src).resolve()
        if p.is_file() and p.suffix == ".png":
            return f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"'
        return m.group(0)

    body = re.sub(r'src="([^"]+)"', embed, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:1px 3px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>" \
           f"<body>{body}</body></html>\n"


# --------------------------------------------------------------------------- algorithm comparison
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
    :func:`aflqueue.experiments.comparison.preset_summary` of the resolved preset."""
    from ..plots import comparison_accuracy_figure

    path = Path(path)
    summary = summarize_comparison(records)
    ref = summary["reference"]
    figs = comparison_accuracy_figure(records, figures_dir, preset["name"]) if figures_dir is not None else []
    seeds = sorted({r["seed"] for r in records})
    acc = lambda e: _interval(e, lambda v: f"{100 * v:.1f}", show_n=True)  # noqa: E731
    ratio = lambda e: _interval(e, lambda v: f"{v:.2f}", show_n=True)  # noqa: E731
    title = "Server algorithms at equal simulated time: " + " vs ".join(preset["algorithms"])
    L = [f"# {title}", "",
         f"Generated by `validation/stale_algorithms.py --preset {preset['name']}{' --quick' if quick else ''}` from "
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
        server_ms = _interval(Estimate(1e3 * ms.mean, 1e3 * ms.lo, 1e3 * ms.hi, ms.n), lambda v: f"{v:.3f}", True)
        if r["algorithm"] == ref:
            diff = time_ratio = server_ratio = "-"
        else:
            diff = _interval(r["difference"], lambda v: f"{100 * v:+.1f}", show_n=True)
            time_ratio = f"{ratio(r['time_ratio'])} ({r['censored']})"
            server_ratio = ratio(r["server_time_ratio"])
        L.append(f"| {r['algorithm']} | {acc(r['accuracy'])} | {acc(r['accuracy_half'])} | {diff} | "
                 f"{r['reached']}/{len(r['seeds'])} | {time_ratio} | {r['arrivals']:.0f} | {r['versions']:.0f} | "
                 f"{r['staleness_mean']:.1f} | {server_ms} | {server_ratio} | {r['memory_bytes'] / 2**20:.2f} MiB | "
                 f"{_f(r['wall_time'], 0)} s |")
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
    return _write_pages(path, L, title, figs)


# --------------------------------------------------------------------------- paper-scale validation
# --------------------------------------------------------------------------- regime map (pilot calibration)
def _rho(st: dict[str, Any] | None) -> str:
    if not st or st.get("statistic") is None:
        return "-"
    p = st.get("p_value")
    return f"{st['statistic']:+.2f} (p = {p:.3g}, n = {st['n']})" if p is not None else f"{st['statistic']:+.2f}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def _num(x: float | None, d: int = 2) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _ratio_iv(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    pt = d.get("point", d.get("mean"))
    if pt is None:
        return "-"
    lo, hi = (d.get("lo"), d.get("hi")) if "lo" in d else ((d.get("ci") or [None, None])[0], (d.get("ci") or [None, None])[1])
    s = "never" if pt >= 1e11 else f"{pt:.2f}"
    return f"{s} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None and pt < 1e11 else s


def write_regimes_report(preset: Any, data: dict[str, Any], path: str | Path,
                         figures_dir: str | Path | None = None) -> Path:
    """Write the regime map's Markdown report (and its figures) from a saved experiment folder
    (:func:`aflqueue.experiments.regimes.load_regimes`)."""
    from .regimes import PARTITION_LABELS, PREDICTORS, TARGET_SPEARMAN, nontrivial, routing_names, summarize_regimes

    path = Path(path)
    recs = [*data["pilots"], *data["tuning"], *data["evaluation"]]
    versions = code_versions(recs)
    L = ["# Regime map: does the pilot-calibrated predictor say where optimising the routing pays?", "",
         f"Protocol: `{preset.protocol}` (committed before the first run). Code: "
         "`aflqueue/pilot.py`, `aflqueue/experiments/regimes.py`.", "", "## Provenance", ""]
    if len(versions) == 1:
        L.append(f"All {len(recs)} training runs (pilots, tuning, evaluation) come from one code version: "
                 f"`{next(iter(versions))}`.")
    else:
        L.append("**Mixed code versions: these runs are not from one version of the code and must not be read as "
                 "one experiment.** " + "; ".join(f"`{k}`: {v} runs" for k, v in versions.items()))
    for name in ("design", "predictions"):
        cv = (data.get(name) or {}).get("code_version")
        if cv:
            L.append(f"`{name}.json` was computed by code version `{cv.get('source')}` (commit "
                     f"{str(cv.get('commit'))[:12]}).")
    L.append("")
    if data["predictions"] is None or data["selection"] is None or not data["evaluation"]:
        L += [f"Incomplete: {len(data['pilots'])} pilot runs, {len(data['tuning'])} tuning runs, "
              f"{len(data['evaluation'])} evaluation runs so far.", ""]
        atomic_write_text(path, "\n".join(L) + "\n")
        return path
    s = summarize_regimes(preset, data)
    regs = s["regimes"]
    n_regimes = len(preset.regimes())
    L += ["## Design and the held-out split", "",
          f"- Task: {preset.dataset} ({preset.model}), n = {preset.clients} clients of five device types, "
          f"Generalized AsyncSGD with one local step, budget tau = AsyncSGD's expected time for {preset.updates} "
          "updates in each regime.",
          f"- Held-out regimes ({len(regs)} of {n_regimes} finished): speed spread "
          f"{', '.join(f'{x:g}' for x in preset.spreads)} x heterogeneity "
          f"{', '.join(PARTITION_LABELS[p] for p in preset.partitions)} at m = n"
          + ((", and m = " + " and ".join(f"{f:g} n" for f in preset.concurrency_factors) + " at "
              + ", ".join(f"(spread {sp:g}, {PARTITION_LABELS[p]})" for sp, p in preset.concurrency_points))
             if preset.concurrency_points else "") + ".",
          f"- Pilots (the only runs a fitted predictor sees): **transfer** -- per heterogeneity, on a pilot system "
          f"that is not a regime (spread {preset.pilot_spread:g}, m = n), routings "
          f"{', '.join(preset.pilot_routings)} x learning rates {', '.join(f'{x:g}' for x in preset.pilot_lrs)}, "
          f"pilot seed {preset.pilot_seed}, {preset.pilot_fraction:g} of the budget, validation split; "
          + ("**local** -- the same on each regime's own system. " if preset.local_pilots else "no local pilots. ")
          + "Evaluation: tuned rates "
          f"({', '.join(f'{x:g}' for x in preset.tuning_lrs)} on tuning seed {preset.tuning_seed}), seeds "
          f"{', '.join(str(x) for x in preset.eval_seeds)}, test set. Predictions were frozen in "
          "`predictions.json` before the first tuning run.",
          "- Measured gain: geometric mean over seeds of the paired ratio t(routing) / t(AsyncSGD) of the times to "
          "the regime's target accuracy (< 1: faster), 95% interval on the log scale.", ""]
    # ---- headline
    target_met = None
    prim = s["across"].get(f"p2|time_ratio|{preset.primary}")
    if prim and prim.get("statistic") is not None:
        target_met = prim["statistic"] >= TARGET_SPEARMAN
    L += ["## Held-out rank correlations", "",
          "Spearman correlation between predicted and measured gain; one-sided permutation p-values "
          f"({preset.permutations} seeded permutations; within regimes the routings are permuted inside each "
          "regime). *Across regimes*: P2's time ratio over the regimes. *Within*: over the routings of each regime "
          f"({', '.join(nontrivial(preset))}; then with P1 too), averaged over regimes.", "",
          "| predictor | across regimes (P2) | within, non-trivial | within, with P1 | across (P3) | across (op-fit) | "
          "across, accuracy difference (P2) |", "|---|---|---|---|---|---|---|"]
    for p in s["predictors"]:
        L.append(f"| {p}: {PREDICTORS[p]} | {_rho(s['across'].get(f'p2|time_ratio|{p}'))} | "
                 f"{_rho(s['within'].get(f'nontrivial|{p}'))} | {_rho(s['within'].get(f'with_p1|{p}'))} | "
                 f"{_rho(s['across'].get(f'p3|time_ratio|{p}'))} | {_rho(s['across'].get(f'op-fit|time_ratio|{p}'))} | "
                 f"{_rho(s['across'].get(f'p2|accuracy_difference|{p}'))} |")
    L.append("")
    extra = [(p, s["within"].get(f"loss|nontrivial|{p}"), s["within"].get(f"loss|with_p1|{p}"))
             for p in ("initial", "transfer", "local")]
    if any(e[1] for e in extra):
        L += ["Additional, not pre-registered (the quantity of the issue's 0.50 and 0.13-0.19): within regimes, the "
              "predicted loss at the budget (pilot fits) or the wall-clock proxy W (initial-model constants) "
              "against the measured final test loss: " + "; ".join(
                  f"{p}: without P1 {_rho(a)}, with P1 {_rho(b)}" for p, a, b in extra if a) + ".", ""]
    if target_met is not None and len(regs) < n_regimes:
        # the pre-registered primary is over every regime: a part of the map is no test of it
        L.append(f"**Incomplete map: {len(regs)} of {n_regimes} regimes finished. The pre-registered primary "
                 f"(across-regime Spearman over all {n_regimes} regimes, target >= {TARGET_SPEARMAN:g}) is not evaluable "
                 "yet;** on the "
                 f"finished regimes the {preset.primary} fit gives {_rho(prim)} and the initial-model proxy "
                 f"{_rho(s['across'].get('p2|time_ratio|initial'))}, which no conclusion can rest on.")
        L.append("")
    elif target_met is not None:
        L.append(f"**Primary (pre-registered): across-regime Spearman of {preset.primary} "
                 f"({PREDICTORS[preset.primary]}) = {prim['statistic']:.2f} "
                 f"(p = {prim['p_value']:.3g}); target >= {TARGET_SPEARMAN:g} {'met' if target_met else 'not met'}.** Before "
                 f"(initial-model proxy): {_rho(s['across'].get('p2|time_ratio|initial'))}.")
        L.append("")
    # ---- verdicts
    if s["verdicts"]:
        L += ["Predicted verdict ('pays': the predicted ratio's 95% interval below 1) against measured ('pays': the "
              "measured ratio's 95% interval below 1): " + "; ".join(
                  f"{k.replace('|', ', ')}: {v['agree']}/{v['total']} agree"
                  + (f" (predicted 'pays' in {v['predicted_pays']}, measured in {v['measured_pays']})"
                     if "predicted_pays" in v else "") for k, v in s["verdicts"].items()), ""]
    if s.get("noise_ceiling"):
        L += ["Added after the results (not pre-registered): the **noise ceiling** of the across-regime correlation. "
              "Seed-to-seed noise in the measured ratios caps the Spearman correlation that even a perfect predictor "
              "can reach against them. Model: measured log ratio = true + normal noise with each regime's standard "
              f"error ({len(preset.eval_seeds)} seeds), true log ratios spread with the variance that remains after the noise "
              "(`aflqueue.stats.spearman_noise_ceiling`). " + "; ".join(
                  f"{r.upper()}: {_ceiling_text(c, TARGET_SPEARMAN)}" for r, c in s["noise_ceiling"].items()) + ".", ""]
    # ---- per regime
    L += ["## Per regime", "",
          "Measured and predicted time ratios (routing / tuned AsyncSGD); transfer prediction with its 95% bootstrap "
          "interval and verdict; accuracy difference at the budget in points (P2 minus AsyncSGD).", "",
          "| regime | target | P2 measured | P2 transfer | verdict | P2 initial | P2 local | P3 measured | "
          "P3 transfer | op-fit measured | op-fit transfer | P2 accuracy diff. (measured / transfer) | tuned lr "
          "(uniform, P2) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sc in regs:
        rows = sc["rows"]

        def pr(name: str, p: str) -> Any:
            return ((rows.get(name) or {}).get("predicted") or {}).get(p) or {}

        def meas(name: str) -> str:
            return _ratio_iv((rows.get(name) or {}).get("time_ratio"))

        ad = (rows.get("p2") or {}).get("accuracy_difference")
        adp = pr("p2", "transfer").get("accuracy_difference") or {}
        lrs = f"{rows['uniform']['lr']:.3g}, {rows['p2']['lr']:.3g}" if "p2" in rows else "-"
        L.append(f"| {sc['regime']} | {sc['target']:.2f} | {meas('p2')} | {_ratio_iv(pr('p2', 'transfer').get('time_ratio'))} | "
                 f"{pr('p2', 'transfer').get('verdict', '-')} | {_ratio_iv(pr('p2', 'initial').get('time_ratio'))} | "
                 f"{_ratio_iv(pr('p2', 'local').get('time_ratio'))} | {meas('p3')} | "
                 f"{_ratio_iv(pr('p3', 'transfer').get('time_ratio'))} | {meas('op-fit')} | "
                 f"{_ratio_iv(pr('op-fit', 'transfer').get('time_ratio'))} | "
                 f"{_pts(ad and ad.get('mean'))} / {_pts(adp.get('point'))} | {lrs} |")
    L.append("")
    L += ["Measured time ratio of every routing (geometric mean over seeds; runs censored at the budget in "
          "parentheses):", "", "| regime | " + " | ".join(routing_names(preset) + ["op-fit"]) + " |",
          "|---" * (2 + len(routing_names(preset))) + "|"]
    for sc in regs:
        cells = []
        for name in [*routing_names(preset), "op-fit"]:
            r = sc["rows"].get(name)
            if not r or not r["time_ratio"]:
                cells.append("-")
                continue
            cells.append(f"{r['time_ratio']['mean']:.2f}" + (f" ({r['censored']})" if r["censored"] else ""))
        L.append(f"| {sc['regime']} | " + " | ".join(cells) + " |")
    L.append("")
    # ---- fits
    L += ["## The pilot fits", "", "Family `loss(K) = theta0 + theta1/(eta K) + theta2 eta S1 + theta3 eta^2 S2` "
          "(NNLS, second half of each pilot curve); constants file: `Delta = theta1/2, M2 = theta2, G2 = theta3, "
          "L = 1, sigma2 = 0`.", "",
          "| heterogeneity | theta0 | theta1 (optimisation) | theta2 (variance) | theta3 (staleness) | eta_max | R^2 "
          "(pilots) | accuracy map MAE pilots / held-out test curves |", "|---|---|---|---|---|---|---|---|"]
    for part, f in s["fits"]["transfer"].items():
        th = f["theta"]
        q = f.get("bootstrap_quantiles")
        ivs = [f"{th[k]:.3g}" + (f" [{q[0][k]:.3g}, {q[1][k]:.3g}]" if q else "") for k in range(4)]
        am = s["accuracy_maps"].get(part, {})
        mae_p = (am.get("pilots") or {}).get("mae")
        mae_h = (am.get("heldout") or {}).get("mae")
        r2 = f["diagnostics"].get("r2")
        L.append(f"| {PARTITION_LABELS.get(part, part)} | " + " | ".join(ivs) + f" | {f['eta_max']:g} | "
                 f"{'-' if r2 is None else f'{r2:.2f}'} | {'-' if mae_p is None else f'{mae_p:.3f}'} / "
                 f"{'-' if mae_h is None else f'{mae_h:.3f}'} |")
    L.append("")
    # ---- which term fails
    fam = s["family"]
    if fam:
        rs = fam["residual_spearman"]
        L += ["## Which term fails", "",
              f"The transfer fit's loss at the rate each evaluation run actually used, against the measured final test "
              f"loss ({fam['runs']} held-out runs): Spearman {fam['spearman']:.2f}, R^2 "
              f"{_num(fam['r2'])}, mean residual (measured - predicted) "
              f"{fam['mean_residual']:+.3f}. Share of the predicted loss per term: offset {fam['offset_share']:.2f}, "
              + ", ".join(f"{k} {v:.2f}" for k, v in fam["term_share"].items()) + ". Spearman of the residual with "
              "each term's driver (a term that describes the data leaves no residual correlation with its driver): "
              + ", ".join(f"{k} {v:+.2f}" for k, v in rs.items() if v is not None) + ".", ""]
        abl = [(p, s["across"].get(f"p2|time_ratio|{p}"), s["within"].get(f"nontrivial|{p}"))
               for p in ("transfer", "transfer-opt", "transfer-opt+var", "transfer-opt+stale")]
        L += ["Ablations of the transfer fit (the same pilots, terms removed): " + "; ".join(
            f"{PREDICTORS[p]}: across {_rho(a)}, within {_rho(w)}" for p, a, w in abl) + ".", ""]
    # ---- cost
    c = s["cost"]
    grid = c["tuning"]["wall_time_s"] + c["evaluation"]["wall_time_s"]
    grid_runs = c["tuning"]["runs"] + c["evaluation"]["runs"]
    L += ["## Cost of the pilots against the grid they replace", "",
          "| | runs | updates trained | wall time (sum over runs) | share of the grid |", "|---|---|---|---|---|"]
    for k, label in (("transfer_pilots", "transfer pilots (all regimes)"), ("local_pilots", "local pilots (all regimes)"),
                     ("tuning", "grid: tuning"), ("evaluation", "grid: evaluation")):
        v = c[k]
        if k == "local_pilots" and not preset.local_pilots:
            continue
        L.append(f"| {label} | {v['runs']} | {v['arrivals']:,} | {v['wall_time_s'] / 60:.1f} min | "
                 f"{(v['wall_time_s'] / grid if grid else float('nan')):.1%} |")
    L += ["", f"The grid (tuning + evaluation) took {grid_runs} runs and {grid / 3600:.2f} hours of wall time (sum "
          f"over runs, on a shared 2-core machine). Per regime the "
          + (f"local pilots cost {c['local_pilots']['runs'] / max(len(regs), 1):.0f}" if preset.local_pilots else
             f"shared transfer pilots cost {c['transfer_pilots']['runs'] / max(len(regs), 1):.1f}")
          + f" runs against {grid_runs / max(len(regs), 1):.0f} for measuring the gain directly.", ""]
    if figures_dir is not None:
        from ..plots import regime_figures

        L += ["## Figures", ""]
        for pth, cap in regime_figures(s, figures_dir):
            L.append(_figure_md(Path(pth).resolve(), path.parent.resolve(), cap))
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


def _ceiling_text(c: dict[str, Any], target: float) -> str:
    """One noise ceiling (:meth:`aflqueue.stats.NoiseCeiling.to_dict`) in words."""
    return (f"share of the measured spread that is real {c['reliability']:.2f}, a perfect predictor's expected "
            f"Spearman {c['mean']:.2f} (90% of repetitions in [{c['lo']:.2f}, {c['hi']:.2f}]), P(>= {target:g}) = "
            f"{c['prob_at_least'][str(target)]:.2f}")


def write_regimes_pooled_report(maps: Iterable[tuple[Any, dict[str, Any]]], path: str | Path) -> Path:
    """The across-regime correlations over the union of several regime maps (each ``(preset,
    load_regimes(...))``), with each map's code version; a secondary analysis of
    ``validation/REGIMES_CONFIRM_PROTOCOL.md``."""
    from .regimes import PREDICTORS, TARGET_SPEARMAN, pool_regime_maps, summarize_regimes

    path = Path(path)
    maps = list(maps)
    sums = [summarize_regimes(pr, d) for pr, d in maps]
    pooled = pool_regime_maps(sums)
    L = ["# Regime maps pooled", "",
         "Secondary analysis pre-registered in `validation/REGIMES_CONFIRM_PROTOCOL.md`: the across-regime rank "
         "correlation between predicted and measured P2 time ratios (P2 / tuned AsyncSGD) over the regimes of "
         "every map together. Each map's runs are at one code version; the maps are at different versions "
         "(the confirmatory map retrained the same pilots at its own version: its fitted constants are close to the "
         "first map's but not identical; compare the fit tables of the two reports).", ""]
    for (pr, d), sm in zip(maps, sums):
        recs = [*d["pilots"], *d["tuning"], *d["evaluation"]]
        L.append(f"- `{pr.name}`: {len(sm['regimes'])} regimes, seeds {', '.join(str(x) for x in pr.eval_seeds)}, "
                 f"code version " + ", ".join(f"`{k}`" for k in code_versions(recs)) + ".")
    L += ["", f"| predictor | Spearman over {pooled['regimes']} regimes | one-sided permutation p |", "|---|---|---|"]
    for p, r in pooled["across"].items():
        L.append(f"| {p}: {PREDICTORS[p]} | {r['statistic']:+.2f} | {r['p_value']:.3g} |")
    c = pooled.get("noise_ceiling")
    if c:
        L += ["", f"Noise ceiling of the pooled measurements: {_ceiling_text(c, TARGET_SPEARMAN)}."]
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


# --------------------------------------------------------------------------- approximation for general service
def _upct(x: float | None, d: int = 1) -> str:
    """Unsigned percentage of a fraction (0.021 -> "2.1%"), "-" when undefined."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{d}f}%"


def _g(x: float | None, d: int = 4) -> str:
    """``d`` significant digits, "-" when undefined."""
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{d}g}"


def _point_name(rec: dict[str, Any]) -> str:
    """A record's point or system id without the quick-mode suffix."""
    return rec["id"].removesuffix("__quick")


def _approx_dist_cells(d: dict[str, Any]) -> str:
    if not d.get("count"):
        return "- | - | - | -"
    return f"{_upct(d['median'])} | {_upct(d['p95'])} | {_upct(d['max'])} | {100 * d['within_3pct']:.0f}%"


def _approx_side_by_side(title: str, blocks: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """Error distributions of the product form and the approximation, one row per subset."""
    lines = [f"**{title}** (|relative error|: median, 95th percentile, worst; share of points within 3%)", "",
             "| subset | points | PF median | PF p95 | PF worst | PF within 3% | approx median | approx p95 | "
             "approx worst | approx within 3% |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, b in blocks.items():
        cnt = b["approx"][metric].get("count", 0)
        if cnt:
            lines.append(f"| {name} | {cnt} | {_approx_dist_cells(b['product_form'][metric])} | "
                         f"{_approx_dist_cells(b['approx'][metric])} |")
    return lines + [""]


def _approx_provenance(results: dict[str, Any]) -> list[str]:
    meta, points, opts = results["meta"], results["points"], results["optimisation"]
    versions = meta.get("code_versions") or []
    if len(versions) == 1:
        v = versions[0]
        prov = f"one code version, source `{v['source']}` (commit `{str(v['commit'])[:12]}`)"
    else:
        prov = ("**mixed code versions: " + "; ".join(f"`{v['source']}` (commit `{str(v['commit'])[:12]}`)"
                                                      for v in versions) + "**")
    return [f"Generated by `validation/approx_analysis.py` from {len(points)} grid points and {len(opts)} "
            f"optimisation comparison{'' if len(opts) == 1 else 's'}, all computed by {prov} ({meta['date']}; "
            f"{meta['updates_used']:,} simulated updates after warm-up, {meta['simulation_seconds'] / 60:.1f} min of "
            "simulation on one core). Method: "
            "`aflqueue.queueing.approx` (docs/theory.md section 9). PF = product form (the exact analysis for "
            "exponential service, which uses only the means).", ""]


def _approx_worst(main: list[dict[str, Any]], errs: dict[str, Any]) -> list[str]:
    L: list[str] = []
    for metric, label in (("throughput", "throughput"), ("delay_max", "delay (worst type)")):
        ranked = sorted(main, key=lambda r: -abs(errs[r["id"]]["approx"][metric] or 0.0))[:12]
        L += [f"**Worst {label} errors of the approximation** (simulation 95% half-width in brackets)", "",
              "| point | load | simulated throughput | PF | approx | types: simulated E[D] / PF / approx |",
              "|---|---|---|---|---|---|"]
        for r in ranked:
            e = errs[r["id"]]
            s = r["simulation"]
            dl = "; ".join(f"{_g(d['mean'] if d else None)} / {_pct(pe)} / {_pct(ae)}" for d, pe, ae in
                           zip(s["delay"], e["product_form"]["delay_by_type"], e["approx"]["delay_by_type"]))
            L.append(f"| {_point_name(r)} | {e['load']} ({e['max_utilization']:.2f}) | {_g(s['throughput']['mean'])} "
                     f"(±{_upct(e['thr_hw'], 2)}) | {_pct(e['product_form']['throughput'])} | "
                     f"{_pct(e['approx']['throughput'])} | {dl} |")
        L.append("")
    return L


def _approx_extra(extra: list[dict[str, Any]], errs: dict[str, Any]) -> list[str]:
    L = ["## Multi-stage, m = 1 and other laws", "",
         "| point | law | simulated throughput ±hw | PF | approx | worst-type delay PF | approx | "
         "server queue sim / PF / approx |", "|---|---|---|---|---|---|---|---|"]
    for r in extra:
        e = errs[r["id"]]
        s = r["simulation"]
        sq = "-"
        if r["multistage"] and "server_queue" in r["approx"]:
            sq = " / ".join(_g(x) for x in (s["server_queue"]["mean"], r["product_form"]["server_queue"],
                                            r["approx"]["server_queue"]))
        dpf = e["product_form"]["delay_max"] if r["m"] > 1 else None
        dap = e["approx"]["delay_max"] if r["m"] > 1 else None
        L.append(f"| {_point_name(r)} | {r['law']} | {_g(s['throughput']['mean'])} ±{_upct(e['thr_hw'], 2)} | "
                 f"{_pct(e['product_form']['throughput'])} | {_pct(e['approx']['throughput'])} | "
                 f"{_upct(dpf)} | {_upct(dap)} | {sq} |")
    return L + [""]


def _approx_optimisation(opts: list[dict[str, Any]]) -> list[str]:
    L = ["## Item 3: routings optimised with each analysis, evaluated by simulation", "",
         "Wall-clock proxy W (P2; lower is better) at the same time budget tau for both routings. "
         "Predicted: the optimiser's own value. Simulated: the proxy with the simulated throughput and "
         "per-client delays (95% interval over batches).", "",
         "| system | law | routing from | predicted W | simulated W | simulated throughput | predicted throughput |",
         "|---|---|---|---|---|---|---|"]
    for o in opts:
        for key, lab in (("product-form", "PF"), ("approx", "approx")):
            x = o[key]
            so, st = Estimate.from_dict(x["simulated_objective"]), Estimate.from_dict(x["simulated_throughput"])
            L.append(f"| {_point_name(o)} | {o['law']} | {lab} | {_g(x['predicted_objective'])} | "
                     f"{_g(x['simulated_objective_point'])} ±{_g(so.half_width)} | "
                     f"{_g(st.mean)} ±{_g(st.half_width)} | {_g(x['predicted_throughput'])} |")
    L += ["", "| system | simulated W: approx routing vs PF routing | resolved (intervals disjoint) |", "|---|---|---|"]
    for o in opts:
        a, p = o["approx"], o["product-form"]
        hw = Estimate.from_dict(a["simulated_objective"]).half_width + Estimate.from_dict(
            p["simulated_objective"]).half_width
        diff = a["simulated_objective_point"] - p["simulated_objective_point"]
        L.append(f"| {_point_name(o)} | {_pct(diff / p['simulated_objective_point'], 2)} | "
                 f"{'yes' if abs(diff) > hw else 'no'} |")
    return L + [""]


def write_approx_report(results: dict[str, Any], path: str | Path, figures: list[tuple[Path, str]] = (),
                        reading: str | None = None) -> tuple[Path, Path]:
    """Markdown (and HTML) report of the approximation for general service vs simulation, from
    :func:`aflqueue.experiments.approx.assemble`'s results (no simulation): the protocol first,
    then the error distributions of the approximation and the product form side by side, worst
    cases, interval widths, every point, the other families, item 3 and ``reading`` (the
    author's interpretation, Markdown)."""
    from .approx import PROTOCOL, main_grid

    path = Path(path)
    points, summ = results["points"], results["summary"]
    errs = summ["errors"]
    title = "Approximate analysis for general service vs simulation"
    L: list[str] = [f"# {title}", "", *_approx_provenance(results), PROTOCOL, "", "## Results", ""]
    if results["meta"].get("quick"):
        L += ["**Quick mode: a smoke test with 50x fewer updates, not a validation.**", ""]
    a = summ["all"]
    ap_t, pf_t, ap_d, pf_d = a["approx"]["throughput"], a["product_form"]["throughput"], a["approx"]["delay"], \
        a["product_form"]["delay"]
    L += [f"Main grid: {ap_t.get('count', 0)} points (hetero and homo, m >= 2). Throughput within 3%: approximation "
          f"at {_upct(ap_t.get('within_3pct'), 0)} of the points (worst {_upct(ap_t.get('max'))}), product form at "
          f"{_upct(pf_t.get('within_3pct'), 0)} (worst {_upct(pf_t.get('max'))}). Delays (every type within 3%, "
          f"{ap_d.get('count', 0)} points): approximation {_upct(ap_d.get('within_3pct'), 0)}, product form "
          f"{_upct(pf_d.get('within_3pct'), 0)}.", ""]
    by_cv = {"all": a, **{f"cv {k}": v for k, v in summ["by_cv"].items()}}
    by_n = {f"n = {k}": v for k, v in summ["by_n"].items()}
    for label, blocks, metric in (
            ("Throughput", by_cv, "throughput"),
            ("Mean relative delay E[D], worst type of each point (primary, plain relative error)", by_cv, "delay"),
            ("Mean relative delay, error / max(E[D], 1) (secondary)", by_cv, "delay_floor"),
            ("Mean number of tasks per type, worst type of each point", by_cv, "queue"),
            ("Throughput by number of clients", by_n, "throughput"), ("Delay by number of clients", by_n, "delay"),
            ("Throughput by load (largest simulated compute utilisation of a type)", summ["by_load"], "throughput"),
            ("Delay by load", summ["by_load"], "delay"), ("Throughput by routing", summ["by_routing"], "throughput"),
            ("Delay by routing", summ["by_routing"], "delay")):
        L += _approx_side_by_side(label, blocks, metric)
    iw = summ["interval_widths"]
    L += ["**Simulation resolution.** 95% half-width relative to the estimate: throughput median "
          f"{_upct(iw['throughput'].get('median'), 2)}, largest {_upct(iw['throughput'].get('max'), 2)}; "
          f"per-type delay (largest type of each point) median {_upct(iw['delay'].get('median'), 2)}, 95th percentile "
          f"{_upct(iw['delay'].get('p95'), 2)}, largest {_upct(iw['delay'].get('max'), 2)}.", ""]
    main = main_grid(points)
    L += _approx_worst(main, errs)
    L += ["**Every point of the main grid** (relative errors; delay: worst type)", "",
          "| point | load | thr ±hw | thr PF | thr approx | delay ±hw | abs delay PF | abs delay approx |",
          "|---|---|---|---|---|---|---|---|"]
    for r in main:
        e = errs[r["id"]]
        L.append(f"| {_point_name(r)} | {e['load']} | {_upct(e['thr_hw'], 2)} | "
                 f"{_pct(e['product_form']['throughput'])} | {_pct(e['approx']['throughput'])} | "
                 f"{_upct(e['delay_hw_max'], 2)} | {_upct(e['product_form']['delay_max'])} | {_upct(e['approx']['delay_max'])} |")
    L.append("")
    main_ids = {r["id"] for r in main}
    extra = [r for r in points if r["id"] not in main_ids]
    if extra:
        L += _approx_extra(extra, errs)
    tpf = [r["timing"].get("product_form_seconds") for r in main if r.get("timing")]
    tap = [r["timing"].get("approx_seconds") for r in main if r.get("timing")]
    if tpf and tap:
        L += [f"Analysis time per grid point (one-shot, including set-up): product form median "
              f"{1e3 * np.median(tpf):.2f} ms, approximation median {1e3 * np.median(tap):.2f} ms, largest "
              f"{1e3 * max(tap):.1f} ms. Timing against the product form at n = 100 and n = 1000: "
              "`python validation/bench_approx.py`.", ""]
    if results["optimisation"]:
        L += _approx_optimisation(results["optimisation"])
    L += ["## Reading", "", reading or "(see docs/theory.md section 9)", ""]
    return _write_pages(path, L, title, list(figures))




# --------------------------------------------------------------------------- the FedBuff-family claims
#: the numbers before this experiment (untuned spec defaults), quoted from the issue and the
#: committed reports: ``validation/results/stale_algorithms`` and ``validation/results/grid_default``
BEFORE_TUNING = (
    "FedRevive - FedBuff, `stale` scenario, spec defaults: -4.4 points [t -8.0, -0.8] (5 seeds; "
    "validation/results/stale_algorithms/report.md)",
    "FedEcho - FedBuff, `stale` scenario, spec defaults: +1.8 points [t -0.1, +3.8] (5 seeds; same report)",
    "validation grid (digits, K = 1): FedBuff 0.28 vs Generalized AsyncSGD 0.91 at equal time, FedBuff's server "
    "step eta_g = 1 untuned (issue 16)",
)


def _est(d: dict[str, Any] | None) -> Estimate:
    return Estimate.from_dict(d)


def _points(e: dict[str, Any] | None, signed: bool = True) -> str:
    """An accuracy (or accuracy difference) estimate in percentage points."""
    return _interval(_est(e), (lambda v: f"{100 * v:+.1f}") if signed else (lambda v: f"{100 * v:.1f}"),
                     show_n=True)


def _ratio_text(e: dict[str, Any] | None) -> str:
    return _interval(_est(e), lambda v: f"{v:.2f}", show_n=True)


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
            ms = _interval(_est(r["server_ms_per_arrival"]), lambda x: f"{x:.2f}")
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
    from .claims import claim_verdicts, posthoc_summary

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
    """Markdown (and HTML) report of :mod:`aflqueue.experiments.claims` from an experiment
    folder's data (:func:`~aflqueue.experiments.claims.load_claims`): provenance and code
    versions (mixed versions are flagged and the verdicts marked provisional), the protocol, the
    selection, the results and the verdict on each claim. Writable at any stage: before the
    evaluation it holds the protocol and (once tuned) the selection."""
    from ..plots import comparison_accuracy_figure
    from .claims import claim_verdicts, protocol_lines, summarize_claims

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
          "## Protocol (fixed in aflqueue/experiments/claims.py before any evaluation run)", ""]
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
    return _write_pages(path, L, title, figs)


def write_delay_oracle_report(summary: dict[str, Any], path: str | Path, reading: str | None = None) -> Path:
    """Markdown report of :func:`aflqueue.experiments.delay_oracle.run_delay_oracle`'s summary:
    the protocol, then the share of points whose every type is within 3% for the three oracles,
    the approximation and the product form, overall, at m = 2 and m >= 3, per cv and per n, and
    the points in full; ``reading`` (the author's interpretation, Markdown) comes before them."""
    from .delay_oracle import ORACLE_PROTOCOL

    path = Path(path)
    meta = summary["meta"]
    def versions(vs: list[dict[str, Any]]) -> str:
        return "; ".join(f"`{v['source']}` (commit `{str(v['commit'])[:12]}`)" for v in vs) or "no record"

    kinds = meta.get("simulated_by_kind", {})
    by_kind = meta.get("code_versions_by_kind", {})
    L = ["# Oracle tests of the approximation's delay formula", "",
         f"Generated by `validation/approx_delay_oracle.py`: {kinds.get('oracle', 0)} systems simulated with m - 1 "
         f"tasks (code {versions(by_kind.get('oracle', []))}) and {kinds.get('marie', 0)} at m (code "
         f"{versions(by_kind.get('marie', []))}); {meta['updates_used']:,} updates after warm-up; the delays at m for the first two oracles are the approx validation's "
         f"(source {', '.join(f'`{s}`' for s in meta['approx_code_versions'])}). Points without the records "
         f"they need: {summary['missing']}. Method: `aflqueue.experiments.delay_oracle`. Oracles: "
         "**exact queues** = the arrival-theorem delay form fed the exact time-average queues at m - 1; "
         "**Marie** = the load-dependent product-form network fed each client's measured departure rate given "
         "its queue; **projection** = the simulated path's queue lengths with those rates (what queue-length "
         "information can explain at best); **cross projection** = the same with the task's own client counted "
         "exactly.", "",
         "Seeds: every system is simulated once per oracle (one replication, its own seed: 600_000 + 100 k at m - 1 "
         "and 700_000 + 100 k at m for grid point k); the delays at m it is scored against rest on the approx "
         "validation's replications (1 for cv <= 1.5, 2 for cv 2, 3 for cv 3; seeds 18_000 + 100 k + r), each cut "
         "into 20 batches for its 95% interval.", "", ORACLE_PROTOCOL, "", "## Results", ""]
    a = summary["all"]
    keys = (("oracle", "exact queues"), ("marie", "Marie"), ("projection", "projection"),
            ("cross_projection", "cross projection"), ("approx", "approx"), ("product_form", "PF"))
    L += ["Share of points with every type within 3% (" + ", ".join(
        f"{label} {_upct((a[k] or {}).get('within_3pct'), 0)} of {(a[k] or {}).get('count', 0)}" for k, label in keys)
          + " points). From the simulation intervals, an analysis equal to the true delays would pass at "
          f"{_upct(summary.get('perfect_analysis_share'), 0)} of the points (the rest is sampling noise): the "
          "bar is testable on this grid.",
          "", "| subset | points | " + " | ".join(f"{label} within 3% | {label} median | {label} p95"
                                                 for _, label in keys) + " |",
          "|---|---|" + "---|---|---|" * len(keys)]
    blocks = {"all": a, "m = 2": summary["m2"], "m >= 3": summary["m3plus"],
              **{f"cv {k}": v for k, v in summary["by_cv"].items()}, **{f"n = {k}": v for k, v in summary["by_n"].items()}}
    for label, b in blocks.items():
        if not b["points"]:
            continue
        cells = [" | ".join(_upct((b[k] or {}).get(f)) if f != "within_3pct" else _upct((b[k] or {}).get(f), 0)
                            for f in ("within_3pct", "median", "p95")) for k, _ in keys]
        L.append(f"| {label} | {b['points']} | " + " | ".join(cells) + " |")
    if reading:
        L += ["", reading.strip()]
    L += ["", "## Every point", "", "Worst-type |relative error| of each point and the simulated delays per type (updates, fastest type "
          "first); Marie thr = the Marie network's throughput error against its own simulation:", "",
          "| point | exact queues | Marie | projection | cross projection | approx | PF | Marie thr | simulated E[D] |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        thr = r.get("marie_throughput")
        L.append(f"| {r['point']} | {_upct(r['oracle'])} | {_upct(r.get('marie'))} | {_upct(r.get('projection'))} | "
                 f"{_upct(r.get('cross_projection'))} | "
                 f"{_upct(r['approx'])} | {_upct(r['product_form'])} | "
                 f"{'-' if thr is None else f'{100 * thr:+.1f}%'} | " + ", ".join(_g(x) for x in r["simulated"]) + " |")
    atomic_write_text(path, "\n".join(L) + "\n")
    return path
