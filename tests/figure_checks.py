"""What every figure of the toolkit must satisfy (issue "publishable figures"), checked on the
matplotlib figure itself, right after it is saved:

* every visible panel has data, and an x and a y label (its own, or that of a panel sharing the
  axis), each naming its unit (or kind) in parentheses;
* every plotted series (line, collection, bar, error bar) carries a label found in a legend, or is
  marked unlabelled on purpose (:func:`aflqueue.style.unlabelled`);
* no text extends outside the canvas; axis labels, titles and legend entries take at most two
  lines; the figure is at most two columns (7 in) wide;
* legends lie within the figure, off every panel's data area, and take at most a third of the
  figure's area; panels (with their labels) and the title do not overlap;
* a band of seeds rests on at least three seeds; a curve of few points is drawn with markers
  (unless marked a guide to the eye, :func:`aflqueue.style.guide`, or one seed behind a marked mean);
* every coloured line, marker, band and bar uses the Okabe-Ito palette or a grey (colour-mapped
  meshes read from a colour bar excepted);
* titles and legend entries use words, not internal names (no ``__``, no ``dir0.1``-style keys);
* PNG and PDF are written, and the PDF carries no creation date (same data, same bytes).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from matplotlib.colors import to_hex, to_rgba

from aflqueue import style

ALLOWED = {c.lower() for c in style.PALETTE} | {"#000000", "#ffffff", style.GREY.lower(), style.LIGHT_GREY.lower()}
INTERNAL = re.compile(r"__|\bwallclock-eta\b|\bdir0\.\d\b|\bgeneralized-asyncsgd\b|\bfive-types\b|\btwo-groups\b")


def _is_grey(rgba: tuple[float, ...]) -> bool:
    r, g, b = rgba[:3]
    return abs(r - g) < 0.02 and abs(g - b) < 0.02


def _colormapped(coll: Any) -> bool:
    return getattr(coll, "get_array", lambda: None)() is not None


def _colours(axes: list[Any]) -> set[str]:
    out: set[str] = set()
    for ax in axes:
        for line in ax.get_lines():
            for c in (line.get_color(), line.get_markeredgecolor(), line.get_markerfacecolor()):
                if isinstance(c, str) and c.lower() == "none":
                    continue
                rgba = to_rgba(c)
                if rgba[3] > 0 and not _is_grey(rgba):
                    out.add(to_hex(rgba))
        for coll in ax.collections:
            if _colormapped(coll):
                continue
            for arr in (coll.get_facecolor(), coll.get_edgecolor()):
                for rgba in np.atleast_2d(arr):
                    if len(rgba) == 4 and rgba[3] > 0 and not _is_grey(tuple(rgba)):
                        out.add(to_hex(rgba))
        for patch in ax.patches:
            rgba = patch.get_facecolor()
            if rgba[3] > 0 and not _is_grey(rgba):
                out.add(to_hex(rgba))
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def _has_data(artist: Any) -> bool:
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D

    if not artist.get_visible():
        return False
    if isinstance(artist, Line2D):
        return len(artist.get_xdata()) > 0
    if isinstance(artist, Collection):
        return len(artist.get_paths()) > 0 or len(artist.get_offsets()) > 0
    return True


def _container_labels(ax: Any) -> dict[int, str]:
    """id(artist) -> label of the container (error bars, bars, stems) it belongs to."""
    out: dict[int, str] = {}

    def walk(obj: Any, label: str) -> None:
        if obj is None:
            return
        if isinstance(obj, (list, tuple)):
            for o in obj:
                walk(o, label)
        else:
            out[id(obj)] = label

    for c in ax.containers:
        walk(list(c), c.get_label())
    return out


def _series(ax: Any) -> list[Any]:
    return [a for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images) if _has_data(a)]


def _drawn_ticklabels(axis: Any, coord: int) -> list[Any]:
    """The major tick labels of ``axis`` inside its view (matplotlib keeps labels of ticks beyond it)."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    return [t for t in axis.get_majorticklabels() if lo - tol <= t.get_position()[coord] <= hi + tol]


def _is_colorbar(ax: Any) -> bool:
    return ax.get_label() == "<colorbar>"


