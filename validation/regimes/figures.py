"""The regime map's figures, in the toolkit's one style (:mod:`aflqueue.style`): predicted against
measured time ratios per predictor, and the spread x heterogeneity map with the pilot fit's verdict."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from aflqueue.style import (GREY, LIGHT_GREY, guide, interval_note, legend_below, legend_entries, log_axis, panel_grid,
                            save_figure, styled, subplots, unlabelled)
from validation.regimes.experiment import PARTITION_LABELS

__all__ = ["regime_figures", "REGIME_COLOURS"]


#: Okabe-Ito colours per heterogeneity level of the regime map.
REGIME_COLOURS = {"iid": "#0072B2", "dir0.5": "#009E73", "dir0.2": "#E69F00", "dir0.05": "#D55E00"}


_REGIME_MARKERS = {0.5: "v", 1.0: "o", 2.0: "^"}


_FIT_INTERVAL = "horizontal: the pilot fit's 95% bootstrap interval"
_PAYS, _NOT, _SWITCH = "pilot fit: 'pays'", "pilot fit: 'not expected to pay'", "pilot fit's verdict switches"

_PREDICTOR_TITLES = {"initial": "before: initial-model proxy", "transfer": "after: pilot fit (pilot system)",
                     "local": "pilot fit on the regime's own system",
                     "transfer-opt+var": "pilot fit without the staleness term"}


def regime_figures(summary: Mapping[str, Any], out_dir: str | Path, routing: str = "p2",
                   predictors: Sequence[str] = ("initial", "transfer", "transfer-opt+var", "local")
                   ) -> list[tuple[Path, str]]:
    """The regime map's figures from :func:`validation.regimes.experiment.summarize_regimes`:
    predicted against measured time-to-target ratio of ``routing`` (one panel per predictor), and
    the spread x heterogeneity map at ``m = n`` coloured by the measured ratio with the pilot
    fit's verdict along each row. PNG and PDF; returns ``[(png path, caption)]``."""
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    regs = summary["regimes"]
    nn = _n_clients(regs)
    preds = [p for p in predictors if p in summary.get("predictors", [])]
    name = routing.upper()
    # 1. predicted against measured, one panel per predictor
    ns: list[int] = []
    with styled():
        nrow, ncol = panel_grid(max(len(preds), 1), 2 if len(preds) in (2, 4) else 3)
        fig, axes = subplots(nrow, ncol, width="double" if ncol > 1 else "single", panel_height=2.15, sharex=True,
                             sharey=True)
        lo_all, hi_all = [], []
        fit_interval = False
        shown_factors, shown_partitions = set(), set()  # the legend names only what is drawn
        for ax, p in zip(axes.flat, preds):
            for sc in regs:
                row = sc["rows"].get(routing)
                if not row or not row["time_ratio"] or not row["predicted"].get(p):
                    continue
                tr = row["predicted"][p]["time_ratio"]
                x = tr["point"] if isinstance(tr, dict) else tr
                if x is None or not math.isfinite(x):
                    continue
                m = row["time_ratio"]
                y = m["mean"]
                ci = m.get("ci") or [y, y]
                factor = min(_REGIME_MARKERS, key=lambda f: abs(f - sc["concurrency"] / nn))
                col = REGIME_COLOURS.get(sc["partition"], GREY)
                label = PARTITION_LABELS.get(sc["partition"], sc["partition"])
                shown_factors.add(factor)
                shown_partitions.add(sc["partition"])
                if m.get("ci") and m.get("n", 0) >= 3:
                    ax.errorbar(x, y, yerr=[[y - ci[0]], [ci[1] - y]], fmt=_REGIME_MARKERS[factor], ms=3.5, lw=0.7,
                                color=col, alpha=0.9, capsize=1.2, label=label)
                    ns.append(m["n"])
                else:
                    ax.plot([x], [y], _REGIME_MARKERS[factor], ms=3.5, color=col, label=label)
                if isinstance(tr, dict) and tr.get("lo") is not None:
                    guide(ax.plot([tr["lo"], tr["hi"]], [y, y], color=col, lw=0.5, alpha=0.5, label=_FIT_INTERVAL)[0])
                    fit_interval = True
                lo_all += [x, ci[0]]
                hi_all += [x, ci[1]]
            st = summary["across"].get(f"{routing}|time_ratio|{p}")
            rho = "" if not st or st["statistic"] is None else \
                f"\nSpearman {st['statistic']:.2f} (p = {st['p_value']:.2g}, {st['n']} regimes)"
            ax.set_title(_PREDICTOR_TITLES.get(p, p) + rho)
            ax.axhline(1.0, color=GREY, lw=0.6, ls=":", label="no gain (ratio 1)")
            ax.axvline(1.0, color=GREY, lw=0.6, ls=":", label="no gain (ratio 1)")
        if lo_all:
            lims = [min(v for v in lo_all if v > 0) * 0.85, max(hi_all) * 1.2]
            for ax in axes.flat[: len(preds)]:
                guide(ax.plot(lims, lims, color=GREY, lw=0.6, label="perfect prediction (y = x)")[0])
                ax.set_xlim(*lims)
                ax.set_ylim(*lims)
        for ax in axes.flat[: len(preds)]:
            log_axis(ax, "both")
        for k, ax in enumerate(axes.flat[: len(preds)]):
            if k + ncol >= len(preds):  # the lowest panel of its column: its x axis is read here
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_xlabel(f"predicted time ratio, {name} / AsyncSGD (ratio)")
        for row in axes:
            row[0].set_ylabel(f"measured time ratio, {name} / AsyncSGD (ratio)")
        for ax in list(axes.flat)[len(preds):]:
            ax.set_visible(False)
        from matplotlib.lines import Line2D

        parts = [k for k in REGIME_COLOURS if k in shown_partitions]
        factors = [f for f in _REGIME_MARKERS if f in shown_factors]
        handles = [Line2D([], [], color=REGIME_COLOURS[k], marker="o", ls="", ms=3.5) for k in parts]
        labels = [PARTITION_LABELS.get(k, k) for k in parts]
        handles += [Line2D([], [], color=GREY, marker=_REGIME_MARKERS[f], ls="", ms=3.5) for f in factors]
        labels += [f"m = {f:g} n" for f in factors]
        extra = [(Line2D([], [], color=GREY, lw=0.6), "perfect prediction (y = x)"),
                 (Line2D([], [], color=GREY, lw=0.6, ls=":"), "no gain (ratio 1)")]
        if fit_interval:
            extra.append((Line2D([], [], color=LIGHT_GREY, lw=1.6, alpha=0.7), _FIT_INTERVAL))
        handles += [h for h, _ in extra]
        labels += [lab for _, lab in extra]
        bars = interval_note(ns, "geometric mean, 95% t-interval").replace("bars: ", "vertical bars: ") if ns else \
            "measured: geometric mean"
        legend_below(fig, handles, labels, ncol=5, title=f"data heterogeneity (colour), concurrency (marker); {bars}")
        fig.suptitle(f"Predicted against measured time-to-target ratio of {name}, one point per held-out regime")
        p = save_figure(fig, out, f"regimes_predicted_vs_measured_{routing}")[0]
    made.append((p, f"Predicted against measured time-to-target ratio of {routing.upper()} over tuned AsyncSGD, one "
                    "point per held-out regime (colour: heterogeneity; marker: concurrency; vertical bars: 95% "
                    "interval over 5 seeds; horizontal lines: the pilot fit's 95% bootstrap interval); diagonal: "
                    "perfect prediction, dotted: no gain"))
    # 2. the map at m = n, with the pilot fit's verdict along each row
    cells = [sc for sc in regs if sc["concurrency"] == nn]
    spreads = sorted({sc["spread"] for sc in cells})
    parts = [p for p in REGIME_COLOURS if any(sc["partition"] == p for sc in cells)]
    if spreads and parts:
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        with styled():
            fig, axes = subplots(1, 1, width=4.8, panel_height=0.55 * len(parts) + 0.4)
            ax = axes[0][0]
            ls = np.log10(spreads)
            mids = (ls[1:] + ls[:-1]) / 2 if len(ls) > 1 else np.array([])
            edges = np.r_[ls[0] - (mids[0] - ls[0] if mids.size else 0.5), mids,
                          ls[-1] + (ls[-1] - mids[-1] if mids.size else 0.5)]
            Z = np.full((len(parts), len(spreads)), np.nan)
            for sc in cells:
                row = sc["rows"].get(routing)
                if row and row["time_ratio"]:
                    Z[parts.index(sc["partition"]), spreads.index(sc["spread"])] = math.log2(row["time_ratio"]["mean"])
            vmax = max(1.0, float(np.nanmax(np.abs(Z))) if np.isfinite(Z).any() else 1.0)
            mesh = ax.pcolormesh(10 ** edges, np.arange(len(parts) + 1), np.ma.masked_invalid(Z), cmap="PuOr_r",
                                 vmin=-vmax, vmax=vmax, shading="flat")
            unlabelled(mesh, "read from the colour bar")
            ax.set_xscale("log")
            cb = fig.colorbar(mesh, ax=ax, pad=0.02)
            ticks = [t for t in (-2, -1, -0.5, 0, 0.5, 1, 2) if abs(t) <= vmax]
            cb.set_ticks(ticks)
            cb.set_ticklabels([f"{2 ** t:.2g}" for t in ticks])
            cb.set_label(f"measured time ratio (< 1: {name} faster)")
            for sc in cells:
                row = sc["rows"].get(routing)
                if not row or not row["time_ratio"]:
                    continue
                i, j = parts.index(sc["partition"]), spreads.index(sc["spread"])
                pr = (row["predicted"].get("transfer") or {}).get("time_ratio") or {}
                txt = f"{row['time_ratio']['mean']:.2f}" + (f"\n(pred. {pr['point']:.2f})" if pr.get("point") else "")
                ax.text(spreads[j], i + 0.55, txt, ha="center", va="center", fontsize=6.5)
            # the pilot fit's verdict along each row (at the spreads of its boundary scan), and where it switches
            switched = False
            for i, part in enumerate(parts):
                rows = summary.get("boundary", {}).get(part, [])
                pays = [(r["spread"], r["verdict"] == "pays") for r in rows]
                for (s0, v0), (s1, v1) in zip(pays, pays[1:]):
                    if v0 != v1:
                        xb = math.sqrt(s0 * s1)
                        guide(ax.plot([xb, xb], [i, i + 1], color="black", lw=2.0, label=_SWITCH)[0])
                        switched = True
                yes = [s for s, v in pays if v]
                no = [s for s, v in pays if not v]
                if yes:
                    ax.plot(yes, [i + 0.13] * len(yes), ls="none", marker="|", color="black", ms=5, label=_PAYS)
                if no:
                    ax.plot(no, [i + 0.13] * len(no), ls="none", marker=".", color="black", ms=2.5, label=_NOT)
            ax.set_yticks(np.arange(len(parts)) + 0.5, [PARTITION_LABELS.get(p, p) for p in parts])
            # only the spreads are labelled: a log axis would add overlapping minor labels on short ranges
            ax.xaxis.set_major_locator(FixedLocator(spreads))
            ax.set_xticklabels([f"{s:g}x" for s in spreads])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(False)
            ax.set_xlabel("speed spread (fastest / slowest compute rate)")
            ax.set_ylabel("data heterogeneity (split)")
            ax.set_title(f"Measured gain of {name} at m = n: measured ratio and (pilot-fit prediction)")
            legend_below(fig, *legend_entries(axes), ncol=3,
                         title="marks along the bottom of each row: the pilot fit's verdict at the spreads it assessed")
            p = save_figure(fig, out, f"regimes_map_{routing}")[0]
        made.append((p, "Regime map at m = n: colour = measured time-to-target ratio of P2 over tuned AsyncSGD "
                        "(geometric mean over 5 seeds; purple: P2 faster, orange: slower); numbers: measured and "
                        "(pilot-fit) predicted ratio; along the bottom of each row, the pilot fit's verdict at the "
                        "spreads it assessed (ticks: 'pays', dots: 'not expected to pay')"
                        + ("; thick black bars: where that verdict switches" if switched else
                           "; the verdict never switches along a row here")))
    return made


def _n_clients(regs: Sequence[Mapping[str, Any]]) -> int:
    """The regime map's n: the most common concurrency (the m = n regimes outnumber the others)."""
    from collections import Counter

    c = Counter(int(r["concurrency"]) for r in regs)
    return c.most_common(1)[0][0] if c else 1
