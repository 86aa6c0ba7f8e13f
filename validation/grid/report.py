"""The validation grid's report (Markdown, and the same page as HTML): predicted vs measured gains
of the routings, from the cell records of :func:`validation.grid.experiment.run_grid`.

Statistics are over seeds. A seed fixes the data split, the initial model and the schedule's
random streams for every routing and algorithm, so comparisons with AsyncSGD are *paired* by
seed: the gain of a routing is the mean of per-seed gains, with a t-interval. Time to target is the
first evaluation time (20 equally spaced points of the budget) at which test accuracy reaches the
data set's target; a run that never reaches it within the budget is censored. The rank agreement
of predicted and measured orderings is :func:`aflqueue.stats.spearman` (a routing whose measured
mean is undefined leaves the correlation).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from aflqueue.stats import Estimate, bootstrap_interval, log_ratio_interval, spearman, t_interval
from validation.grid.experiment import ROUTING_LABELS, ROUTINGS
from validation.reporting import fixed, interval, signed_pct, write_pages

__all__ = ["summarize", "write_report", "mean_ci", "trainer_eta", "wallclock_at_eta", "DIVERGED"]


def mean_ci(x: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)`` of :func:`aflqueue.stats.t_interval` (NaN bounds below 2 values)."""
    return _tuple(t_interval(x, confidence))


def _tuple(e: Estimate) -> tuple[float, float, float, int]:
    return e.mean, e.lo, e.hi, e.n_batches


def _gain(ratios: Iterable[float]) -> tuple[float, float, float, int]:
    """Relative gain ``ratio - 1`` from the log-scale interval of the ratios (never below -100%)."""
    m, lo, hi, k = _tuple(log_ratio_interval(ratios))
    return m - 1, lo - 1, hi - 1, k


