"""The regime map's reports (Markdown): one map from its saved stages
(:func:`write_regimes_report`), and several maps pooled (:func:`write_regimes_pooled_report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from aflqueue.io import atomic_write_text
from aflqueue.jobs import code_versions
from aflqueue.stats import SPEARMAN_EXACT_MAX, spearman_critical_value
from validation.regimes.experiment import (PARTITION_LABELS, PREDICTORS, TARGET_SPEARMAN, nontrivial, pool_regime_maps,
                                           routing_names, summarize_regimes)
from validation.regimes.figures import regime_figures
from validation.reporting import figure_md

__all__ = ["write_regimes_report", "write_regimes_pooled_report"]


def _draws(n: int) -> str:
    """A number of permutation draws in words: ``10^6``, ``9,999``."""
    k = round(math.log10(n)) if n > 0 else 0
    return f"10^{k}" if n == 10 ** k and k >= 4 else f"{n:,}"


def _p(st: dict[str, Any]) -> str:
    """A permutation test's p-value with its basis (exact, or how many draws) and, where the protocol
    named a number of draws, that p-value beside it, labelled."""
    basis = "exact" if st.get("exact") else f"{_draws(st['resamples'])}-draw"
    out = f"{basis} p = {st['p_value']:.3g}"
    pr = st.get("protocol")
    if pr and pr.get("p_value") is not None:
        out += f"; protocol's {_draws(pr['resamples'])} draws: {pr['p_value']:.3g}"
    return out


def _rho(st: dict[str, Any] | None) -> str:
    if not st or st.get("statistic") is None:
        return "-"
    if st.get("p_value") is None:
        return f"{st['statistic']:+.2f}"
    return f"{st['statistic']:+.2f} ({_p(st)}; n = {st['n']})"


def _lr(rate: float, edge: str | None) -> str:
    """A tuned rate, marked when it is an edge of its grid."""
    return f"{rate:.3g}" + (f" ({edge})" if edge else "")


def _edges_text(edges: dict[str, dict[str, Any]], grid: Sequence[float]) -> str:
    """Per routing, how many tuned rates sit at the grid's floor or top (``tuning_edges``, counts or
    lists of regimes)."""
    def count(v: Any) -> int:
        return v if isinstance(v, int) else len(v)

    parts = []
    for name, e in edges.items():
        fl, tp = count(e["floor"]), count(e["top"])
        where = [f"the floor {min(grid):g} in {fl}" if fl else "", f"the top {max(grid):g} in {tp}" if tp else ""]
        parts.append(f"{name}: " + (" and ".join(w for w in where if w) if fl or tp else "none")
                     + f" of {e['tuned']}")
    return "; ".join(parts)


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
    (:func:`validation.regimes.experiment.load_regimes`)."""
    path = Path(path)
    recs = [*data["pilots"], *data["tuning"], *data["evaluation"]]
    versions = code_versions(recs)
    L = ["# Regime map: does the pilot-calibrated predictor say where optimising the routing pays?", "",
         f"Protocol: `{preset.protocol}` (committed before the first run). Code: "
         "`aflqueue/pilot.py`, `validation/regimes/experiment.py`.", "", "## Provenance", ""]
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
          "Spearman correlation between predicted and measured gain; one-sided permutation p-values, the basis of "
          f"every verdict: across regimes exact (all n! pairings) up to {SPEARMAN_EXACT_MAX} regimes, else 10^6 "
          "seeded draws; within regimes 10^6 seeded draws, the routings permuted inside each regime. Beside each, "
          f"labelled, the p-value of the {preset.permutations:,} seeded draws the protocol named (a Monte-Carlo "
          "estimate of the same quantity, with a standard error of about 0.002 near p = 0.05). *Across regimes*: "
          "P2's time ratio over the regimes. *Within*: over the routings of each regime "
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
                 f"({PREDICTORS[preset.primary]}) = {prim['statistic']:.3f} "
                 f"({_p(prim)}); target >= {TARGET_SPEARMAN:g} {'met' if target_met else 'not met'}.** Before "
                 f"(initial-model proxy): {_rho(s['across'].get('p2|time_ratio|initial'))}.")
        if preset.primary_alpha is not None:
            L.append("")
            L.append(_primary_rule(prim, preset.primary_alpha))
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
          "(uniform, P2, P3; floor/top: an edge of the grid) |", "|---" * 13 + "|"]
    for sc in regs:
        rows = sc["rows"]

        def pr(name: str, p: str) -> Any:
            return ((rows.get(name) or {}).get("predicted") or {}).get(p) or {}

        def meas(name: str) -> str:
            return _ratio_iv((rows.get(name) or {}).get("time_ratio"))

        ad = (rows.get("p2") or {}).get("accuracy_difference")
        adp = pr("p2", "transfer").get("accuracy_difference") or {}
        lrs = ", ".join(_lr(rows[k]["lr"], rows[k]["lr_edge"]) if k in rows else "-" for k in ("uniform", "p2", "p3"))
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
    L += _edge_lines(preset, s)
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
        L += ["## Figures", ""]
        for pth, cap in regime_figures(s, figures_dir):
            L.append(figure_md(Path(pth).resolve(), path.parent.resolve(), cap))
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


