"""Every file in examples/ works: system files load, analyse and simulate; the run configuration
trains; the scripts run (small arguments, in a subprocess) and write what they say; the notebook
runs from top to bottom in a fresh kernel (nbclient), so that it never rots."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
SYSTEM_FILES = ["flat.toml", "structured.toml", "multistage.yaml", "availability_empirical.toml"]
DATA_FILES = ["compute_times.csv"]  # read by availability_empirical.toml
RUN_FILES = ["run.toml"]
SCRIPTS = ["optimal_routing.py", "paper_figures.py", "validation_run.py"]
NOTEBOOKS = ["researcher_tour.ipynb"]
#: examples whose every stage is exponential FIFO or a delay station, without availability windows:
#: the product form is exact for them, so the simulation must agree with the analysis.
EXACT = {"multistage.yaml"}


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EX / name), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_every_example_file_is_covered():
    files = {p.name for p in EX.iterdir() if p.name != "__pycache__"}
    assert files == set(SYSTEM_FILES + DATA_FILES + RUN_FILES + SCRIPTS + NOTEBOOKS)


@pytest.mark.parametrize("name", SYSTEM_FILES)
def test_system_file_loads_analyses_and_simulates(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths inside a file resolve against its folder, not the cwd
    system = aq.load_system(EX / name)
    exact = aq.analyze(system)
    assert exact.throughput > 0
    assert math.isclose(float(np.nansum(system.routing * exact.relative_delay)), system.concurrency - 1,
                        rel_tol=1e-9)
    trace = aq.simulate(system, 20000, seed=0)
    trace.verify()
    est = aq.estimate(trace)
    assert math.isfinite(est.throughput.mean) and est.throughput.half_width > 0
    if name in EXACT:
        for e, x in [(est.throughput, exact.throughput)] + list(zip(est.relative_delay, exact.relative_delay)):
            assert abs(e.mean - x) <= 2.5 * e.half_width, (e, x)
    assert cli(["analyze", str(EX / name), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert math.isclose(out["throughput"], exact.throughput, rel_tol=1e-12)


def test_empirical_law_reads_the_csv_next_to_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    system = aq.load_system(EX / "availability_empirical.toml")
    seconds = np.loadtxt(EX / "compute_times.csv", delimiter=",", skiprows=1, usecols=1)
    laptop, measured = system.clients[0].compute.law, system.clients[1].compute.law
    assert laptop.name == measured.name == "empirical"
    np.testing.assert_allclose(measured.samples, seconds)  # no rate: the durations as measured
    np.testing.assert_allclose(laptop.samples, seconds / seconds.mean())  # rate 1: rescaled to mean 1
    assert [c.availability is not None for c in system.clients] == [False, False, True, True]
    assert system.clients[3].availability.start_on is False


def test_run_configuration_trains_in_seconds(tmp_path):
    cfg = aq.load_config(EX / "run.toml")
    assert cfg.data.dataset == "digits" and cfg.routing.kind == "optimal" and cfg.run.updates == 600
    res = aq.train(EX / "run.toml", output=str(tmp_path / "run"))
    assert res.complete and res.arrivals == 600
    p = res.routing
    assert p[:5].min() > p[5:].max()  # the wall-clock optimum sends more tasks to the fast group
    assert res.final_accuracy > 0.5  # digits has 10 classes: chance is 0.1
    assert (tmp_path / "run" / "results.json").is_file()


def test_optimal_routing_script(tmp_path):
    proc = run_script("optimal_routing.py", str(EX / "flat.toml"), "--concurrency-range", "1:6",
                      "--objectives", "wallclock,max-throughput", "--json", "out.json", cwd=tmp_path)
    res = json.loads((tmp_path / "out.json").read_text())
    assert set(res) == {"wallclock", "max-throughput"} and "wallclock" in proc.stdout
    for r in res.values():
        assert math.isclose(sum(r["routing"]), 1.0, rel_tol=1e-9) and 1 <= r["concurrency"] <= 6
    w = res["wallclock"]
    assert w["objective_value"] <= w["baseline"]["objective_value"]  # no worse than uniform routing
    t = res["max-throughput"]
    assert t["concurrency"] == 6 and t["throughput"] >= t["baseline"]["throughput"]


def test_paper_figures_script(tmp_path):
    run_script("paper_figures.py", "--output", "figs", "--points", "6", "--max-concurrency", "8", cwd=tmp_path)
    out = tmp_path / "figs"
    names = ["delay_vs_routing", "concurrency_sweep", "routing_vs_speed", "energy_pareto"]
    for name in names:
        assert (out / f"{name}.png").stat().st_size > 1000
    d = json.loads((out / "delay_vs_routing.json").read_text())
    np.testing.assert_allclose(d["mean_delay"], 9.0, rtol=1e-9)  # sum_i p_i E[D_i] = m - 1, m = 10
    s = json.loads((out / "concurrency_sweep.json").read_text())
    assert s["m"] == list(range(1, 9)) and np.all(np.diff(s["throughput_uniform"]) > 0)
    assert all(o <= u * (1 + 1e-9) for o, u in zip(s["time_to_accuracy_optimal"], s["time_to_accuracy_uniform"]))


def test_validation_run_script(tmp_path):
    proc = run_script("validation_run.py", "--output", "grid", cwd=tmp_path)
    cells = sorted((tmp_path / "grid" / "cells").glob("*.json"))
    assert len(cells) == 4  # tiny preset, one seed: 3 routings with Generalized AsyncSGD + FedBuff
    assert (tmp_path / "grid" / "report.md").read_text().startswith("# ")
    rows = [ln for ln in proc.stdout.splitlines() if "generalized-asyncsgd" in ln or "fedbuff" in ln]
    assert len(rows) == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EX / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))  # the kernel imports this checkout
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    out = tmp_path / "tour_outputs"
    for f in ("sweep/sweep.csv", "sweep/sweep_concurrency.pdf", "schedule/schedule_timeline.png",
              "plots/runs_curves.png", "plots/runs_curves.json"):
        assert (out / f).is_file(), f
    assert len(list((out / "runs").glob("*/results.json"))) == 4
    legends = json.loads((out / "plots" / "runs_curves.json").read_text())["differing_keys"]
    assert "routing.kind" in legends  # the legend names what differs: the routing
    assert "paired by seed" in text and "routing.kind = optimal" in text
