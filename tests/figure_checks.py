"""What every figure of the toolkit must satisfy (issue "publishable figures"), checked on the
matplotlib figure itself, captured right before it is saved.

* every visible panel has an x and a y label (its own, or that of a panel sharing the axis), each
  naming its unit (or kind) in parentheses;
* no legend sits on a panel's data area, and panels (with their labels) and the title do not overlap;
* every coloured line, marker, band and bar uses the Okabe-Ito palette or a grey;
* panel titles use words, not internal names (no ``__``, no ``wallclock-eta``/``dir0.1``-style keys);
* PNG and PDF are written, and the PDF carries no creation date (same data, same bytes).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from matplotlib.colors import to_hex, to_rgba

from aflqueue import plots

ALLOWED = {c.lower() for c in plots.PALETTE} | {"#000000", "#ffffff", plots.GREY.lower(), plots.LIGHT_GREY.lower()}
INTERNAL = re.compile(r"__|\bwallclock-eta\b|\bdir0\.\d\b|\bgeneralized-asyncsgd\b|\bfive-types\b|\btwo-groups\b")


def _is_grey(rgba: tuple[float, ...]) -> bool:
    r, g, b = rgba[:3]
    return abs(r - g) < 0.02 and abs(g - b) < 0.02


def _colours(fig: Any) -> set[str]:
    out: set[str] = set()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for line in ax.get_lines():
            for c in (line.get_color(), line.get_markeredgecolor(), line.get_markerfacecolor()):
                if isinstance(c, str) and c.lower() == "none":
                    continue
                rgba = to_rgba(c)
                if rgba[3] > 0 and not _is_grey(rgba):
                    out.add(to_hex(rgba))
        for coll in ax.collections:
            for arr in (coll.get_facecolor(), coll.get_edgecolor()):
                for rgba in np.atleast_2d(arr):
                    if len(rgba) == 4 and rgba[3] > 0 and not _is_grey(tuple(rgba)):
                        out.add(to_hex(rgba))
        for patch in ax.patches:
            rgba = patch.get_facecolor()
            if rgba[3] > 0 and not _is_grey(rgba):
                out.add(to_hex(rgba))
    return out


def check_figure(fig: Any) -> dict[str, Any]:
    """Assert the rules above on a drawn figure; return what was found (legend texts, bands...)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes, "no visible panel"
    for ax in axes:
        for which, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            if not label.strip():  # a panel sharing the axis of a labelled panel (same row or column) may omit it
                group = (ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()).get_siblings(ax)
                label = next((getattr(s, f"get_{which}label")() for s in group if getattr(s, f"get_{which}label")()),
                             "")
            assert label.strip(), f"panel {ax.get_title()!r}: no {which} label"
            assert "(" in label and ")" in label, f"panel {ax.get_title()!r}: {which} label {label!r} names no unit"
        assert not INTERNAL.search(ax.get_title()), f"internal name in title {ax.get_title()!r}"
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    assert legends, "no legend"
    for leg in legends:
        lb = leg.get_window_extent(renderer)
        for ax in axes:
            assert not lb.overlaps(ax.get_window_extent(renderer)), "a legend covers a panel's data area"
    boxes = [ax.get_tightbbox(renderer) for ax in axes]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            inter = boxes[i].intersection(boxes[i], boxes[j])
            if inter is not None:  # tolerate a couple of pixels of touching
                assert inter.width < 3 or inter.height < 3, "two panels (with their labels) overlap"
    if fig._suptitle is not None and fig._suptitle.get_text():
        sb = fig._suptitle.get_window_extent(renderer)
        for box in boxes:
            inter = box.intersection(box, sb)
            assert inter is None or inter.width < 3 or inter.height < 3, "the figure title overlaps a panel"
    colours = _colours(fig)
    assert colours <= ALLOWED, f"colours outside the Okabe-Ito palette: {sorted(colours - ALLOWED)}"
    texts = [t.get_text() for leg in legends for t in leg.get_texts()]
    for t in texts:
        assert not INTERNAL.search(t), f"internal name in legend {t!r}"
    bands = {ax.get_title(): sum(1 for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection"))
             for ax in axes}
    return {"legend": texts, "bands": bands, "titles": [ax.get_title() for ax in axes],
            "suptitle": fig._suptitle.get_text() if fig._suptitle is not None else ""}


@contextmanager
def captured(monkeypatch, *modules: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """Check every figure saved inside the block; yields ``{stem: check_figure(...)}``. ``modules``:
    modules that imported :func:`aflqueue.plots.save_figure` by name (a study's figures)."""
    seen: dict[str, dict[str, Any]] = {}
    original = plots.save_figure

    def spy(fig, out_dir, stem):
        paths = original(fig, out_dir, stem)  # wraps long labels first, as the saved file has them
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)  # closing the figure detached its canvas
        seen[stem] = check_figure(fig)
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(Path(p).stat().st_size > 1000 for p in paths)
        assert b"CreationDate" not in Path(paths[1]).read_bytes()
        return paths

    for mod in (plots, *modules):
        monkeypatch.setattr(mod, "save_figure", spy)
    yield seen
