"""The paper study's figures, in the toolkit's one style (:mod:`aflqueue.style`): accuracy against
simulated time, per-seed paired time ratios, and the predicted against the measured time ratio."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from aflqueue.outcomes import run_times
from aflqueue.style import (ACCURACY, GREY, LINESTYLES, MARKERS, SIM_TIME, band_note, human, interval_note,
                            legend_below, legend_entries, log_axis, save_figure, seed_curves, seed_range, styled,
                            subplots)
from validation.paper.experiment import SAFEGUARDS, TREATMENTS, Scenario

__all__ = ["paper_figures", "OKABE_ITO"]


#: Okabe-Ito colours of the paper experiment's treatments.
OKABE_ITO = {"asyncsgd": "#000000", "p2": "#E69F00", "p3": "#0072B2", "op": "#D55E00", "p2-pmin4": "#009E73",
             "p2-clip4": "#CC79A7"}

#: Display names where the experiment's plain-text label reads better typeset.
_LABELS = {"p2-pmin4": r"P2 with $p_i \geq 1/(4n)$ (weights $\leq$ 4)",
           "p2-clip4": r"P2 with weights clipped at 4 (biased)"}


def _label(name: str) -> str:
    return _LABELS.get(name) or (TREATMENTS.get(name) or SAFEGUARDS[name]).label


def paper_figures(preset: Any, selection: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Accuracy against simulated time (mean and bootstrap band over the evaluation seeds),
    per-seed paired time ratios with their geometric means and intervals, and the proxy's
    predicted time ratio against the measured one; PNG and PDF, returns ``[(png path, caption)]``."""
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    scen = summary["scenarios"]
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by[Scenario(**r["scenario"]).id][r["treatment"]].append(r)
    names = [*preset.treatments, *preset.safeguards]
    styles = {name: LINESTYLES[i % len(LINESTYLES)] for i, name in enumerate(names)}
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    clients = sorted({sc["clients"] for sc in scen})
    # 1. accuracy against simulated time
    ncol = len(preset.partitions)
    nrow = int(math.ceil(len(scen) / ncol))
    counts: list[int] = []
    with styled():
        fig, axes = subplots(nrow, ncol, width="double", panel_height=1.65, sharey="row")
        for k, sc in enumerate(scen):
            ax = axes[k // ncol][k % ncol]
            for name in names:
                runs = [r for r in by[sc["scenario"]].get(name, []) if len(r["measured"]["curves"]["time"]) > 1]
                if not runs:
                    continue
                t = np.asarray(runs[0]["measured"]["curves"]["time"])
                curves = [r["measured"]["curves"]["test_accuracy"] for r in runs if
                          len(r["measured"]["curves"]["test_accuracy"]) == t.size]
                if curves:
                    counts.append(seed_curves(ax, t, curves, OKABE_ITO.get(name, GREY), _label(name), styles[name],
                                              scale=100.0, marker=markers[name]))
            ax.axhline(100 * sc["target"], color=GREY, ls=":", lw=0.8, label="target accuracy")
            ax.set_title(f"{human(sc['dataset'])}, {human(sc['partition'])}")
            ax.set_xlabel(SIM_TIME)
            if k % ncol == 0:
                ax.set_ylabel(ACCURACY)
        for k in range(len(scen), nrow * ncol):
            axes[k // ncol][k % ncol].set_visible(False)
        note = band_note(counts)
        legend_below(fig, *legend_entries(axes), ncol=3, title=note)
        fig.suptitle(f"Accuracy at equal simulated time, tuned baselines against the operating point "
                     f"(n = {', '.join(map(str, clients))} clients)")
        p = save_figure(fig, out, f"{preset.name}_accuracy")[0]
    made.append((p, f"Test accuracy against simulated time ({note}); dotted line: the target"))
    # 2. per-seed paired time ratios
    treated = [n for n in names if n != "asyncsgd"]
    offs = {n: (i - (len(treated) - 1) / 2) * 0.13 for i, n in enumerate(treated)}
    ns: list[int] = []
    with styled():
        fig, axes = subplots(1, 1, width="double", panel_height=2.1)
        ax = axes[0][0]
        for k, sc in enumerate(scen):
            base = {r["seed"]: r for r in by[sc["scenario"]].get("asyncsgd", [])}
            for name, dx in offs.items():
                rr = {r["seed"]: r for r in by[sc["scenario"]].get(name, [])}
                ratios = [run_times(rr[s], sc["target"])[0] / run_times(base[s], sc["target"])[0] for s in rr
                          if s in base]
                if not ratios:
                    continue
                col = OKABE_ITO.get(name, GREY)
                ax.scatter(np.full(len(ratios), k + dx), ratios, s=7, color=col, alpha=0.6, lw=0,
                           marker=markers[name], label=_label(name))
                row = next((r for r in sc["rows"] if r["treatment"] == name), None)
                est = row and row["time_ratio"]
                if est and est["ci"] and est["n"] >= 3:
                    lo, hi = est["ci"]
                    ax.errorbar(k + dx + 0.045, est["mean"], yerr=[[est["mean"] - lo], [hi - est["mean"]]], color=col,
                                fmt=markers[name], ms=3.5, mec="black", mew=0.4, lw=1.0, capsize=1.5, label=_label(name))
                    ns.append(est["n"])
        ax.axhline(1.0, color=GREY, lw=0.8, label="no gain (ratio 1)")
        ax.axhline(preset.criterion_ratio, color=GREY, ls="--", lw=0.8,
                   label=f"criterion (ratio {preset.criterion_ratio})")
        log_axis(ax, "y")
        ax.set_xticks(range(len(scen)), [f"{human(sc['dataset'])}\n{human(sc['partition'])}" for sc in scen])
        ax.grid(False, axis="x")
        ax.set_xlabel("scenario (data set, split)")
        ax.set_ylabel("time to target, treatment / AsyncSGD (ratio)")
        ax.set_title("paired time-to-target ratios: dots each seed, bar the geometric mean")
        bars = interval_note(ns, "geometric mean and 95% t-interval (log scale)") if ns else "one dot per seed"
        legend_below(fig, *legend_entries(axes), ncol=3, title=f"dots: one seed each; {bars}")
        p = save_figure(fig, out, f"{preset.name}_time_ratios")[0]
    over = f" over {seed_range(ns)} seeds" if ns else ""
    made.append((p, "Per-seed paired time-to-target ratios against tuned AsyncSGD (dots) and their geometric mean "
                    f"with its 95% t-interval on the log scale{over} (bars, right of the dots); dashed: the criterion "
                    f"{preset.criterion_ratio}, solid: no gain"))
    # 3. predicted against measured: per data set, per split, each treatment's measured ratio (with its
    # interval) next to the ratio the proxy predicted
    datasets = list(dict.fromkeys(sc["dataset"] for sc in scen))
    parts = list(dict.fromkeys(sc["partition"] for sc in scen))
    ns = []
    with styled():
        fig, axes = subplots(1, len(datasets), width="double", panel_height=2.1, sharey=True)
        values: list[float] = []
        for ax, ds in zip(axes[0], datasets):
            for sc in (s for s in scen if s["dataset"] == ds):
                j = parts.index(sc["partition"])
                for r in sc["rows"]:
                    name = r["treatment"]
                    if name == "asyncsgd" or not r["time_ratio"] or not r["predicted_time_ratio"]:
                        continue
                    x, col, m = j + offs.get(name, 0.0) * 1.4, OKABE_ITO.get(name, GREY), r["time_ratio"]
                    pred = r["predicted_time_ratio"]["mean"]
                    ax.plot([x], [pred], "_", color=col, ms=9, mew=1.6, label=_label(name))
                    if m["ci"] and m["n"] >= 3:
                        ax.errorbar(x, m["mean"], yerr=[[m["mean"] - m["ci"][0]], [m["ci"][1] - m["mean"]]],
                                    fmt=markers[name], color=col, ms=3.5, lw=0.9, capsize=1.5, label=_label(name))
                        ns.append(m["n"])
                        values += list(m["ci"])
                    else:
                        ax.plot([x], [m["mean"]], markers[name], color=col, ms=3.5, label=_label(name))
                    values += [m["mean"], pred]
            ax.axhline(1.0, color=GREY, lw=0.8, label="no gain (ratio 1)")
            ax.set_xticks(range(len(parts)), [human(p) for p in parts])
            ax.set_xlim(-0.6, len(parts) - 0.4)
            ax.grid(False, axis="x")
            ax.set_title(human(ds))
            ax.set_xlabel("data split (heterogeneity)")
        log_axis(axes[0][0], "y")
        if values:
            lo, hi = min(v for v in values if v > 0), max(values)
            centre, half = math.sqrt(lo * hi), max(math.sqrt(hi / lo) * 1.15, 1.6)
            axes[0][0].set_ylim(centre / half, centre * half)
        axes[0][0].set_ylabel("time to target / AsyncSGD (ratio)")
        from matplotlib.lines import Line2D

        _, labels = legend_entries(axes)
        by_label = {_label(n): n for n in names}
        handles = [Line2D([], [], ls="none", marker=markers[by_label[lab]], color=OKABE_ITO.get(by_label[lab], GREY),
                          ms=3.5) if lab in by_label else Line2D([], [], color=GREY, lw=0.8) for lab in labels]
        keys = [Line2D([], [], ls="none", marker="o", color=GREY, ms=3.5),
                Line2D([], [], ls="none", marker="_", color=GREY, ms=9, mew=1.6)]
        measured = ("measured: geometric mean, " + interval_note(ns, "95% t-interval").replace("bars: ", "")
                    if ns else "measured: geometric mean")
        legend_below(fig, keys + handles, [measured, r"predicted by the proxy $E[T_\epsilon]$"] + labels, ncol=3,
                     title="treatment (colour, marker)")
        fig.suptitle("Does the proxy predict the measured gain? Measured and predicted time ratios")
        p = save_figure(fig, out, f"{preset.name}_predicted_vs_measured")[0]
    over = f" over {seed_range(ns)} seeds" if ns else ""
    made.append((p, f"Predicted (proxy, dash) and measured (marker with its 95% t-interval{over}) time-to-target "
                    "ratio against tuned AsyncSGD, per data set (panels), split and treatment; a prediction is borne "
                    "out where the interval crosses its dash; solid line: no gain"))
    return made
