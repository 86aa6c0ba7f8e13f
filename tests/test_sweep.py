"""``aflqueue sweep``: the CSV's optimum is ``aflqueue optimize``'s, its uniform columns are the exact
analysis, the figures follow the publishing rules, and the built-in analytic figures are sweeps
of the bundled examples."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from figure_checks import captured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAT = ROOT / "examples" / "flat.toml"
KEYS = {"per-update": "per_update", "wall-clock": "wallclock", "time-to-accuracy": "time_to_accuracy",
        "energy": "energy", "max-throughput": "throughput"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def num(x: str) -> float:
    return float(x) if x != "" else math.nan


@pytest.fixture(scope="module")
def flat_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "flat"
    mp = pytest.MonkeyPatch()
    try:
        with captured(mp) as figs:
            assert main(["sweep", str(FLAT), "--concurrency-range", "1:50", "--pareto-points", "4", "--quiet",
                         "-o", str(out)]) == 0
    finally:
        mp.undo()
    return out, figs


@pytest.mark.parametrize("objective", list(KEYS))
def test_the_csv_optimum_is_optimizes(flat_sweep, objective, capsys):
    out, _ = flat_sweep
    capsys.readouterr()
    assert main(["optimize", str(FLAT), "--objective", objective, "--concurrency-range", "1:50", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    rows = read_csv(out / "sweep.csv")
    key = KEYS[objective]
    ms = [int(r["m"]) for r in rows]
    assert ms == list(range(1, 51))
    vals = np.array([num(r[f"{key}_optimal"]) for r in rows])
    best = int(np.nanargmax(vals) if objective == "max-throughput" else np.nanargmin(vals))
    assert ms[best] == ref["concurrency"]
    assert math.isclose(vals[best], ref["objective_value"], rel_tol=1e-9)
    assert [int(r[f"optimum_{key}"]) for r in rows] == [int(m == ref["concurrency"]) for m in ms]
    opt = {r["objective"]: r for r in read_csv(out / "sweep_optima.csv")}[objective]
    assert int(opt["concurrency"]) == ref["concurrency"]
    assert math.isclose(float(opt["objective_value"]), ref["objective_value"], rel_tol=1e-12)
    routing = [float(r[f"routing_{key}"]) for r in read_csv(out / "sweep_routing.csv")]
    np.testing.assert_allclose(routing, ref["routing"], atol=1e-12)


def test_uniform_columns_are_the_exact_analysis(flat_sweep):
    out, _ = flat_sweep
    system = aq.load_system(FLAT)
    uniform = np.full(system.n, 1 / system.n)
    for r in read_csv(out / "sweep.csv")[::7]:
        m = int(r["m"])
        a = aq.analyze(system.with_routing(uniform).with_concurrency(m))
        assert math.isclose(float(r["throughput_uniform"]), a.throughput, rel_tol=1e-9)
        assert math.isclose(float(r["mean_relative_delay_uniform"]), m - 1, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(float(r["relative_delay_slowest_uniform"]), a.relative_delay[2], rel_tol=1e-9,
                            abs_tol=1e-12)
        # the best routing at m is at least as good as uniform routing at m
        for key in ("per_update", "wallclock", "time_to_accuracy", "energy"):
            assert float(r[f"{key}_optimal"]) <= float(r[f"{key}_uniform"]) * (1 + 1e-9)


def test_pareto_front_trades_time_for_energy(flat_sweep):
    out, _ = flat_sweep
    pf = json.loads((out / "sweep.json").read_text())["pareto"]
    T, E = np.array(pf["time"]), np.array(pf["energy"])
    assert len(T) == 4 and pf["weights"][0] == 0 and pf["weights"][-1] == 1
    assert np.all(np.diff(T) >= -1e-6 * T[:-1]) and np.all(np.diff(E) <= 1e-6 * E[:-1])


def test_sweep_figures_are_publishable(flat_sweep):
    out, figs = flat_sweep
    assert set(figs) == {"sweep_concurrency", "sweep_routing_vs_speed", "sweep_pareto", "sweep_delay_vs_routing"}
    for stem in figs:
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()
    assert any("m* = 6" in t for t in figs["sweep_concurrency"]["titles"])  # the P2/P3 optimum is marked


def test_built_in_figures_are_sweeps_of_the_bundled_examples(tmp_path, monkeypatch):
    from aflqueue import figures

    with captured(monkeypatch) as figs:
        paths = figures.concurrency_sweep(tmp_path)
    assert [p.name for p in paths] == ["concurrency_sweep.png", "concurrency_sweep.pdf"] and "concurrency_sweep" in figs
    data = json.loads((tmp_path / "data" / "two_groups" / "sweep.json").read_text())
    best = aq.optimize(aq.example_system(), "time-to-accuracy", p_min=1e-3, concurrency=(1, 40))
    assert data["optima"]["time-to-accuracy"]["concurrency"] == best.concurrency == 19  # the README's m*
    assert math.isclose(data["optima"]["time-to-accuracy"]["objective_value"], best.objective_value, rel_tol=1e-12)


@pytest.mark.parametrize("argv, field", [
    (["sweep"], "rates"),
    (["sweep", str(FLAT), "--concurrency-range", "0:5"], "concurrency-range"),
    (["sweep", str(FLAT), "--concurrency-range", "1:100000"], "concurrency-range"),
    (["sweep", str(FLAT), "--objective", "tradeoff"], "objective"),
    (["sweep", str(FLAT), "--pareto-points", "-1"], "pareto-points"),
    (["sweep", str(FLAT), "--concurrency", "3"], "concurrency"),
    (["sweep", str(FLAT), "--p-min", "0.9"], "p_min"),
])
def test_bad_sweep_input_is_one_line(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err, err
