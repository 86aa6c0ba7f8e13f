"""The top-level Python API: light import, checked arguments, pandas frames, strict JSON, reprs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue import System, ValidationError
from aflqueue._results import MissingDependency, summarize_array
from aflqueue.bounds import ProxyConstants
from aflqueue.optimization import OptimizationProblem
from aflqueue.optimization import optimize as solve

ROOT = Path(__file__).resolve().parents[1]
pd = pytest.importorskip("pandas")

SYSTEM = System.from_rates([1.0, 1.0, 0.1], routing=[0.3, 0.3, 0.4], concurrency=5)
STARVED = System.from_rates([1.0, 0.5, 0.1], routing=[0.6, 0.4, 0.0], concurrency=3)  # client 2 gets no task
MULTI = System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4, downlink_rates=[3, 1, 2], uplink_rates=2.0,
                          uplink_discipline="delay", server_rate=4.0)
HEAVY = ("torch", "numba", "scipy.optimize", "matplotlib", "pandas")


def same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))  # NaN == NaN here


# --------------------------------------------------------------------------- import
def test_import_is_light_and_the_check_sees_heavy_imports():
    code = f"""
import json, sys
heavy = {HEAVY!r}
import aflqueue as aq
after_import = [m for m in heavy if m in sys.modules]
s = aq.System.from_rates([1, 2, 3])
repr(s), aq.analyze(s).to_dict(), repr(aq.analyze(s))
after_analyze = [m for m in heavy if m in sys.modules]
aq.TrainResult  # positive control: this one imports torch
print(json.dumps([after_import, after_analyze, "torch" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    after_import, after_analyze, control = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_import == [] and after_analyze == []
    assert control is True


def test_top_level_names_resolve_and_py_typed_ships():
    for name in aq.__all__:
        assert getattr(aq, name) is not None, name
        assert name in dir(aq)
    assert aq.Analysis is aq.queueing.analysis.Analysis and aq.Trace is aq.sim.trace.Trace
    import importlib
    import inspect

    for module in ("optimization", "calibration", "pilot", "recommendation", "comparison", "pipeline"):
        importlib.import_module(f"aflqueue.{module}")  # importing a module never shadows a top-level function
    for name in ("optimize", "calibrate", "predict", "recommend", "validate", "train"):
        assert inspect.isfunction(getattr(aq, name)), name
    assert aq.OptimizationProblem is OptimizationProblem
    assert aq.analyze is aq.analyze  # resolved once
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aq.nope  # noqa: B018
    assert (Path(aq.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["aflqueue"]
    extras = project["project"]["optional-dependencies"]
    assert any(r.startswith("pandas") for r in extras["pandas"]) and any(r.startswith("pandas") for r in extras["test"])


# --------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("bad", [[1, 2, 3], "system.toml", None, np.array([1.0, 2.0]), {"rates": [1, 2]}])
@pytest.mark.parametrize("name", ["analyze", "simulate", "routing_gradients", "routing_jacobians", "metrics_vjp",
                                  "optimize"])
def test_anything_but_a_system_is_one_line_naming_what_to_pass(name, bad):
    args = (bad, 10) if name == "simulate" else (bad,)
    with pytest.raises(ValidationError) as e:
        getattr(aq, name)(*args)
    msg = str(e.value)
    assert e.value.field == "system" and "\n" not in msg
    assert f"got {type(bad).__name__}" in msg and "aflqueue.System" in msg
    assert ("load_system('system.toml')" in msg) if isinstance(bad, str) else ("System.from_rates([1, 2, 3])" in msg)


def test_estimate_and_train_check_their_argument():
    with pytest.raises(ValidationError, match=r"^trace: expected an aflqueue Trace .* got list$"):
        aq.estimate([1, 2, 3])
    with pytest.raises(ValidationError, match=r"^config: expected a path .* got int$"):
        aq.train(3)


def test_checked_functions_pass_everything_through():
    a, b = aq.analyze(MULTI, method="convolution", gradient=True), aq.queueing.analyze(MULTI, "convolution", True)
    assert a.throughput == b.throughput and a.method == "convolution"
    same(a.gradients.d_throughput, b.gradients.d_throughput)
    same(aq.metrics_vjp(SYSTEM, d_relative_delay=[1.0, 0.0, 2.0]),
         aq.queueing.metrics_vjp(SYSTEM, d_relative_delay=[1.0, 0.0, 2.0]))
    t = aq.simulate(SYSTEM, 2000, seed=4)
    assert t.digest() == aq.sim.simulate(SYSTEM, 2000, seed=4).digest()
    assert aq.estimate(t, batches=5).to_dict() == aq.sim.estimate(t, batches=5).to_dict()
    import pickle

    assert pickle.loads(pickle.dumps(aq.analyze)) is aq.analyze


# --------------------------------------------------------------------------- optimize convenience
def test_optimize_convenience_builds_the_same_problem():
    c = {"Delta": 2.3, "L": 0.5, "sigma2": 0.11, "M2": 0.6, "G2": 0.76}
    got = aq.optimize(SYSTEM, "time-to-accuracy", constants=c, p_min=1e-3, concurrency=(1, 8), seed=2)
    ref = solve(OptimizationProblem(SYSTEM, "time-to-accuracy", constants=ProxyConstants(**c), p_min=1e-3,
                                    concurrency=(1, 8)), seed=2)
    same(got.routing, ref.routing)
    assert got.concurrency == ref.concurrency and got.objective_value == ref.objective_value
    fixed = aq.optimize(SYSTEM, concurrency=7)  # default objective wallclock, m fixed at 7
    assert fixed.objective == "wall-clock" and fixed.concurrency == 7 and fixed.problem["concurrency_range"] == [7, 7]
    problem = OptimizationProblem(SYSTEM, "max-throughput")
    same(aq.optimize(problem).routing, solve(problem).routing)


@pytest.mark.parametrize("call, field", [
    (lambda: aq.optimize(OptimizationProblem(SYSTEM), p_min=0.1), "p_min"),
    (lambda: aq.optimize(OptimizationProblem(SYSTEM), "wallclock"), "objective"),
    (lambda: aq.optimize(SYSTEM, step=3), "step"),
    (lambda: aq.optimize(SYSTEM, "fastest"), "objective"),
    (lambda: aq.optimize(SYSTEM, concurrency="5"), "concurrency"),
    (lambda: aq.optimize(SYSTEM, starts=0), "starts"),
    (lambda: aq.optimize(SYSTEM, constants={"Delta": 1, "Z": 2}), "constants"),
])
def test_optimize_bad_input_is_one_line(call, field):
    with pytest.raises(ValidationError) as e:
        call()
    assert e.value.field == field and "\n" not in str(e.value)


def test_train_config_merges_overrides_field_by_field():
    cfg = aq.api.train_config(ROOT / "examples" / "run.toml", output="x", run={"updates": 50}, local={"lr": 0.2})
    base = aq.load_config(ROOT / "examples" / "run.toml")
    assert cfg.output == "x" and cfg.run.updates == 50 and cfg.local.lr == 0.2
    assert cfg.run.eval_every == base.run.eval_every and cfg.local.steps == base.local.steps  # untouched fields kept
    assert cfg.routing.constants == base.routing.constants
    assert aq.api.train_config({"seed": 3}).seed == 3 and aq.api.train_config(cfg) == cfg
    with pytest.raises(ValidationError, match=r"^run\.nope: unknown key"):
        aq.api.train_config(run={"nope": 1})
    with pytest.raises(ValidationError, match=r"^local: a section"):
        aq.api.train_config(local=0.1)


# --------------------------------------------------------------------------- pandas frames
def test_analysis_frames_equal_the_arrays():
    a = aq.analyze(STARVED, gradient=True)
    df = a.to_frame()
    assert list(df.index) == [0, 1, 2] and df.index.name == "client"
    for col in ("routing", "client_throughput", "mean_queue_lengths", "utilization", "mean_response_times",
                "mean_round_trip_times", "relative_delay", "queue_lengths_prev"):
        same(df[col], getattr(a, col))
    same(df["d_throughput"], a.gradients.d_throughput)
    assert math.isnan(df.loc[2, "relative_delay"])  # undefined for the starved client, kept as NaN
    assert df.attrs["throughput"] == a.throughput and df.attrs["concurrency"] == 3
    assert math.isclose(float((df.routing * df.relative_delay).sum()), 2.0, rel_tol=1e-12)  # sum p E[D] = m - 1

    m = aq.analyze(MULTI)
    st = m.stations_frame()
    assert len(st) == m.stations.rate.size and st.index.name == "station"
    assert list(st["stage"]) == list(m.stations.stage) and st["stage"].iloc[-1] == "server"
    assert st["client"].isna().tolist() == [c < 0 for c in m.stations.client]
    same(st["mean_queue_length"], m.stations.mean_queue_length)
    assert math.isclose(float(st["mean_queue_length"].sum()), 4.0, rel_tol=1e-12)  # every task is somewhere
    assert "d_throughput" not in m.to_frame()


def test_simulation_frames_equal_the_estimates_and_the_trace():
    t = aq.simulate(SYSTEM, 5000, seed=1)
    e = aq.estimate(t, warmup=0.1, batches=10)
    df = e.to_frame()
    for col in ("mean_queue_lengths", "utilization", "mean_response_times", "relative_delay"):
        same(df[col], [x.mean for x in getattr(e, col)])
        same(df[f"{col}_lo"], [x.lo for x in getattr(e, col)])
        same(df[f"{col}_hi"], [x.hi for x in getattr(e, col)])
    # independent truths: all m tasks are at the clients (no central server); the largest delay
    assert math.isclose(float(df["mean_queue_lengths"].sum()), 5.0, rel_tol=1e-9)
    up = t.updates()
    k0 = e.warmup_updates
    for i in range(3):
        assert df.loc[i, "delay_max"] == up["relative_delay"][k0:][up["client"][k0:] == i].max()
    assert df.attrs["throughput"] == e.throughput.to_dict() and df.attrs["estimation"] == "batch_means"
    assert list(df.columns[:4]) == ["mean_queue_lengths", "mean_queue_lengths_lo", "mean_queue_lengths_hi",
                                    "utilization"]

    tf = t.to_frame()
    assert len(tf) == len(t) and tf.index.name == "task" and tf.attrs["concurrency"] == 5
    for col, values in t.columns().items():
        if col != "task":
            same(tf[col], values)
    applied = tf[tf.applied_version > 0].sort_values("applied_version")
    assert list(applied.index) == list(t.update_order)


def test_optimization_frames_equal_the_result():
    r = aq.optimize(SYSTEM, "wallclock", p_min=1e-3, concurrency=(2, 6))
    df = r.to_frame()
    same(df["routing"], r.routing)
    same(df["relative_delay"], r.relative_delay)
    same(df["baseline_routing"], np.full(3, 1 / 3))
    assert df.attrs["concurrency"] == r.concurrency and df.attrs["objective"] == "wall-clock"
    prof = r.profile_frame()
    assert list(prof.index) == [2, 3, 4, 5, 6] and prof.index.name == "concurrency"
    assert prof["objective_value"].min() == r.objective_value == prof.loc[r.concurrency, "objective_value"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    res = aq.train(output=str(out), device="cpu", data={"dataset": "synthetic", "clients": 4, "options": {
        "num_samples": 300, "num_features": 8, "num_classes": 3}}, run={"updates": 60, "eval_every": 20})
    return res, out


def test_train_frames_equal_the_curves_the_log_and_the_files(trained):
    res, out = trained
    curves = res.to_frame()
    assert list(curves.columns) == ["time", "updates", "model_version", "test_accuracy", "test_loss"]
    for col in curves.columns:
        same(curves[col], res.curves[col])
    assert list(curves["updates"]) == [20, 40, 60] and curves.attrs["final_accuracy"] == res.final_accuracy
    log = res.log_frame()
    assert list(log.index) == list(range(1, 61)) and log.index.name == "arrival"
    on_disk = pd.read_csv(out / "updates.csv", index_col="arrival")
    pd.testing.assert_frame_equal(log, on_disk, check_dtype=False)
    trace = aq.Trace.load(out / "trace.npz")
    same(log["relative_delay"], trace.updates()["relative_delay"][:60])
    same(log["client"], trace.updates()["client"][:60])
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(res.to_dict()))


def test_without_pandas_every_frame_is_one_line_naming_pip(monkeypatch, trained):
    res, _ = trained
    a, t = aq.analyze(MULTI), aq.simulate(SYSTEM, 500, seed=0)
    e, r = aq.estimate(t, batches=4), aq.optimize(SYSTEM, "max-throughput")
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails as if it were not installed
    calls = [a.to_frame, a.stations_frame, e.to_frame, t.to_frame, r.to_frame, r.profile_frame, res.to_frame,
             res.log_frame]
    for call in calls:
        with pytest.raises(MissingDependency) as info:
            call()
        msg = str(info.value)
        assert isinstance(info.value, ImportError) and isinstance(info.value, ValidationError)
        assert msg.startswith("pandas: ") and "pip install pandas" in msg and "\n" not in msg


# --------------------------------------------------------------------------- JSON and common names
def test_to_dict_is_strict_json_with_nulls_for_undefined_values(trained):
    a = aq.analyze(STARVED).to_dict()
    assert a["relative_delay"][2] is None and a["mean_response_times"][2] is None
    json.dumps(a, allow_nan=False)
    t = aq.simulate(STARVED, 3000, seed=2)
    e = aq.estimate(t, batches=5).to_dict()
    assert e["relative_delay"][2] is None and e["delay_quantiles"][2] is None
    json.dumps(e, allow_nan=False)
    r = aq.optimize(SYSTEM, "max-throughput").to_dict()
    assert r["eta"] is None  # no step size for max-throughput
    json.dumps(r, allow_nan=False)
    res, _ = trained
    broken = type(res)(final_accuracy=float("nan"), final_loss=float("inf"), curves=res.curves,
                       arrivals=res.arrivals, simulated_time=res.simulated_time, log=res.log, costs=res.costs,
                       wall_time=0.0, routing=res.routing, concurrency=res.concurrency, meta=res.meta)
    d = broken.to_dict()
    assert d["final_accuracy"] is None and d["final_loss"] is None and d["arrivals_per_second"] is None
    json.dumps(d, allow_nan=False)


def test_common_field_names_mean_the_same_thing(trained):
    r = aq.optimize(SYSTEM, "wallclock", p_min=1e-3, concurrency=(2, 8))
    exact = aq.analyze(SYSTEM.with_routing(r.routing).with_concurrency(r.concurrency))
    rd, ed = r.to_dict(), exact.to_dict()
    for key in ("routing", "concurrency", "throughput", "relative_delay", "mean_relative_delay"):
        np.testing.assert_allclose(rd[key], ed[key], rtol=1e-10, err_msg=key)
    est = aq.estimate(aq.simulate(SYSTEM, 20000, seed=3)).to_dict()
    assert {"throughput", "relative_delay", "mean_relative_delay", "mean_queue_lengths"} <= set(est)
    lo, hi = est["mean_relative_delay"]["ci"]
    assert lo <= SYSTEM.concurrency - 1 <= hi
    res, _ = trained
    td = res.to_dict()
    assert td["routing"] == res.routing.tolist() == [0.25] * 4 and td["concurrency"] == res.concurrency == 4


# --------------------------------------------------------------------------- reprs
def test_reprs_show_the_essentials_and_stay_short(trained):
    assert repr(SYSTEM) == "System(n=3, rates=[1, 1, 0.1], routing=[0.3, 0.3, 0.4], concurrency=5)"
    big = System.from_rates([1.0] * 5000 + [0.1] * 5000, concurrency=64, downlink_rates=5.0, server_rate=20.0,
                            service="gamma:shape=2")
    assert repr(big) == ("System(n=10000, rates=10000 values in [0.1, 1] (2 distinct), routing=uniform, "
                         "concurrency=64, service=gamma, links=downlink, server_rate=20)")
    assert summarize_array([0.5] * 20) == "20 x 0.5"
    assert summarize_array([1.0, np.nan] * 6) == "12 values in [1, 1] (1 distinct, 6 undefined)"
    a = repr(aq.analyze(SYSTEM))
    assert a.startswith("Analysis (mva, exact): n = 3, m = 5") and "throughput: 0.249997" in a
    assert "mean_relative_delay: 4" in a
    t = aq.simulate(SYSTEM, 20000, seed=0)
    assert len(repr(t)) < 600 and "20000 updates applied" in repr(t)
    e = repr(aq.estimate(t))
    assert "throughput: 0.2" in e and "[" in e.splitlines()[1]  # point estimate and interval
    r = repr(aq.optimize(SYSTEM, "max-throughput"))
    assert "success: True" in r and "objective_value:" in r
    res, _ = trained
    text = repr(res)
    assert len(text) < 800 and "arrivals: 60" in text and "routing: [0.25, 0.25, 0.25, 0.25]" in text
