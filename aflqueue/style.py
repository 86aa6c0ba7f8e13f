"""The one style of every figure the toolkit and its studies draw, sized for a paper.

A figure is drawn at the size it is printed: one column (:data:`SINGLE`, 3.3 in) or two
(:data:`DOUBLE`, 7 in) wide, with 8-point text, so that what is legible here is legible in print.
:func:`subplots` makes such a figure; :func:`save_figure` writes it as PNG and PDF after making
it right by default:
* labels and titles longer than their panel are wrapped to two lines at most (balanced), and
  shrunk (down to 6 pt) when two lines are not enough;
* log axes get round, plain-number ticks over small ranges (``0.5, 0.7, 1, 1.4, 2``) and powers
  of ten over wide ones (:class:`PlainLogLocator`, :class:`PlainLogFormatter`);
* the figure grows by the height of its legend and title, so that legends below the panels
  (:func:`legend_below`) never squeeze the data (and a legend wider than the figure is laid out
  in fewer columns);
* the PDF carries no creation date: the same data give the same files.

Series and their uncertainty: :func:`seed_curves` draws a mean over seeds with its 95% bootstrap
band when there are at least :data:`MIN_BAND_SEEDS` seeds, and every seed as a thin line
otherwise (a band from two seeds says nothing); :func:`band_note` and :func:`interval_note` say
in words what a band or an error bar is and over how many seeds, and refuse an interval below
three seeds. :func:`legend_entries` gathers one legend entry per label (a mean line and its band
become one entry). An artist left out of the legend on purpose (a reference named in the
caption, a colour-mapped mesh read from its colour bar) is marked with :func:`unlabelled`; a line
through few points that needs no markers (a reference, a line joining points marked otherwise)
with :func:`guide`.

Colours come from the colour-blind-safe Okabe-Ito palette (:data:`PALETTE`) with a second cue
(line style or marker: :data:`LINESTYLES`, :data:`MARKERS`); the style is applied with
``rc_context`` (:func:`styled`), never globally. matplotlib is imported inside the functions (Agg
backend; this module imports only its tickers) and ``import aflqueue`` never imports this module,
so that the package stays light.
"""

from __future__ import annotations

import math
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from matplotlib.ticker import Formatter, Locator

from .stats import bootstrap_band

__all__ = ["SINGLE", "DOUBLE", "STYLE", "PALETTE", "GREY", "LIGHT_GREY", "LINESTYLES", "MARKERS", "FEW_POINTS",
           "MIN_BAND_SEEDS", "LEGEND_SHARE", "ACCURACY", "LOSS", "SIM_TIME", "UPDATES", "pyplot", "styled",
           "figure_width", "subplots", "legend_below", "legend_entries", "wrap", "two_lines", "save_figure",
           "panel_grid", "finite", "as_array", "human", "colour", "PlainLogLocator", "PlainLogFormatter",
           "log_axis", "plain_ticks", "seed_curves", "band_note", "interval_note", "require_seeds",
           "seed_range", "unlabelled", "guide", "few_points_marker"]

#: Figure widths (inches) of one and two columns of a paper.
SINGLE, DOUBLE = 3.3, 7.0
#: Largest figure height (inches): a page less its margins.
MAX_HEIGHT = 9.0

#: The Okabe & Ito (2008) palette, distinguishable with the common colour-vision deficiencies, in
#: the order figures use it (black is kept for references such as AsyncSGD; yellow comes last: it
#: is faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Greys for references (diagonals, targets, uniform routing).
GREY, LIGHT_GREY = "#555555", "#999999"
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1.5)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: A curve with at most this many points is drawn with a marker at each (evaluation points, not a
#: continuum).
FEW_POINTS = 12
#: Fewest seeds a band or an interval is drawn from; below, every seed is drawn.
MIN_BAND_SEEDS = 3
#: Largest share of the figure's area a legend may take.
LEGEND_SHARE = 1 / 3

#: Shared paper style (applied with ``rc_context``, never globally): 8-point text at print size.
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "figure.titlesize": 8.5,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": "cycler(color=[" + ", ".join(repr(c) for c in PALETTE) + "])",
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "legend.columnspacing": 1.2,
    "legend.borderaxespad": 0.3,
    "figure.constrained_layout.h_pad": 0.03,
    "figure.constrained_layout.w_pad": 0.03,
    "savefig.dpi": 200,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the PDF
    "ps.fonttype": 42,
}

