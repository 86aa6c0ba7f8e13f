"""validation/gpu_check.py: bad input, and a small CPU dry run of its parts (the GPU run itself
happens on a lent device; validation/GPU_CHECK.md)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "validation" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(args, tmp_path, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args", [
    ["--device", "gpu"], ["--bogus"], ["--parts", "environment,lunch"], ["--budget", "0"],
    ["--part-budget", "benchmark"], ["--part-budget", "bench=3"], ["--bench-models", "mlp,vgg"],
    ["--bench-concurrency", "100,x"], ["--bench-concurrency", "0"], ["--bench-channels", "8"],
    ["--bench-updates", "0"], ["--profile", "cnn28,vgg"], ["--agreement-cases", "resnet18"],
    ["--grid-preset", "huge"], ["--grid-cells", "digits__nowhere__s0"], ["--threads", "0"],
    ["--budget", "nan"], ["--bench-seconds", "-1"],
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args):
    assert load().main(["--device", "cpu", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()  # nothing written


def test_bad_input_from_the_shell_script(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "validation" / "gpu_check.sh"), "--device", "cpu", "--frobnicate"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr == "gpu_check: error: unrecognized arguments: --frobnicate\n"


def test_cuda_without_a_cuda_device_is_bad_input(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run(["--out", str(tmp_path / "o")], tmp_path, timeout=120)
    assert r.returncode == 2 and "no CUDA device" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_arguments_quick_defaults_and_budgets():
    g = load()
    a = g.parse_args(["--device", "cpu", "--quick", "--bench-models", "mlp", "--out", "x"])
    assert a.bench_models == ["mlp"]  # an explicit flag beats --quick's default
    assert a.bench_concurrency == [4] and a.grid_preset == "tiny" and a.profile == ["mlp"]
    assert a.parts == list(g.PARTS)
    b = g.parse_args(["--device", "cpu", "--budget", "225", "--part-budget", "profile=7", "--parts", "profile,environment"])
    assert b.parts == ["environment", "profile"]  # always in the fixed order
    assert b.budgets["profile"] == 7 and b.budgets["benchmark"] == pytest.approx(g.BUDGETS["benchmark"] / 2)
    assert sum(g.BUDGETS.values()) <= 480  # the whole check in about 8 minutes on the GPU
    assert len(g.GRID_CELLS) >= 2 and all((ROOT / "validation/grid/results/default/cells" / f"{c}.json").is_file()
                                          for c in g.GRID_CELLS)  # the default slice has committed CPU results


@pytest.mark.slow
def test_cpu_dry_run_writes_every_section_and_survives_a_failing_part(tmp_path):
    """environment + benchmark + profile on the CPU, tiny sizes; then the benchmark is given no
    time, so it fails, and the part after it still runs and is reported."""
    out = tmp_path / "out"
    r = run(["--device", "cpu", "--quick", "--out", str(out), "--parts", "environment,benchmark,profile",
             "--bench-models", "mlp", "--profile", "auto"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((out / "gpu_check.json").read_text())
    assert rep["passed"] is True and rep["device"] == "cpu"
    env = rep["environment"]
    assert env["status"] == "ok" and env["versions"]["torch"] and env["cuda_available"] in (True, False)
    assert len(env["source_digest"]) == 16
    (row,) = rep["benchmark"]["rows"]
    assert row["model"] == "mlp" and row["concurrency"] == 4 and row["updates_serial"] == row["updates_batched"] == 8
    assert row["serial_updates_per_s"] > 0 and row["speedup"] == pytest.approx(
        row["batched_updates_per_s"] / row["serial_updates_per_s"])
    assert row["final_loss_rel_diff"] < 1e-4  # same trace and minibatches in both modes
    # auto: the mlp's CPU ratio is below 5x, so it is profiled, serial and batched
    assert [x["mode"] for x in rep["profile"]["runs"]] == ["serial", "batched"]
    files = sorted(p.name for p in out.iterdir())
    assert all(p.is_file() for p in out.iterdir()) and len(files) <= 8  # what the device tool brings back
    assert {"gpu_check.json", "gpu_check.log", "profile.txt"} <= set(files)
    assert "benchmark: PASS" in (out / "gpu_check.log").read_text()

    r = run(["--device", "cpu", "--quick", "--out", str(out), "--parts", "benchmark,profile", "--bench-models", "mlp",
             "--part-budget", "benchmark=0.5"], tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    rep = json.loads((out / "gpu_check.json").read_text())
    assert "environment" not in rep  # a fresh report, not the last one's
    assert rep["passed"] is False and rep["verdicts"]["benchmark"]["passed"] is False
    assert rep["benchmark"]["rows"][0]["skipped"] == "time budget"
    assert rep["profile"]["status"] == "ok" and len(rep["profile"]["runs"]) == 2  # the next part still ran
    assert not list(out.glob("*.tmp*"))
