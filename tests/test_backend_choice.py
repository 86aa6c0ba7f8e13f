"""``backend="auto"``: which MVA backend runs for which size, identical bits on both sides of the
choice, the compiled kernel loaded from numba's disk cache by a new process, and a clean numpy
fallback (same bits, one line on stderr, exit 0) where no cache folder is writable.

The backend that ran is observed (``MVAResult.backend``, or a counting wrapper around the
compiled kernel), never inferred from the rule's constants; the boundary between the two sides
is found by searching :func:`auto_backend`, so the tests hold for any threshold.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue import System
from aflqueue.queueing import _kernels, network_of
from aflqueue.queueing.mva import MVAResult, auto_backend, mva

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("throughput", "log_normalizing_constants", "queue_lengths", "queue_lengths_prev", "history",
          "cotangent_dots", "cross_moments", "cross_moments_prev")


def assert_same_bits(a: MVAResult, b: MVAResult) -> None:
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert (x is None) == (y is None), k
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


def first_compiled_population(stations: int, cotangents: int = 0) -> int:
    """Smallest population for which :func:`auto_backend` picks the compiled kernel (bisection)."""
    lo, hi = 1, 1
    while auto_backend(stations, hi, cotangents) == "numpy":
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if auto_backend(stations, mid, cotangents) == "numba":
            hi = mid
        else:
            lo = mid + 1
    return hi


def random_network(S: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(-4, 4, S)), rng.random(S) < 0.3


# --------------------------------------------------------------------------- the choice
def test_small_problems_run_numpy_and_large_ones_compiled_whatever_is_imported():
    mva(np.ones(3), None, 4, backend="numba")  # the compiled kernel is loaded in this process now
    small = mva(np.array([0.5, 0.2, 0.3]), None, 5)
    large = mva(np.full(1000, 1e-3), None, 1000)  # n = m = 1000, issue 28's size
    assert small.backend == "numpy" and large.backend == "numba"


@pytest.mark.parametrize("S,q", [(1, 0), (40, 0), (40, 2), (1000, 0)])
def test_the_rule_is_monotone_in_size(S, q):
    m0 = first_compiled_population(S, q)
    assert auto_backend(S, m0 - 1, q) == "numpy" and auto_backend(S, m0, q) == "numba"
    assert auto_backend(S, 4 * m0, q) == "numba"
    assert auto_backend(2 * S, m0, q) == "numba" and auto_backend(S, m0, q + 1) == "numba"  # more work: still compiled


@pytest.mark.parametrize("S,q,history,seed", [(1, 0, False, 0), (12, 0, True, 1), (40, 2, False, 2), (7, 1, True, 3)])
def test_identical_bits_on_both_sides_of_the_threshold(S, q, history, seed):
    demands, is_delay = random_network(S, seed)
    C = np.random.default_rng(seed + 100).normal(size=(q, S)) if q else None
    m0 = first_compiled_population(S, q)
    for m, expected in ((m0 - 1, "numpy"), (m0, "numba")):
        auto = mva(demands, is_delay, m, cotangents=C, history=history)
        assert auto.backend == expected
        for backend in ("numpy", "numba"):
            explicit = mva(demands, is_delay, m, cotangents=C, history=history, backend=backend)
            assert explicit.backend == backend
            assert_same_bits(auto, explicit)


def test_history_is_the_same_from_both_backends_and_matches_the_recursion():
    demands, is_delay = random_network(9, 7)
    a = mva(demands, is_delay, 30, history=True, backend="numpy")
    b = mva(demands, is_delay, 30, history=True, backend="numba")
    assert_same_bits(a, b)
    for k in (1, 17, 30):  # row k is E_k[X], the end state of a run to population k
        assert a.history[k].tobytes() == mva(demands, is_delay, k, backend="numba").queue_lengths.tobytes()


def test_analyze_uses_the_compiled_kernel_by_size(monkeypatch):
    calls = []
    kernel = _kernels.mva_cotangent_kernel

    def counting(*args):
        calls.append(args[2])  # the population
        return kernel(*args)

    monkeypatch.setattr(_kernels, "mva_cotangent_kernel", counting)
    rng = np.random.default_rng(3)
    n = 50
    S = network_of(System.from_rates(np.ones(n), None, 1)).size
    m0 = first_compiled_population(S)
    for m, compiled in ((m0 - 1, False), (m0, True), (5, False)):
        s = System.from_rates(np.exp(rng.uniform(-2, 2, n)), rng.dirichlet(np.ones(n)), m)
        calls.clear()
        auto = aq.analyze(s, gradient=True)
        assert calls == ([m] if compiled else [])
        for backend in ("numpy", "numba"):
            other = aq.analyze(s, gradient=True, backend=backend)
            for k in ("throughput", "mean_queue_lengths", "relative_delay", "log_normalizing_constant"):
                assert np.asarray(getattr(auto, k)).tobytes() == np.asarray(getattr(other, k)).tobytes(), k
            assert auto.gradients.d_throughput.tobytes() == other.gradients.d_throughput.tobytes()


def test_gradient_entry_points_follow_the_same_rule(monkeypatch):
    calls = []
    kernel = _kernels.mva_cotangent_kernel
    monkeypatch.setattr(_kernels, "mva_cotangent_kernel", lambda *a: calls.append(a[3].shape[0]) or kernel(*a))
    n = 20
    S = network_of(System.from_rates(np.ones(n), None, 1)).size
    m_big = first_compiled_population(S, 1)
    big = System.from_rates(np.linspace(0.5, 2.0, n), None, m_big)
    small = System.from_rates(np.linspace(0.5, 2.0, n), None, 4)
    for s, compiled in ((small, False), (big, True)):
        calls.clear()
        g = aq.metrics_vjp(s, d_relative_delay=np.ones(n))
        assert calls == ([1] if compiled else [])
        assert g.tobytes() == aq.metrics_vjp(s, d_relative_delay=np.ones(n), backend="numpy").tobytes()
        calls.clear()
        aq.routing_gradients(s)
        assert calls == ([0] if auto_backend(S, s.concurrency) == "numba" else [])


# --------------------------------------------------------------------------- the disk cache
RUN_LARGE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from aflqueue.queueing.mva import mva
    rng = np.random.default_rng(5)
    demands, is_delay = np.exp(rng.uniform(-3, 3, 400)), rng.random(400) < 0.2
    r = mva(demands, is_delay, 2000, history=False)
    out = {"backend": r.backend, "throughput": r.throughput.tobytes().hex(), "q": r.queue_lengths.tobytes().hex()}
    if "aflqueue.queueing._kernels" in sys.modules:
        from aflqueue.queueing._kernels import mva_cotangent_kernel as k
        out["hits"] = sum(k.stats.cache_hits.values())
        out["misses"] = sum(k.stats.cache_misses.values())
    print(json.dumps(out))
""")