def _primary_rule(prim: dict[str, Any], alpha: float) -> str:
    """The verdict on the primary's pre-registered rule ``p < alpha``, on the exact (or 10^6-draw)
    p-value, with the protocol's draws beside it and, when exact, the critical correlation."""
    passed = prim["p_value"] < alpha
    basis = "exact" if prim.get("exact") else _draws(prim["resamples"]) + "-draw"
    out = (f"**Pre-registered rule (confirmed if p < {alpha:g}): {'passed' if passed else 'NOT passed'}.** The "
           f"{basis} one-sided p-value is {prim['p_value']:.4f}")
    cv = spearman_critical_value(prim["n"], alpha) if prim.get("exact") and 3 <= prim["n"] <= SPEARMAN_EXACT_MAX \
        else math.nan
    if math.isfinite(cv):
        side = "at or above" if prim["statistic"] >= cv - 1e-12 else "below"
        out += (f": the correlation {prim['statistic']:.3f} is {side} the one-sided {alpha:g} critical value "
                f"{cv:.3f} of an untied Spearman correlation over n = {prim['n']}")
    pr = prim.get("protocol")
    if pr and pr.get("p_value") is not None:
        agree = (pr["p_value"] < alpha) == passed
        se = math.sqrt(prim["p_value"] * (1 - prim["p_value"]) / pr["resamples"])
        out += (f". The protocol's {_draws(pr['resamples'])} seeded draws gave p = {pr['p_value']:.4f}, "
                + ("the same verdict" if agree else
                   f"on the other side of {alpha:g}: a Monte-Carlo estimate of the {basis} value, "
                   f"{abs(pr['p_value'] - prim['p_value']) / se:.1f} of its standard errors ({se:.4f}) away from it; "
                   f"the verdict rests on the {basis} value"))
    return out + "."


