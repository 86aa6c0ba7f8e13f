"""``aflqueue schedule``: the timeline, delay histograms and arrival shares are the trace's own
numbers (recomputed here from its columns), the closed form and the exact law are the analysis'
and the brute-force chain's, and the exact law is drawn only for small exponential systems."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import aflqueue as aq
from aflqueue.cli import main
from aflqueue.queueing.ctmc import enumerate_states, relative_delay_distribution
from aflqueue.queueing.network import network_of
from aflqueue.schedule import delay_chain_states, schedule_data, system_of

sys.path.insert(0, str(Path(__file__).parent))
from figure_checks import captured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    system = aq.System.from_rates([1.0, 0.5, 0.2], routing=[0.5, 0.3, 0.2], concurrency=4)
    return system, aq.simulate(system, 20000, seed=3)


def test_histograms_are_the_traces_per_client_delays(small, tmp_path, monkeypatch, capsys):
    system, trace = small
    path = trace.save(tmp_path / "t.npz")
    with captured(monkeypatch) as figs:
        assert main(["schedule", str(path), "-o", str(tmp_path / "s")]) == 0
    assert set(figs) == {"schedule_timeline", "schedule_delays", "schedule_arrival_share"}
    assert "exact delay law drawn" in capsys.readouterr().out
    data = json.loads((tmp_path / "s" / "schedule.json").read_text())
    up = trace.updates()
    exact = aq.analyze(system).relative_delay
    pmf = relative_delay_distribution(system, max_delay=int(up["relative_delay"].max()) + 1)
    for c in data["delays"]["clients"]:
        i = c["client"]
        d = up["relative_delay"][up["client"] == i]
        counts = np.asarray(c["counts"])
        assert counts.sum() == d.size == c["updates"]
        assert math.isclose(c["mean"], d.mean(), rel_tol=1e-12)
        assert math.isclose((np.arange(counts.size) * counts).sum() / counts.sum(), d.mean(), rel_tol=1e-12)
        assert math.isclose(c["closed_form_mean"], exact[i], rel_tol=1e-12)
        np.testing.assert_allclose(c["exact_pmf"], pmf[i], rtol=1e-12)
        # 20,000 updates: the simulated law is close to the exact one
        assert np.abs(counts / counts.sum() - np.asarray(c["exact_pmf"])[: counts.size]).max() < 0.02
    sh = data["share"]
    assert sh["counts"] == np.bincount(up["client"], minlength=3).tolist()
    np.testing.assert_allclose(sh["p"], system.routing)
    half = 1.959964 * np.sqrt(system.routing * (1 - system.routing) / (20000 + 4))
    np.testing.assert_allclose(sh["expected_hi"], system.routing + half, rtol=1e-9)


def test_timeline_counts_add_up_to_m_and_services_follow_the_trace(small):
    system, trace = small
    data = schedule_data(trace, system, window=(100.0, 160.0))
    tl = data["timeline"]
    assert tl["window"] == [100.0, 160.0] and tl["clients"] == [0, 1, 2]  # fastest first
    c = tl["counts"]
    total = np.asarray(c["queue"]) + np.asarray(c["service"]) + np.asarray(c["transit"])
    assert np.all(total == 4)  # exactly m tasks in flight at every moment
    assert max(c["transit"]) == 0  # no links, no server: nothing travels
    for i in range(3):
        segs = np.asarray(tl["segments"]["service"][str(i)])
        assert np.all(segs[1:, 0] >= segs[:-1, 1] - 1e-12)  # one task at a time per client
        m = (trace.client == i) & (trace.compute_end > 100) & (trace.compute_start < 160)
        want = np.c_[np.maximum(trace.compute_start[m], 100), np.minimum(trace.compute_end[m], 160)]
        np.testing.assert_allclose(segs, want[np.argsort(want[:, 0])], rtol=1e-12)
        # waiting count at the client = tasks arrived and not yet in service, at any grid time
        w = tl["waiting"][str(i)]
        for t, k in list(zip(w["time"], w["count"]))[::5]:
            mine = trace.client == i
            assert k == int(np.sum(mine & (trace.downlink_end <= t) & (trace.compute_start > t)))


@pytest.mark.parametrize("window, said", [((0.0, 1e308), "END <= 1e+100"), ((1e9, 2e9), "must start before"),
                                           ((5.0, 5.0), "START < END")])
def test_a_window_that_shows_nothing_is_refused(small, tmp_path, capsys, window, said):
    """A window past the last update shown, or one no axis can draw (matplotlib overflows near
    1e308), is refused in one line from the CLI, as from the library."""
    system, trace = small
    with pytest.raises(aq.ValidationError, match="window"):
        schedule_data(trace, system, window=window, updates=500)
    trace.save(tmp_path / "t.npz")
    assert main(["schedule", str(tmp_path / "t.npz"), "--window", f"{window[0]!r}:{window[1]!r}",
                 "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "window" in err and said in err and not (tmp_path / "s").exists()


def test_exact_law_only_for_small_exponential_systems(tmp_path):
    big = aq.System.from_rates([1.0] * 5 + [0.1] * 5, concurrency=30)
    assert delay_chain_states(big) > 20_000
    d = schedule_data(aq.simulate(big, 3000, seed=0), big)
    assert not d["delays"]["exact"] and "20,000" in d["delays"]["note"]
    assert all(c["exact_pmf"] is None and c["closed_form_mean"] is not None for c in d["delays"]["clients"])
    flat = aq.load_system(ROOT / "examples" / "flat.toml")  # lognormal service: mean only, approximate
    trace = aq.simulate(flat, 3000, seed=0)
    assert system_of(trace) is not None
    d = schedule_data(trace)
    assert not d["delays"]["exact"] and "approximation" in d["delays"]["note"]
    assert max(d["timeline"]["counts"]["transit"]) > 0  # links and a server: tasks travel


def test_state_count_matches_the_chains():
    for system in (aq.System.from_rates([1.0, 0.5, 0.2], concurrency=4),
                   aq.load_system(ROOT / "examples" / "multistage.yaml").with_concurrency(3)):
        net = network_of(system)
        S, m = net.size, system.concurrency
        stationary = enumerate_states(S, m).shape[0]
        tagged = sum((y[t] + 1 if not net.is_delay[t] else 1) for y in enumerate_states(S, m - 1) for t in range(S))
        assert delay_chain_states(system) == max(stationary, tagged)


def test_a_run_folder_is_limited_to_its_arrivals(tmp_path):
    out = tmp_path / "run"
    aq.train(output=str(out), data={"dataset": "synthetic", "clients": 3,
                                    "options": {"num_samples": 200, "num_features": 6, "num_classes": 2}},
             run={"updates": 40, "eval_every": 20})
    assert main(["schedule", str(out), "-o", str(tmp_path / "s"), "--no-exact"]) == 0
    data = json.loads((tmp_path / "s" / "schedule.json").read_text())
    log = np.loadtxt(out / "updates.csv", delimiter=",", skiprows=1)
    assert data["updates"] == 40 == log.shape[0]
    assert data["share"]["counts"] == np.bincount(log[:, 2].astype(int), minlength=3).tolist()
    for c in data["delays"]["clients"]:
        assert math.isclose(c["mean"], log[log[:, 2] == c["client"], 3].mean(), rel_tol=1e-12)


def test_bad_schedule_input_is_one_line(small, tmp_path, capsys):
    _, trace = small
    path = str(trace.save(tmp_path / "t.npz"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.csv").write_text("a,b\n")
    cut = tmp_path / "cut.npz"  # a trace file cut short (tests/test_trace_files.py fuzzes many more)
    cut.write_bytes(Path(path).read_bytes()[:-40])
    for argv, what in [(["schedule", "/nonexistent.npz"], "no such"), (["schedule", str(tmp_path / "empty")],
                                                                         "no trace.npz"),
                       (["schedule", str(tmp_path / "x.csv")], ".npz"),
                       (["schedule", path, "--window", "5:1"], "window"),
                       (["schedule", path, "--window", "a:b"], "window"),
                       (["schedule", path, "--clients", "7"], "clients"),
                       (["schedule", str(cut)], str(cut))]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err, (argv, err)


@pytest.mark.parametrize("arrivals", ["many", True, 0, 10**9])
def test_a_run_folders_arrivals_are_checked(tmp_path, arrivals):
    """``results.json``'s arrivals decide how much of the trace is shown: a value that is not an
    arrival count of the trace is refused (it once fell back to the whole trace, or read true as 1)."""
    import json

    from aflqueue import System, ValidationError
    from aflqueue.schedule import load_schedule
    from aflqueue.sim import simulate

    run = tmp_path / "run"
    run.mkdir()
    simulate(System.from_rates([1.0, 0.2]), 300, seed=0).save(run / "trace.npz")
    (run / "results.json").write_text(json.dumps({"arrivals": 120}))
    assert load_schedule(run)[1] == 120
    (run / "results.json").write_text(json.dumps({"arrivals": arrivals}))
    with pytest.raises(ValidationError, match=r"results\.arrivals"):
        load_schedule(run)