def large_reference() -> dict:
    rng = np.random.default_rng(5)
    demands, is_delay = np.exp(rng.uniform(-3, 3, 400)), rng.random(400) < 0.2
    r = mva(demands, is_delay, 2000, backend="numba")
    assert auto_backend(400, 2000) == "numba"  # the subprocess's auto choice is the compiled kernel
    return {"throughput": r.throughput.tobytes().hex(), "q": r.queue_lengths.tobytes().hex()}


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_second_process_loads_the_kernel_from_the_disk_cache(tmp_path):
    cache = tmp_path / "numba_cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(cache))
    first = run_python(RUN_LARGE, env, tmp_path)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    written = snapshot(cache)
    assert any(name.endswith(".nbi") for name in written) and any(name.endswith(".nbc") for name in written)
    second = run_python(RUN_LARGE, env, tmp_path)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["backend"] == b["backend"] == "numba"
    assert a["misses"] == 1 and b["hits"] == 1 and b["misses"] == 0  # compiled once, then loaded
    assert snapshot(cache) == written  # nothing compiled or written by the second process
    ref = large_reference()
    assert a["throughput"] == b["throughput"] == ref["throughput"] and a["q"] == b["q"] == ref["q"]


def unwritable(path: Path) -> None:
    """Make ``path`` (a folder) read-only. Root ignores permission bits, so a regular file also
    stands where numba would create its cache folder: no user can create that folder."""
    path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


@pytest.mark.slow
def test_without_a_writable_cache_folder_analysis_falls_back_to_numpy_in_one_line(tmp_path):
    pkg = tmp_path / "site" / "aflqueue"
    shutil.copytree(ROOT / "aflqueue", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "queueing" / "__pycache__").write_text("")  # the in-tree cache folder cannot be created
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_text("")  # nor ~/.cache/numba
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    for folder in (pkg / "queueing", home):
        unwritable(folder)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(pkg.parent), "HOME": str(home),
           "NUMBA_CACHE_DIR": str(blocked / "numba")}
    code = RUN_LARGE + textwrap.dedent("""
        import aflqueue as aq
        from aflqueue.queueing.approx import approx_analyze
        s = aq.System.from_rates(np.linspace(0.5, 2.0, 300), None, 2000)
        a = aq.analyze(s, gradient=True)
        b = aq.analyze(s, gradient=True, backend="numpy")
        assert a.throughput == b.throughput and a.relative_delay.tobytes() == b.relative_delay.tobytes()
        approx = approx_analyze(aq.System.from_rates([1.0, 2.0, 3.0], None, 5, service="lognormal:cv=1.5"))
        assert approx.throughput > 0  # compiled without a cache: works, slower to start
    """)
    try:
        r = run_python(code, env, tmp_path)
    finally:
        for folder in (pkg / "queueing", home):
            folder.chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 1
    assert "CompiledKernelWarning" in r.stderr and "NUMBA_CACHE_DIR" in r.stderr
    out = json.loads(r.stdout.splitlines()[0])
    assert out["backend"] == "numpy"
    ref = large_reference()  # the compiled kernel's bits, in this process
    assert out["throughput"] == ref["throughput"] and out["q"] == ref["q"]
    assert not list(tmp_path.rglob("*.nbi")) and not list(tmp_path.rglob("*.nbc"))