def _edge_lines(preset: Any, s: dict[str, Any]) -> list[str]:
    """The tuned rates of every routing per regime, each edge of the grid marked, and the count per
    routing; where P2 is significantly slower than AsyncSGD, whether its rate was at an edge."""
    regs, edges = s["regimes"], s["tuning_edges"]
    names = routing_names(preset)
    grid = preset.tuning_lrs
    L = [f"Tuned learning rate of every routing (grid {', '.join(f'{x:g}' for x in grid)}, never extended: "
         "*floor* / *top* mark the grid's smallest / largest rate, beyond which a better rate may lie):", "",
         "| regime | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for sc in regs:
        L.append(f"| {sc['regime']} | " + " | ".join(
            _lr(sc["rows"][k]["lr"], sc["rows"][k]["lr_edge"]) if k in sc["rows"] else "-" for k in names) + " |")
    slow = [sc["regime"] for sc in regs if (sc["rows"].get("p2") or {}).get("time_ratio")
            and (sc["rows"]["p2"]["time_ratio"].get("ci") or [0])[0] > 1]
    slow_floor = [r for r in slow if r in edges["p2"]["floor"]]
    L += ["", f"**Tuned rates at an edge of the grid** (from `selection.json`): {_edges_text(edges, grid)} "
          "regimes. A rate at an edge may not be the routing's best rate (it may lie beyond the grid): under-tuning "
          "cannot be excluded there. An under-tuned routing looks slower than it is; an under-tuned AsyncSGD "
          "(uniform) makes every routing of its regime look faster. P2 is significantly slower "
          f"than tuned AsyncSGD (time ratio's 95% interval above 1) in {len(slow)} "
          f"regime{'s' if len(slow) != 1 else ''}"
          + (f" ({', '.join(slow)}); its tuned rate is the floor {min(grid):g} in {len(slow_floor)} of them"
             + (": there under-tuning cannot be excluded, and 'significantly slower' may be the grid's doing"
                if slow_floor else "") if slow else "") + ".", ""]
    return L


def _ceiling_text(c: dict[str, Any], target: float) -> str:
    """One noise ceiling (:meth:`aflqueue.stats.NoiseCeiling.to_dict`) in words."""
    return (f"share of the measured spread that is real {c['reliability']:.2f}, a perfect predictor's expected "
            f"Spearman {c['mean']:.2f} (90% of repetitions in [{c['lo']:.2f}, {c['hi']:.2f}]), P(>= {target:g}) = "
            f"{c['prob_at_least'][str(target)]:.2f}")


def write_regimes_pooled_report(maps: Iterable[tuple[Any, dict[str, Any]]], path: str | Path) -> Path:
    """The across-regime correlations over the union of several regime maps (each ``(preset,
    load_regimes(...))``), with each map's code version; a secondary analysis of
    ``validation/regimes/CONFIRM_PROTOCOL.md``."""
    path = Path(path)
    maps = list(maps)
    sums = [summarize_regimes(pr, d) for pr, d in maps]
    pooled = pool_regime_maps(sums)
    L = ["# Regime maps pooled", "",
         "Secondary analysis pre-registered in `validation/regimes/CONFIRM_PROTOCOL.md`: the across-regime rank "
         "correlation between predicted and measured P2 time ratios (P2 / tuned AsyncSGD) over the regimes of "
         "every map together. Each map's runs are at one code version; the maps are at different versions "
         "(the confirmatory map retrained the same pilots at its own version: its fitted constants are close to the "
         "first map's but not identical; compare the fit tables of the two reports).", ""]
    for (pr, d), sm in zip(maps, sums):
        recs = [*d["pilots"], *d["tuning"], *d["evaluation"]]
        L.append(f"- `{pr.name}`: {len(sm['regimes'])} regimes, seeds {', '.join(str(x) for x in pr.eval_seeds)}, "
                 f"code version " + ", ".join(f"`{k}`" for k in code_versions(recs)) + ".")
    first = next(iter(pooled["across"].values()), None)
    basis = ("exact (all n! pairings)" if first and first.get("exact") else
             f"{_draws(first['resamples'])} seeded draws" if first else "")
    proto = first["protocol"]["resamples"] if first and first.get("protocol") else None
    L += ["", f"| predictor | Spearman over {pooled['regimes']} regimes | one-sided permutation p, {basis} |"
          + (f" the protocol's {_draws(proto)} draws |" if proto else ""), "|---|---|---|" + ("---|" if proto else "")]
    for p, r in pooled["across"].items():
        L.append(f"| {p}: {PREDICTORS[p]} | {r['statistic']:+.2f} | {r['p_value']:.3g} |"
                 + (f" {r['protocol']['p_value']:.3g} |" if proto else ""))
    c = pooled.get("noise_ceiling")
    if c:
        L += ["", f"Noise ceiling of the pooled measurements: {_ceiling_text(c, TARGET_SPEARMAN)}."]
    grids = {tuple(pr.tuning_lrs) for pr, _ in maps}
    if pooled.get("tuning_edges") and len(grids) == 1:
        L += ["", f"Tuned rates at an edge of the grid (every map's `selection.json`; grid "
              f"{', '.join(f'{x:g}' for x in next(iter(grids)))}, never extended): "
              f"{_edges_text(pooled['tuning_edges'], next(iter(grids)))} regimes. Under-tuning "
              "cannot be excluded for a routing whose rate sits at the floor, in particular where P2 is "
              "'significantly slower' than AsyncSGD (each map's report lists those regimes)."]
    atomic_write_text(path, "\n".join(L) + "\n")
    return path