def _group_key(rec: dict[str, Any]) -> tuple[str, str, str, str]:
    c = rec["cell"]
    return c["dataset"], c["speed"], c["partition"], c["algorithm"]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group (data set, speed, partition, algorithm) and routing: means, CIs, paired gains."""
    by: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[_group_key(r)][r["cell"]["routing"]][r["cell"]["seed"]] = r
    groups = []
    for key in sorted(by):
        routings = by[key]
        base = routings.get("uniform", {})
        rows = []
        for rname in [x for x in ROUTINGS if x in routings]:
            runs = routings[rname]
            acc = [runs[s]["measured"]["final_accuracy"] for s in sorted(runs)]
            loss = [runs[s]["measured"]["final_loss"] for s in sorted(runs)]
            ttt = [runs[s]["measured"]["time_to_target"] for s in sorted(runs)]
            gains, ratios, censored = [], [], 0
            for s, rr in runs.items():
                if s in base:
                    gains.append(rr["measured"]["final_accuracy"] / base[s]["measured"]["final_accuracy"])
                    tb, tr = base[s]["measured"]["time_to_target"], rr["measured"]["time_to_target"]
                    if tb is not None and tr is not None:
                        ratios.append(tr / tb)
                    elif tb is not None:
                        censored += 1
            pred = [runs[s]["predicted"] for s in sorted(runs)]

            def pm(k):
                vals = [p.get(k) for p in pred]
                return mean_ci([v if v is not None else math.inf for v in vals])[0] \
                    if any(v is not None for v in vals) else math.inf

            w_fixed = mean_ci([wallclock_at_eta(runs[s], trainer_eta(runs[s])) for s in sorted(runs)])[0]
            diverged = sum(runs[s]["measured"]["final_accuracy"] <= DIVERGED * _chance(runs[s]) for s in runs)
            rows.append({
                "routing": rname, "label": ROUTING_LABELS[rname], "seeds": len(runs),
                "predicted_wallclock_trainer_eta": w_fixed, "diverged": diverged,
                "trainer_eta": float(np.mean([trainer_eta(runs[s]) for s in runs])),
                "concurrency": float(np.mean([runs[s]["concurrency"] for s in runs])),
                # intervals that respect the quantities: accuracies and losses stay in the range of the
                # data (bootstrap), ratios and relative gains come from the log scale
                "accuracy": _tuple(bootstrap_interval(acc)), "loss": _tuple(bootstrap_interval(loss)),
                "reached": sum(t is not None for t in ttt),
                "time_to_target": _tuple(bootstrap_interval([t for t in ttt if t is not None])),
                "arrivals": float(np.mean([runs[s]["measured"]["arrivals"] for s in runs])),
                "accuracy_gain": _gain(gains), "time_ratio": _tuple(log_ratio_interval(ratios)),
                "time_ratio_pairs": len(ratios),
                "censored_against": censored,
                "predicted_wallclock": pm("wallclock"), "predicted_time": pm("time_to_accuracy"),
                "predicted_throughput": pm("throughput"),
                "terms": _terms(runs),
            })
        # rank agreement over routings: predicted W (lower better) vs measured loss (lower better)
        preds = [r["predicted_wallclock"] for r in rows]
        meas_loss = [r["loss"][0] for r in rows]
        meas_acc = [-r["accuracy"][0] for r in rows]
        finite = [i for i, p in enumerate(preds) if math.isfinite(p)]
        rank_loss = spearman([preds[i] for i in finite], [meas_loss[i] for i in finite])
        rank_acc = spearman([preds[i] for i in finite], [meas_acc[i] for i in finite])
        predf = [r["predicted_wallclock_trainer_eta"] for r in rows]
        finf = [i for i, p in enumerate(predf) if math.isfinite(p)]
        rank_loss_fixed = spearman([predf[i] for i in finf], [meas_loss[i] for i in finf])
        any_rec = next(iter(next(iter(routings.values())).values()))
        groups.append({"dataset": key[0], "speed": key[1], "partition": key[2], "algorithm": key[3], "rows": rows,
                       "spearman_loss": rank_loss, "spearman_accuracy": rank_acc,
                       "spearman_loss_trainer_eta": rank_loss_fixed,
                       "time_budget": any_rec["time_budget"], "target": any_rec["target"],
                       "constants": any_rec["constants"]})
    return {"groups": groups}


#: a run whose final accuracy is at most this multiple of chance has diverged (constant prediction)
DIVERGED = 1.5


def _chance(rec: dict[str, Any]) -> float:
    from validation.grid.experiment import DATASETS

    classes = {"cifar100": 100, "emnist": 47, "synthetic": DATASETS["synthetic"].options.get("num_classes", 10)}
    return 1.0 / classes.get(rec["cell"]["dataset"], 10)


def trainer_eta(rec: dict[str, Any]) -> float:
    """The step size the trainer applied, in the proxy's units: with K local SGD steps of rate lr
    and a server step eta_g = 1, an update moves w by about K lr times a gradient (the eta of docs/theory.md section 5)."""
    from validation.grid.experiment import DATASETS

    spec = DATASETS[rec["cell"]["dataset"]]
    return float(rec.get("lr", spec.lr)) * int(rec.get("local_steps", spec.steps))


def wallclock_at_eta(rec: dict[str, Any], eta: float) -> float:
    """W(tau) of the record's routing evaluated at a fixed step size ``eta`` (not the proxy's optimum)."""
    from aflqueue.bounds import ProxyConstants, per_update

    p = rec["predicted"]
    if p.get("S1") is None or not math.isfinite(p["S1"]):
        return math.inf
    c = ProxyConstants.from_dict(rec["constants"])
    return per_update(c, p["S1"], p["S2"], p["throughput"] * rec["time_budget"], eta=eta).total


def _terms(runs: dict[int, dict]) -> dict[str, float]:
    """Mean proxy terms of W at the run's routing: optimisation a/(eta K), variance B eta, staleness C eta^2."""
    from aflqueue.bounds import ProxyConstants, per_update

    vals = defaultdict(list)
    for r in runs.values():
        p = r["predicted"]
        if p.get("S1") is None or not math.isfinite(p["S1"]):
            continue
        c = ProxyConstants.from_dict(r["constants"])
        K = p["throughput"] * r["time_budget"]
        t = per_update(c, p["S1"], p["S2"], K)
        f = per_update(c, p["S1"], p["S2"], K, eta=trainer_eta(r))
        for k, v in (("K", K), ("S1", p["S1"]), ("S2", p["S2"]), ("optimisation", t.optimisation),
                     ("variance", t.variance), ("staleness", t.staleness), ("eta", t.eta),
                     ("optimisation_fixed", f.optimisation), ("variance_fixed", f.variance),
                     ("staleness_fixed", f.staleness)):
            vals[k].append(v)
    return {k: float(np.mean(v)) for k, v in vals.items()}


