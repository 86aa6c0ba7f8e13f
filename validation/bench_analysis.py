"""Benchmark: full exact analysis with gradient against LINE's ``pfqn_mva`` and a throughput-only MVA.

Two named baselines, both single-class exact MVA on the same demands ``rho_i = p_i / mu_i``:

* **LINE** (issues 25 and 28): ``pfqn_mva`` of the LINE solver's Python package
  (``pip install line-solver``, imported as ``line_solver.api.pfqn.pfqn_mva``; measured with
  line-solver 3.0.8.0), which returns throughput, queue lengths, utilisations and residence
  times. Targets: ``aq.analyze(system, gradient=True)`` with the default backend at most 0.5x
  LINE's time at ``n = m = 1000`` and at most 1x at ``n = 1000, m = 10^4``.
* **textbook** (issue 2): a vectorised numpy MVA computing the throughput only. Target: the
  full analysis within 1.5x of it at ``n = m = 1000``.

The contenders are timed in this one process after a first call each (which loads numba and
the compiled kernel from its disk cache; that one-time cost is printed too). The machine is
shared and noisy, so every repeat runs all contenders in turn (interleaved) and the medians are
compared; the ratios are what count. Every contender's throughput is checked against the
textbook baseline first (relative 1e-10), and LINE's queue lengths against ours.

    python validation/bench_analysis.py [--cases 1000x1000,1000x10000] [--repeats 9] [--json out.json]

Without line-solver installed the LINE rows are left out, with a one-line note.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from aflqueue import System
from aflqueue.errors import OneLineArgumentParser, ValidationError, require
from aflqueue.io import atomic_write_json
from aflqueue.queueing import analyze, metrics_vjp, network_of
from aflqueue.queueing.mva import auto_backend

#: acceptance: default analysis with gradient over LINE's pfqn_mva, per (n, m)
LINE_TARGETS = {(1000, 1000): 0.5, (1000, 10_000): 1.0}
#: issue 2: full analysis over the textbook throughput-only MVA at n = m = 1000
TEXTBOOK_TARGET = 1.5


def baseline_mva_throughput(rho: np.ndarray, m: int) -> float:
    """The textbook baseline: vectorised MVA, throughput only."""
    q = np.zeros_like(rho)
    x = 0.0
    for k in range(1, m + 1):
        r = rho * (1.0 + q)
        x = k / r.sum()
        q = x * r
    return x


def line_pfqn_mva() -> Callable[..., Any] | None:
    """LINE's ``pfqn_mva`` (line-solver package), or None when it is not installed."""
    try:
        from line_solver.api.pfqn import pfqn_mva
    except ImportError:
        return None
    return pfqn_mva


def full_analysis(system: System, backend: str = "auto"):
    """Throughput, E[X_i], E[D_i] for all clients, d lambda/dp and d log G/dp (one MVA pass)."""
    return analyze(system, gradient=True, backend=backend)


def full_analysis_with_delay_vjp(system: System, backend: str = "auto"):
    """As above plus the exact gradient of the staleness term sum_i E[D_i] / (n^2 p_i) of the proxy."""
    a = analyze(system, gradient=True, backend=backend)
    n = system.n
    g = metrics_vjp(system, d_relative_delay=1.0 / (n * n * system.routing), backend=backend)
    return a, g


