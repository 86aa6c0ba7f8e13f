"""Faults while writing lose nothing: atomic files, no leftovers, one-line errors, strict JSON."""

from __future__ import annotations

import errno
import json
import math

import pytest

from aflqueue import ValidationError
from aflqueue.io import atomic_write, atomic_write_json, dumps_json, read_json


def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"done": 1})
    before = target.read_bytes()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", full)
    with pytest.raises(ValidationError) as e:
        atomic_write_json(target, {"done": 2})
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg and "No space left" in msg
    assert target.read_bytes() == before  # the finished file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no .tmp left behind


def test_crash_mid_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "trace.bin"

    def half_then_crash(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt  # a kill while writing

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValidationError) as e:
        atomic_write_json(blocker / "inside" / "r.json", {})  # a file where a folder must be
    assert "\n" not in str(e.value) and "r.json" in str(e.value)


def test_strict_json():
    text = dumps_json({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (1, 2)}})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": {"d": [1, 2]}}
    assert "NaN" not in text and "Infinity" not in text


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_bytes(b"\xff{")
    with pytest.raises(ValidationError, match="x.json"):
        read_json(bad)