# Display names of the toolkit's internal names (scenarios, partitions, algorithms, data sets).
_HUMAN = {"two-groups": "two speed groups (10x)", "five-types": "five device types (30x)",
          "homogeneous": "equal speeds", "custom": "custom speeds", "iid": "IID split",
          "generalized-asyncsgd": "Generalized AsyncSGD", "asyncsgd": "AsyncSGD", "fedasync": "FedAsync",
          "fedbuff": "FedBuff", "fedecho": "FedEcho", "fedrevive": "FedRevive", "digits": "digits",
          "mnist1d": "MNIST-1D", "mnist": "MNIST", "fashionmnist": "Fashion-MNIST", "kmnist": "KMNIST",
          "emnist": "EMNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "synthetic": "synthetic data",
          "per-update": "P1 per-update", "wall-clock": "P2 wall-clock", "wallclock": "P2 wall-clock",
          "time-to-accuracy": "P3 time to accuracy", "energy": "energy to accuracy",
          "max-throughput": "P5 max-throughput", "uniform": "uniform (AsyncSGD)", "p2": "P2 routing",
          "p3": "P3 routing"}

ACCURACY = "test accuracy (%)"
LOSS = "test loss (nats)"
SIM_TIME = "simulated time (time units)"
UPDATES = "updates applied (count)"


def human(name: str) -> str:
    """Display name of an internal name (``dir0.5`` -> ``Dirichlet α = 0.5``); unknown names unchanged."""
    if name in _HUMAN:
        return _HUMAN[name]
    if name.startswith("dir") and name[3:].replace(".", "", 1).isdigit():
        return f"Dirichlet α = {name[3:]}"
    if name.startswith("k") and name[1:].isdigit():
        return f"{name[1:]} classes per client"
    return name


def colour(k: int) -> str:
    """The ``k``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[k % len(PALETTE)]


def few_points_marker(n_points: int, marker: str = "o") -> str | None:
    """``marker`` when a curve has few points (:data:`FEW_POINTS`), else None (a continuous line)."""
    return marker if n_points <= FEW_POINTS else None


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib  # lazy: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib

    return plt


@contextmanager
def styled() -> Iterator[Any]:
    """``pyplot`` with :data:`STYLE` in force (for drawing and saving)."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        yield plt


def figure_width(width: str | float) -> float:
    """Width in inches of ``"single"`` (one column), ``"double"`` (two) or a number of inches."""
    if width == "single":
        return SINGLE
    if width == "double":
        return DOUBLE
    w = float(width)
    if not 1.0 <= w <= DOUBLE + 0.5:
        raise ValueError(f"figure width must be 'single', 'double' or 1-{DOUBLE + 0.5} inches (got {width!r})")
    return w


