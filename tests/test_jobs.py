"""Resumable jobs (aflqueue.jobs): records saved as jobs finish, resume skips them, unreadable
records are moved aside and recomputed, edited ones refused, identical bytes on every backend;
code versions."""

import json

import pytest

from aflqueue import ValidationError
from aflqueue.jobs import JobStore, code_version, code_versions, inputs_digest, run_jobs


def square_job(x):
    return {"value": x * x, "timing": {"wall_time": 0.0}}


JOBS = [(f"job{k}", k) for k in range(5)]


def squares_job(xs):
    """The batched form: a list of args in, their records out."""
    return [square_job(x) for x in xs]


def test_batched_jobs_save_the_same_records(tmp_path):
    """batch > 1 hands chunks of jobs to one call; the records are those of one job at a time,
    resumption works chunk by chunk, and a function that loses a record is refused."""
    run_jobs(JOBS, square_job, JobStore(tmp_path / "one"), progress=None)
    run_jobs(JOBS[:3], squares_job, JobStore(tmp_path / "many"), progress=None, batch=2)
    recs = run_jobs(JOBS, squares_job, JobStore(tmp_path / "many"), progress=None, batch=2, backend="process",
                    workers=2)
    assert [r["value"] for r in recs] == [0, 1, 4, 9, 16]
    one = {p.name: p.read_bytes() for p in (tmp_path / "one" / "cells").glob("*.json")}
    many = {p.name: p.read_bytes() for p in (tmp_path / "many" / "cells").glob("*.json")}
    assert one == many
    with pytest.raises(ValidationError, match="batch"):
        run_jobs(JOBS, lambda xs: squares_job(xs)[:-1], JobStore(tmp_path / "lost"), progress=None, batch=3)
    with pytest.raises(ValidationError, match="batch"):
        run_jobs(JOBS, squares_job, JobStore(tmp_path / "zero"), progress=None, batch=0)


def test_records_resume_and_identical_bytes(tmp_path):
    first = run_jobs(JOBS, square_job, JobStore(tmp_path / "a"), progress=None, limit=2)
    assert [r["id"] for r in first] == ["job0", "job1"]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a" / "cells").glob("*.json")}
    seen = []
    recs = run_jobs(JOBS, square_job, JobStore(tmp_path / "a"), progress=seen.append)
    assert seen[0].startswith("3 job(s) to run") and "2 already done" in seen[0]
    assert [r["value"] for r in recs] == [0, 1, 4, 9, 16]
    for name, t in before.items():  # finished records were not rewritten
        assert (tmp_path / "a" / "cells" / name).stat().st_mtime_ns == t
    assert all(r["code_version"] == code_version() and r["timing"] == {"wall_time": 0.0} for r in recs)
    run_jobs(JOBS, square_job, JobStore(tmp_path / "b"), progress=None, backend="process", workers=2)
    a = {p.name: p.read_bytes() for p in (tmp_path / "a" / "cells").glob("*.json")}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b" / "cells").glob("*.json")}
    assert a == b and len(a) == 5
    assert not list((tmp_path / "a").rglob("*.tmp"))


def check_square(record):
    """A record check as the tuning, validation and recommendation pass to run_jobs."""
    v = record.get("value")
    if not isinstance(v, int) or v < 0:
        raise ValidationError("value", f"must be an integer >= 0 (got {v!r})")


def test_a_record_failing_its_check_is_refused_naming_file_and_field(tmp_path):
    """An edited record (writes are atomic, so it was edited) stops the run before any job runs,
    in one line naming the record's file and the field; the file stays where it is. Once it is
    deleted, its job alone runs again."""
    store = JobStore(tmp_path)
    run_jobs(JOBS, square_job, store, progress=None, check=check_square)
    cell = tmp_path / "cells" / "job3.json"
    cell.write_text(json.dumps({**json.loads(cell.read_text()), "value": "nine"}))
    ran = []
    with pytest.raises(ValidationError) as e:
        run_jobs(JOBS + [("job5", 5)], square_job, store, progress=ran.append, check=check_square)
    assert e.value.field == "value" and str(cell) in str(e.value) and "\n" not in str(e.value)
    assert not ran and not (tmp_path / "cells" / "job5.json").exists() and "nine" in cell.read_text()
    cell.unlink()
    recs = run_jobs(JOBS, square_job, store, progress=ran.append, check=check_square)
    assert ran[0].startswith("1 job(s) to run") and [r["value"] for r in recs] == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("damage", [b"", b"{\"id\": ", b"\xff\xfe", b"[1, 2]", b'{"id": "other"}'])
