"""Closed forms vs simulation (validation/closed_forms) in quick mode: a real statistical check,
run through the study's command validation/closed_forms/run.py.

With exponential service the product-form closed forms are exact, so every simulated metric
(throughput, E[X_i], utilisation, response times, E[D_i], central-server queue, delay tails)
must lie within 4 standard errors of its closed form. The run is seeded, hence deterministic.
"""

from __future__ import annotations

import pytest

from aflqueue.io import read_json
from aflqueue.jobs import code_version
from validation.closed_forms import run as script_module
from validation.closed_forms.experiment import CODE, jobs_of, load_results, run_closed_forms


def _load_script():
    return script_module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    script = _load_script()
    out = tmp_path_factory.mktemp("closed_forms")
    figs = out / "figures"
    assert script.main(["--quick", "--out", str(out), "--figures", str(figs), "--seed", "0"]) == 0
    return script, out, figs


def test_outputs_exist(quick_run):
    _, out, figs = quick_run
    results = load_results(out / "closed_forms.json")
    md = (out / "closed_forms.md").read_text()
    assert "| scenario | law |" in md and "docs/theory.md section 4" in md and (out / "closed_forms.html").is_file()
    assert {"example", "five_types", "five_types_sqrt", "ms_fifo", "ms_delay_links", "ms_delay_server"} <= set(
        results["scenarios"])
    # one record per (scenario, law) and per delay-law system, with its settings and code version
    ids = [i for i, _ in jobs_of(quick=True, seed=0)]
    assert len(ids) == 14 and sorted(p.stem for p in (out / "cells").glob("*.json")) == sorted(ids)
    rec = read_json(out / "cells" / "example__lognormal_cv1.5__quick__s0.json")
    assert rec["settings"]["updates"] == 100_000 and rec["settings"]["law"] == "lognormal:cv=1.5"
    assert rec["code_version"] == code_version(CODE) and "sim_seconds" not in rec  # timings live in timings/
    assert code_version(CODE)["source"] != code_version()["source"]  # the study's own code is stamped too
    assert results["scenarios"]["example"]["runs"][0]["sim_seconds"] >= 0  # merged back for the report
    for stem in ("closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law"):
        for ext in ("png", "pdf"):
            f = figs / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f


def test_exponential_closed_forms_within_4_standard_errors(quick_run):
    _, out, _ = quick_run
    results = load_results(out / "closed_forms.json")
    checked = 0
    for name, sc in results["scenarios"].items():
        for run in sc["runs"]:
            if run["law"]["family"] != "exponential":
                continue
            for row in run["comparisons"] + run["group_comparisons"]:
                assert row["z"] is not None and abs(row["z"]) <= 4, (name, row)
                checked += 1
            if sc["multistage"]:  # the section-4 formula itself
                assert run["delay_formulas"]["theory"]["max_abs_z"] <= 4
    for name, rec in results["delay_distribution"].items():
        for c in rec["clients"]:
            for t in c["tails"]:
                assert t["z"] is not None and abs(t["z"]) <= 4, (name, c["name"], t)
                checked += 1
            assert c["exact_mean"] == pytest.approx(c["closed_form_mean"], rel=1e-8)
    assert checked > 300


def test_non_exponential_deviation_is_detected(quick_run):
    # deterministic service is far from exponential: the closed-form throughput is off by
    # several standard errors (otherwise the comparison would have no power)
    _, out, _ = quick_run
    results = load_results(out / "closed_forms.json")
    run = next(r for r in results["scenarios"]["example"]["runs"] if r["law"]["family"] == "deterministic")
    assert abs(run["summary"]["z_throughput"]) > 4


def test_restart_skips_saved_jobs_and_report_only(quick_run):
    script, out, figs = quick_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    lines: list[str] = []
    again = run_closed_forms(out, quick=True, seed=0, progress=lines.append)
    assert lines == ["0 job(s) to run (serial), 14 already done"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == before
    assert again["scenarios"] == load_results(out / "closed_forms.json")["scenarios"]
    assert script.main(["--out", str(out), "--figures", str(figs / "again"), "--report-only"]) == 0
    assert (figs / "again" / "closed_forms_delay_scatter.pdf").is_file()


def test_bad_input_is_one_line(tmp_path, capsys):
    script = _load_script()
    assert script.main(["--out", str(tmp_path), "--report-only"]) == 2
    assert "no results" in capsys.readouterr().err
    (tmp_path / "closed_forms.json").write_text("{")
    assert script.main(["--out", str(tmp_path), "--report-only"]) == 2
    assert "cannot read" in capsys.readouterr().err
