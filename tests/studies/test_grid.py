"""The validation grid study (validation/grid): cells saved as they finish, interruption and resume,
identical results across backends, the budget and P3 target from aflqueue.protocol, and the report
(tiny preset on the synthetic data set)."""

from dataclasses import replace

import pytest

from aflqueue import ValidationError
from aflqueue.jobs import code_version
from validation.grid.experiment import CODE, DATASETS, PRESETS, cells_of, run_grid
from validation.grid.report import summarize, write_report
from validation.grid.run import main

TINY = replace(PRESETS["tiny"], routings=("uniform", "wallclock"), algorithms=(), seeds=2)


def cell_bytes(folder):
    """Every cell file's bytes: backends must produce identical files, not just close numbers."""
    return {p.name: p.read_bytes() for p in sorted((folder / "cells").glob("*.json"))}


def measured(records):
    return {r["id"]: (r["measured"]["final_accuracy"], r["measured"]["final_loss"], r["measured"]["arrivals"],
                      r["routing"]) for r in records}


@pytest.fixture(scope="module")
def serial_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid_serial")
    return out, run_grid(TINY, out, progress=None)


def test_cells_and_records(serial_grid):
    out, recs = serial_grid
    assert len(recs) == len(cells_of(TINY)) == 4
    for r in recs:
        assert (out / "cells" / f"{r['id']}.json").is_file()
        c = r["measured"]["curves"]
        assert len(c["time"]) == 20 and c["time"][-1] == pytest.approx(r["time_budget"])
        assert abs(sum(r["routing"]) - 1) < 1e-9 and r["constants"]["Delta"] > 0
        assert r["code_version"] == code_version(CODE)
    # paired by seed: the same budget for both routings; P2 moves mass to the fast half
    by = {(r["cell"]["routing"], r["cell"]["seed"]): r for r in recs}
    for s in (0, 1):
        u, w = by[("uniform", s)], by[("wallclock", s)]
        assert u["time_budget"] == w["time_budget"]
        # tau = U0 / lambda(uniform): AsyncSGD's predicted throughput times the budget gives U0 updates
        assert u["predicted"]["throughput"] * u["time_budget"] == pytest.approx(DATASETS["synthetic"].updates, rel=1e-12)
        assert u["epsilon"] == pytest.approx(u["predicted"]["per_update"], rel=1e-9)  # P3's target: U of AsyncSGD
        assert sum(w["routing"][:3]) > sum(u["routing"][:3])
        assert w["measured"]["arrivals"] > u["measured"]["arrivals"]


def test_interrupted_grid_resumes_to_the_same_results(serial_grid, tmp_path):
    _, full = serial_grid
    part = run_grid(TINY, tmp_path, progress=None, limit=1)  # "killed" after one cell
    assert len(part) == 1
    done_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    resumed = run_grid(TINY, tmp_path, progress=None)
    assert measured(resumed) == measured(full)
    for name, t in done_before.items():  # finished cells were not recomputed
        assert (tmp_path / "cells" / name).stat().st_mtime_ns == t


def test_process_backend_gives_identical_results(serial_grid, tmp_path):
    out, full = serial_grid
    recs = run_grid(TINY, tmp_path, progress=None, backend="process", workers=2)
    assert measured(recs) == measured(full)
    assert cell_bytes(tmp_path) == cell_bytes(out) and len(cell_bytes(out)) == 4
    assert all((tmp_path / "timings" / f"{r['id']}.json").is_file() for r in recs)


def test_report(serial_grid, tmp_path):
    _, recs = serial_grid
    md, html = write_report(recs, tmp_path / "report.md", tmp_path / "figs")
    text = md.read_text()
    assert "Headline: wall-clock-optimal routing (P2) vs AsyncSGD" in text and "criterion" in text
    assert "Spearman" in text and "| P2 wall-clock |" in text
    assert (tmp_path / "figs" / "grid_accuracy_synthetic_generalized-asyncsgd.png").is_file()
    assert html.read_text().count("data:image/png;base64") >= 1
    s = summarize(recs)
    g = s["groups"][0]
    rows = {r["routing"]: r for r in g["rows"]}
    # the paired accuracy gain is computed from the per-seed records
    by = {(r["cell"]["routing"], r["cell"]["seed"]): r["measured"]["final_accuracy"] for r in recs}
    ratios = [by[("wallclock", s)] / by[("uniform", s)] for s in (0, 1)]
    # relative gains come from the log scale: geometric mean ratio - 1, bounds above -100%
    assert rows["wallclock"]["accuracy_gain"][0] == pytest.approx((ratios[0] * ratios[1]) ** 0.5 - 1)
    for r in rows.values():
        lo, hi = r["accuracy"][1:3]
        assert not (lo < 0 or hi > 1)  # an accuracy interval stays in [0, 1]


def test_run_report_only_and_errors(serial_grid, tmp_path, capsys):
    out, _ = serial_grid
    assert main(["--preset", "tiny", "--output", str(out), "--report-only",
                 "--report", str(tmp_path / "r.md"), "--figures", str(tmp_path / "f")]) == 0
    assert (tmp_path / "r.md").is_file()
    assert main(["--preset", "huge", "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "preset" in err and err.count("\n") == 1
    with pytest.raises(ValidationError, match="backend"):
        run_grid(TINY, tmp_path, backend="mpi", progress=None)
    assert main(["--preset", "tiny", "--data-root", str(tmp_path), "--report-only"]) == 2


@pytest.mark.ray
def test_ray_backend_gives_identical_results(serial_grid, tmp_path):
    ray = pytest.importorskip("ray")
    out, full = serial_grid
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # the toolkit never starts one itself
    try:
        recs = run_grid(TINY, tmp_path, progress=None, backend="ray")
    finally:
        ray.shutdown()
    assert measured(recs) == measured(full)
    assert cell_bytes(tmp_path) == cell_bytes(out)
