"""Contact sheet: every figure the toolkit and the studies draw, rendered at once for review.

    python validation/contact_sheet.py                  # into contact_sheet/ (in the current folder)
    python validation/contact_sheet.py --output /tmp/cs

Each figure function is called on small inputs, offline, without any training: the bundled sweeps
of ``aflqueue figures`` from their committed data (``figures/data``), a small sweep of
``examples/flat.toml`` (not product form: the approximate analysis), synthetic run groups (one of
three seeds, one of two with few evaluations), a short simulated schedule, the example script
``examples/paper_figures.py`` on a coarse grid, and each study's figures from its committed
records (the grid study also from one seed of them, as ``examples/validation_run.py`` draws it).
Figures go to ``DIR/<group>/`` (PNG and PDF, at the size a paper prints them); ``DIR/index.html``
shows them all at print size with their captions, and ``DIR/contact_sheet.png`` is one montage
of them all (each at the same scale, so sizes compare). ``tests/test_contact_sheet.py`` renders
the sheet and checks every figure (tests/figure_checks.py).
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

__all__ = ["Entry", "GROUPS", "render", "write_index", "write_montage", "main"]


@dataclass(frozen=True)
class Entry:
    """One rendered figure: its group, PNG path and caption (empty where the figure has none)."""

    group: str
    png: Path
    caption: str = ""


def _pairs(made: Sequence[Any]) -> list[tuple[Path, str]]:
    """``[(png, caption)]`` of what a figure function returned (paths, or ``(path, caption)``)."""
    out = []
    for m in made:
        path, cap = (m if isinstance(m, tuple) else (m, ""))
        if Path(path).suffix == ".png":
            out.append((Path(path), cap))
    return out


# --------------------------------------------------------------------------- the toolkit
def analytic(out: Path) -> list[Any]:
    """``aflqueue figures``: the four sweeps of the bundled systems, from their committed data."""
    from aflqueue import figures

    two = json.loads((REPO / "figures/data/two_groups/sweep.json").read_text())
    five = json.loads((REPO / "figures/data/five_types/sweep.json").read_text())
    return (figures.delay_vs_routing(out, two) + figures.concurrency_sweep(out, two)
            + figures.routing_vs_speed(out, five) + figures.energy_pareto(out, five))


def sweep_approximate(out: Path) -> list[Any]:
    """``aflqueue sweep`` of a system that is not product form (lognormal compute times, links)."""
    from aflqueue import plots
    from aflqueue.sweep import sweep
    from aflqueue.system import load_system

    res = sweep(load_system(REPO / "examples/flat.toml"), (1, 12), ("wall-clock", "time-to-accuracy", "max-throughput"),
                name="examples/flat.toml", pareto_points=3, routing_points=15, p_min=1e-3)
    d = res.to_dict()
    return (plots.sweep_concurrency_figure(d, out) + plots.sweep_routing_figure(d, out)
            + plots.sweep_pareto_figure(d, out) + plots.sweep_delay_routing_figure(d, out))


def _group(legend: str, seeds: int, points: int, rate: float, rng: np.random.Generator) -> dict[str, Any]:
    """A run group as :func:`aflqueue.runs.curves_data` describes it, from synthetic learning curves."""
    from aflqueue.stats import bootstrap_band

    entry: dict[str, Any] = {"legend": legend, "seeds": list(range(seeds)), "runs": [], "differing": {}}
    for axis, top in (("time", 150.0), ("updates", 600.0)):
        x = np.linspace(top / points, top, points)
        acc = np.clip(0.9 * (1 - np.exp(-rate * x / top * 4)) + rng.normal(0, 0.03, (seeds, points)), 0, 1)
        loss = 2.3 * np.exp(-rate * x / top * 3) + 0.2 + rng.normal(0, 0.05, (seeds, points))
        band = {}
        for name, c in (("accuracy", acc), ("loss", loss)):
            mean, lo, hi = bootstrap_band(c)
            band[name] = {"mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist(), "per_seed": c.tolist()}
        entry[axis] = {"x": x.tolist(), **band}
    return entry


def runs(out: Path) -> list[Any]:
    """``aflqueue plot``: three seeds of one configuration (a band) and two of another, evaluated
    six times (every seed drawn, markers at the evaluations)."""
    from aflqueue import plots

    rng = np.random.default_rng(0)
    data = {"groups": [_group("local.lr = 0.05", 3, 20, 1.0, rng), _group("local.lr = 0.3", 2, 6, 1.6, rng)],
            "target": 0.8, "differing_keys": ["local.lr"], "legend_title": "settings that differ: local.lr",
            "title": "2 configurations, 5 runs"}
    return plots.runs_figure(data, out)


def schedule(out: Path) -> list[Any]:
    """``aflqueue schedule``: a short simulated trace of four clients (exact delay law drawn)."""
    from aflqueue import plots
    from aflqueue.schedule import schedule_data
    from aflqueue.sim import simulate
    from aflqueue.system import System

    system = System.from_rates([2.0, 1.0, 0.5, 0.25], concurrency=4)
    data = schedule_data(simulate(system, 4000, seed=0), system)
    return (plots.schedule_timeline_figure(data, out) + plots.schedule_delay_figure(data, out)
            + plots.schedule_share_figure(data, out))


def example_script(out: Path) -> list[Any]:
    """``examples/paper_figures.py`` on a coarse grid."""
    spec = importlib.util.spec_from_file_location("paper_figures_example", REPO / "examples/paper_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out.mkdir(parents=True, exist_ok=True)
    return [mod.delay_vs_routing(out, 8), mod.concurrency_sweep(out, 8), mod.routing_vs_speed(out),
            mod.energy_pareto(out, 5)]


# --------------------------------------------------------------------------- the studies
def closed_forms(out: Path) -> list[Any]:
    from validation.closed_forms.experiment import load_results
    from validation.closed_forms.figures import closed_forms_figures

    return closed_forms_figures(load_results(REPO / "validation/closed_forms/results/closed_forms.json"), out)


def grid(out: Path) -> list[Any]:
    """The validation grid: MNIST-1D from the committed cells (three seeds), and one seed of one
    panel as the small validation run of ``examples/validation_run.py`` draws it."""
    from validation.grid.experiment import load_cells
    from validation.grid.figures import grid_accuracy_figures

    recs = load_cells(REPO / "validation/grid/results/default")
    made = grid_accuracy_figures([r for r in recs if r["cell"]["dataset"] == "mnist1d"], out)
    one = [{**r, "cell": {**r["cell"], "dataset": "synthetic"}} for r in recs
           if r["cell"]["dataset"] == "mnist1d" and r["cell"]["seed"] == 0 and r["cell"]["speed"] == "two-groups"
           and r["cell"]["partition"] == "dir0.5" and r["cell"]["routing"] in ("uniform", "wallclock", "max-throughput")]
    return made + grid_accuracy_figures(one, out)


def paper(out: Path) -> list[Any]:
    from validation.paper.experiment import PAPER_PRESETS, load_paper, summarize_paper
    from validation.paper.figures import paper_figures

    preset = PAPER_PRESETS["paper"]
    data = load_paper(REPO / "validation/paper/results")
    summary = summarize_paper(preset, data["selection"], data["evaluation"])
    return paper_figures(preset, data["selection"], data["evaluation"], summary, out)


def regimes(out: Path) -> list[Any]:
    from validation.regimes.experiment import REGIME_PRESETS, load_regimes, summarize_regimes
    from validation.regimes.figures import regime_figures

    summary = summarize_regimes(REGIME_PRESETS["regimes"], load_regimes(REPO / "validation/regimes/results/regimes"))
    return regime_figures(summary, out)


def approx(out: Path) -> list[Any]:
    from validation.approx.experiment import assemble, load_records
    from validation.approx.figures import approx_error_figure

    return approx_error_figure(assemble(load_records(REPO / "validation/approx/results")), out)


def fedbuff_family(out: Path) -> list[Any]:
    """One scenario of the FedBuff-family claims, from the committed evaluation records."""
    from validation.fedbuff_family.claims import CLAIMS_PRESETS, load_claims
    from validation.fedbuff_family.figures import comparison_accuracy_figure

    preset = CLAIMS_PRESETS["claims"]
    data = load_claims(preset, REPO / "validation/fedbuff_family/results/claims")
    scenario = data["evaluation"][0]["settings"]["scenario"]
    target = dict(data["selection"]["scenarios"])[scenario]["target"]
    recs = [{**r, "algorithm": f"{r['settings']['algorithm']} / {r['settings']['routing']}", "target": target}
            for r in data["evaluation"] if r["settings"]["scenario"] == scenario]
    return comparison_accuracy_figure(recs, out, f"claims_{scenario}")


#: The groups of the sheet: name -> (what it shows, function(out folder) -> what the figure functions returned).
GROUPS: dict[str, tuple[str, Callable[[Path], list[Any]]]] = {
    "analytic": ("aflqueue figures: sweeps of the bundled systems", analytic),
    "sweep": ("aflqueue sweep of a system that is not product form", sweep_approximate),
    "runs": ("aflqueue plot: a researcher's own runs (synthetic)", runs),
    "schedule": ("aflqueue schedule: a simulated trace", schedule),
    "examples": ("examples/paper_figures.py", example_script),
    "closed_forms": ("study: closed forms against simulation", closed_forms),
    "grid": ("study: the validation grid", grid),
    "paper": ("study: the paper experiment", paper),
    "regimes": ("study: the regime map", regimes),
    "approx": ("study: the approximation", approx),
    "fedbuff_family": ("study: the FedBuff family", fedbuff_family),
}


def render(output: str | Path, groups: Sequence[str] | None = None,
           progress: Callable[[str], None] | None = None) -> list[Entry]:
    """Render every figure of ``groups`` (default all of :data:`GROUPS`) into ``output/<group>/``;
    returns one :class:`Entry` per figure."""
    out = Path(output)
    entries: list[Entry] = []
    for name in groups or list(GROUPS):
        t0 = time.perf_counter()
        made = GROUPS[name][1](out / name)
        entries += [Entry(name, p, c) for p, c in _pairs(made)]
        if progress:
            progress(f"{name}: {len(_pairs(made))} figures in {time.perf_counter() - t0:.1f} s")
    return entries


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, from its header."""
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def write_index(output: str | Path, entries: Sequence[Entry], dpi: float = 200.0) -> Path:
    """``output/index.html``: every figure at its print size (``dpi``: the PNGs' resolution), by
    group, with its file name, size in inches and caption."""
    from aflqueue.io import atomic_write_text

    out = Path(output)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>aflqueue contact sheet</title><style>",
             "body{font-family:system-ui,sans-serif;margin:1.5em}figure{display:inline-block;vertical-align:top;"
             "margin:0 1.5em 1.5em 0;padding:0.4em;border:1px solid #ddd}figcaption{font-size:0.8em;max-width:7in}"
             "h2{margin-top:1.5em}</style></head><body><h1>Every figure of aflqueue and its studies</h1>",
             f"<p>{len(entries)} figures, each shown at the size a paper prints it (single column 3.3 in, double "
             "7 in; on a screen of 96 px per inch).</p>"]
    for name, (what, _) in GROUPS.items():
        mine = [e for e in entries if e.group == name]
        if not mine:
            continue
        parts.append(f"<h2>{html.escape(what)}</h2>")
        for e in mine:
            w, h = _png_size(e.png)
            rel = e.png.relative_to(out).as_posix()
            cap = html.escape(e.caption) if e.caption else ""
            parts.append(f"<figure><img src='{rel}' style='width:{w / dpi:.2f}in'><figcaption><b>{html.escape(e.png.stem)}"
                         f"</b> ({w / dpi:.1f} x {h / dpi:.1f} in){'<br>' + cap if cap else ''}</figcaption></figure>")
    parts.append("</body></html>\n")
    return atomic_write_text(out / "index.html", "\n".join(parts))


