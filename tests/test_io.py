"""Faults while writing lose nothing: atomic files, no leftovers, one-line errors, strict JSON.
And the bounded reader of data files refuses what no file may hold -- at the bounds exactly, by
path, before allocating -- and never runs what a YAML tag asks for."""

from __future__ import annotations

import errno
import json
import math

import pytest

from aflqueue import ValidationError
from aflqueue.io import (MAX_DATA_BYTES, MAX_DEPTH, MAX_INTEGER, atomic_write, atomic_write_data, atomic_write_json,
                         dumps_json, file_errors, join_field, parse_data, read_data, read_json, read_mapping)


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


def nested(depth: int) -> dict:
    """A table nested ``depth`` levels deep, tables and lists alternating."""
    v: object = 1
    for k in range(depth - 1):
        v = [v] if k % 2 else {"k": v}
    return {"top": v}


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_nesting_is_bounded_at_the_limit_exactly(fmt, tmp_path):
    ok = atomic_write_data(tmp_path / f"ok.{fmt}", nested(MAX_DEPTH))
    assert read_data(ok) == nested(MAX_DEPTH)
    deep = atomic_write_data(tmp_path / f"deep.{fmt}", nested(MAX_DEPTH + 1))
    with pytest.raises(ValidationError, match=f"nested deeper than {MAX_DEPTH}") as e:
        read_data(deep)
    assert str(deep) in str(e.value) and e.value.field.startswith("file" if fmt == "json" else "top")  # JSON: by the scan
    # far deeper than any parser's recursion: refused, never a RecursionError
    very = tmp_path / f"very.{fmt}"
    very.write_text({"json": "[" * 10**6 + "]" * 10**6, "toml": "a = " + "[" * 10**5 + "]" * 10**5,
                     "yaml": "a: " + "[" * 10**5 + "]" * 10**5}[fmt])
    with pytest.raises(ValidationError) as e:
        read_data(very, table=False)
    assert str(very) in str(e.value)


def test_integers_and_floats_at_their_bounds(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"a": [MAX_INTEGER, -MAX_INTEGER, 1e308, -1e-308]}))
    assert read_data(f)["a"] == [MAX_INTEGER, -MAX_INTEGER, 1e308, -1e-308]
    for text, field, words in [('{"a": {"b": [1, %d]}}' % (MAX_INTEGER + 1), "a.b[1]", "2^63"),
                               ('{"a": 1%s}' % ("0" * 400), "a", "of 401 digits"),
                               ('{"a": [NaN]}', "a[0]", "finite"), ('{"a": {"b": -Infinity}}', "a.b", "finite"),
                               ('{"a": 1e999}', "a", "finite")]:
        f.write_text(text)
        with pytest.raises(ValidationError) as e:
            read_data(f, prefix="run")
        assert e.value.field == f"run.{field}" and words in e.value.detail and str(f) in e.value.detail, str(e.value)
    f.write_text('{"a": NaN}')  # old records: accepted when asked
    assert math.isnan(read_json(f)["a"])
    with pytest.raises(ValidationError, match="finite"):
        read_json(f, finite=True)


def test_sizes_are_checked_before_reading(tmp_path):
    import tracemalloc

    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(2 * 2**30)  # a sparse 2 GB file: refused from its size
    tracemalloc.start()
    with pytest.raises(ValidationError, match=f"at most {MAX_DATA_BYTES['json']:,}") as e:
        read_data(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(big) in str(e.value) and peak < 2**20
    small = tmp_path / "s.yaml"
    small.write_text("a: " + "1" * 100 + "\n")
    with pytest.raises(ValidationError, match="at most 50"):
        read_data(small, max_bytes=50)


def test_yaml_is_read_safely(tmp_path):
    marker = tmp_path / "ran"
    f = tmp_path / "evil.yaml"
    f.write_text(f"a: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValidationError, match="cannot parse"):
        read_data(f)
    assert not marker.exists()
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    f.write_text(bomb)  # 9^9 values from 400 characters
    with pytest.raises(ValidationError, match="expands to more than"):
        read_data(f)
    f.write_text("a: &a [1, *a]\n")  # a list holding itself
    with pytest.raises(ValidationError):
        read_data(f)
    f.write_text("stage: &s {rate: 2.0}\nclients: [{uplink: *s}, {uplink: *s}]\n")  # plain reuse is fine
    assert read_data(f)["clients"][1] == {"uplink": {"rate": 2.0}}
    for text, words in [("1: a\n", "keys must be strings"), ("when: 2001-12-14\n", "date"),
                        ("x: !!binary aGVsbG8=\n", "bytes"), ("- 1\n", "table of keys"), ("~\n", "got null")]:
        f.write_text(text)
        with pytest.raises(ValidationError, match=words):
            read_data(f)


def test_text_and_tables(tmp_path):
    f = tmp_path / "c.toml"
    f.write_bytes("\ufeffa = 1\n".encode())  # a byte-order mark, as some editors write
    assert read_mapping(f) == {"a": 1}
    for content, words in [(b"", "is empty"), (b"  \n", "is empty"), (b"\xff\xfe", "UTF-8"), (b"a = ", "cannot parse"),
                           (b"a = 1979-05-27", "date")]:
        f.write_bytes(content)
        with pytest.raises(ValidationError, match=words) as e:
            read_mapping(f)
        assert str(f) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "c.txt").write_text("a = 1")
    with pytest.raises(ValidationError, match="unknown extension"):
        read_mapping(tmp_path / "c.txt")
    with pytest.raises(ValidationError, match="not a file"):
        read_mapping(tmp_path)


def test_error_names(tmp_path):
    assert join_field("run", "time[3]") == "run.time[3]" and join_field("clients", "[2].rate") == "clients[2].rate"
    assert join_field("", "a") == "a" and join_field("run.", "") == "run"
    with pytest.raises(ValidationError) as e:
        with file_errors("'f.toml'", "constants"):
            raise ValidationError("L", "must be > 0")
    assert e.value.field == "constants.L" and e.value.detail == "'f.toml': must be > 0"


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_written_data_reads_back(fmt, tmp_path):
    d = {"a": 1.5, "b": [1, 2, 3], "c": {"d": "text \"quoted\"", "e": True, "f": [[1.0, 2.0], [3.0, 4.0]]},
         "g": 1e-05, "h": 2**62, "nan": math.nan}
    back = read_data(atomic_write_data(tmp_path / f"d.{fmt}", d))
    want = {k: v for k, v in d.items() if k != "nan"}
    assert {k: v for k, v in back.items() if k != "nan"} == want
    assert back.get("nan") is None  # written as null (left out of TOML): never a NaN the reader refuses


@pytest.mark.parametrize("fmt, text", [("json", '{"a": 1, "b": {"c": 1, "c": 2}}'), ("yaml", "a: 1\nb:\n  c: 1\n  c: 2\n"),
                                       ("toml", "a = 1\n[b]\nc = 1\nc = 2\n")])
def test_a_key_given_twice_is_refused(fmt, text):
    # the parsers would keep the last value silently (TOML refuses it by itself)
    with pytest.raises(ValidationError, match="twice|overwrite"):
        parse_data(text, fmt, "f")


def test_yaml_merge_keys_and_anchors_still_read():
    text = "base: &B {a: 1, b: 2}\nd:\n  <<: *B\n  b: 3\ne: *B\n"
    assert parse_data(text, "yaml", "f") == {"base": {"a": 1, "b": 2}, "d": {"a": 1, "b": 3}, "e": {"a": 1, "b": 2}}
