"""Backends (serial, process, Ray): identical results, and a sweep killed midway resumes to the
same final results."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aflqueue import System, ValidationError
from aflqueue.parallel import pmap
from aflqueue.sim import simulate_replications
from validation.grid.experiment import PRESETS, load_cells, run_grid

S = System.from_rates([1.0, 0.5, 0.2], [0.5, 0.3, 0.2], 4)


def _square(x):
    return x * x


def _refuse(x):
    raise ValidationError("jobs[0].lr", f"must be a number > 0 (got {x})")


def same_traces(a, b):
    return all(np.array_equal(x.completion_time, y.completion_time, equal_nan=True)
               and np.array_equal(x.client, y.client) for x, y in zip(a, b))


def test_pmap_order_and_callbacks():
    seen = []
    out = pmap(_square, [3, 1, 2], on_result=lambda i, r: seen.append((i, r)))
    assert out == [9, 1, 4] and sorted(seen) == [(0, 9), (1, 1), (2, 4)]
    assert pmap(_square, [], backend="process") == []
    with pytest.raises(ValidationError, match="backend"):
        pmap(_square, [1], backend="threads")
    with pytest.raises(ValidationError, match="workers"):
        pmap(_square, [1], backend="process", workers=0)


def test_bad_input_in_a_worker_process_arrives_as_itself():
    """A ValidationError raised in a worker comes back whole (field and detail), not as a broken
    pool: the default exception pickling calls __init__ with the formatted message only."""
    with pytest.raises(ValidationError) as err:
        pmap(_refuse, [-1.0], backend="process", workers=1)
    assert err.value.field == "jobs[0].lr" and err.value.detail == "must be a number > 0 (got -1.0)"


def test_replications_identical_across_backends():
    serial = simulate_replications(S, 3000, [1, 2, 3])
    assert same_traces(serial, simulate_replications(S, 3000, [1, 2, 3], backend="process", workers=2))


def ray_processes() -> list:
    psutil = pytest.importorskip("psutil")
    names = ("raylet", "gcs_server", "ray::")
    return [p for p in psutil.Process().children(recursive=True) if any(n in " ".join(p.cmdline()) for n in names)]


@pytest.mark.ray
def test_replications_identical_on_ray():
    """On a Ray instance the caller started (the toolkit never starts one): the same traces."""
    ray = pytest.importorskip("ray")
    serial = simulate_replications(S, 3000, [1, 2, 3])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert same_traces(serial, simulate_replications(S, 3000, [1, 2, 3], backend="ray"))
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_no_local_ray_instance_is_started():
    """Ray's servers listen on every interface whatever node address they are given, so the toolkit
    refuses to start a local instance: one line naming --address, and no Ray process, no listening
    socket left behind."""
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")

    def listening() -> set:
        ours = {psutil.Process().pid} | {p.pid for p in psutil.Process().children(recursive=True)}
        return {c.laddr for c in psutil.net_connections(kind="inet") if c.status == "LISTEN" and c.pid in ours}

    before = listening()
    with pytest.raises(ValidationError, match="address.*every network interface"):
        pmap(_square, [1, 2], backend="ray")
    with pytest.raises(ValidationError, match="workers"):
        pmap(_square, [1, 2], backend="ray", workers=2, address="127.0.0.1:1")
    assert not ray_processes()
    assert listening() <= before


def measured(records):
    return {r["id"]: (r["measured"]["final_accuracy"], r["measured"]["final_loss"], r["measured"]["arrivals"])
            for r in records}


def test_killed_sweep_resumes_to_the_same_results(tmp_path):
    out = tmp_path / "grid"
    # the grid study's command (validation/grid/run.py) as the workload of a resumable sweep
    script = Path(__file__).resolve().parents[1] / "validation" / "grid" / "run.py"
    cmd = [sys.executable, str(script), "--preset", "tiny", "--seeds", "1", "--output", str(out),
           "--report", str(tmp_path / "r.md"), "--figures", str(tmp_path / "f"), "--backend", "process",
           "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list((out / "cells").glob("*.json")):
            time.sleep(0.2)
        assert list((out / "cells").glob("*.json")), "no cell finished before the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes, mid-sweep
        proc.wait()
    done_after_kill = len(list((out / "cells").glob("*.json")))
    assert 1 <= done_after_kill < 4
    (out / "cells" / "half_written.json.tmp123").write_text("{")  # what a kill mid-write leaves: ignored
    resumed = run_grid(PRESETS["tiny"], out, seeds=1, progress=None)
    clean = run_grid(PRESETS["tiny"], tmp_path / "clean", seeds=1, progress=None)
    assert len(resumed) == 4 and measured(resumed) == measured(clean)
    assert len(load_cells(out)) == 4


def test_unreachable_ray_address_fails_fast():
    from aflqueue.parallel import check_ray_address

    t0 = time.perf_counter()
    with pytest.raises(ValidationError, match="no Ray cluster answers") as e:
        check_ray_address("127.0.0.1:1")  # nothing listens: refused at once
    assert "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValidationError, match="HOST:PORT"):
        check_ray_address("headnode")
    with pytest.raises(ValidationError, match="address"):
        pmap(_square, [1, 2], backend="ray", address="127.0.0.1:1")


