"""Algorithm comparison (validation/fedbuff_family/comparison.py) on the tiny preset (synthetic data, a
few hundred arrivals): records saved per run, resume skips them, an interrupted comparison
resumes to the same numbers, and the report's intervals respect the quantities."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aflqueue import ValidationError
from validation.fedbuff_family.comparison import (PRESETS, fedrevive_schedule_system, preset_summary, resolve,
                                                  run_comparison)
from validation.fedbuff_family.report import summarize_comparison, write_comparison_report
from aflqueue.system import System

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("comparison")
    preset, records = run_comparison(TINY, out, progress=None)
    return out, preset, records


def test_records_saved_per_run(tiny):
    out, _, records = tiny
    assert sorted(r["id"] for r in records) == ["tiny__fedbuff__s0", "tiny__fedbuff__s1", "tiny__fedecho__s0",
                                                "tiny__fedecho__s1"]
    for r in records:
        assert (out / "cells" / f"{r['id']}.json").is_file() and (out / "timings" / f"{r['id']}.json").is_file()
        assert 150 <= r["arrivals"] <= 400 and r["simulated_time"] <= 300
        assert len(r["curve"]["time"]) == 10 and 0 <= r["final_accuracy"] <= 1
        assert not any("seconds" in k for k in r["costs"])  # wall-clock measurements live in timings/
        assert r["timing"]["server_seconds_per_arrival"] > 0 and r["settings"]["preset"] == "tiny"
    by = {r["id"]: r for r in records}
    for s in (0, 1):  # paired by seed: the same schedule for every algorithm
        assert by[f"tiny__fedbuff__s{s}"]["arrivals"] == by[f"tiny__fedecho__s{s}"]["arrivals"]


def test_resume_skips_finished_runs_and_interruption_gives_the_same_numbers(tiny, tmp_path):
    out, _, records = tiny
    lines: list[str] = []
    run_comparison(TINY, out, progress=lines.append)
    assert lines == ["0 job(s) to run (serial), 4 already done"]
    fewer = replace(TINY, algorithms=("fedbuff",))
    _, part = run_comparison(fewer, tmp_path, progress=None, limit=1)  # "killed" after one run
    assert [r["id"] for r in part] == ["tiny__fedbuff__s0"]
    _, resumed = run_comparison(fewer, tmp_path, progress=None)
    full = {r["id"]: (r["final_accuracy"], r["arrivals"], r["curve"]) for r in records}
    assert {r["id"]: (r["final_accuracy"], r["arrivals"], r["curve"]) for r in resumed} == {
        k: v for k, v in full.items() if "fedbuff" in k}


def test_report_intervals_respect_the_quantities(tiny, tmp_path):
    _, preset, records = tiny
    summary = summarize_comparison(records)
    assert summary["reference"] == "fedbuff"
    for row in summary["rows"]:
        for key in ("accuracy", "accuracy_half"):
            e = row[key]
            assert e.n == 2 and 0 <= e.lo <= e.mean <= e.hi <= 1, (key, e)
        assert row["server_seconds_per_arrival"].lo > 0
        if row["algorithm"] != "fedbuff":
            d = row["difference"]
            assert d.n == 2 and -1 <= d.lo <= d.mean <= d.hi <= 1
            assert row["server_time_ratio"].lo > 0 and row["server_time_ratio"].n == 2
            r = row["time_ratio"]  # pairs where both reached the target (2 today; FedEcho may change)
            assert r.n + row["censored"] <= 2
            if r.n >= 2:
                assert 0 < r.lo <= r.mean <= r.hi
    md, html = write_comparison_report(records, tmp_path / "report.md", preset_summary(preset), tmp_path / "figs")
    text = md.read_text()
    assert "(n=2)" in text and "| fedecho |" in text and html.is_file()
    assert (tmp_path / "figs" / "comparison_accuracy_tiny.png").is_file()


def test_presets_resolve_and_bad_input():
    stale, seeds = resolve(PRESETS["stale"], quick=True)
    assert seeds == [0, 1] and stale.config["data"]["clients"] == 8 and stale.config["run"]["time_budget"] == 250
    assert PRESETS["stale"].config["data"]["clients"] == 20  # resolving does not touch the preset
    _, seeds = resolve(PRESETS["stale"], seeds=3, budget=10)
    assert seeds == [0, 1, 2]
    with pytest.raises(ValidationError, match="preset"):
        run_comparison("nope", "/nonexistent", progress=None)
    with pytest.raises(ValidationError, match="budget"):
        resolve(PRESETS["stale"], budget=-1)


def test_fedrevive_schedule_system():
    d = fedrevive_schedule_system(1000, 100)
    s = System.from_dict(d)
    assert s.n == 1000 and s.concurrency == 100 and s.is_multistage
    compute = np.array([c.compute.mean for c in s.clients])
    assert set(np.unique(compute)) == {1.0, 1.3, 1.6}
    assert abs(np.mean(compute == 1.3) - 0.5) < 0.05 and abs(np.mean(compute == 1.0) - 0.25) < 0.05
    for c in s.clients[:50]:
        assert c.downlink.law.name == "deterministic" and c.downlink.mean == 0.1
        assert c.uplink.law.name == "uniform" and c.uplink.discipline == c.downlink.discipline == "delay"
        assert c.uplink.law.high - c.uplink.law.low == pytest.approx(0.04)
        assert min(abs(c.uplink.mean - 0.15), abs(c.uplink.mean - 0.25)) < 1e-12
    assert fedrevive_schedule_system(1000, 100) == d  # the population is fixed, whatever the run seed
