"""A researcher's own training runs: load run folders, group the seeds of each configuration,
name the groups by what differs between them, and plot or compare them.

A *run folder* is what ``aflqueue train`` (or :func:`aflqueue.train`) writes: ``results.json``
(the curves ``time``, ``updates``, ``test_accuracy``, ``test_loss``), ``config.json`` (the resolved
configuration), ``updates.csv`` and ``trace.npz``. Only ``results.json`` is required; a folder
holding run folders (and no ``results.json``) stands for all of them.

Grouping: each run's configuration is flattened to dotted keys (``local.lr``, ``algorithm.name``,
``data.options.num_samples`` ...); ``output`` and ``seed`` are dropped; runs whose remaining keys
are all equal are *seeds of one configuration* and form a group. A group's legend lists the keys
whose values differ between the groups (``local.lr = 0.2``), so a figure says what was varied.

Curves of one group are averaged on a common grid: the evaluation points every seed shares, or,
when the seeds were evaluated at different points (an evaluation every ``k`` arrivals falls at
different simulated times for different schedules), the union of their points within the range
all seeds cover, each seed read as the model that stood at that point (its last evaluation at or
before it). Bands are seeded percentile-bootstrap 95% intervals of the mean over seeds
(:func:`aflqueue.stats.bootstrap_band`).

:func:`compare` gives the paired table of ``aflqueue compare``: per group, accuracy at equal
simulated time (bootstrap interval), time to a target accuracy (reached runs, geometric mean), and
against a reference group, paired by seed, the accuracy difference (bootstrap interval) and the
time ratio (log-scale t-interval).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ValidationError, require
from .io import json_safe, read_json

__all__ = ["IGNORED_KEYS", "Run", "RunGroup", "load_run", "load_runs", "flatten", "group_runs", "curves_data",
           "compare", "compare_paths", "compare_table", "plot_runs", "default_target"]

#: Configuration keys that never distinguish groups.
IGNORED_KEYS = ("output", "seed")
_CURVES = ("time", "updates", "test_accuracy", "test_loss")


@dataclass
class Run:
    """One run folder: its ``results.json`` and (if present) ``config.json``."""

    path: Path
    results: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        s = self.config.get("seed", self.results.get("seed"))
        return None if s is None else int(s)

    @property
    def curves(self) -> dict[str, np.ndarray]:
        return {k: np.asarray([np.nan if v is None else v for v in self.results[k]], dtype=float) for k in _CURVES}

    @property
    def horizon(self) -> float:
        """Simulated time of the run's last evaluation."""
        t = self.curves["time"]
        return float(t[-1]) if t.size else 0.0


