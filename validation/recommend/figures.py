"""The recommendation study's figures, in the toolkit's one style (:mod:`aflqueue.style`): the
pilots' predicted time ratio against the measured one (held-in and held-out regimes), and the
held-out regimes against the primary criterion. Drawn from the report's rows
(:func:`validation.recommend.report.regime_rows`), hence from the saved records only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from aflqueue.style import GREY, guide, interval_note, legend_below, log_axis, save_figure, styled, subplots

__all__ = ["recommend_figures", "SIZE_COLOURS"]

#: Okabe-Ito colours per system size.
SIZE_COLOURS = {100: "#0072B2", 500: "#D55E00"}
_DEPLOYED, _KEPT = "o", "s"
_PI = "horizontal: 90% prediction interval (held-in q)"
_DIAGONAL, _NO_GAIN = "perfect prediction (y = x)", "no gain (ratio 1)"
_MET, _NOT_MET, _KEPT_LABEL = "criterion met", "criterion not met", "AsyncSGD kept (pilots' rate)"


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


def _arm(x: dict[str, Any]) -> dict[str, Any]:
    """The arm the prediction is about: the recommended one, or the best finalist's own arm where
    AsyncSGD was kept."""
    return x["finalist"] or x


def recommend_figures(rows: Sequence[dict[str, Any]], q: float | None, criterion: float,
                      out_dir: str | Path) -> list[tuple[Path, str]]:
    """Predicted against measured ratio (one panel per tier) and the held-out regimes against
    ``criterion`` (the measured ratio of what was deployed, with its family-wise upper bound).
    PNG and PDF in ``out_dir``; returns ``[(png path, caption)]``."""
    out = Path(out_dir)
    made: list[tuple[Path, str]] = []
    from matplotlib.lines import Line2D  # lazy: matplotlib

    tiers = [t for t in ("held-in", "held-out") if any(x["regime"].tier == t for x in rows)]
    if not tiers:
        return made
    seeds: list[int] = []
    with styled():
        fig, axes = subplots(1, len(tiers), width="double" if len(tiers) > 1 else "single", panel_height=2.6,
                             sharex=True, sharey=True)
        xs: list[float] = []
        ys: list[float] = []
        drawn: set[tuple[int, str]] = set()
        for ax, tier in zip(axes[0], tiers):
            named: list[tuple[float, float]] = []
            for x in (x for x in rows if x["regime"].tier == tier and _finite(x["predicted"])):
                arm, n = _arm(x), x["regime"].n
                pred, meas = x["predicted"], arm["ratio"]
                mk = _KEPT if x["keep"] else _DEPLOYED
                col = SIZE_COLOURS.get(n, GREY)
                drawn.add((n, mk))
                lo, hi = arm["interval"] or (meas, meas)
                ax.errorbar(pred, meas, yerr=[[meas - lo], [hi - meas]], fmt=mk, ms=3.8, lw=0.7, capsize=1.2,
                            color=col, mfc=col if mk == _DEPLOYED else "white", label=f"n = {n} clients")
                seeds.append(x["seeds"])
                xs += [pred]
                ys += [lo, hi]
                if tier == "held-out" and q is not None and _finite(x["sigma"]):
                    a, b = pred * math.exp(-q * x["sigma"]), pred * math.exp(q * x["sigma"])
                    guide(ax.plot([a, b], [meas, meas], color=col, lw=0.5, alpha=0.5, label=_PI)[0])
                    xs += [a, b]
                near = any(abs(math.log10(pred / a)) < 0.06 and abs(math.log10(meas / b)) < 0.03 for a, b in named)
                if not near:  # a label that would overprint another is left out (the second figure names them all)
                    named.append((pred, meas))
                    ax.annotate(x["regime"].id, (pred, meas), xytext=(3, 2), textcoords="offset points",
                                fontsize=5.5, color=GREY)
            ax.set_title(f"{tier} regimes" + (" (q is computed from these)" if tier == "held-in" else ""))
            ax.set_xlabel("predicted time ratio, pilots (ratio)")
        # x spans the prediction intervals (wide: q is in pilot standard deviations), y the measurements
        xlim = [min(xs) * 0.9, max(xs) * 1.1]
        ylim = [min(ys + [criterion]) * 0.9, max(ys + [1.0]) * 1.1]
        for ax in axes[0]:
            guide(ax.plot(xlim, xlim, color=GREY, lw=0.6, label=_DIAGONAL)[0])
            guide(ax.axhline(criterion, color=GREY, lw=0.7, ls="--", label=f"criterion ({criterion:g})"))
            guide(ax.axhline(1.0, color=GREY, lw=0.6, ls=":", label=_NO_GAIN))
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            log_axis(ax, "both")
            ax.xaxis.set_tick_params(labelbottom=True)
        axes[0][0].set_ylabel("measured time ratio over tuned AsyncSGD (ratio)")
        handles = [Line2D([], [], color=SIZE_COLOURS[n], marker="o", ls="", ms=3.8) for n in SIZE_COLOURS
                   if any(d[0] == n for d in drawn)]
        labels = [f"n = {n} clients" for n in SIZE_COLOURS if any(d[0] == n for d in drawn)]
        if any(d[1] == _KEPT for d in drawn):
            handles += [Line2D([], [], color=GREY, marker=_DEPLOYED, ls="", ms=3.8),
                        Line2D([], [], color=GREY, marker=_KEPT, mfc="white", ls="", ms=3.8)]
            labels += ["recommended point (deployed)", "AsyncSGD kept (its best finalist measured)"]
        handles += [Line2D([], [], color=GREY, lw=0.6), Line2D([], [], color=GREY, lw=0.7, ls="--"),
                    Line2D([], [], color=GREY, lw=0.6, ls=":")]
        labels += [_DIAGONAL, f"criterion ({criterion:g})", _NO_GAIN]
        if q is not None and "held-out" in tiers:
            handles.append(Line2D([], [], color=GREY, lw=0.5, alpha=0.5))
            labels.append(_PI)
        bars = interval_note(seeds, "95% t-interval (log scale)", "paired seeds").replace("bars", "vertical bars")
        legend_below(fig, handles, labels, ncol=4, title=bars)
        fig.suptitle("The pilots' predicted time-to-target ratio against the measured one, one point per regime")
        p = save_figure(fig, out, "recommend_predicted_vs_measured")[0]
    undrawn = [x["regime"].id for x in rows if not _finite(x["predicted"])]
    made.append((p, "Predicted (pilots) against measured time-to-target ratio over tuned AsyncSGD, one point per "
                    "regime (colour: system size; open squares: AsyncSGD kept, the best finalist's own arm "
                    f"measured; vertical bars: {bars.split(': ', 1)[1]}"
                    + ("; horizontal lines: the 90% prediction interval from the held-in quantile q = "
                       f"{q:.3g}" if q is not None else "") + f"); dashed: the criterion {criterion:g}, diagonal: "
                    "perfect prediction, dotted: no gain; a label that would overprint another is left out"
                    + (f"; not drawn, no finite prediction: {', '.join(undrawn)}" if undrawn else "")))
    held_out = sorted((x for x in rows if x["regime"].tier == "held-out"), key=lambda x: int(x["regime"].id[1:]))
    if held_out:
        with styled():
            fig, axes = subplots(1, 1, width="single", panel_height=0.19 * len(held_out) + 0.5)
            ax = axes[0][0]
            for i, x in enumerate(held_out):
                y = len(held_out) - 1 - i
                col = SIZE_COLOURS.get(x["regime"].n, GREY)
                passed = x["upper"] < criterion and x["censored"] == 0
                top = x["upper"] if _finite(x["upper"]) else x["ratio"]
                size = f"n = {x['regime'].n} clients"
                guide(ax.plot([x["ratio"], top], [y, y], color=col, lw=1.0, label=size)[0])
                ax.plot([x["ratio"]], [y], _KEPT if x["keep"] else _DEPLOYED, color=col, ms=3.8,
                        mfc=col if passed else "white", label=_KEPT_LABEL if x["keep"] else _MET if passed else _NOT_MET)
            ax.set_yticks(range(len(held_out)), [x["regime"].id for x in reversed(held_out)])
            guide(ax.axvline(criterion, color=GREY, lw=0.7, ls="--", label=f"criterion ({criterion:g})"))
            guide(ax.axvline(1.0, color=GREY, lw=0.6, ls=":", label=_NO_GAIN))
            log_axis(ax, "x")
            ax.set_xlabel("measured time ratio over tuned AsyncSGD (ratio)")
            ax.set_ylabel("held-out regime (id)")
            npass = sum(1 for x in held_out if x["upper"] < criterion and x["censored"] == 0)
            ax.set_title(f"Held-out: the bound is below {criterion:g} in {npass} of {len(held_out)} regimes")
            handles = [Line2D([], [], color=SIZE_COLOURS[n], marker="o", ls="-", lw=1.0, ms=3.8) for n in SIZE_COLOURS
                       if any(x["regime"].n == n for x in held_out)]
            labels = [f"n = {n} clients" for n in SIZE_COLOURS if any(x["regime"].n == n for x in held_out)]
            handles += [Line2D([], [], color=GREY, marker="o", ls="", ms=3.8),
                        Line2D([], [], color=GREY, marker="o", mfc="white", ls="", ms=3.8)]
            labels += [_MET, _NOT_MET]
            if any(x["keep"] for x in held_out):
                handles.append(Line2D([], [], color=GREY, marker=_KEPT, mfc="white", ls="", ms=3.8))
                labels.append(_KEPT_LABEL)
            handles += [Line2D([], [], color=GREY, lw=0.7, ls="--"), Line2D([], [], color=GREY, lw=0.6, ls=":")]
            labels += [f"criterion ({criterion:g})", _NO_GAIN]
            legend_below(fig, handles, labels, ncol=3,
                         title="point: geometric mean over the paired seeds; line: up to the family-wise 95% "
                               "upper bound")
            p = save_figure(fig, out, "recommend_held_out")[0]
        made.append((p, "Held-out regimes: measured time-to-target ratio of what the recommendation deployed over "
                        "tuned AsyncSGD (geometric mean over the paired seeds; line up to the family-wise one-sided "
                        f"95% upper bound; filled: bound below the criterion {criterion:g} and nothing censored; "
                        "squares: AsyncSGD kept); dashed: the criterion, dotted: no gain"))
    return made
