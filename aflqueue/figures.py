"""The ``aflqueue figures`` driver: the analytic figures of the bundled example systems, drawn by
:mod:`aflqueue.plots` in the one style of :mod:`aflqueue.style`.

They are sweeps (:func:`aflqueue.sweep.sweep`, what ``aflqueue sweep`` runs on a user's system)
of ``aflqueue/data/two_groups.toml`` (relative delay against routing, the U shape of time against
concurrency) and ``aflqueue/data/five_types.toml`` (optimal routing against client speed, the
time/energy Pareto front): deterministic, a few seconds. Their data are saved next to them
(``<out>/data/<system>/sweep.csv``, ``sweep.json``, ...). The figures of a study are drawn by the
study's own command from its saved records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import plots
from .io import atomic_write_json
from .system import load_system

__all__ = ["make_all", "bundled_system", "BUNDLED", "delay_vs_routing", "concurrency_sweep", "routing_vs_speed",
           "energy_pareto", "analytic_figures"]

#: Example systems shipped with the package (``aflqueue/data/<name>.toml``).
BUNDLED = ("two_groups", "five_types")


def bundled_system(name: str):
    """A bundled example system by name (:data:`BUNDLED`)."""

    return load_system(Path(__file__).parent / "data" / f"{name}.toml")


def _sweep(out: Path, name: str, **kw: Any):
    from .sweep import sweep  # lazy: matplotlib

    res = sweep(bundled_system(name), name=f"bundled example {name.replace('_', ' ')}", **kw)
    data = out / "data" / name
    res.write_csv(data)

    atomic_write_json(data / "sweep.json", res.to_dict(), indent=1)
    return res.to_dict()


def _two_groups(out: Path) -> dict[str, Any]:
    # P3 and P2 over m = 1..40; the wall-clock budget is AsyncSGD's time for 1000 updates at m = 10
    return _sweep(out, "two_groups", concurrency=(1, 40), objectives=("time-to-accuracy", "wall-clock"),
                  p_min=1e-3, pareto_points=0)


def _five_types(out: Path) -> dict[str, Any]:
    return _sweep(out, "five_types", concurrency=(20, 20),
                  objectives=("per-update", "wall-clock", "time-to-accuracy", "max-throughput"), p_min=1e-4,
                  pareto_points=11, routing_points=0)


def delay_vs_routing(out: Path, data: dict[str, Any] | None = None) -> list[Path]:
    """E[D] of the fastest and slowest clients and throughput as routing mass moves to the slow half.
    ``data``: a saved sweep (``<out>/data/two_groups/sweep.json``); computed when None."""
    return plots.sweep_delay_routing_figure(data or _two_groups(out), out, stem="delay_vs_routing")


def concurrency_sweep(out: Path, data: dict[str, Any] | None = None) -> list[Path]:
    """Throughput, delays and proxies against m for uniform and optimal routing (U shape of time vs m)."""
    return plots.sweep_concurrency_figure(data or _two_groups(out), out, stem="concurrency_sweep")


def routing_vs_speed(out: Path, data: dict[str, Any] | None = None) -> list[Path]:
    """Optimal p_i against mu_i for each objective (five device types, 4 clients each, m = 20)."""
    return plots.sweep_routing_figure(data or _five_types(out), out, stem="routing_vs_speed")


def energy_pareto(out: Path, data: dict[str, Any] | None = None) -> list[Path]:
    """Time to accuracy vs energy to accuracy over the trade-off weight r (P4)."""
    return plots.sweep_pareto_figure(data or _five_types(out), out, stem="energy_pareto")


def analytic_figures(out: str | Path) -> list[Path]:
    """The four analytic figures: two sweeps, each drawn twice."""
    out = Path(out)
    two, five = _two_groups(out), _five_types(out)
    return (delay_vs_routing(out, two) + concurrency_sweep(out, two) + routing_vs_speed(out, five)
            + energy_pareto(out, five))


def make_all(out: str | Path) -> list[Path]:
    """Every figure of the ``aflqueue figures`` command: the analytic ones (:func:`analytic_figures`)."""
    return analytic_figures(out)
