"""Simulator: agreement with the exact analysis within confidence intervals, engine identity,
trace invariants, reproducibility, delay distributions, availability, errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aflqueue import System, ValidationError
from aflqueue.cli import main
from aflqueue.laws import law_from_spec
from aflqueue.queueing import analyze
from aflqueue.queueing import ctmc
from aflqueue.sim import Trace, TraceError, delay_distribution, estimate, estimate_replications, simulate
from aflqueue.system import Availability, Client, Stage

Z = 3.5  # |sim - exact| within 3.5 standard errors (99.95%); seeds are fixed, so this is deterministic


def close(est, exact, rel_width=0.06):
    """Exact value inside a widened CI, and the CI narrow enough that the check can fail."""
    se = est.half_width / 1.96
    assert est.half_width <= rel_width * max(abs(exact), 1e-3) + 1e-3, f"CI too wide: {est} vs {exact}"
    return abs(est.mean - exact) <= Z * se + 1e-12


SINGLE = System.from_rates([1.0, 2.0, 0.3, 0.7], [0.4, 0.2, 0.3, 0.1], 5)
MULTI = System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4, downlink_rates=[3, 1, 2], uplink_rates=2.0,
                          uplink_discipline="delay", server_rate=4.0)


def check_against_exact(system, trace):
    trace.verify()
    e = estimate(trace, warmup=0.1, batches=20)
    a = analyze(system)
    assert close(e.throughput, a.throughput)
    for i in range(system.n):
        assert close(e.mean_queue_lengths[i], a.mean_queue_lengths[i]), i
        assert close(e.utilization[i], a.utilization[i]), i
        assert close(e.relative_delay[i], a.relative_delay[i], rel_width=0.1), i
        assert close(e.mean_response_times[i], a.mean_response_times[i], rel_width=0.1), i
    # sum_i p_i E[D_i] = m - 1 holds pathwise up to boundary effects
    assert e.mean_relative_delay.mean == pytest.approx(system.concurrency - 1, abs=0.02)
    return e, a


def test_single_stage_exponential_matches_exact():
    check_against_exact(SINGLE, simulate(SINGLE, 200_000, seed=11, engine="fast"))


def test_multistage_exponential_matches_exact():
    e, a = check_against_exact(MULTI, simulate(MULTI, 60_000, seed=5, engine="simpy"))
    assert close(e.server["mean_queue_length"], a.server["mean_queue_length"], rel_width=0.15)


def test_delay_server_and_fifo_links_match_exact():
    s = System.from_rates([1.0, 0.5], [0.6, 0.4], 6, downlink_rates=[2.0, 0.8], downlink_discipline="fifo",
                          uplink_rates=1.5, uplink_discipline="fifo", server_rate=3.0, server_discipline="delay")
    check_against_exact(s, simulate(s, 40_000, seed=2))


@pytest.mark.parametrize("spec", ["exponential", "lognormal:cv=1.5", "gamma:shape=0.5", "weibull:shape=2",
                                  "pareto:shape=2.5",
                                  {"law": "mixture", "weights": [0.7, 0.3], "components": ["exponential", "gamma:shape=4"]}])
def test_fast_path_and_simpy_give_identical_traces(spec):
    s = System.from_rates([1.0, 2.0, 0.3, 0.7, 5.0], [0.3, 0.2, 0.2, 0.2, 0.1], 7, service=spec)
    a = simulate(s, 3000, seed=4, engine="simpy")
    b = simulate(s, 3000, seed=4, engine="fast")
    for col in ("client", "dispatch_time", "compute_start", "compute_end", "completion_time",
                "dispatch_version", "applied_version"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)


def test_fast_path_statistically_equivalent_with_ties():
    # deterministic service creates simultaneous events; the engines may order ties differently
    s = System.from_rates([1.0, 1.0, 0.5], [0.4, 0.4, 0.2], 6, service="deterministic")
    ea = estimate(simulate(s, 40_000, seed=1, engine="simpy"))
    eb = estimate(simulate(s, 40_000, seed=1, engine="fast"))
    for i in range(3):
        for x, y in ((ea.relative_delay[i], eb.relative_delay[i]), (ea.mean_queue_lengths[i], eb.mean_queue_lengths[i])):
            se = np.hypot(x.half_width, y.half_width) / 1.96
            assert abs(x.mean - y.mean) <= Z * se + 1e-9


def test_same_seed_same_trace_different_seed_different(tmp_path):
    a = simulate(MULTI, 2000, seed=3)
    b = simulate(MULTI, 2000, seed=3)
    c = simulate(MULTI, 2000, seed=4)
    for col in ("client", "completion_time", "uplink_end"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.completion_time, c.completion_time, equal_nan=True)


def test_trace_invariants_and_io(tmp_path):
    t = simulate(MULTI, 3000, seed=1)
    summary = t.verify()
    assert summary.updates == summary.to_dict()["updates"] == 3000 and len(t) == 3000 + MULTI.concurrency
    u = t.updates()
    assert np.all(np.diff(u["time"]) >= 0) and np.all(u["relative_delay"] >= 0)
    # exactly m in flight right after every update
    for k in (10, 500, 2999):
        time_k = u["time"][k]
        in_flight = np.sum((t.dispatch_time <= time_k) & ~(t.completion_time <= time_k))
        assert in_flight == MULTI.concurrency
    t2 = Trace.load(t.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(t2.completion_time, t.completion_time)
    assert t2.concurrency == t.concurrency and t2.meta["engine"] == "simpy"
    csv = (t.to_csv(tmp_path / "t.csv")).read_text().splitlines()
    assert csv[0].startswith("task,client,dispatch_time") and len(csv) == len(t) + 1
    row = csv[1 + int(u["task"][7])].split(",")
    assert int(row[1]) == u["client"][7] and int(row[-1]) == u["relative_delay"][7]


def _mutate(t, **cols):
    d = {c: getattr(t, c).copy() for c in ("client", "dispatch_time", "downlink_end", "compute_start", "compute_end",
                                            "uplink_end", "completion_time", "dispatch_version", "applied_version")}
    for k, f in cols.items():
        f(d[k])
    return Trace(**d, n_clients=t.n_clients, concurrency=t.concurrency, routing=t.routing)


@pytest.mark.parametrize("name, mutation", [
    ("versions", dict(applied_version=lambda a: a.__setitem__(np.flatnonzero(a == 5)[0], 7))),
    ("dispatch", dict(dispatch_version=lambda a: a.__setitem__(10, a[10] + 1))),
    ("times", dict(compute_end=lambda a: a.__setitem__(3, a[3] - 100.0))),
    ("client", dict(client=lambda a: a.__setitem__(0, 99))),
    ("overlap", dict(compute_start=lambda a: a.__setitem__(slice(None), 0.0))),
])
def test_verify_catches_corruption(name, mutation):
    t = simulate(SINGLE, 500, seed=1, engine="fast")
    t.verify()
    with pytest.raises(TraceError):
        _mutate(t, **mutation).verify()


def test_empirical_delay_distribution_matches_exact_law():
    s = System.from_rates([1.0, 2.0, 0.3], [0.5, 0.2, 0.3], 4)
    exact = ctmc.relative_delay_distribution(s, max_delay=60)
    trace = simulate(s, 300_000, seed=9)
    emp = delay_distribution(trace, max_delay=60)
    counts = np.bincount(trace.updates()["client"], minlength=3)
    for i in range(3):
        tv = 0.5 * np.abs(emp[i] - exact[i]).sum()
        # TV distance of an empirical law: O(sqrt(support / samples)), generous constant for correlation
        assert tv < 4.0 * np.sqrt(20.0 / counts[i]), (i, tv)


def test_replications_estimator():
    from scipy.stats import t as student

    R = 10
    traces = [simulate(SINGLE, 12_000, seed=s) for s in range(R)]
    e = estimate_replications(traces)
    a = analyze(SINGLE)
    assert e.method == "replications" and e.batches == R
    # se = half-width / t_{0.975, R-1}; accept within the two-sided 99.95% t quantile
    t95, t_acc = student.ppf(0.975, R - 1), student.ppf(0.99975, R - 1)
    for est, exact in [(e.throughput, a.throughput)] + list(zip(e.relative_delay, a.relative_delay)):
        assert est.half_width < 0.1 * exact
        assert abs(est.mean - exact) <= t_acc * est.half_width / t95


def test_availability_saturated_client_throughput():
    # one client always busy (m = 8): service progresses only while on, so throughput = mu * fraction_on
    on, off = law_from_spec("exponential", mean=3.0), law_from_spec("exponential", mean=1.0)
    client = Client(Stage.exponential(2.0), availability=Availability(on, off))
    s = System((client,), [1.0], 8)
    t = simulate(s, 60_000, seed=3)
    t.verify()
    e = estimate(t)
    assert close(e.throughput, 2.0 * 0.75, rel_width=0.1)
    with pytest.raises(ValidationError, match="fast path"):
        simulate(s, 100, engine="fast")


def test_availability_only_slows_down():
    base = System.from_rates([1.0, 0.5], [0.5, 0.5], 4)
    av = Availability(law_from_spec("exponential", mean=5.0), law_from_spec("deterministic", mean=5.0), start_on=False)
    slow = System((base.clients[0], Client(Stage.exponential(0.5), availability=av)), [0.5, 0.5], 4)
    a, b = estimate(simulate(base, 30_000, seed=1)), estimate(simulate(slow, 30_000, seed=1))
    assert b.throughput.hi < a.throughput.lo
    assert b.relative_delay[1].mean > a.relative_delay[1].mean


@pytest.mark.parametrize("kwargs, field", [
    (dict(updates=0), "updates"), (dict(updates=10, seed=-1), "seed"), (dict(updates=10, engine="warp"), "engine"),
])
def test_bad_parameters(kwargs, field):
    with pytest.raises(ValidationError) as e:
        simulate(SINGLE, **kwargs)
    assert e.value.field == field
    with pytest.raises(ValidationError, match="fast path"):
        simulate(MULTI, 10, engine="fast")
    t = simulate(SINGLE, 100, seed=0)
    with pytest.raises(ValidationError, match="warmup"):
        estimate(t, warmup=0.999)
    with pytest.raises(ValidationError, match="batches"):
        estimate(t, batches=1)


def test_cli_simulate_json_and_determinism(capsys, tmp_path):
    argv = ["simulate", "--rates", "1,1,0.1", "--routing", "0.3,0.3,0.4", "--concurrency", "5",
            "--updates", "20000", "--seed", "1", "--json"]
    assert main(argv + ["--trace", str(tmp_path / "t.npz")]) == 0
    d1 = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    d2 = json.loads(capsys.readouterr().out)
    for k in ("throughput", "mean_queue_lengths", "utilization", "relative_delay"):
        assert d1[k] == d2[k]
    assert set(d1["throughput"]) == {"mean", "ci", "n"} and d1["throughput"]["n"] == d1["batches"] and len(d1["relative_delay"]) == 3
    assert d1["updates"] == 20000 and d1["seed"] == 1 and d1["updates_per_second"] > 0
    assert Trace.load(tmp_path / "t.npz").num_updates == 20000
    assert main(["simulate", "--rates", "1,1", "--service", "lognormal:cv=-2"]) == 2
    assert main(["simulate", "--rates", "1,1", "--updates", "0"]) == 2
    assert "updates" in capsys.readouterr().err


# ------------------------------------------------------------------ streaming estimates
def reference_estimate(trace, warmup=0.1, batches=20, confidence=0.95):
    """The estimator as it was written before streaming: whole arrays, np.bincount, np.histogram,
    stats.batch_means and np.quantile (a second implementation to check the streamed one against)."""
    from aflqueue.stats import batch_means, t_interval

    n = trace.n_clients
    up = trace.updates()
    U = trace.num_updates
    k0 = int(round(warmup * U)) if warmup < 1 else int(warmup)
    t0 = float(up["time"][k0 - 1]) if k0 > 0 else 0.0
    edges = np.linspace(t0, trace.horizon, batches + 1)
    width = edges[1] - edges[0]

    def integrals(start, end, group, m):
        s = np.nan_to_num(start, nan=np.inf)
        e = np.where(np.isnan(end), np.inf, end)
        keep = (s < edges[-1]) & (e > edges[0]) & (e > s)
        s, e, g = s[keep], e[keep], group[keep]
        cum = np.array([np.bincount(g, weights=np.clip(x - s, 0.0, e - s), minlength=m) for x in edges])
        return np.diff(cum, axis=0)

    thr = t_interval(np.histogram(up["time"][k0:], bins=edges)[0] / width, confidence)
    queue = integrals(trace.dispatch_time, trace.uplink_end, trace.client, n) / width
    busy = integrals(trace.compute_start, trace.compute_end, trace.client, n) / width
    tasks, cl = up["task"][k0:], up["client"][k0:]
    delays = up["relative_delay"][k0:].astype(float)
    resp = (trace.uplink_end - trace.dispatch_time)[tasks]
    out = {"throughput": thr, "mean_queue_lengths": [t_interval(queue[:, i], confidence) for i in range(n)],
           "utilization": [t_interval(busy[:, i], confidence) for i in range(n)],
           "relative_delay": [t_interval(batch_means(delays[cl == i], batches), confidence) for i in range(n)],
           "mean_response_times": [t_interval(batch_means(resp[cl == i], batches), confidence) for i in range(n)],
           "mean_relative_delay": t_interval(batch_means(delays, batches), confidence), "delay_quantiles": []}
    for i in range(n):
        d = delays[cl == i]
        q = np.quantile(d, [0.5, 0.9, 0.99]) if d.size else None
        out["delay_quantiles"].append(None if q is None else {"p50": float(q[0]), "p90": float(q[1]),
                                                              "p99": float(q[2]), "max": float(d.max())})
    done = trace.completed
    if np.any(trace.completion_time[done] > trace.uplink_end[done]):
        cs = integrals(trace.uplink_end, trace.completion_time, np.zeros(len(trace), dtype=np.int64), 1)[:, 0] / width
        out["server"] = {"mean_queue_length": t_interval(cs, confidence)}
    return out


@pytest.mark.parametrize("system, updates, engine, batches", [
    (SINGLE, 20_000, "fast", 20), (MULTI, 8000, "simpy", 20),
    (System.from_rates([1.0, 1.0, 0.5], [0.4, 0.4, 0.2], 6, service="deterministic"), 6000, "fast", 7),
    (System.from_rates([1.0, 0.01], [0.98, 0.02], 3), 600, "fast", 20),  # the slow client has fewer updates than batches
])
def test_estimate_equals_the_whole_array_computation_bit_for_bit(tmp_path, system, updates, engine, batches):
    from aflqueue.sim import TraceFile, simulate_to_file

    t = simulate(system, updates, seed=7, engine=engine)
    want = reference_estimate(t, batches=batches)
    with simulate_to_file(system, updates, tmp_path / "t.npz", seed=7, engine=engine) as tf:
        for got in (estimate(t, batches=batches), estimate(tf, batches=batches)):
            for key in ("throughput", "mean_relative_delay", "delay_quantiles"):
                assert getattr(got, key) == want[key], key  # exact: same floats
            for key in ("mean_queue_lengths", "utilization", "relative_delay", "mean_response_times"):
                g, w = getattr(got, key), want[key]  # exact, NaN (no update after warm-up) equal to NaN
                assert np.array_equal(g.mean, [e.mean for e in w], equal_nan=True), key
                assert np.array_equal(g.lo, [e.lo for e in w], equal_nan=True), key
                assert np.array_equal(g.hi, [e.hi for e in w], equal_nan=True), key
                assert g.n_batches.tolist() == [e.n_batches for e in w], key
            assert (got.server is None) == ("server" not in want)
            if got.server is not None:
                assert got.server == want["server"]
    assert isinstance(tf, TraceFile)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=300), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_quantiles_from_counts_is_numpy_quantile(values, q):
    from aflqueue.sim.estimate import quantiles_from_counts

    d = np.asarray(values, dtype=float)
    v, c = np.unique(d, return_counts=True)
    want = np.quantile(d, q)
    got = quantiles_from_counts(v, c, q)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (got, want)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-2, 12, allow_nan=False), max_size=200), st.floats(0, 5), st.floats(0.001, 6),
       st.integers(1, 9))
def test_histogram_counts_is_numpy_histogram(x, lo, span, bins):
    from aflqueue.sim.estimate import histogram_counts

    edges = np.linspace(lo, lo + span, bins + 1)
    x = np.asarray(x + list(edges), dtype=float)  # values on every edge too
    assert np.array_equal(histogram_counts(x, edges), np.histogram(x, bins=edges)[0])


def test_recorder_window_is_bounded_by_the_chunk_and_the_delays():
    """The recorder holds the tasks from the oldest one in flight to the newest, plus one hand-over
    of the engine's logs: for a million updates in chunks of 512 its window (capacity doubling
    included) stays within twice that, a small fraction of the trace."""
    from aflqueue.sim.fast import record_fast
    from aflqueue.sim.records import TaskRecorder

    s = System.from_rates([2.0, 1.0, 0.5, 0.05], [0.4, 0.3, 0.25, 0.05], 8)
    seen = {"max": 0, "tasks": 0}

    class Watch(TaskRecorder):
        def flush(self, final=False):
            seen["max"] = max(seen["max"], self.cols["client"].size)
            super().flush(final)

    def count(start, cols):
        seen["tasks"] += cols["client"].size

    from aflqueue.sim.fast import LOG

    U = 1_000_000
    rec = Watch(8 + U, count, chunk=512)
    record_fast(s, U, 3, rec)
    rec.close()
    t = simulate(s, U, seed=3)
    assert seen["tasks"] == len(t)
    bound = 2 * (2 * 512 + int(t.relative_delay.max()) + 8 + LOG)
    assert seen["max"] <= bound < len(t) / 4, (seen["max"], bound)


def test_streamed_estimate_memory_does_not_grow_with_the_trace(tmp_path):
    """tracemalloc peak of estimate() on a file in small chunks: a fraction of the trace's size."""
    import tracemalloc

    from aflqueue.sim import TraceFile
    from aflqueue.sim.tracefile import write_trace

    t = simulate(SINGLE, 300_000, seed=2)
    p = write_trace(t, tmp_path / "t.npz", chunk=8192)
    trace_bytes = 36 * len(t)
    estimate(t)  # compile and warm up outside the measurement
    with TraceFile.open(p) as tf:
        tracemalloc.start()
        e = estimate(tf)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert e.to_dict() == estimate(t).to_dict()
    assert peak < trace_bytes / 4, (peak, trace_bytes)


def test_simulate_and_estimate_is_the_runs_and_their_estimates():
    """One measurement equals its parts called by hand (same seeds, same bits), and a setting that
    leaves too few updates per batch is refused before anything runs."""
    from aflqueue.sim import replication_seeds, simulate_and_estimate, simulate_replications

    system = System.from_rates([1.0, 0.3, 0.1], concurrency=4)
    one = simulate_and_estimate(system, 4000, seed=3, batches=10)
    alone = estimate(simulate(system, 4000, seed=3), batches=10)
    assert one.seeds == [3] and one.updates == 4000
    assert one.estimates.to_dict() == alone.to_dict()
    many = simulate_and_estimate(system, 2000, replications=3, seed=5)
    seeds = replication_seeds(5, 3)
    assert many.seeds == seeds and len(set(seeds)) == 3
    by_hand = estimate_replications(simulate_replications(system, 2000, seeds))
    assert many.estimates.to_dict() == by_hand.to_dict()
    with pytest.raises(ValidationError, match="updates"):
        simulate_and_estimate(system, 500, batches=20)  # 450 after warm-up < 50 x 20
