"""``aflqueue train --tensorboard DIR``: event files that TensorBoard's own reader parses, holding the
run's curves and per-arrival staleness exactly as results.json and updates.csv have them; off by
default, and the run is the same with or without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = ["--set", 'data.dataset="synthetic"', "--set", "data.clients=3", "--set",
        'data.options={"num_samples": 200, "num_features": 6, "num_classes": 2}', "--set", "run.eval_every=15",
        "--updates", "60", "--quiet"]


def read_events(folder: Path) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def test_event_files_hold_the_curves_and_staleness(tmp_path):
    logs, out = tmp_path / "tb", tmp_path / "run"
    assert main(["train", *SETS, "-o", str(out), "--tensorboard", str(logs)]) == 0
    assert list(logs.glob("events.out.tfevents.*"))
    ea = read_events(logs)
    tags = ea.Tags()
    assert {"eval/test_accuracy", "eval/test_loss", "eval/simulated_time", "arrival/staleness",
            "arrival/relative_delay", "arrival/client"} <= set(tags["scalars"])
    assert "arrival/staleness_histogram" in tags["histograms"]
    res = json.loads((out / "results.json").read_text())
    acc = ea.Scalars("eval/test_accuracy")
    assert [e.step for e in acc] == res["updates"]
    np.testing.assert_allclose([e.value for e in acc], res["test_accuracy"], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in ea.Scalars("eval/test_loss")], res["test_loss"], rtol=1e-6)
    np.testing.assert_allclose([e.wall_time for e in acc], res["time"], rtol=1e-12)  # the simulated time
    log = np.loadtxt(out / "updates.csv", delimiter=",", skiprows=1)
    st = ea.Scalars("arrival/staleness")
    assert [e.step for e in st] == log[:, 0].astype(int).tolist() == list(range(1, 61))
    np.testing.assert_array_equal([e.value for e in st], log[:, 4])
    np.testing.assert_array_equal([e.value for e in ea.Scalars("arrival/relative_delay")], log[:, 3])
    np.testing.assert_array_equal([e.value for e in ea.Scalars("arrival/client")], log[:, 2])
    hist = ea.Histograms("arrival/staleness_histogram")
    assert [h.step for h in hist] == res["updates"]
    assert sum(h.histogram_value.num for h in hist) == 60  # every arrival in exactly one histogram
    # off by default, and the run does not depend on it
    plain = aq.train(output=str(tmp_path / "plain"), data={"dataset": "synthetic", "clients": 3, "options": {
        "num_samples": 200, "num_features": 6, "num_classes": 2}}, run={"updates": 60, "eval_every": 15})
    assert plain.curves["test_accuracy"] == res["test_accuracy"] and plain.curves["time"] == res["time"]
    assert not list((tmp_path / "plain").rglob("events.out.tfevents.*"))


def test_without_tensorboard_the_flag_says_what_to_install(tmp_path):
    code = f"""
import importlib.abc, sys, contextlib, io
class B(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorboard":
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, B())
from aflqueue.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["train", "--tensorboard", {str(tmp_path / 'tb')!r}, "-o", {str(tmp_path / 'run')!r}, "--quiet"])
print(code, err.getvalue().strip())
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("2 ") and "pip install 'aflqueue[tensorboard]'" in proc.stdout
    assert not (tmp_path / "run").exists()  # refused before any work
