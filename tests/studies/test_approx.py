"""The approximation's validation study (validation/approx) on a tiny grid (quick budgets), run
through its experiment module and its command, validation/approx/run.py."""

import math

import pytest

from aflqueue.errors import ValidationError
from aflqueue.io import read_json
from aflqueue.jobs import code_version
from aflqueue.queueing import analyze
from aflqueue.queueing.approx import approx_analyze
from aflqueue.stats import Estimate
from validation.approx import experiment


TINY = ("hetero_n5_m5_proportional_cv1.5", "hetero_n10_m20_uniform_cv0", "m1_n5_cv3", "opt_hetero_n10_m10_cv3")


def _script_main():
    """``main`` of the study's command, validation/approx/run.py."""
    from validation.approx.run import main

    return main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("approx")
    first, second = [], []
    experiment.run_approx(out, quick=True, only=TINY, limit=2, progress=first.append)  # interrupted after 2 jobs
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    results = experiment.run_approx(out, quick=True, only=TINY, progress=second.append)
    return out, first, second, stamps, results


def test_protocol_grid_and_seeds_are_the_published_ones():
    pts = experiment.grid()
    assert len(pts) == 272 and len({p.id for p in pts}) == 272
    assert len([p for p in pts if p.family == "hetero" and not p.multistage and p.m > 1
                and not p.id.startswith("other")]) == 240
    jobs = dict(experiment.jobs_of())
    assert len(jobs) == 278 and jobs["opt_hetero_n20_m20_cv0"] == ("opt", 5, False)
    # seeds and budgets of the published records (validation/results/approx at 359079e)
    s = experiment._job_settings(jobs["hetero_n2_m2_uniform_cv3"])
    assert s["seeds"] == [18500, 18501, 18502] and s["updates"] == 4_000_000 and s["law"] == "lognormal:cv=3"
    s = experiment._job_settings(jobs["ms_fifo_n10_cv2"])
    assert s["replications"] == 1 and s["updates"] == 400_000
    assert experiment._job_settings(jobs["opt_hetero_n10_m10_cv3"])["seeds"] == [18900, 18901, 18902]
    with pytest.raises(ValidationError, match="unknown point"):
        experiment.jobs_of(only=["nope"])


def test_records_are_saved_and_resumed(tiny_run):
    out, first, second, stamps, results = tiny_run
    ids = sorted(f"{i}__quick" for i in TINY)
    assert sorted(p.stem for p in (out / "cells").glob("*.json")) == ids
    assert sorted(p.stem for p in (out / "timings").glob("*.json")) == ids
    assert any("2 job(s) to run" in line and "0 already done" in line for line in first) and len(stamps) == 2
    assert any("2 job(s) to run" in line and "2 already done" in line for line in second)
    for name, ns in stamps.items():  # records already there were neither recomputed nor rewritten
        assert (out / "cells" / name).stat().st_mtime_ns == ns
    rec = read_json(out / "cells" / "hetero_n5_m5_proportional_cv1.5__quick.json")
    assert rec["code_version"] == code_version(experiment.CODE) and "timing" not in rec
    assert rec["settings"]["updates"] == 80_000 and rec["settings"]["seeds"] == [18_100]
    assert set(read_json(out / "timings" / "hetero_n5_m5_proportional_cv1.5__quick.json")) >= {
        "simulation_seconds", "product_form_seconds", "approx_seconds"}
    assert [r["id"] for r in results["points"]] == [f"{i}__quick" for i in TINY[:3]]
    assert len(results["optimisation"]) == 1 and len(results["meta"]["code_versions"]) == 1
    saved = read_json(out / experiment.RESULTS_FILE)
    assert "errors" not in saved["summary"] and saved["summary"]["all"]["approx"]["throughput"]["count"] == 2


def test_records_hold_sane_intervals_and_the_analyses(tiny_run):
    *_, results = tiny_run
    for r in results["points"]:
        sim = r["simulation"]
        for e in [sim["throughput"], *sim["delay"], *sim["queue"]]:
            est = Estimate.from_dict(e)
            assert est.n == 20 * sim["replications"] and est.lo <= est.mean <= est.hi
        assert 0 < Estimate.from_dict(sim["throughput"]).half_width < 0.05 * sim["throughput"]["mean"]
        pt = next(p for p in experiment.grid(quick=True) if r["id"] == f"{p.id}__quick")
        assert r["approx"]["throughput"] == pytest.approx(approx_analyze(pt.system()).throughput, rel=1e-12)
        assert r["product_form"]["throughput"] == pytest.approx(analyze(pt.system()).throughput, rel=1e-12)
        # within 3 simulated half-widths plus the approximation's own few-percent bias
        assert abs(r["approx"]["throughput"] / sim["throughput"]["mean"] - 1) < 0.05
    m1 = next(r for r in results["points"] if r["id"].startswith("m1_"))
    errs = experiment.point_errors(m1)
    assert errs["approx"]["delay_max"] is None  # m = 1: no delay criterion
    # m = 1: one task cycles through the clients, exactly the analyses' value (both exact here)
    assert abs(errs["approx"]["throughput"]) < 3 * errs["thr_hw"]
    assert math.isnan(Estimate.from_dict(None).half_width)
    opt = results["optimisation"][0]
    for key in experiment.ANALYSES:
        so = Estimate.from_dict(opt[key]["simulated_objective"])
        assert so.lo < opt[key]["simulated_objective_point"] < so.hi


def test_script_writes_the_report_and_refuses_bad_input(tiny_run, tmp_path, capsys):
    out = tiny_run[0]
    script_main = _script_main()
    assert script_main(["--quick", "--report-only", "--out", str(out)]) == 0
    md = (out / "approx.md").read_text()
    assert "PROTOCOL_VERSION` 1" in md and "Quick mode" in md and "one code version" in md
    assert "| cv 1.5 | 1 |" in md and "## Item 3" in md and "| m1_n5_cv3 |" in md
    assert (out / "approx.html").is_file()
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"approx_errors.{ext}").stat().st_size > 1000
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    for argv in (["--report-only", "--out", str(tmp_path)], ["--out", str(tmp_path / "file")], ["--bogus"],
                 ["--report-only", "--fresh", "--out", str(tmp_path)]):
        assert script_main(argv) == 2, argv
        cap = capsys.readouterr()
        assert cap.out == "" and len(cap.err.strip().splitlines()) == 1, (argv, cap.err)
