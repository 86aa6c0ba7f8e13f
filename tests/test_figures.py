"""The one style of every figure (aflqueue/style.py) and the checks every figure must pass
(tests/figure_checks.py): round plain ticks on short log axes, bands only from three seeds and
named with their count, labels fitted to two lines, legends below the data; and the checker
itself rejects each fault it names (a check that cannot fail proves nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aflqueue import style
from tests.figure_checks import check_figure

ROUND = {1.0, 1.2, 1.4, 1.5, 1.7, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0}


@pytest.mark.parametrize("lo, hi", [(0.45, 2.1), (0.6, 1.5), (0.1, 10), (1e-4, 0.3), (700, 13000), (0.25, 4.4),
                                    (1e-6, 0.5), (2.0, 60.0), (1e-9, 1e3)])
def test_log_ticks_are_round_numbers_inside_the_view(lo, hi):
    ticks = style.plain_ticks(lo, hi)
    decades = math.log10(hi / lo)
    assert all(lo <= t <= hi for t in ticks) and ticks == sorted(ticks)
    assert len(ticks) >= (3 if decades >= 1.5 else 4) and len(ticks) <= 7
    for t in ticks:  # a mantissa of the round set: 1, 1.5, 2, 3, 5, ...
        m = t / 10 ** math.floor(math.log10(t) + 1e-12)
        assert any(abs(m - r) < 1e-9 for r in ROUND), t
    if decades > 2.5:  # wide ranges: powers of ten only
        assert all(abs(math.log10(t) - round(math.log10(t))) < 1e-9 for t in ticks)
    elif lo <= 1 <= hi:
        assert 1.0 in ticks  # the reference of a ratio is always a tick


def test_log_tick_labels_are_plain_numbers_unless_the_range_is_wide():
    f = style.PlainLogFormatter()
    f.set_locs([0.5, 0.7, 1, 1.5, 2, 300])
    assert [f(v) for v in (0.5, 0.7, 1, 1.5, 2, 300)] == ["0.5", "0.7", "1", "1.5", "2", "300"]
    f.set_locs([1e-6, 1e-3, 1])  # one style per axis: all powers of ten
    assert [f(v) for v in (1e-6, 1e-3, 1)] == ["$10^{-6}$", "$10^{-3}$", "$10^{0}$"]


def test_bands_and_intervals_say_over_how_many_seeds_and_need_three():
    assert "one seed" in style.band_note(1) and "95%" not in style.band_note(1)
    two = style.band_note(2)
    assert "each seed" in two and "95%" not in two.split("(")[0]
    assert style.band_note([10, 10]) == "line: mean over 10 seeds; band: 95% bootstrap interval of the mean"
    assert "3-5 seeds" in style.band_note([3, 5])
    assert style.interval_note(10) == "bars: 95% t-interval over 10 seeds"
    with pytest.raises(ValueError, match="at least 3 seeds"):
        style.interval_note([2, 10])


def _curves(seeds: int, points: int) -> np.ndarray:
    rng = np.random.default_rng(seeds)
    return rng.uniform(0, 1, (seeds, points))


def test_seed_curves_draw_a_band_from_three_seeds_and_every_seed_below():
    from aflqueue.stats import bootstrap_band

    with style.styled():
        fig, axes = style.subplots(1, 2)
        a3, a2 = axes[0]
        c3, c2 = _curves(3, 20), _curves(2, 5)
        assert style.seed_curves(a3, np.arange(20), c3, style.colour(0), "three") == 3
        assert style.seed_curves(a2, np.arange(5), c2, style.colour(1), "two") == 2
    # three seeds: one band, the mean line, and the band is the bootstrap band of the mean
    (band,) = a3.collections
    assert band.get_gid() == "seed-band:3"
    mean, lo, hi = bootstrap_band(c3)
    np.testing.assert_allclose(a3.lines[0].get_ydata(), mean)
    verts = band.get_paths()[0].vertices
    assert np.isclose(verts[:, 1].min(), lo.min()) and np.isclose(verts[:, 1].max(), hi.max())
    assert a3.lines[0].get_marker() in (None, "None")  # 20 points: a curve
    # two seeds: no band, each seed thin, the mean on top with a marker at each of its 5 points
    assert not a2.collections
    per_seed = [ln for ln in a2.lines if ln.get_gid() == "per-seed"]
    assert len(per_seed) == 2 and [list(ln.get_ydata()) for ln in per_seed] == c2.tolist()
    np.testing.assert_allclose(a2.lines[-1].get_ydata(), c2.mean(0))
    assert a2.lines[-1].get_marker() == "o"
    handles, labels = style.legend_entries(axes)  # one entry per series: line and band together
    assert labels == ["three", "two"] and isinstance(handles[0], tuple) and handles[1] is a2.lines[-1]
    style.pyplot().close(fig)


def _good_figure():
    with style.styled():
        fig, axes = style.subplots(1, 1)
        ax = axes[0][0]
        ax.plot(np.arange(30), np.arange(30) ** 0.5, color=style.colour(0), label="square root")
        ax.set_xlabel("x (units)")
        ax.set_ylabel("y (units)")
        ax.set_title("a panel")
        style.legend_below(fig, *style.legend_entries(axes))
    return fig, ax


def test_save_fits_labels_to_two_lines_keeps_the_width_and_gives_the_same_bytes(tmp_path):
    for out in ("a", "b"):
        fig, ax = _good_figure()
        ax.set_ylabel("a very long label for the vertical axis of a small panel, with its unit (units)")
        fig.legend([], [], loc="outside lower center")  # an empty second legend costs nothing
        paths = style.save_figure(fig, tmp_path / out, "f")
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert ax.yaxis.label.get_text().count("\n") == 1
        assert fig.get_size_inches()[0] == pytest.approx(style.SINGLE)
    for ext in ("png", "pdf"):
        assert (tmp_path / "a" / f"f.{ext}").read_bytes() == (tmp_path / "b" / f"f.{ext}").read_bytes()


def test_the_checks_pass_a_good_figure_and_reject_each_fault(tmp_path):
    def saved(fig):
        style.save_figure(fig, tmp_path, "f")
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)  # closing detached the canvas
        return fig

    check_figure(saved(_good_figure()[0]))
    faults = {}
    fig, ax = _good_figure()
    ax.plot([0, 10], [1, 2], color=style.colour(1))  # no label
    faults["not in the legend"] = fig
    fig, ax = _good_figure()
    ax.plot([0, 5, 10], [1, 2, 3], color=style.colour(1), label="three points")
    ax.get_legend_handles_labels()
    fig.legends[0].remove()
    style.legend_below(fig, *style.legend_entries([[ax]]))
    faults["without markers"] = fig
    fig, ax = _good_figure()
    band = ax.fill_between([0, 29], [0, 1], [1, 2], color=style.colour(0), label="square root")
    band.set_gid("seed-band:2")
    faults["a band from 2 seeds"] = fig
    fig, ax = _good_figure()
    ax.text(35, 3, "far outside, to the right of the canvas")
    faults["outside the figure"] = fig
    fig, ax = _good_figure()
    fig.legends[0].remove()
    fig.legend(*style.legend_entries([[ax]]), loc="center")
    faults["covers a panel"] = fig
    fig, ax = _good_figure()
    fig.legends[0].remove()
    fig.legend([ax.lines[0]] * 16, ["square root"] + [f"entry number {k:2d} of a tall legend"
                                                       for k in range(15)], loc="outside lower center", ncol=1)
    faults["of the figure"] = fig  # legends take more than a third
    fig, ax = _good_figure()
    ax.set_xlabel("x\n(units)\nthird line")
    faults["more than two lines"] = fig
    fig, ax = _good_figure()
    ax.set_ylabel("y without unit")
    faults["names no unit"] = fig
    for message, fig in faults.items():
        with pytest.raises(AssertionError, match=message):
            if message in ("more than two lines",):
                fig.draw_without_rendering()
                check_figure(fig)  # save_figure would re-fit the label
            else:
                check_figure(saved(fig))