def check_figure(fig: Any) -> dict[str, Any]:
    """Assert the rules above on a drawn figure; return what was found (legend texts, bands...)."""
    from matplotlib.lines import Line2D

    fig.draw_without_rendering()  # lay out and place every artist (no pixels needed to measure them)
    renderer = fig.canvas.get_renderer()
    W, H = fig.get_size_inches()
    assert W <= style.DOUBLE + 0.51, f"figure {W:.2f} in wide: wider than two columns"
    canvas = fig.bbox
    all_axes = [ax for ax in fig.axes if ax.get_visible()]
    axes = [ax for ax in all_axes if not _is_colorbar(ax)]
    assert axes, "no visible panel"
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    assert legends, "no legend"
    legend_texts = {_norm(t.get_text()) for leg in legends for t in leg.get_texts()}
    bands: dict[str, int] = {}
    for ax in axes:
        title = ax.get_title()
        for which, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            if not label.strip():  # a panel sharing the axis of a labelled panel (same row or column) may omit it
                group = (ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()).get_siblings(ax)
                label = next((getattr(s, f"get_{which}label")() for s in group if getattr(s, f"get_{which}label")()),
                             "")
            assert label.strip(), f"panel {title!r}: no {which} label"
            assert "(" in label and ")" in label, f"panel {title!r}: {which} label {label!r} names no unit"
        assert not INTERNAL.search(title), f"internal name in title {title!r}"
        series = _series(ax)
        assert series, f"panel {title!r} is empty"
        owners = _container_labels(ax)
        n_bands = 0
        for art in series:
            label = art.get_label()
            if label.startswith("_"):
                label = owners.get(id(art), label)
            gid = str(art.get_gid() or "")
            if gid.startswith("seed-band:"):
                n = int(gid.split(":")[1])
                assert n >= style.MIN_BAND_SEEDS, f"panel {title!r}: a band from {n} seeds"
                n_bands += 1
            if gid.startswith("unlabelled:"):
                continue
            assert not label.startswith("_") and _norm(label) in legend_texts, \
                f"panel {title!r}: a {type(art).__name__} labelled {label!r} is not in the legend"
            if isinstance(art, Line2D) and art.get_transform() is ax.transData and gid not in ("guide", "per-seed"):
                n = int(np.isfinite(np.asarray(art.get_xdata(), dtype=float)).sum())
                drawn = art.get_linestyle() not in ("None", "", " ", "none")
                if 2 <= n <= style.FEW_POINTS and drawn and art.get_marker() in (None, "None", "", " ", "none"):
                    raise AssertionError(f"panel {title!r}: {label!r} joins {n} points without markers")
        bands[title] = n_bands
    # text: inside the canvas, at most two lines for labels, titles and legend entries
    texts_drawn = [*fig.texts, *([fig._suptitle] if fig.get_suptitle() else [])]
    texts_drawn += [t for leg in legends for t in (*leg.get_texts(), leg.get_title())]
    for ax in all_axes:
        texts_drawn += [*ax.texts, ax.title, ax.xaxis.label, ax.yaxis.label, *_drawn_ticklabels(ax.xaxis, 0),
                        *_drawn_ticklabels(ax.yaxis, 1)]
    for t in texts_drawn:
        if not t.get_visible() or not t.get_text().strip():
            continue
        bb = t.get_window_extent(renderer)
        assert bb.x0 >= canvas.x0 - 1 and bb.y0 >= canvas.y0 - 1 and bb.x1 <= canvas.x1 + 1 and \
            bb.y1 <= canvas.y1 + 1, f"text {t.get_text()!r} extends outside the figure"
    lined = [ax.xaxis.label for ax in all_axes] + [ax.yaxis.label for ax in all_axes] + [ax.title for ax in all_axes]
    lined += [t for leg in legends for t in leg.get_texts()]
    if fig.get_suptitle():
        lined.append(fig._suptitle)
    for t in lined:
        assert t.get_text().count("\n") <= 1, f"{t.get_text()!r} takes more than two lines"
    for leg in legends:
        lb = leg.get_window_extent(renderer)
        assert lb.x0 >= canvas.x0 - 1 and lb.x1 <= canvas.x1 + 1 and lb.y0 >= canvas.y0 - 1 and \
            lb.y1 <= canvas.y1 + 1, "a legend extends outside the figure"
        for ax in axes:
            assert not lb.overlaps(ax.get_window_extent(renderer)), "a legend covers a panel's data area"
    share = sum(leg.get_window_extent(renderer).width * leg.get_window_extent(renderer).height
                for leg in legends) / (canvas.width * canvas.height)
    assert share <= style.LEGEND_SHARE + 1e-9, f"legends take {share:.0%} of the figure"
    boxes = [ax.get_tightbbox(renderer) for ax in all_axes]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            inter = boxes[i].intersection(boxes[i], boxes[j])
            if inter is not None:  # tolerate a couple of pixels of touching
                assert inter.width < 3 or inter.height < 3, "two panels (with their labels) overlap"
    if fig.get_suptitle():
        sb = fig._suptitle.get_window_extent(renderer)
        for box in boxes:
            inter = box.intersection(box, sb)
            assert inter is None or inter.width < 3 or inter.height < 3, "the figure title overlaps a panel"
    colours = _colours(axes)
    assert colours <= ALLOWED, f"colours outside the Okabe-Ito palette: {sorted(colours - ALLOWED)}"
    texts = [t.get_text() for leg in legends for t in leg.get_texts()]
    for t in texts:
        assert not INTERNAL.search(t), f"internal name in legend {t!r}"
    return {"legend": texts, "bands": bands, "titles": [ax.get_title() for ax in axes],
            "suptitle": fig.get_suptitle(), "legend_titles": [leg.get_title().get_text() for leg in legends],
            "size": (float(W), float(H))}


@contextmanager
def captured(monkeypatch, *modules: Any, pdf: bool = True) -> Iterator[dict[str, dict[str, Any]]]:
    """Check every figure saved inside the block (by :func:`aflqueue.style.save_figure` or any
    other ``savefig``); yields ``{stem: check_figure(...) and "png": its path}`` (``folder/stem``
    for a second figure of the same name). ``modules``: accepted for callers
    that name the modules drawing the figures (every save is caught whatever the module).
    ``pdf=False`` checks each figure where its PDF would be written, without writing it (the PDF
    costs more than the rest of a figure; its determinism is tested on its own)."""
    from matplotlib.figure import Figure

    seen: dict[str, dict[str, Any]] = {}
    original = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        p = Path(fname)
        if p.suffix != ".pdf":
            return original(self, fname, *args, **kwargs)
        result = original(self, fname, *args, **kwargs) if pdf else None
        if pdf:  # save_figure writes the PNG first: both are on disk now
            assert b"CreationDate" not in p.read_bytes() and p.stat().st_size > 1000
        assert p.with_suffix(".png").stat().st_size > 1000
        # keyed by file name; a name already seen (two folders) by folder and name
        seen[p.stem if p.stem not in seen else f"{p.parent.name}/{p.stem}"] = {**check_figure(self), "png":
                                                                               p.with_suffix(".png")}
        return result

    monkeypatch.setattr(Figure, "savefig", spy)
    yield seen
