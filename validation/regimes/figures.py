"""The regime map's figures, in the toolkit's one style (:mod:`aflqueue.plots`): predicted against
measured time ratios per predictor, and the spread x heterogeneity map with the predicted boundary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from aflqueue.plots import STYLE, pyplot, save_figure
from validation.regimes.experiment import PARTITION_LABELS

__all__ = ["regime_figures", "REGIME_COLOURS"]


#: Okabe-Ito colours per heterogeneity level of the regime map.
REGIME_COLOURS = {"iid": "#0072B2", "dir0.5": "#009E73", "dir0.2": "#E69F00", "dir0.05": "#D55E00"}


_REGIME_MARKERS = {0.5: "v", 1.0: "o", 2.0: "^"}


_PREDICTOR_TITLES = {"initial": "before: initial-model proxy", "transfer": "after: pilot fit (pilot system)",
                     "local": "pilot fit on the regime's own system",
                     "transfer-opt+var": "pilot fit without the staleness term"}


def regime_figures(summary: Mapping[str, Any], out_dir: str | Path, routing: str = "p2",
                   predictors: Sequence[str] = ("initial", "transfer", "transfer-opt+var", "local")
                   ) -> list[tuple[Path, str]]:
    """The regime map's figures from :func:`validation.regimes.experiment.summarize_regimes`:
    predicted against measured time-to-target ratio of ``routing`` (one panel per predictor), and
    the spread x heterogeneity map at ``m = n`` coloured by the measured ratio with the predicted
    "pays / does not pay" boundary. PNG and PDF; returns ``[(png path, caption)]``."""
    plt = pyplot()
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    regs = summary["regimes"]
    nn = _n_clients(regs)
    preds = [p for p in predictors if p in summary.get("predictors", [])]
    # 1. predicted against measured, one panel per predictor
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(len(preds), 1), figsize=(3.3 * max(len(preds), 1), 3.3), squeeze=False)
        lo_all, hi_all = [], []
        for ax, p in zip(axes[0], preds):
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
                ax.errorbar(x, y, yerr=[[y - ci[0]], [ci[1] - y]], fmt=_REGIME_MARKERS[factor], ms=4.5, lw=0.8,
                            color=REGIME_COLOURS.get(sc["partition"], "grey"), alpha=0.9, capsize=1.5)
                if isinstance(tr, dict) and tr.get("lo") is not None:
                    ax.plot([tr["lo"], tr["hi"]], [y, y], color=REGIME_COLOURS.get(sc["partition"], "grey"), lw=0.5,
                            alpha=0.5)
                lo_all += [x, ci[0]]
                hi_all += [x, ci[1]]
            st = summary["across"].get(f"{routing}|time_ratio|{p}")
            rho = "" if not st or st["statistic"] is None else \
                f"\nSpearman {st['statistic']:.2f} (p = {st['p_value']:.3g}, {st['n']} regimes)"
            ax.set_title(_PREDICTOR_TITLES.get(p, p) + rho, fontsize=8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            # ratios read as plain numbers on a few round ticks; the default log labels overlap
            from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator

            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(FixedLocator([0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.0]))
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_locator(NullLocator())
                axis.set_minor_formatter(NullFormatter())
            ax.axhline(1.0, color="grey", lw=0.6, ls=":")
            ax.axvline(1.0, color="grey", lw=0.6, ls=":")
            ax.set_xlabel("predicted time ratio, P2 / AsyncSGD")
            ax.set_ylabel("measured time ratio, P2 / AsyncSGD\n(geometric mean, 95% CI)")
        if lo_all:
            lims = [min(v for v in lo_all if v > 0) * 0.8, max(hi_all) * 1.25]
            for ax in axes[0]:
                ax.plot(lims, lims, color="grey", lw=0.6)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, marker="o", ls="", label=PARTITION_LABELS.get(k, k))
                   for k, c in REGIME_COLOURS.items()]
        handles += [Line2D([], [], color="grey", marker=mk, ls="", label=f"m = {f:g} n")
                    for f, mk in _REGIME_MARKERS.items()]
        fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, -0.06))
        fig.tight_layout()
        p = save_figure(fig, out, f"regimes_predicted_vs_measured_{routing}")[0]
    made.append((p, f"Predicted against measured time-to-target ratio of {routing.upper()} over tuned AsyncSGD, one "
                    "point per held-out regime (colour: heterogeneity; marker: concurrency; vertical bars: 95% "
                    "interval over 5 seeds; horizontal lines: the pilot fit's 95% bootstrap interval); diagonal: "
                    "perfect prediction, dotted: no gain"))
    # 2. the map at m = n, with the predicted boundary
    cells = [sc for sc in regs if sc["concurrency"] == nn]
    spreads = sorted({sc["spread"] for sc in cells})
    parts = [p for p in REGIME_COLOURS if any(sc["partition"] == p for sc in cells)]
    if spreads and parts:
        with plt.rc_context(STYLE):
            fig, ax = plt.subplots(figsize=(5.6, 3.4))
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
            ax.set_xscale("log")
            cb = fig.colorbar(mesh, ax=ax, pad=0.02)
            ticks = [t for t in (-2, -1, -0.5, 0, 0.5, 1, 2) if abs(t) <= vmax]
            cb.set_ticks(ticks)
            cb.set_ticklabels([f"{2 ** t:.2g}" for t in ticks])
            cb.set_label("measured time ratio P2 / AsyncSGD\n(< 1: P2 faster)", fontsize=8)
            for sc in cells:
                row = sc["rows"].get(routing)
                if not row or not row["time_ratio"]:
                    continue
                i, j = parts.index(sc["partition"]), spreads.index(sc["spread"])
                pr = (row["predicted"].get("transfer") or {}).get("time_ratio") or {}
                txt = f"{row['time_ratio']['mean']:.2f}" + (f"\n(pred. {pr['point']:.2f})" if pr.get("point") else "")
                ax.text(spreads[j], i + 0.5, txt, ha="center", va="center", fontsize=7)
            # predicted boundary (transfer fit, fine spread grid): the verdict switches
            for i, part in enumerate(parts):
                rows = summary.get("boundary", {}).get(part, [])
                pays = [(r["spread"], r["verdict"] == "pays") for r in rows]
                for (s0, v0), (s1, v1) in zip(pays, pays[1:]):
                    if v0 != v1:
                        xb = math.sqrt(s0 * s1)
                        ax.plot([xb, xb], [i, i + 1], color="black", lw=2.2)
                for s, v in pays:
                    ax.plot(s, i + 0.12, marker="|" if v else ".", color="black", ms=5 if v else 2.5, lw=0)
            ax.set_yticks(np.arange(len(parts)) + 0.5, [PARTITION_LABELS.get(p, p) for p in parts])
            ax.set_xticks(spreads, [f"{s:g}x" for s in spreads])
            # only the spreads are labelled: a log axis would add overlapping minor labels on short ranges
            from matplotlib.ticker import NullFormatter, NullLocator

            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("speed spread (fastest / slowest compute rate)")
            ax.set_ylabel("data heterogeneity")
            ax.set_title("Measured gain of P2 at m = n; black bars: predicted 'pays' boundary\n(ticks along the "
                         "bottom of a row: spreads where the pilot fit predicts 'pays')", fontsize=8)
            fig.tight_layout()
            p = save_figure(fig, out, f"regimes_map_{routing}")[0]
        made.append((p, "Regime map at m = n: colour = measured time-to-target ratio of P2 over tuned AsyncSGD "
                        "(geometric mean over 5 seeds; purple: P2 faster, orange: slower); numbers: measured and "
                        "(pilot-fit) predicted ratio; thick black bars: where the pilot fit's verdict switches "
                        "between 'pays' and 'not expected to pay' along the spread axis, ticks: spreads predicted "
                        "to pay, dots: not"))
    return made


def _n_clients(regs: Sequence[Mapping[str, Any]]) -> int:
    """The regime map's n: the most common concurrency (the m = n regimes outnumber the others)."""
    from collections import Counter

    c = Counter(int(r["concurrency"]) for r in regs)
    return c.most_common(1)[0][0] if c else 1
