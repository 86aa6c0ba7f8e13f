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
(:func:`aflqueue.stats.bootstrap_band`), drawn only for groups of at least
:data:`MIN_SEEDS_FOR_INTERVAL` seeds.

:func:`compare` gives the paired table of ``aflqueue compare``: per group, accuracy at equal
simulated time (bootstrap interval), time to a target accuracy (reached runs, geometric mean), and
against a reference group, paired by seed, the accuracy difference (bootstrap interval) and the
time ratio (log-scale t-interval). An interval is given only when it rests on at least
:data:`MIN_SEEDS_FOR_INTERVAL` seeds (or pairs): a bootstrap "95%" interval of two values is
their minimum and maximum, and says nothing a reader cannot see in the two values themselves;
below that the per-seed values are reported instead, and the count is said next to every number.

**Reading run folders** (hostile input: they travel between machines and versions). Each file is
read by :func:`aflqueue.io.read_json` (bounded size and nesting, 64-bit integers, finite numbers)
and then checked here: ``results.json`` (:func:`check_results`: the four curves lists of one
length, ``time`` finite, >= 0 and non-decreasing, ``updates`` integers >= 0 and non-decreasing,
accuracies in ``[0, 1]`` or null, losses >= 0 or null, an integer ``seed``), ``config.json``
(:func:`check_run_config`: the sections and keys of a run configuration, an integer ``seed``) and
``updates.csv`` (:func:`read_updates`: its header, one row per arrival numbered from 1, times
non-decreasing, clients in range, delays and versions integers >= 0; memory estimated from the
file's size before anything is allocated). Every failure is one
:class:`~aflqueue.errors.ValidationError` naming the file, the field and what is allowed.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .config import TrainConfig
from .errors import ValidationError, check_integer, check_number, check_values, require, short_repr
from .io import atomic_write_json, json_safe, read_json, source_name
from .outcomes import CURVES, accuracy_at, check_curves, time_to_target
from .sim.columns import UPDATES_COLUMNS
from .stats import bootstrap_band, bootstrap_interval, log_ratio_interval

__all__ = ["IGNORED_KEYS", "MIN_SEEDS_FOR_INTERVAL", "UPDATES_COLUMNS", "Run", "RunGroup", "load_run", "load_runs",
           "check_results", "check_run_config", "read_updates", "flatten", "group_runs", "curves_data", "compare",
           "compare_paths", "compare_table", "plot_runs", "default_target"]

#: Configuration keys that never distinguish groups.
IGNORED_KEYS = ("output", "seed")
#: Fewest seeds (or seed pairs) an interval is given for; below, the per-seed values.
MIN_SEEDS_FOR_INTERVAL = 3
#: Memory a reader of ``updates.csv`` may use unless told otherwise (GB = 2^30 bytes).
DEFAULT_MAX_MEMORY_GB = 4.0
_SEED_MAX = 2**32 - 1
#: Shortest row of updates.csv ("1,0.0,0,0,0,0" and its newline): rows <= file size / this.
_MIN_ROW_BYTES = 14


@dataclass
class Run:
    """One run folder: its ``results.json`` and (if present) ``config.json``."""

    path: Path
    results: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        """The run's seed (``config.json``'s, else ``results.json``'s; both checked integers)."""
        s = self.config.get("seed", self.results.get("seed"))
        return None if s is None else int(s)

    def updates_log(self, max_memory_gb: float = DEFAULT_MAX_MEMORY_GB) -> dict[str, np.ndarray]:
        """The run's ``updates.csv``, validated (:func:`read_updates`)."""
        routing = self.results.get("routing")
        n = len(routing) if isinstance(routing, list) and routing else None
        return read_updates(self.path / "updates.csv", n_clients=n, max_memory_gb=max_memory_gb)

    @property
    def curves(self) -> dict[str, np.ndarray]:
        return {k: np.asarray([np.nan if v is None else v for v in self.results[k]], dtype=float) for k in CURVES}

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


def _seed(value: Any, field: str, src: str) -> None:
    if value is not None:
        try:
            check_integer(value, field, 0, _SEED_MAX)
        except ValidationError as e:
            raise ValidationError(field, f"{src}: {e.detail}") from None


def check_results(results: Any, source: str) -> dict[str, Any]:
    """``results`` (a parsed ``results.json``) if it holds what :func:`compare` and
    :func:`plot_runs` read (module docstring); else one :class:`ValidationError` naming
    ``source``. Other keys (a run's metadata) are left as the reader found them."""
    if not isinstance(results, dict):
        raise ValidationError("results", f"{source} must hold a JSON object (got {type(results).__name__})")
    check_curves(results, "results", source)
    if "final_accuracy" in results:
        check_values([results["final_accuracy"]], "results.final_accuracy", source, lo=0.0, hi=1.0, nullable=True)
    if "final_loss" in results:
        check_values([results["final_loss"]], "results.final_loss", source, lo=0.0, nullable=True)
    _seed(results.get("seed"), "results.seed", source)
    routing = results.get("routing")
    if routing is not None:
        if not isinstance(routing, list) or not routing:
            raise ValidationError("results.routing", f"{source}: must be a list of probabilities, one per client")
        check_values(routing, "results.routing", source, lo=0.0, hi=1.0)
    return results


def check_run_config(config: Any, source: str) -> dict[str, Any]:
    """``config`` (a parsed ``config.json``) if its sections and keys are those of a run
    configuration (:class:`~aflqueue.config.TrainConfig`) and its ``seed`` an integer in
    ``[0, 2^32 - 1]``; the values are compared, not used, so they are not range-checked (a run
    made on a machine with more cores has a ``run.threads`` this one would refuse)."""


    if not isinstance(config, dict):
        raise ValidationError("config", f"{source} must hold a JSON object (got {type(config).__name__})")
    top = {f.name: f for f in fields(TrainConfig)}
    for k, v in config.items():
        if k not in top:
            raise ValidationError(f"config.{k}", f"{source}: unknown key (a run configuration has "
                                                 f"{', '.join(sorted(top))}; written by another version?)")
        section = top[k].default_factory() if callable(top[k].default_factory) else None  # type: ignore[misc]
        if section is None:
            continue
        if not isinstance(v, dict):
            raise ValidationError(f"config.{k}", f"{source}: must be a table (got {short_repr(v)})")
        names = {f.name for f in fields(section)}
        unknown = sorted(set(v) - names)
        if unknown:
            raise ValidationError(f"config.{k}.{unknown[0]}", f"{source}: unknown key (section {k} has "
                                                              f"{', '.join(sorted(names))}; written by another "
                                                              "version?)")
    _seed(config.get("seed"), "config.seed", source)
    return config


def read_updates(path: str | Path, n_clients: int | None = None,
                 max_memory_gb: float = DEFAULT_MAX_MEMORY_GB) -> dict[str, np.ndarray]:
    """A run's ``updates.csv`` (one row per arrival, :data:`UPDATES_COLUMNS`) as arrays of shape
    ``(arrivals,)``: ``time`` float64, the others int64. Validated before use (module docstring);
    the memory needed (48 bytes per row, three times over while it is parsed and checked, rows
    bounded by the file's size) is refused beyond ``max_memory_gb`` before anything is read.
    ``n_clients``: clients are checked to lie in ``[0, n_clients - 1]`` when given."""
    p = Path(path)
    src = source_name(p)
    require(isinstance(max_memory_gb, (int, float)) and not isinstance(max_memory_gb, bool)
            and math.isfinite(max_memory_gb) and max_memory_gb > 0, "max_memory_gb",
            f"must be a finite number > 0 (got {max_memory_gb!r})")
    require(p.is_file(), "updates", f"no such file: {src}")
    size = p.stat().st_size
    need = 3 * 8 * len(UPDATES_COLUMNS) * (size // _MIN_ROW_BYTES + 1)
    require(need <= max_memory_gb * 2**30, "updates", f"{src}: {size:,} bytes may hold {size // _MIN_ROW_BYTES:,} "
                                                      f"rows, about {need / 2**30:.2f} GB to read (> the "
                                                      f"{max_memory_gb:g} GB allowed; raise max_memory_gb)")
    header = ",".join(UPDATES_COLUMNS)
    try:
        with open(p, "rb") as f:
            first = f.readline(len(header) + 3).decode("utf-8").strip()
            require(first == header, "updates", f"{src}: the first line must be {header!r} (got "
                                                f"{short_repr(first)})")

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "empty input file": a run with no arrival yet
                rows = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2, comments=None, encoding="utf-8")
    except ValidationError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = (str(getattr(e, "strerror", None) or e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValidationError("updates", f"{src} is not a readable updates.csv ({reason})") from None
    if rows.size == 0:
        rows = np.zeros((0, len(UPDATES_COLUMNS)))
    require(rows.shape[1] == len(UPDATES_COLUMNS), "updates", f"{src}: rows must have {len(UPDATES_COLUMNS)} "
                                                              f"columns ({header}; got {rows.shape[1]})")
    cols = {c: rows[:, j] for j, c in enumerate(UPDATES_COLUMNS)}

    def fail(c: str, rule: str, bad: np.ndarray) -> None:
        i = int(np.flatnonzero(bad)[0])
        raise ValidationError(f"updates.{c}", f"{src}: {rule} (got {cols[c][i]!r} in row {i + 1})")

    for c, x in cols.items():
        bad = ~np.isfinite(x)
        if bad.any():
            fail(c, "must be a finite number", bad)
        if c != "time":
            bad = (x != np.floor(x)) | (np.abs(x) > 2**53)
            if bad.any():
                fail(c, "must be an integer", bad)
    k = np.arange(1, rows.shape[0] + 1)
    if (bad := cols["arrival"] != k).any():
        fail("arrival", "must number the arrivals 1, 2, 3, ... in order", bad)
    t = cols["time"]
    if (bad := t < 0).any():
        fail("time", "must be a simulated time >= 0", bad)
    if (bad := np.r_[False, np.diff(t) < 0]).any():
        fail("time", "must be non-decreasing (arrivals are logged in time order)", bad)
    c = cols["client"]
    bad = (c < 0) if n_clients is None else (c < 0) | (c >= int(n_clients))
    if bad.any():
        fail("client", "must be a client index >= 0" if n_clients is None else
             f"must be a client index in [0, {int(n_clients) - 1}]", bad)
    if (bad := cols["relative_delay"] < 0).any():
        fail("relative_delay", "must be an integer >= 0", bad)
    if (bad := cols["staleness"] < 0).any():
        fail("staleness", "must be an integer >= 0", bad)
    v = cols["model_version"]
    if (bad := (v < 0) | np.r_[False, np.diff(v) < 0]).any():
        fail("model_version", "must be an integer >= 0, non-decreasing", bad)
    return {c: (x if c == "time" else x.astype(np.int64)) for c, x in cols.items()}


def load_run(path: str | Path) -> Run:
    """A run folder, its files validated (module docstring); one-line :class:`ValidationError`
    naming the file and the field if it is not one."""
    p = Path(path)
    require(p.exists(), "run", f"no such folder: {str(p)!r}")
    require(p.is_dir(), "run", f"{str(p)!r} is not a folder (give the run's output folder)")
    res_path = p / "results.json"
    require(res_path.is_file(), "run", f"{str(p)!r} has no results.json (not a finished or checkpointed run)")
    results = check_results(read_json(res_path, "run", finite=True, prefix="results"), source_name(res_path))
    cfg_path = p / "config.json"
    config = check_run_config(read_json(cfg_path, "run", finite=True, prefix="config"), source_name(cfg_path)) \
        if cfg_path.is_file() else {}
    return Run(p, results, config)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Run folders; a folder without ``results.json`` stands for the run folders inside it. A
    folder that cannot be read (permissions) is one :class:`ValidationError` naming it."""
    try:
        return _load_runs(paths)
    except OSError as e:
        raise ValidationError("run", f"cannot read {str(e.filename)!r}: {e.strerror or type(e).__name__}") from None


def _load_runs(paths: Iterable[str | Path]) -> list[Run]:
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
    """Mean curve over the seeds; its 95% bootstrap band (``lo``, ``hi``) only from
    :data:`MIN_SEEDS_FOR_INTERVAL` seeds on (null below: two seeds' band is their min and max)."""

    mean, lo, hi = bootstrap_band(np.vstack(curves))
    if len(curves) < MIN_SEEDS_FOR_INTERVAL:  # the seeds themselves instead of a band
        return {"mean": mean.tolist(), "lo": None, "hi": None, "per_seed": [np.asarray(c).tolist() for c in curves]}
    return {"mean": mean.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def curves_data(groups: Sequence[RunGroup], target: float | None = None, title: str | None = None) -> dict[str, Any]:
    """What :func:`aflqueue.plots.runs_figure` draws: per group and axis (``time``, ``updates``) the
    common grid ``x`` and the mean and band of ``accuracy`` and ``loss`` (``lo``/``hi`` null for a
    group of fewer than :data:`MIN_SEEDS_FOR_INTERVAL` seeds: no band); ``seeds`` lists a group's
    seeds (its count is what the band rests on)."""
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
    from . import plots  # lazy: matplotlib

    if target is not None:
        check_number(target, "target", 0.0, 1.0)
    groups = group_runs(load_runs(paths))
    data = curves_data(groups, target, title)
    written = plots.runs_figure(data, out)
    written.append(atomic_write_json(Path(out) / "runs_curves.json", data, indent=1))
    return written, data


# --------------------------------------------------------------------------- compare
def _time_to_target(run: Run, target: float) -> float | None:
    c = run.results
    return time_to_target({"time": c["time"], "test_accuracy": c["test_accuracy"]}, target)


def _accuracy_at(run: Run, when: float) -> float | None:
    return accuracy_at({"time": run.results["time"], "test_accuracy": run.results["test_accuracy"]}, when)


def _updates_at(run: Run, when: float) -> int | None:
    c = run.curves
    idx = np.searchsorted(c["time"], when * (1 + 1e-12), side="right") - 1
    return None if idx < 0 else int(c["updates"][idx])


def default_target(runs: Sequence[Run]) -> float:
    """90% of the best accuracy the weakest run reached, rounded down to a percent: a target every
    run can be timed against (runs with no accuracy at all are left out)."""
    accs = [r.curves["test_accuracy"] for r in runs]
    best = [float(np.max(a[np.isfinite(a)])) for a in accs if np.isfinite(a).any()]
    require(bool(best), "target", "no run has a test accuracy to set a default target from; give --target")
    return math.floor(90.0 * min(best)) / 100.0


def _estimate(values: Sequence[float | None], interval: Any) -> dict[str, Any] | None:
    """``{"mean", "ci", "n", "values"}`` of the defined ``values``: ``interval(values).to_dict()``
    with ``ci`` null below :data:`MIN_SEEDS_FOR_INTERVAL` values; None when there is none."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    d = interval(v).to_dict()
    if d is None:
        return None
    if len(v) < MIN_SEEDS_FOR_INTERVAL:
        d["ci"] = None
    d["values"] = v
    return d


def compare(groups: Sequence[RunGroup], target: float | None = None, at_time: float | None = None,
            reference: int = 0) -> dict[str, Any]:
    """The paired table of ``aflqueue compare`` (module docstring). ``target``: test accuracy in
    ``[0, 1]`` (default :func:`default_target`); ``at_time``: the equal simulated time (default: the
    shortest run's last evaluation); ``reference``: index of the group the others are paired with.

    Each estimate is ``{"mean", "ci", "n", "values"}``: ``ci`` (the 95% interval) is null when
    fewer than :data:`MIN_SEEDS_FOR_INTERVAL` seeds (pairs, reached runs) carry it, ``values``
    are what the mean is taken over."""

    runs = [r for g in groups for r in g.runs]
    require(0 <= reference < len(groups), "reference", f"must name one of the {len(groups)} groups")
    if target is None:
        target = default_target(runs)
    check_number(target, "target", 0.0, 1.0)
    if at_time is None:
        at_time = min(r.horizon for r in runs)
        require(at_time > 0, "time", "the shortest run's last evaluation is at time 0; give --time")
    require(isinstance(at_time, (int, float)) and math.isfinite(at_time) and at_time > 0, "time",
            f"must be a simulated time > 0 (got {at_time})")
    ref = {r.seed: r for r in groups[reference].runs}
    rows = []
    for k, g in enumerate(groups):
        acc = [_accuracy_at(r, at_time) for r in g.runs]
        ttt = [_time_to_target(r, target) for r in g.runs]
        reached = [t for t in ttt if t is not None]
        row: dict[str, Any] = {
            "group": k, "legend": g.legend, "reference": k == reference, "seeds": g.seeds,
            "runs": [str(r.path) for r in g.runs],
            "accuracy": _estimate(acc, bootstrap_interval), "accuracy_per_seed": acc,
            "updates_at_time": [_updates_at(r, at_time) for r in g.runs],
            "time_to_target": _estimate(reached, log_ratio_interval),
            "time_to_target_per_seed": ttt, "reached": len(reached), "final_accuracy":
                _estimate([r.results.get("final_accuracy") for r in g.runs], bootstrap_interval)}
        if k != reference:
            pairs = [(r, ref[r.seed]) for r in g.runs if r.seed in ref]
            diffs = [(a - b) for r, b_run in pairs for a, b in [(_accuracy_at(r, at_time), _accuracy_at(b_run, at_time))]
                     if a is not None and b is not None]
            ratios = [ta / tb for r, b_run in pairs for ta, tb in [(_time_to_target(r, target),
                                                                    _time_to_target(b_run, target))]
                      if ta is not None and tb is not None and tb > 0]
            row.update({"paired_seeds": [r.seed for r, _ in pairs],
                        "accuracy_difference": _estimate(diffs, bootstrap_interval),
                        "time_ratio": _estimate(ratios, log_ratio_interval),
                        "time_ratio_pairs": len(ratios)})
        rows.append(row)
    return json_safe({"target": target, "time": at_time, "reference": reference,
                      "min_seeds_for_interval": MIN_SEEDS_FOR_INTERVAL,
                      "differing_keys": sorted({k for g in groups for k in g.differing}), "rows": rows})


def compare_paths(paths: Iterable[str | Path], target: float | None = None, at_time: float | None = None,
                  reference: int = 0) -> dict[str, Any]:
    """:func:`compare` of run folders (grouped as in :func:`plot_runs`); ``print(compare_table(...))``
    renders it as ``aflqueue compare`` does."""
    return compare(group_runs(load_runs(paths)), target=target, at_time=at_time, reference=reference)


def compare_table(result: Mapping[str, Any]) -> str:
    """Plain-text rendering of :func:`compare` (what ``aflqueue compare`` prints): a 95% interval
    with the number of seeds (pairs, reached runs) it rests on, or below
    :data:`MIN_SEEDS_FOR_INTERVAL` of them the values themselves."""
    floor = int(result.get("min_seeds_for_interval", MIN_SEEDS_FOR_INTERVAL))

    def cell(e: Mapping[str, Any] | None, unit: str, scale: float = 100.0, fmt: str = "{:.1f}",
             signed: bool = False) -> str:
        if not e:
            return "-"
        f = (lambda v: ("+" if signed and v > 0 else "") + fmt.format(scale * v))
        n = int(e.get("n", 0))
        count = f"{n} {unit}{'' if n == 1 else 's'}"
        if e.get("ci"):
            return f"{f(e['mean'])} [{f(e['ci'][0])}, {f(e['ci'][1])}] ({count})"
        values = e.get("values") or [e["mean"]]
        return f"{', '.join(f(v) for v in values)} ({count}{', no interval' if n > 1 else ''})"

    T, tgt = result["time"], result["target"]
    lines = [f"accuracy at equal simulated time t = {T:g}; time to target accuracy {100 * tgt:.1f}%; paired by seed "
             f"with the reference (*); 95% intervals (accuracy: bootstrap; times and ratios: log scale) from "
             f"{floor} seeds or pairs on, with their count; below that, the values themselves", ""]
    head = ["group", "seeds", "accuracy @ t (%)", "updates @ t", "reached", "time to target",
            "accuracy diff (points)", "time ratio"]
    table = []
    for r in result["rows"]:
        upd = [u for u in r["updates_at_time"] if u is not None]
        table.append([("* " if r["reference"] else "  ") + r["legend"], str(len(r["seeds"])),
                      cell(r["accuracy"], "seed"),
                      f"{np.mean(upd):.0f}" if upd else "-", f"{r['reached']}/{len(r['seeds'])}",
                      cell(r["time_to_target"], "run", 1.0, "{:.4g}"),
                      "-" if r["reference"] else cell(r.get("accuracy_difference"), "pair", signed=True),
                      "-" if r["reference"] else cell(r.get("time_ratio"), "pair", 1.0, "{:.3g}")])
    widths = [max(len(h), *(len(row[j]) for row in table)) for j, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)
