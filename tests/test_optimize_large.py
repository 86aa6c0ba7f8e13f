"""Long optimisations: the compiled MVA kernel (first cotangent fused into the serial sweep) gives
the numpy recursion's bits at every population, progress lines read the run without changing it
(and go to stderr only), and SIGTERM during a long ``aflqueue optimize`` -- most of whose time is
spent inside the compiled kernel -- ends it as an interruption: one line, exit status 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import aflqueue.optimization as opt
from aflqueue import System
from aflqueue.cli import main
from aflqueue.optimization import OptimizationProblem, optimize
from aflqueue.queueing.mva import mva

FIELDS = ("throughput", "log_normalizing_constants", "queue_lengths", "queue_lengths_prev", "cotangent_dots",
          "cross_moments", "cross_moments_prev", "history")


@pytest.mark.parametrize("q", [1, 2, 5])
@pytest.mark.parametrize("m", [1, 2, 3, 61])
def test_compiled_kernel_gives_the_numpy_recursions_bits(m, q):
    """The fused kernel finishes row 0 of Z one step late and after the loop: the small populations
    (nothing late yet at m = 1, one late step at m = 2) and other rows must still match bit for bit."""
    rng = np.random.default_rng(10 * m + q)
    S = 23
    demands, is_delay = np.exp(rng.uniform(-4, 4, S)), rng.random(S) < 0.3
    C = rng.normal(size=(q, S))  # signed cotangents, as a gradient's weights can be
    for history in (False, True):
        a = mva(demands, is_delay, m, cotangents=C, history=history, backend="numpy")
        b = mva(demands, is_delay, m, cotangents=C, history=history, backend="numba")
        assert b.backend == "numba"
        for k in FIELDS:
            x, y = getattr(a, k), getattr(b, k)
            assert (x is None) == (y is None) and (x is None or x.tobytes() == y.tobytes()), (k, history)


def _without_time(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "wall_time"}


@pytest.mark.parametrize("objective, kw", [
    ("wall-clock", {}),
    ("max-throughput", {"p_max": 0.3}),
    ("tradeoff", {"concurrency": (2, 6)}),  # the references are optimised first, with their own lines
    ("per-update", {"cap": 2.0, "choose_mix": True, "concurrency": (3, 5)}),
])
def test_progress_lines_read_the_run_without_changing_it(monkeypatch, objective, kw):
    system = System.from_rates([3.0, 1.5, 1.5, 0.6, 0.25, 0.1], concurrency=4)
    problem = OptimizationProblem(system, objective, **kw)
    quiet = optimize(problem)
    monkeypatch.setattr(opt, "PROGRESS_SECONDS", 0.0)  # a line at every evaluation
    lines: list[str] = []
    loud = optimize(problem, progress=lines.append)
    assert json.dumps(_without_time(loud.to_dict())) == json.dumps(_without_time(quiet.to_dict()))
    assert len(lines) >= loud.evaluations
    assert all(line.startswith("optimize ") and ", best objective " in line for line in lines)
    mine = [line for line in lines if line.startswith(f"optimize {objective}:")]
    best = [float(line.rsplit(" ", 1)[1]) for line in mine]
    # the best value reported is a value the run evaluated: never worse than the answer (both as printed)
    answer = float(f"{loud.objective_value:.6g}")
    assert (max(best) >= answer) if objective == "max-throughput" else (min(best) <= answer)
    if objective == "tradeoff":
        assert any(line.startswith("optimize energy:") for line in lines)
        assert any(line.startswith("optimize time-to-accuracy:") for line in lines)
    if "concurrency" not in kw:  # one m: the starts are announced in order, their evaluations counted anew
        starts = [int(line.split("start ")[1].split(" of")[0]) for line in mine if "start " in line]
        assert starts == sorted(starts) and set(starts) == set(range(1, loud.starts + 1))
        assert all(f"start {k} of {loud.starts}, evaluation 1," in " ".join(mine) for k in range(1, loud.starts + 1))


def test_aq_optimize_passes_progress_on(monkeypatch):
    import aflqueue as aq

    monkeypatch.setattr(opt, "PROGRESS_SECONDS", 0.0)
    lines: list[str] = []
    res = aq.optimize(System.from_rates([2.0, 1.0, 0.5, 0.1], concurrency=3), "per-update", progress=lines.append)
    assert len(lines) >= res.evaluations and all(x.startswith("optimize per-update: m = 3, ") for x in lines)


def test_cli_progress_goes_to_stderr_and_quiet_silences_it(monkeypatch, capsys):
    monkeypatch.setattr(opt, "PROGRESS_SECONDS", 0.0)
    argv = ["optimize", "--rates", "2,1,0.5,0.1", "--concurrency", "3", "--json"]
    assert main(argv + ["--quiet"]) == 0
    quiet = capsys.readouterr()
    assert main(argv) == 0
    loud = capsys.readouterr()
    assert quiet.err == ""
    lines = loud.err.splitlines()
    assert lines and all(line.startswith("optimize wall-clock: m = 3, ") for line in lines)
    assert _without_time(json.loads(loud.out)) == _without_time(json.loads(quiet.out))


def test_sigterm_during_a_long_optimize_is_an_interruption(tmp_path):
    """n = 200 at m = 100000: each evaluation is ~20 ms inside the compiled kernel against well under
    a millisecond of Python, so the signal nearly always lands in the kernel, where CPython reports it
    as a SystemError caused by the KeyboardInterrupt; the CLI must say "interrupted" all the same."""
    rates = ",".join(f"{x:.6g}" for x in np.random.default_rng(0).lognormal(0, 1, 200))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from aflqueue.cli import main; sys.exit(main())",
                             "optimize", "--rates", rates, "--concurrency", "100000", "--p-min", "0", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()  # the first progress line: the optimisation is under way
        assert first.startswith("optimize wall-clock: m = 100000, start 1 of 4, evaluation "), first
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and out == ""
    lines = err.splitlines()
    assert lines[-1] == "interrupted", err
    assert all(line.startswith("optimize wall-clock: ") for line in lines[:-1]), err