@dataclass
class RunGroup:
    """Seeds of one configuration; ``differing``: its values of the keys that differ between groups."""

    runs: list[Run]
    differing: dict[str, Any]
    legend: str

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_run(path: str | Path) -> Run:
    """A run folder (one-line :class:`ValidationError` if it is not one)."""
    p = Path(path)
    require(p.exists(), "run", f"no such folder: {str(p)!r}")
    require(p.is_dir(), "run", f"{str(p)!r} is not a folder (give the run's output folder)")
    res_path = p / "results.json"
    require(res_path.is_file(), "run", f"{str(p)!r} has no results.json (not a finished or checkpointed run)")
    results = read_json(res_path, "run")
    require(isinstance(results, dict) and all(isinstance(results.get(k), list) for k in _CURVES), "run",
            f"{str(res_path)!r} lacks the curves {', '.join(_CURVES)}")
    n = len(results["time"])
    require(n >= 1 and all(len(results[k]) == n for k in _CURVES), "run",
            f"{str(res_path)!r}: the curves must be non-empty lists of equal length")
    cfg_path = p / "config.json"
    config = read_json(cfg_path, "run") if cfg_path.is_file() else {}
    require(isinstance(config, dict), "run", f"{str(cfg_path)!r} is not a configuration (a JSON object)")
    return Run(p, results, config)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Run folders; a folder without ``results.json`` stands for the run folders inside it."""
    runs: list[Run] = []
    for path in paths:
        p = Path(path)
        if p.is_dir() and not (p / "results.json").is_file():
            inner = sorted(q for q in p.iterdir() if (q / "results.json").is_file())
            require(bool(inner), "run", f"{str(p)!r} has no results.json and no run folders inside")
            runs += [load_run(q) for q in inner]
        else:
            runs.append(load_run(p))
    seen: dict[Path, Path] = {}
    for r in runs:
        key = r.path.resolve()
        require(key not in seen, "run", f"{str(r.path)!r} is given twice")
        seen[key] = r.path
    require(bool(runs), "run", "give at least one run folder")
    return runs


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def group_runs(runs: Sequence[Run]) -> list[RunGroup]:
    """Group seeds of one configuration (module docstring); groups in order of first appearance."""
    keyed: dict[str, list[Run]] = {}
    flat: dict[str, dict[str, Any]] = {}
    for r in runs:
        f = {k: v for k, v in flatten(r.config).items() if k not in IGNORED_KEYS} if r.config else \
            {"run": str(r.path)}  # no configuration: every run is its own group
        key = json.dumps(f, sort_keys=True, default=str)
        keyed.setdefault(key, []).append(r)
        flat[key] = f
    for key, members in keyed.items():
        seeds = [m.seed for m in members]
        dup = sorted({s for s in seeds if s is not None and seeds.count(s) > 1})
        if dup:
            raise ValidationError("run", f"{str(members[0].path)!r} and another run have the same configuration and "
                                         f"seed {dup[0]}; give each seed once")
    keys = sorted({k for f in flat.values() for k in f})
    MISSING = object()
    differ = [k for k in keys if len({json.dumps(f.get(k, "<absent>"), sort_keys=True, default=str)
                                      for f in flat.values()}) > 1]
    groups = []
    for key, members in keyed.items():
        f = flat[key]
        d = {k: f.get(k, MISSING) for k in differ}
        if differ:
            legend = ", ".join(f"{k} = {'(absent)' if v is MISSING else _value_text(v)}" for k, v in d.items())
        else:  # one configuration: name it by what it is
            salient = [k for k in ("algorithm.name", "routing.kind", "data.dataset") if k in f]
            legend = ", ".join(f"{k} = {_value_text(f[k])}" for k in salient) or str(members[0].path)
        ordered = sorted(members, key=lambda r: (r.seed is None, r.seed or 0))
        groups.append(RunGroup(ordered, {k: (None if v is MISSING else v) for k, v in d.items()}, legend))
    return groups


def _at(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The value that stood at each grid point: the last evaluation at or before it (NaN before the first)."""
    idx = np.searchsorted(x, grid * (1 + 1e-12), side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)
    return out