def time_it(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(n: int, m: int, repeats: int, pfqn_mva: Callable[..., Any] | None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n))
    p = rng.dirichlet(np.ones(n))
    system = System.from_rates(rates, p, m)
    rho = p / rates
    net = network_of(system)
    contenders: dict[str, Callable[[], Any]] = {
        "textbook_throughput_only": lambda: baseline_mva_throughput(rho, m),
        "analysis_with_gradient": lambda: full_analysis(system),
        "analysis_with_gradient_numpy": lambda: full_analysis(system, "numpy"),
        "analysis_with_gradient_numba": lambda: full_analysis(system, "numba"),
        "analysis_with_gradient_and_delay_vjp": lambda: full_analysis_with_delay_vjp(system),
    }
    if pfqn_mva is not None:
        contenders["line_pfqn_mva"] = lambda: pfqn_mva(rho, np.array([m]))
    # first calls: same-answer checks, and the one-time cost (numba import and kernel load)
    first = {k: time_it(fn) for k, fn in contenders.items()}
    lam_base = baseline_mva_throughput(rho, m)
    for k in ("analysis_with_gradient", "analysis_with_gradient_numpy", "analysis_with_gradient_numba"):
        a = contenders[k]()
        assert abs(a.throughput - lam_base) <= 1e-10 * lam_base, k
    assert contenders["analysis_with_gradient"]().throughput == contenders["analysis_with_gradient_numpy"]().throughput
    if pfqn_mva is not None:
        XN, _, QN, *_ = pfqn_mva(rho, np.array([m]))
        ours = contenders["analysis_with_gradient"]()
        assert abs(float(XN[0, 0]) - ours.throughput) <= 1e-10 * ours.throughput
        np.testing.assert_allclose(QN[:, 0], ours.mean_queue_lengths, rtol=1e-9)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for k, fn in contenders.items():
            times[k].append(time_it(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    row: dict[str, Any] = {"n": n, "m": m, "repeats": repeats,
                           "auto_backend": auto_backend(net.size, m),
                           "first_call_s": first, "median_s": med}
    row["ratio_to_textbook"] = {k: med[k] / med["textbook_throughput_only"] for k in contenders}
    if pfqn_mva is not None:
        row["ratio_to_line"] = {k: med[k] / med["line_pfqn_mva"] for k in contenders}
    return row


def report(row: dict) -> list[str]:
    n, m = row["n"], row["m"]
    med, first = row["median_s"], row["first_call_s"]
    lines = [f"n = {n}, m = {m} ({row['repeats']} interleaved repeats; medians; default backend here: "
             f"{row['auto_backend']})"]
    for k in med:
        r_line = row.get("ratio_to_line", {}).get(k)
        lines.append(f"    {k:<40} {med[k] * 1e3:9.2f} ms   first call {first[k] * 1e3:8.1f} ms"
                     f"   vs textbook {row['ratio_to_textbook'][k]:5.2f}x"
                     + (f"   vs LINE {r_line:5.2f}x" if r_line is not None else ""))
    if "ratio_to_line" in row and (n, m) in LINE_TARGETS:
        r = row["ratio_to_line"]["analysis_with_gradient"]
        target = LINE_TARGETS[(n, m)]
        lines.append(f"    aq.analyze(gradient=True) / LINE pfqn_mva = {r:.2f}x (target <= {target}x: "
                     f"{'met' if r <= target else 'NOT met'})")
    if n == m == 1000:
        r = row["ratio_to_textbook"]["analysis_with_gradient"]
        lines.append(f"    aq.analyze(gradient=True) / textbook throughput-only MVA = {r:.2f}x "
                     f"(target <= {TEXTBOOK_TARGET}x: {'met' if r <= TEXTBOOK_TARGET else 'NOT met'})")
    return lines


def parse_cases(text: str) -> list[tuple[int, int]]:
    """``"1000x1000,1000x10000"`` -> ``[(1000, 1000), (1000, 10000)]`` (``n >= 1``, ``m >= 1``)."""
    cases = []
    for case in text.split(","):
        n, _, m = case.strip().partition("x")
        require(n.isdigit() and m.isdigit() and int(n) >= 1 and int(m) >= 1, "cases",
                f"each case is NxM with integers N, M >= 1 (got {case!r})")
        cases.append((int(n), int(m)))
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    ap = OneLineArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="1000x1000,1000x10000", help="comma-separated n x m, e.g. 1000x1000")
    ap.add_argument("--repeats", type=int, default=9, help="interleaved repeats per case (>= 1)")
    ap.add_argument("--json", help="write results to this file")
    try:
        args = ap.parse_args(argv)
        cases = parse_cases(args.cases)
        require(args.repeats >= 1, "repeats", f"must be >= 1 (got {args.repeats})")
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pfqn_mva = line_pfqn_mva()
    if pfqn_mva is None:
        print("LINE baseline left out: line-solver is not installed (pip install line-solver)", file=sys.stderr)
    rows = []
    for n, m in cases:
        reps = args.repeats if m <= 2000 else max(3, (args.repeats + 1) // 2)
        row = bench(n, m, reps, pfqn_mva)
        rows.append(row)
        print("\n".join(report(row)), flush=True)
    if args.json:
        try:
            atomic_write_json(args.json, rows, indent=2)
        except ValidationError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