def _ci(t: tuple, pct: bool = False, d: int = 3) -> str:
    return interval(t, (lambda v: f"{100 * v:+.1f}%") if pct else (lambda v: f"{v:.{d}f}"))


def _headline(summary: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """P2 vs AsyncSGD with Generalized AsyncSGD: the issue's two criteria, per scenario."""
    lines, verdicts = [], []
    for g in summary["groups"]:
        if g["algorithm"] != "generalized-asyncsgd":
            continue
        rows = {r["routing"]: r for r in g["rows"]}
        if "wallclock" not in rows or "uniform" not in rows:
            continue
        r = rows["wallclock"]
        gain, ratio = r["accuracy_gain"], r["time_ratio"]
        acc_met = math.isfinite(gain[0]) and gain[0] >= 0.10
        acc_sure = math.isfinite(gain[1]) and gain[1] >= 0.10
        # a seed where AsyncSGD reached the target and P2 did not is censored against P2: the
        # ratio over the remaining pairs would flatter it, so the time criterion cannot count as met
        censored = r["censored_against"]
        time_met = math.isfinite(ratio[0]) and ratio[0] <= 0.71 and censored == 0
        time_sure = math.isfinite(ratio[2]) and ratio[2] <= 0.71 and censored == 0
        verdicts.append({"dataset": g["dataset"], "speed": g["speed"], "partition": g["partition"],
                         "gain": gain, "ratio": ratio, "pairs": r["time_ratio_pairs"], "censored": censored,
                         "reached": (rows["uniform"]["reached"], r["reached"], r["seeds"]),
                         "met": acc_met or time_met, "sure": acc_sure or time_sure})
    return lines, verdicts


def _analysis(summary: dict[str, Any], verdicts: list[dict[str, Any]]) -> list[str]:
    """Where the proxy and the measurement agree or not, computed from the numbers."""
    out: list[str] = []
    ga = [g for g in summary["groups"] if g["algorithm"] == "generalized-asyncsgd"]
    pairs = []
    for g in ga:
        rows = {r["routing"]: r for r in g["rows"]}
        if "wallclock" in rows and "uniform" in rows and rows["uniform"]["terms"] and rows["wallclock"]["terms"]:
            pairs.append((g, rows))
    if not pairs:
        return out
    faster = sum(1 for v in verdicts if math.isfinite(v["ratio"][0]) and v["ratio"][0] < 1)
    out.append(f"- **Time.** P2 reaches the target accuracy sooner than AsyncSGD in {faster} of {len(verdicts)} "
               f"scenarios (point estimates of the time ratio below 1); it applies {min(r['wallclock']['arrivals'] / r['uniform']['arrivals'] for _, r in pairs):.1f}-"
               f"{max(r['wallclock']['arrivals'] / r['uniform']['arrivals'] for _, r in pairs):.1f}x more updates in the "
               f"same time, as the queueing model predicts.")
    losers = [(g, r) for g, r in pairs if r["wallclock"]["accuracy_gain"][0] < 0]
    div_u = sum(r["uniform"]["diverged"] for _, r in pairs)
    div_w = sum(r["wallclock"]["diverged"] for _, r in pairs)
    n_runs = sum(r["wallclock"]["seeds"] for _, r in pairs)
    out.append(f"- **Accuracy.** P2's accuracy at the budget is below AsyncSGD's in {len(losers)} of {len(pairs)} "
               f"scenarios (" + (", ".join(f"{g['dataset']} {g['speed']} {g['partition']}" for g, _ in losers) or "none")
               + f"). Runs that diverged (final accuracy at most {DIVERGED}x chance: a constant prediction): "
               f"{div_w} of {n_runs} with P2, {div_u} of {n_runs} with AsyncSGD.")
    eta_ratios = [r["wallclock"]["terms"]["eta"] / r["uniform"]["terms"]["eta"] for _, r in pairs]
    worse_fixed = [(g, r) for g, r in pairs
                   if r["wallclock"]["predicted_wallclock_trainer_eta"] > r["uniform"]["predicted_wallclock_trainer_eta"]]
    names = lambda items: ", ".join(f"{g['dataset']} {g['speed']} {g['partition']}" for g, _ in items) or "none"  # noqa: E731
    lost_ids = {id(g) for g, _ in losers}
    flagged_lost = [x for x in worse_fixed if id(x[0]) in lost_ids]
    flagged_won = [x for x in worse_fixed if id(x[0]) not in lost_ids]
    s2 = [r["wallclock"]["terms"]["S2"] / r["uniform"]["terms"]["S2"] for _, r in pairs]
    s1 = [r["wallclock"]["terms"]["S1"] / r["uniform"]["terms"]["S1"] for _, r in pairs]
    out.append(
        f"- **Which term misled: the staleness term, through the step size.** The proxy's advantage for P2 is computed "
        f"at P2's own optimal step size, {min(eta_ratios):.2f}-{max(eta_ratios):.2f}x AsyncSGD's: P2 multiplies S2 (the "
        f"staleness term's factor) by {min(s2):.0f}-{max(s2):.0f} and S1 (the variance term's) by "
        f"{min(s1):.1f}-{max(s1):.1f}, and a smaller step keeps both in check. The trainer, as pre-registered, used one "
        f"learning rate for every routing. Evaluated at that common step size the proxy ranks P2 *behind* AsyncSGD in "
        f"{len(worse_fixed)} of {len(pairs)} scenarios ({names(worse_fixed)}): there the staleness term grows by an order "
        f"of magnitude (per scenario below). Of the {len(losers)} scenarios where P2 lost accuracy, "
        f"{len(flagged_lost)} are among them; in the other {len(flagged_won)} flagged ones P2 still gained: at a common "
        f"step size the proxy is pessimistic, whereas at its optimal step sizes it predicted P2 ahead in "
        f"{sum(1 for _, r in losers if r['wallclock']['predicted_wallclock'] < r['uniform']['predicted_wallclock'])} of "
        f"those {len(losers)} losses.")
    rho_opt = [(g, g["spearman_loss"]) for g in ga if math.isfinite(g["spearman_loss"])]
    rho_fix = [g["spearman_loss_trainer_eta"] for g in ga if math.isfinite(g["spearman_loss_trainer_eta"])]
    if rho_opt and rho_fix:
        neg = [(g, None) for g, r in rho_opt if r < 0]
        out.append(f"- **Ordering.** Over routings, the proxy at its own optimal step sizes correlates with the measured "
                   f"loss with mean Spearman rho {np.mean([r for _, r in rho_opt]):.2f}; evaluated at the step size "
                   f"actually used, {np.mean(rho_fix):.2f}. Negative correlations at the optimal step sizes: "
                   f"{names(neg)}.")
    eta_rows = [(g, r) for g, r in pairs if "wallclock-eta" in r]
    if eta_rows:
        gains = [r["wallclock-eta"]["accuracy_gain"][0] for _, r in eta_rows]
        div_e = sum(r["wallclock-eta"]["diverged"] for _, r in eta_rows)
        with_div = [r for _, r in eta_rows if r["wallclock"]["diverged"] > 0]
        no_div = [r for _, r in eta_rows if r["wallclock"]["diverged"] == 0]
        diff = lambda rs: float(np.mean([r["wallclock-eta"]["accuracy_gain"][0] - r["wallclock"]["accuracy_gain"][0]  # noqa: E731
                                         for r in rs])) if rs else math.nan
        out.append(f"- **The optimiser's whole answer.** Trained with its routing *and* its step-size ratio (P2 + its step "
                   f"size), P2's accuracy gain over AsyncSGD ranges {signed_pct(min(gains))} to {signed_pct(max(gains))} "
                   f"(mean {signed_pct(float(np.mean(gains)))}), with {div_e} diverged run(s) of "
                   f"{sum(r['wallclock-eta']['seeds'] for _, r in eta_rows)}. Compared with P2 at the common step size: "
                   f"{signed_pct(diff(with_div))} accuracy (mean difference of the gains) in the {len(with_div)} scenario(s) where "
                   f"P2 had diverged runs, {signed_pct(diff(no_div))} in the {len(no_div)} others (a smaller step also slows "
                   f"the optimisation term).")
    for g, rows in pairs:
        u, w = rows["uniform"]["terms"], rows["wallclock"]["terms"]

        def ch(k):
            return (w[k] / u[k] - 1) if u.get(k) else math.nan

        pred_ratio = rows["wallclock"]["predicted_wallclock"] / rows["uniform"]["predicted_wallclock"]
        fixed_ratio = rows["wallclock"]["predicted_wallclock_trainer_eta"] / rows["uniform"]["predicted_wallclock_trainer_eta"]
        gain = rows["wallclock"]["accuracy_gain"][0]
        extra = ""
        if "wallclock-eta" in rows:
            extra = f"; with its step-size ratio the gain is {signed_pct(rows['wallclock-eta']['accuracy_gain'][0])}"
        out.append(
            f"  - {g['dataset']}, {g['speed']}, {g['partition']}: W x{pred_ratio:.3f} at the proxy's step sizes "
            f"(optimisation {signed_pct(ch('optimisation'))}, variance {signed_pct(ch('variance'))}, staleness "
            f"{signed_pct(ch('staleness'))}); at the trainer's step size W x{fixed_ratio:.2f} (optimisation "
            f"{signed_pct(ch('optimisation_fixed'))}, variance {signed_pct(ch('variance_fixed'))}, staleness "
            f"{signed_pct(ch('staleness_fixed'))}); measured accuracy {signed_pct(gain)}, diverged runs "
            f"{rows['wallclock']['diverged']}/{rows['wallclock']['seeds']} (AsyncSGD "
            f"{rows['uniform']['diverged']}/{rows['uniform']['seeds']}){extra}.")
    return out


def write_report(records: list[dict[str, Any]], path: str | Path, figures_dir: str | Path | None = None,
                 title: str = "Validation: predicted vs measured") -> tuple[Path, Path]:
    """Write ``path`` (Markdown) and the same report as HTML with embedded figures."""
    from validation.grid.figures import grid_accuracy_figures

    path = Path(path)
    summary = summarize(records)
    figs: list[tuple[Path, str]] = []
    if figures_dir is not None:
        figs = grid_accuracy_figures(records, figures_dir)
    _, verdicts = _headline(summary)
    L: list[str] = [f"# {title}", ""]
    n_cells = len(records)
    seeds = sorted({r["cell"]["seed"] for r in records})
    L += [f"{n_cells} training runs, seeds {seeds}. Each run trains for the same simulated time budget "
          "`tau` (the time AsyncSGD, uniform routing with `m = n`, needs for the data set's `U0` updates); "
          "accuracy and loss are those of the server model at `tau`. Gains are paired by seed (same data "
          "split, initial model and random streams). Intervals are 95% t-intervals over seeds. Proxy "
          "constants are calibrated at the initial model of each run (`aflqueue.calibration`).", ""]
    L += ["## Headline: wall-clock-optimal routing (P2) vs AsyncSGD", "",
          "Criteria of the issue: at least **10% relative accuracy** at equal time, or at least **29% less time** "
          "to the target accuracy (time ratio <= 0.71). 'Met' uses the point estimate; 'CI excludes' means the whole "
          "95% interval lies beyond the threshold.", "",
          "| data set | speeds | partition | accuracy gain [95% CI] | time-to-target ratio [95% CI] (pairs) | target reached (AsyncSGD / P2 / seeds) | criterion |",
          "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        crit = ("met, CI excludes the threshold" if v["sure"] else "met (point estimate)") if v["met"] else "**not met**"
        if v["censored"] and not v["met"]:
            crit += f" (P2 missed the target in {v['censored']} seed(s) where AsyncSGD reached it)"
        ru, rw, rs = v["reached"]
        L.append(f"| {v['dataset']} | {v['speed']} | {v['partition']} | {_ci(v['gain'], pct=True)} | "
                 f"{_ci(v['ratio'], d=2)} ({v['pairs']}) | {ru} / {rw} / {rs} | {crit} |")
    met = sum(v["met"] for v in verdicts)
    L += ["", f"**Answer: the criterion is met in {met} of {len(verdicts)} scenarios** "
          f"({sum(v['sure'] for v in verdicts)} with the confidence interval beyond the threshold).", ""]
    L += ["## Why: proxy terms against the measurement", ""] + _analysis(summary, verdicts) + [""]
    L += ["## Predicted ordering vs measured ordering", "",
          "Spearman rank correlation over routings between the predicted wall-clock proxy W (lower is better) and "
          "the measured final test loss and error (lower is better); routings with an infinite proxy (P5 starves "
          "clients) are left out of the correlation.", "",
          "| data set | speeds | partition | algorithm | rho (W vs loss) | rho (W vs error) | rho (W at the trainer's step size vs loss) |",
          "|---|---|---|---|---|---|---|"]
    rhos, rhos_f = [], []
    for g in summary["groups"]:
        if len(g["rows"]) >= 3:
            L.append(f"| {g['dataset']} | {g['speed']} | {g['partition']} | {g['algorithm']} | "
                     f"{fixed(g['spearman_loss'], 2)} | {fixed(g['spearman_accuracy'], 2)} | "
                     f"{fixed(g['spearman_loss_trainer_eta'], 2)} |")
            rhos.append(g["spearman_loss"])
            rhos_f.append(g["spearman_loss_trainer_eta"])
    if any(math.isfinite(r) for r in rhos):
        L += ["", f"Mean rho (W vs loss): {fixed(float(np.nanmean(rhos)), 2)}; with W evaluated at the trainer's step "
                  f"size: {fixed(float(np.nanmean(rhos_f)), 2)}.", ""]
    L += ["## All results", ""]
    for g in summary["groups"]:
        L += [f"### {g['dataset']}, {g['speed']}, {g['partition']}, {g['algorithm']}", "",
              f"Budget tau = {fixed(g['time_budget'], 1)} time units; target accuracy {g['target']:.2f}; calibrated "
              f"constants: " + ", ".join(f"{k} = {g['constants'][k]:.3g}" for k in ("Delta", "L", "sigma2", "M2", "G2")), "",
              "| routing | m | updates in budget | throughput pred. | W pred. | W pred. at trainer's step | T_eps pred. | "
              "test accuracy | test loss | diverged | reached target | time to target | accuracy gain vs AsyncSGD | "
              "time ratio vs AsyncSGD |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in g["rows"]:
            L.append(f"| {r['label']} | {r['concurrency']:.0f} | {r['arrivals']:.0f} | {fixed(r['predicted_throughput'])} | "
                     f"{fixed(r['predicted_wallclock'], 4)} | {fixed(r['predicted_wallclock_trainer_eta'], 4)} | "
                     f"{fixed(r['predicted_time'], 0)} | {_ci(r['accuracy'])} | "
                     f"{_ci(r['loss'])} | {r['diverged']}/{r['seeds']} | {r['reached']}/{r['seeds']} | "
                     f"{_ci(r['time_to_target'], d=0)} | "
                     f"{_ci(r['accuracy_gain'], pct=True) if r['routing'] != 'uniform' else '-'} | "
                     f"{_ci(r['time_ratio'], d=2) if r['routing'] != 'uniform' else '-'} |")
        L.append("")
    return write_pages(path, L, title, figs)