def subplots(nrows: int = 1, ncols: int = 1, *, width: str | float = "single", aspect: float = 0.7,
             panel_height: float | None = None, **kw: Any):
    """A constrained-layout figure of ``nrows x ncols`` panels (axes always 2-D), ``width`` wide
    (:func:`figure_width`), each panel ``panel_height`` inches tall (default ``aspect`` times its
    width, within 1.3-2.6 in). :func:`save_figure` adds the room its legend and title need. Call
    inside :func:`styled`."""
    plt = pyplot()
    W = figure_width(width)
    ph = panel_height if panel_height is not None else min(2.6, max(1.3, aspect * W / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(W, ph * nrows), squeeze=False, layout="constrained", **kw)
    fig.aflqueue_panels_height = ph * nrows  # what the panels get; save_figure adds legend and title
    return fig, axes


# --------------------------------------------------------------------------- legends
def legend_entries(axes: Any) -> tuple[list[Any], list[str]]:
    """One legend entry per label over all ``axes``, in order of first appearance. A label drawn
    as a line and a band (:func:`seed_curves`) gets both in one entry; a label drawn as a mean and
    per-seed thin lines gets the mean."""
    from matplotlib.collections import PolyCollection  # lazy: matplotlib
    from matplotlib.lines import Line2D  # lazy: matplotlib

    groups: dict[str, list[Any]] = {}
    for ax in np.asarray(axes, dtype=object).flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                groups.setdefault(lab, []).append(h)
    handles = []
    for hs in groups.values():
        lines = [h for h in hs if isinstance(h, Line2D) and h.get_gid() != "per-seed"]
        lines.sort(key=lambda h: h.get_linestyle() in ("None", "", " ", "none"))  # a drawn line first
        bands = [h for h in hs if isinstance(h, PolyCollection) and str(h.get_gid()).startswith("seed-band")]
        if lines and bands:
            handles.append((bands[0], lines[0]))
        else:
            handles.append(lines[0] if lines else hs[0])
    return handles, list(groups)


def _legend_width(fig: Any, leg: Any) -> float:
    return leg.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi


def legend_below(fig: Any, handles: Sequence[Any], labels: Sequence[str], ncol: int | None = None,
                 title: str | None = None) -> Any:
    """One legend for the figure, below the panels (outside every data area), in as many columns
    as fit the figure's width (at most ``ncol``); a title wider than the figure goes on two lines."""
    if not handles:
        return None
    W = fig.get_size_inches()[0]
    ncol = max(1, min(ncol or len(labels), len(labels)))
    title = " ".join(title.split()) if title else None
    while True:
        leg = fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title)
        if _legend_width(fig, leg) <= 0.98 * W:
            return leg
        leg.remove()
        renderer = fig.canvas.get_renderer()
        if title and "\n" not in title and leg.get_title().get_window_extent(renderer).width / fig.dpi > 0.98 * W:
            title = two_lines(title, len(title) // 2 + 1)
        elif ncol > 1:
            ncol -= 1
        else:  # one column and a title on two lines: nothing narrower to try
            return fig.legend(handles, labels, loc="outside lower center", ncol=1, title=title)


def guide(artist: Any) -> Any:
    """Mark a line as a guide to the eye -- a reference (a diagonal, a level) or a line joining
    points that other artists mark -- so that it needs no marker of its own; returns it."""
    artist.set_gid("guide")
    return artist


def unlabelled(artist: Any, why: str) -> Any:
    """Mark ``artist`` as left out of the legend on purpose (``why``: where a reader finds what it
    is, e.g. "colour bar", "caption: the diagonal"); returns it."""
    artist.set_gid(f"unlabelled: {why}")
    return artist


# --------------------------------------------------------------------------- seeds, bands, intervals
def require_seeds(n: int, what: str = "a band") -> None:
    """Raise ``ValueError`` when ``n`` seeds are too few for ``what`` (:data:`MIN_BAND_SEEDS`)."""
    if n < MIN_BAND_SEEDS:
        raise ValueError(f"{what} needs at least {MIN_BAND_SEEDS} seeds (got {n}); draw the seeds instead")


def seed_range(counts: Iterable[int]) -> str:
    """``"5"`` or ``"3-5"``: the seed counts of several curves or points."""
    c = sorted({int(k) for k in counts})
    if not c:
        return "0"
    return str(c[0]) if c[0] == c[-1] else f"{c[0]}-{c[-1]}"


def band_note(counts: Iterable[int] | int, band: str = "95% bootstrap interval of the mean",
              each_seed: bool = True) -> str:
    """What the curves of :func:`seed_curves` are, in words, for curves over ``counts`` seeds each:
    the mean and its ``band`` (at least :data:`MIN_BAND_SEEDS` seeds), or the mean and every seed
    (``each_seed=False``: the mean alone, where the seeds' own curves are not at hand)."""
    counts = [counts] if isinstance(counts, int) else list(counts)
    lo, hi = (min(counts), max(counts)) if counts else (0, 0)
    n = seed_range(counts)
    below = "thin lines: each seed" if each_seed else "no band"
    if lo >= MIN_BAND_SEEDS:
        return f"line: mean over {n} seeds; band: {band}"
    if hi <= 1:
        return "one seed per curve (no interval from one seed)"
    if hi < MIN_BAND_SEEDS:
        return (f"bold: mean of {n} seeds, thin: each seed" if each_seed else f"line: mean of {n} seeds") + \
            f" (no band below {MIN_BAND_SEEDS} seeds)"
    return f"line: mean over {n} seeds; band ({band}) from {MIN_BAND_SEEDS} seeds, else {below}"


def interval_note(counts: Iterable[int] | int, interval: str = "95% t-interval", over: str = "seeds") -> str:
    """``"bars: 95% t-interval over 10 seeds"``; raises ``ValueError`` below :data:`MIN_BAND_SEEDS`."""
    counts = [counts] if isinstance(counts, int) else list(counts)
    require_seeds(min(counts) if counts else 0, f"an interval ({interval})")
    return f"bars: {interval} over {seed_range(counts)} {over}"


def seed_curves(ax: Any, x: Any, curves: Sequence[Sequence[float]], col: str, label: str, ls: Any = "-",
                scale: float = 1.0, marker: str = "o", lw: float | None = None) -> int:
    """Draw curves of several seeds on a common grid ``x`` (``curves``: one row per seed, None or
    NaN where undefined): the mean, and its 95% bootstrap band from :data:`MIN_BAND_SEEDS` seeds,
    or every seed as a thin line below that. Few points (:data:`FEW_POINTS`) are marked with
    ``marker``. Values are multiplied by ``scale`` (100: fractions to %). Returns the seed count."""

    x = np.asarray(x, dtype=float)
    C = np.atleast_2d(np.asarray([as_array(c) for c in curves], dtype=float))
    n = C.shape[0]
    mk = few_points_marker(x.size, marker)
    kw = {"color": col, "ls": ls, "label": label}
    if n >= MIN_BAND_SEEDS:
        mean, lo, hi = bootstrap_band(C)
        band = ax.fill_between(x, scale * lo, scale * hi, color=col, alpha=0.18, lw=0, label=label)
        band.set_gid(f"seed-band:{n}")
    else:
        mean = C.mean(axis=0)
        if n > 1:
            for c in C:
                ax.plot(x, scale * c, lw=0.6, alpha=0.55, gid="per-seed", marker=mk, ms=2, mfc="none", **kw)
    ax.plot(x, scale * mean, marker=mk, ms=3, lw=lw if lw is not None else STYLE["lines.linewidth"], **kw)
    return n


# --------------------------------------------------------------------------- log axes
_MANTISSAS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
              (1.0, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))


