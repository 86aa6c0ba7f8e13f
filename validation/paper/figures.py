"""The paper study's figures, in the toolkit's one style (:mod:`aflqueue.plots`): accuracy against
simulated time, per-seed paired time ratios, predicted against measured time ratios."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from aflqueue.outcomes import run_times
from aflqueue.plots import (ACCURACY, GREY, LINESTYLES, MARKERS, SIM_TIME, human, legend_below, legend_entries,
                            mean_band, save_figure, styled, subplots)
from validation.paper.experiment import SAFEGUARDS, TREATMENTS, Scenario

__all__ = ["paper_figures", "OKABE_ITO"]


#: Okabe-Ito colours of the paper experiment's treatments.
OKABE_ITO = {"asyncsgd": "#000000", "p2": "#E69F00", "p3": "#0072B2", "op": "#D55E00", "p2-pmin4": "#009E73",
             "p2-clip4": "#CC79A7"}


def paper_figures(preset: Any, selection: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Any], out_dir: str | Path) -> list[tuple[Path, str]]:
    """Accuracy against simulated time (bootstrap bands), per-seed paired time ratios, and
    predicted against measured time ratios; PNG and PDF, returns ``[(png path, caption)]``."""
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    scen = summary["scenarios"]
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by[Scenario(**r["scenario"]).id][r["treatment"]].append(r)
    names = [*preset.treatments, *preset.safeguards]
    label = lambda name: (TREATMENTS.get(name) or SAFEGUARDS[name]).label  # noqa: E731
    styles = {name: LINESTYLES[i % len(LINESTYLES)] for i, name in enumerate(names)}
    # 1. accuracy against simulated time
    ncol = len(preset.partitions)
    nrow = int(math.ceil(len(scen) / ncol))
    with styled():
        fig, axes = subplots(nrow, ncol, panel=(3.0, 2.4), sharey="row")
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
                    mean_band(ax, t, curves, OKABE_ITO.get(name, GREY), label(name), styles[name])
            ax.axhline(100 * sc["target"], color=GREY, ls=":", lw=0.8, label="target accuracy")
            ax.set_title(f"{human(sc['dataset'])}, {human(sc['partition'])}, n = {sc['clients']}")
            ax.set_xlabel(SIM_TIME)
            if k % ncol == 0:
                ax.set_ylabel(ACCURACY)
        for k in range(len(scen), nrow * ncol):
            axes[k // ncol][k % ncol].set_visible(False)
        legend_below(fig, *legend_entries(axes), ncol=3, title="mean over evaluation seeds, band: 95% bootstrap interval")
        fig.suptitle("Accuracy at equal simulated time, tuned baselines vs the operating point")
        p = save_figure(fig, out, f"{preset.name}_accuracy")[0]
    made.append((p, "Test accuracy against simulated time: mean over evaluation seeds with a 95% bootstrap band; "
                    "dotted line: the target"))
    # 2. per-seed paired time ratios
    with styled():
        fig, axes = subplots(1, 1, panel=(1.2 + 0.9 * len(scen), 3.0))
        ax = axes[0][0]
        offs = {n: (i - (len(names) - 2) / 2) * 0.14 for i, n in enumerate(n for n in names if n != "asyncsgd")}
        for k, sc in enumerate(scen):
            base = {r["seed"]: r for r in by[sc["scenario"]].get("asyncsgd", [])}
            for name, dx in offs.items():
                rr = {r["seed"]: r for r in by[sc["scenario"]].get(name, [])}
                ratios = [run_times(rr[s], sc["target"])[0] / run_times(base[s], sc["target"])[0] for s in rr
                          if s in base]
                if not ratios:
                    continue
                ax.scatter(np.full(len(ratios), k + dx), ratios, s=9, color=OKABE_ITO.get(name, GREY), alpha=0.7,
                           marker=MARKERS[list(offs).index(name) % len(MARKERS)], label=label(name) if k == 0 else None)
                row = next((r for r in sc["rows"] if r["treatment"] == name), None)
                if row and row["time_ratio"] and row["time_ratio"]["ci"]:
                    lo, hi = row["time_ratio"]["ci"]
                    ax.errorbar(k + dx, row["time_ratio"]["mean"], yerr=[[row["time_ratio"]["mean"] - lo],
                                                                        [hi - row["time_ratio"]["mean"]]],
                                color=OKABE_ITO.get(name, GREY), fmt="_", ms=10, lw=1.2, capsize=2)
        ax.axhline(1.0, color=GREY, lw=0.8, label="no gain (ratio 1)")
        ax.axhline(preset.criterion_ratio, color=GREY, ls="--", lw=0.8,
                   label=f"criterion (ratio {preset.criterion_ratio})")
        ax.set_yscale("log")
        ax.set_xticks(range(len(scen)), [f"{human(sc['dataset'])}\n{human(sc['partition'])}" for sc in scen],
                      fontsize=7)
        ax.set_xlabel("scenario (data set, split)")
        ax.set_ylabel("time to target, treatment / AsyncSGD (ratio)")
        ax.set_title("paired time-to-target ratios per seed")
        legend_below(fig, *legend_entries(axes), ncol=2)
        p = save_figure(fig, out, f"{preset.name}_time_ratios")[0]
    made.append((p, f"Per-seed paired time-to-target ratios (dots), geometric mean and 95% log-scale interval "
                    f"(bars); dashed: the criterion {preset.criterion_ratio}, solid: no gain"))
    # 3. predicted against measured
    with styled():
        fig, axes = subplots(1, 1, panel=(3.4, 3.0))
        ax = axes[0][0]
        for sc in scen:
            for r in sc["rows"]:
                if r["treatment"] == "asyncsgd" or not r["time_ratio"] or not r["predicted_time_ratio"]:
                    continue
                ax.scatter(r["predicted_time_ratio"]["mean"], r["time_ratio"]["mean"], s=18,
                           color=OKABE_ITO.get(r["treatment"], GREY),
                           marker="o" if sc["dataset"] == "digits" else "s",
                           label=f"{label(r['treatment'])}, {human(sc['dataset'])}")
        lims = [0.05, 5]
        ax.plot(lims, lims, color=GREY, lw=0.8, label="perfect prediction")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"predicted time ratio (proxy $E[T_\epsilon]$, ratio)")
        ax.set_ylabel("measured time ratio (geometric mean, ratio)")
        ax.set_title("does the proxy predict the measured gain?")
        legend_below(fig, *legend_entries(axes), ncol=1)
        p = save_figure(fig, out, f"{preset.name}_predicted_vs_measured")[0]
    made.append((p, "Predicted (proxy) against measured time-to-target ratio vs AsyncSGD, one point per scenario "
                    "and treatment (circles: digits, squares: MNIST-1D); diagonal: perfect prediction"))
    return made