def _common(runs: Sequence[Run], axis: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    xs = [r.curves[axis] for r in runs]
    if all(x.shape == xs[0].shape and np.allclose(x, xs[0], rtol=1e-12, atol=0) for x in xs):
        grid = xs[0]
        acc = [r.curves["test_accuracy"] for r in runs]
        loss = [r.curves["test_loss"] for r in runs]
        return grid, acc, loss
    lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
    grid = np.unique(np.concatenate(xs))
    grid = grid[(grid >= lo) & (grid <= hi)]
    acc = [_at(r.curves[axis], r.curves["test_accuracy"], grid) for r in runs]
    loss = [_at(r.curves[axis], r.curves["test_loss"], grid) for r in runs]
    return grid, acc, loss


def _band_dict(curves: list[np.ndarray]) -> dict[str, Any]:
    from .stats import bootstrap_band

    mean, lo, hi = bootstrap_band(np.vstack(curves))
    return {"mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def curves_data(groups: Sequence[RunGroup], target: float | None = None, title: str | None = None) -> dict[str, Any]:
    """What :func:`aflqueue.plots.runs_figure` draws: per group and axis (``time``, ``updates``) the
    common grid ``x`` and the mean and band of ``accuracy`` and ``loss``."""
    out = []
    for g in groups:
        entry: dict[str, Any] = {"legend": g.legend, "seeds": g.seeds, "runs": [str(r.path) for r in g.runs],
                                 "differing": g.differing}
        for axis in ("time", "updates"):
            grid, acc, loss = _common(g.runs, axis)
            entry[axis] = {"x": grid.tolist(), "accuracy": _band_dict(acc), "loss": _band_dict(loss)}
        out.append(entry)
    differing = sorted({k for g in groups for k in g.differing})
    return json_safe({"groups": out, "target": target, "differing_keys": differing,
                      "legend_title": ("settings that differ: " + ", ".join(differing)) if differing else "runs",
                      "title": title or (f"{len(groups)} configurations, {sum(len(g.runs) for g in groups)} runs"
                                         if len(groups) > 1 else f"{len(groups[0].runs)} runs of one configuration")})


def plot_runs(paths: Iterable[str | Path], out: str | Path, target: float | None = None,
              title: str | None = None) -> tuple[list[Path], dict[str, Any]]:
    """Load, group and draw runs: ``out/runs_curves.png`` and ``.pdf``, and the figure's data as
    ``out/runs_curves.json``. Returns ``(paths, data)``."""
    from . import plots
    from .io import atomic_write_json

    if target is not None:
        from .errors import check_number

        check_number(target, "target", 0.0, 1.0)
    groups = group_runs(load_runs(paths))
    data = curves_data(groups, target, title)
    written = plots.runs_figure(data, out)
    written.append(atomic_write_json(Path(out) / "runs_curves.json", data, indent=1))
    return written, data


# --------------------------------------------------------------------------- compare
def _time_to_target(run: Run, target: float) -> float | None:
    from .outcomes import time_to_target

    c = run.results
    return time_to_target({"time": c["time"], "test_accuracy": c["test_accuracy"]}, target)


def _accuracy_at(run: Run, when: float) -> float | None:
    from .outcomes import accuracy_at

    return accuracy_at({"time": run.results["time"], "test_accuracy": run.results["test_accuracy"]}, when)


def _updates_at(run: Run, when: float) -> int | None:
    c = run.curves
    idx = np.searchsorted(c["time"], when * (1 + 1e-12), side="right") - 1
    return None if idx < 0 else int(c["updates"][idx])


def default_target(runs: Sequence[Run]) -> float:
    """90% of the best accuracy the weakest run reached, rounded down to a percent: a target every
    run can be timed against."""
    best = [float(np.nanmax(r.curves["test_accuracy"])) for r in runs]
    return math.floor(90.0 * min(best)) / 100.0


def compare(groups: Sequence[RunGroup], target: float | None = None, at_time: float | None = None,
            reference: int = 0) -> dict[str, Any]:
    """The paired table of ``aflqueue compare`` (module docstring). ``target``: test accuracy in
    ``[0, 1]`` (default :func:`default_target`); ``at_time``: the equal simulated time (default: the
    shortest run's last evaluation); ``reference``: index of the group the others are paired with."""
    from .stats import bootstrap_interval, log_ratio_interval

    runs = [r for g in groups for r in g.runs]
    require(0 <= reference < len(groups), "reference", f"must name one of the {len(groups)} groups")
    if target is None:
        target = default_target(runs)
    if at_time is None:
        at_time = min(r.horizon for r in runs)
    require(math.isfinite(at_time) and at_time > 0, "time", f"must be a simulated time > 0 (got {at_time})")
    ref = {r.seed: r for r in groups[reference].runs}
    rows = []
    for k, g in enumerate(groups):
        acc = [_accuracy_at(r, at_time) for r in g.runs]
        ttt = [_time_to_target(r, target) for r in g.runs]
        reached = [t for t in ttt if t is not None]
        row: dict[str, Any] = {
            "group": k, "legend": g.legend, "reference": k == reference, "seeds": g.seeds,
            "runs": [str(r.path) for r in g.runs],
            "accuracy": bootstrap_interval(acc).to_dict(), "accuracy_per_seed": acc,
            "updates_at_time": [_updates_at(r, at_time) for r in g.runs],
            "time_to_target": log_ratio_interval(reached).to_dict() if reached else None,
            "time_to_target_per_seed": ttt, "reached": len(reached), "final_accuracy":
                bootstrap_interval([r.results.get("final_accuracy") for r in g.runs]).to_dict()}
        if k != reference:
            pairs = [(r, ref[r.seed]) for r in g.runs if r.seed in ref]
            diffs = [(a - b) for r, b_run in pairs for a, b in [(_accuracy_at(r, at_time), _accuracy_at(b_run, at_time))]
                     if a is not None and b is not None]
            ratios = [ta / tb for r, b_run in pairs for ta, tb in [(_time_to_target(r, target),
                                                                    _time_to_target(b_run, target))]
                      if ta is not None and tb is not None and tb > 0]
            row.update({"paired_seeds": [r.seed for r, _ in pairs],
                        "accuracy_difference": bootstrap_interval(diffs).to_dict() if diffs else None,
                        "time_ratio": log_ratio_interval(ratios).to_dict() if ratios else None,
                        "time_ratio_pairs": len(ratios)})
        rows.append(row)
    return json_safe({"target": target, "time": at_time, "reference": reference,
                      "differing_keys": sorted({k for g in groups for k in g.differing}), "rows": rows})


def compare_paths(paths: Iterable[str | Path], target: float | None = None, at_time: float | None = None,
                  reference: int = 0) -> dict[str, Any]:
    """:func:`compare` of run folders (grouped as in :func:`plot_runs`); ``print(compare_table(...))``
    renders it as ``aflqueue compare`` does."""
    return compare(group_runs(load_runs(paths)), target=target, at_time=at_time, reference=reference)


def compare_table(result: Mapping[str, Any]) -> str:
    """Plain-text rendering of :func:`compare` (what ``aflqueue compare`` prints)."""

    def ci(e: Mapping[str, Any] | None, scale: float = 100.0, fmt: str = "{:.1f}", signed: bool = False) -> str:
        if not e:
            return "-"
        f = (lambda v: ("+" if signed and v > 0 else "") + fmt.format(scale * v))
        return f"{f(e['mean'])} [{f(e['ci'][0])}, {f(e['ci'][1])}]" if e.get("ci") else f(e["mean"])

    T, tgt = result["time"], result["target"]
    lines = [f"accuracy at equal simulated time t = {T:g}; time to target accuracy {100 * tgt:.1f}%; 95% intervals "
             "(accuracy: bootstrap; times and ratios: log scale); paired by seed with the reference (*)", ""]
    head = ["group", "seeds", "accuracy @ t (%)", "updates @ t", "reached", "time to target",
            "accuracy diff (points)", "time ratio"]
    table = []
    for r in result["rows"]:
        upd = [u for u in r["updates_at_time"] if u is not None]
        table.append([("* " if r["reference"] else "  ") + r["legend"], str(len(r["seeds"])), ci(r["accuracy"]),
                      f"{np.mean(upd):.0f}" if upd else "-", f"{r['reached']}/{len(r['seeds'])}",
                      ci(r["time_to_target"], 1.0, "{:.4g}"),
                      "-" if r["reference"] else ci(r.get("accuracy_difference"), signed=True),
                      "-" if r["reference"] else ci(r.get("time_ratio"), 1.0, "{:.3g}")])
    widths = [max(len(h), *(len(row[j]) for row in table)) for j, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)