def test_unreadable_record_is_moved_aside_and_recomputed(tmp_path, damage):
    store = JobStore(tmp_path)
    run_jobs(JOBS, square_job, store, progress=None)
    (tmp_path / "cells" / "job3.json").write_bytes(damage)
    lines = []
    recs = run_jobs(JOBS, square_job, store, progress=lines.append)
    assert any("job3.json" in ln and "moved to" in ln for ln in lines)
    assert [r["value"] for r in recs] == [0, 1, 4, 9, 16]
    assert (tmp_path / "cells" / "corrupt" / "job3.json.0").read_bytes() == damage
    assert json.loads((tmp_path / "cells" / "job3.json").read_text())["value"] == 9


def test_code_version_is_a_source_hash():
    v = code_version()
    assert len(v["source"]) == 16 and int(v["source"], 16) >= 0
    assert v["commit"] is None or len(v["commit"]) == 40


def test_code_outside_the_package_is_stamped_too(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "experiment.py").write_text("x = 1\n")
    (study / "notes.md").write_text("not code\n")
    base, with_study = code_version(), code_version([study])
    assert with_study["source"] != base["source"] and with_study["commit"] == base["commit"]
    assert code_version([str(study)]) == with_study  # a path string names the same code
    # the hash is of the .py files' names and contents, not of the folder's path (values are cached
    # per path within a process: compare copies)
    for k, (code, notes) in enumerate((("x = 1\n", "other notes\n"), ("x = 2\n", "not code\n"))):
        other = tmp_path / f"copy{k}" / "study"
        other.mkdir(parents=True)
        (other / "experiment.py").write_text(code)
        (other / "notes.md").write_text(notes)
        assert (code_version([other])["source"] == with_study["source"]) == (k == 0)
    single = code_version([study / "experiment.py"])
    assert single["source"] not in (base["source"], with_study["source"])
    with pytest.raises(ValidationError, match="code"):
        code_version([tmp_path / "missing"])
    recs = run_jobs(JOBS[:2], square_job, JobStore(tmp_path / "s"), progress=None, code=[study / "experiment.py"])
    assert all(r["code_version"] == single for r in recs)


def test_code_versions_counts_records_per_version():
    a, b = {"source": "aaaa", "commit": "1" * 40}, {"source": "bbbb", "commit": None}
    got = code_versions([{"code_version": a}, {"code_version": b}, {"code_version": a}, {}])
    assert got == {f"aaaa (commit {'1' * 12})": 2, "bbbb (commit None)": 1, "None (commit None)": 1}


def test_records_with_other_settings_are_set_aside_and_fresh_recomputes(tmp_path):
    store = JobStore(tmp_path)
    budget = {"updates": 10}
    recs = run_jobs(JOBS, square_job, store, progress=None, settings=lambda a: {**budget, "x": a})
    assert all(r["settings"] == {"updates": 10, "x": int(r["id"][3:])} for r in recs)
    before = (tmp_path / "cells" / "job1.json").stat().st_mtime_ns
    lines = []
    run_jobs(JOBS, square_job, store, progress=lines.append, settings=lambda a: {**budget, "x": a})
    assert lines[0].startswith("0 job(s) to run")  # same settings: everything reused
    budget["updates"] = 20
    lines.clear()
    recs = run_jobs(JOBS[:2], square_job, store, progress=lines.append, settings=lambda a: {**budget, "x": a})
    assert sum("other settings" in ln for ln in lines) == 2 and lines[2].startswith("2 job(s) to run")
    assert sorted((tmp_path / "cells" / "stale").iterdir()) == [tmp_path / "cells" / "stale" / "job0.json.0",
                                                                 tmp_path / "cells" / "stale" / "job1.json.0"]
    by = {r["id"]: r for r in recs}
    assert by["job1"]["settings"]["updates"] == 20 and by["job4"]["settings"]["updates"] == 10  # others kept
    run_jobs(JOBS[:1], square_job, store, progress=None, settings=lambda a: {**budget, "x": a}, fresh=True)
    assert (tmp_path / "cells" / "job1.json").stat().st_mtime_ns != before
    assert not (tmp_path / "cells" / "stale" / "job0.json.1").exists()  # fresh deletes, it does not set aside


def test_inputs_digest_leaves_out_where_runs_are_written_and_nothing_else():
    cfg = {"output": "runs/a", "seed": 1, "local": {"lr": 0.1, "output": "kept: not a run's folder"}}
    assert inputs_digest((cfg, 0.1, 1)) == inputs_digest(({**cfg, "output": "/elsewhere/b"}, 0.1, 1))
    assert inputs_digest(cfg) == inputs_digest({**cfg, "output": "b"}) != inputs_digest((cfg, 0.1, 1))
    for changed in ({**cfg, "seed": 2}, {**cfg, "local": {**cfg["local"], "lr": 0.2}},
                    {**cfg, "local": {**cfg["local"], "output": "x"}}):
        assert inputs_digest(changed) != inputs_digest(cfg)
    assert inputs_digest((cfg, 0.1, 1)) != inputs_digest((cfg, 0.2, 1))