def write_montage(output: str | Path, entries: Sequence[Entry], scale: float = 0.3, width: int = 2400) -> Path:
    """``output/contact_sheet.png``: every figure scaled by ``scale`` (the same for all, so that
    sizes compare), in rows ``width`` pixels wide, each under its file name."""
    from PIL import Image, ImageDraw

    tiles = []
    for e in entries:
        with Image.open(e.png) as im:
            im = im.convert("RGB")
            tiles.append((e, im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))),
                                       Image.LANCZOS)))
    pad, label = 12, 16
    rows: list[list[tuple[Entry, Any]]] = [[]]
    x = pad
    for e, im in tiles:
        if rows[-1] and x + im.width + pad > width:
            rows.append([])
            x = pad
        rows[-1].append((e, im))
        x += im.width + pad
    height = pad + sum(max(im.height for _, im in row) + label + pad for row in rows if row)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for row in rows:
        if not row:
            continue
        x = pad
        for e, im in row:
            name = f"{e.group}/{e.png.stem}"
            fits = max(8, im.width // 6)  # the default bitmap font is about 6 pixels a character
            draw.text((x, y), name if len(name) <= fits else name[: fits - 3] + "...", fill="black")
            sheet.paste(im, (x, y + label))
            draw.rectangle([x - 1, y + label - 1, x + im.width, y + label + im.height], outline="#cccccc")
            x += im.width + pad
        y += max(im.height for _, im in row) + label + pad
    path = Path(output) / "contact_sheet.png"
    sheet.save(path, optimize=False)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", "-o", type=Path, default=Path("contact_sheet"), help="folder (default contact_sheet/)")
    ap.add_argument("groups", nargs="*", help=f"groups to render (default all: {', '.join(GROUPS)})")
    args = ap.parse_args(argv)
    bad = [g for g in args.groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown groups {bad}; known: {', '.join(GROUPS)}")
    t0 = time.perf_counter()
    entries = render(args.output, args.groups or None, progress=print)
    index = write_index(args.output, entries)
    montage = write_montage(args.output, entries)
    print(f"{len(entries)} figures in {time.perf_counter() - t0:.1f} s: {index} and {montage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