def plain_ticks(vmin: float, vmax: float, max_ticks: int = 7) -> list[float]:
    """Round tick values for a log axis from ``vmin`` to ``vmax``: the coarsest set of round
    numbers (1, 1-3, 1-2-5, ... per decade) that gives at least three ticks (four below 1.5
    decades), powers of ten (every
    other one or more over wide ranges) beyond 2.5 decades."""
    lo, hi = sorted((float(vmin), float(vmax)))
    if not (lo > 0 and math.isfinite(hi)):
        return []
    decades = math.log10(hi / lo)
    if decades > 2.5:
        step = max(1, math.ceil((math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) + 1) / max_ticks))
        k0 = math.ceil(math.log10(lo) - 1e-9)
        return [10.0 ** k for k in range(k0, math.floor(math.log10(hi) + 1e-9) + 1, step)]
    least = 3 if decades >= 1.5 else 4  # a short axis reads better with one tick more
    for mant in _MANTISSAS:
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in mant]
        ticks = [float(f"{t:.6g}") for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
        if len(ticks) >= least:
            if len(ticks) <= max_ticks:
                return ticks
            step = math.ceil(len(ticks) / max_ticks)  # thin out, keeping the powers of ten
            i0 = next((i for i, t in enumerate(ticks) if abs(math.log10(t) - round(math.log10(t))) < 1e-9), 0)
            return [t for i, t in enumerate(ticks) if (i - i0) % step == 0]
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    return [float(f"{t:.6g}") for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]


class PlainLogLocator(Locator):
    """Major ticks of a log axis at :func:`plain_ticks` of its view."""

    def __init__(self, max_ticks: int = 7):
        self.max_ticks = max_ticks

    def __call__(self):
        vmin, vmax = self.axis.get_view_interval()
        return self.tick_values(vmin, vmax)

    def tick_values(self, vmin, vmax):
        return plain_ticks(vmin, vmax, self.max_ticks)


class PlainLogFormatter(Formatter):
    """Tick labels of a log axis as plain numbers (``0.05``, ``2``, ``300``) when every tick lies
    from 0.001 to 10^5, else all as powers of ten (``10^-6``; one style per axis)."""

    ticks: Sequence[float] = ()

    def set_locs(self, locs):
        self.ticks = [float(v) for v in locs]

    def __call__(self, x, pos=None):
        if not (x > 0 and math.isfinite(x)):
            return ""
        locs = [v for v in self.ticks if v > 0] or [x]
        if all(1e-3 <= v < 1e5 for v in locs):
            return f"{x:.6g}"
        k = math.log10(x)
        if abs(k - round(k)) < 1e-9:
            return f"$10^{{{int(round(k))}}}$"
        m = x / 10.0 ** math.floor(k)
        return f"${m:.2g}\\times10^{{{int(math.floor(k))}}}$"


def log_axis(ax: Any, which: str = "y") -> None:
    """Put ``ax``'s ``which`` axis (``x``, ``y`` or ``both``) on a log scale with plain ticks
    (:class:`PlainLogLocator`, :class:`PlainLogFormatter`; minor ticks unlabelled)."""
    from matplotlib.ticker import NullFormatter  # lazy: matplotlib

    for name in ("x", "y") if which == "both" else (which,):
        (ax.set_xscale if name == "x" else ax.set_yscale)("log")
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(PlainLogLocator())
        axis.set_major_formatter(PlainLogFormatter())
        axis.set_minor_formatter(NullFormatter())


def _tidy_log_axes(fig: Any) -> None:
    """Plain ticks on every log axis still on matplotlib's default locator."""
    from matplotlib.ticker import LogLocator, NullFormatter  # lazy: matplotlib

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and isinstance(axis.get_major_locator(), LogLocator):
                axis.set_major_locator(PlainLogLocator())
                axis.set_major_formatter(PlainLogFormatter())
                axis.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------- text
def wrap(text: str, width: int = 48) -> str:
    """``text`` wrapped at spaces to lines of at most ``width`` characters (a title, a legend entry)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _words(text: str) -> list[str]:
    """Words of ``text``, never splitting inside ``$...$`` (mathtext)."""
    words: list[str] = []
    for tok in text.split(" "):
        if words and words[-1].count("$") % 2 == 1:
            words[-1] += " " + tok
        else:
            words.append(tok)
    return words


def two_lines(text: str, width: int) -> str:
    """``text`` on one line if it has at most ``width`` characters, else on two balanced lines
    (split at a space, never inside mathtext)."""
    text = " ".join(text.split())
    words = _words(text)
    if len(text) <= width or len(words) < 2:
        return text
    best = min(range(1, len(words)), key=lambda k: max(len(" ".join(words[:k])), len(" ".join(words[k:]))))
    return " ".join(words[:best]) + "\n" + " ".join(words[best:])


def _fit(text: Any, inches: float, renderer: Any, dpi: float, min_size: float = 6.0) -> bool:
    """Fit ``text`` within ``inches``: one line, else two balanced lines, shrinking the font if
    two lines are still too long (lines broken by the figure's author are kept, and shrunk if
    need be). Returns whether it changed ``text``."""
    if not text.get_text().strip() or text.get_window_extent(renderer).width / dpi <= inches:
        return False
    if "\n" in text.get_text().strip():
        while text.get_window_extent(renderer).width / dpi > inches and text.get_fontsize() > min_size:
            text.set_fontsize(text.get_fontsize() - 0.5)
        return True
    s = " ".join(text.get_text().split())
    text.set_text(s)
    if text.get_window_extent(renderer).width / dpi <= inches:
        return True
    words = _words(s)
    if len(words) > 1:
        k = min(range(1, len(words)), key=lambda k: max(len(" ".join(words[:k])), len(" ".join(words[k:]))))
        text.set_text(" ".join(words[:k]) + "\n" + " ".join(words[k:]))
    while text.get_window_extent(renderer).width / dpi > inches and text.get_fontsize() > min_size:
        text.set_fontsize(text.get_fontsize() - 0.5)
    return True


def _fit_text(fig: Any) -> None:
    """Fit axis labels, titles and the figure title to their panel (:func:`_fit`); again after a
    change, since wrapping one label gives the panels new sizes."""
    W, H = fig.get_size_inches()
    for _ in range(2):
        fig.draw_without_rendering()  # lay the panels out: their real sizes, after legends and titles took room
        renderer = fig.canvas.get_renderer()
        changed = False
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            pos = ax.get_position()
            spec = ax.get_subplotspec()
            nominal = spec.get_position(fig) if spec is not None else pos
            width = max(pos.width, 0.6 * nominal.width) * W
            height = max(pos.height, 0.5 * nominal.height) * H
            for text, inches in ((ax.xaxis.label, width * 1.02), (ax.yaxis.label, height * 1.02),
                                 (ax.title, width)):
                if text.get_text():
                    # a y label runs along the height: measure it unrotated
                    rot = text.get_rotation()
                    text.set_rotation(0)
                    changed |= _fit(text, inches, renderer, fig.dpi)
                    text.set_rotation(rot)
        if fig.get_suptitle():
            changed |= _fit(fig._suptitle, W * 0.97, renderer, fig.dpi)
        if not changed:
            return


def _grow_for_legends(fig: Any) -> None:
    """Give the figure the height of its outside legends and title on top of its panels'."""
    base = getattr(fig, "aflqueue_panels_height", None)
    if base is None:
        return
    renderer = fig.canvas.get_renderer()
    extra = 0.0
    for leg in fig.legends:
        extra += leg.get_window_extent(renderer).height / fig.dpi + 0.05
    if fig.get_suptitle():
        extra += fig._suptitle.get_window_extent(renderer).height / fig.dpi + 0.08
    W = fig.get_size_inches()[0]
    fig.set_size_inches(W, min(MAX_HEIGHT, base + extra))


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.png`` and ``.pdf`` at its size (no creation date: the same
    data give the same files), close it and return both paths. First: labels and titles fitted to
    two lines, plain ticks on log axes, and room for the legend below the panels."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    plt = pyplot()
    with plt.rc_context(STYLE):
        _tidy_log_axes(fig)
        _grow_for_legends(fig)
        _fit_text(fig)
        for p in paths:
            # no creation date in the PDF: regenerating a figure from the same results gives the same file
            fig.savefig(p, metadata={"CreationDate": None, "Creator": "aflqueue"} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- small helpers
def panel_grid(n: int, ncols: int = 3) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of panels for ``n`` panels, at most ``ncols`` per row."""
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (None is not)."""
    return x is not None and math.isfinite(float(x))


def as_array(x: Sequence[Any]) -> np.ndarray:
    """``x`` as a float array, None as NaN (saved curves hold None where a value was undefined)."""
    return np.asarray([np.nan if v is None else v for v in x], dtype=float)
