"""Trace files as hostile input, and as a faithful record.

Malformed files -- a truncated or corrupt archive, wrong dtypes, object arrays, NaN/inf/negative/
decreasing times, a concurrency of 1e12, versions shifted by 1e9, huge declared sizes, deep JSON,
extra or missing arrays, zip directory bombs -- each end in one ``ValidationError`` naming the
file (never another exception, never a large allocation: checked with tracemalloc under a tight
``RLIMIT_AS`` in a subprocess), and ``aflqueue schedule FILE`` exits 2 with one line on stderr
naming the file. Valid traces (random systems, sizes, seeds, engines and chunk sizes) round-trip
bit for bit through save/load, in memory and streamed, and files of the earlier format 1 (written
here as the earlier ``Trace.save`` wrote them) still load.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aflqueue as aq
from aflqueue import ValidationError
from aflqueue.cli import main
from aflqueue.sim import Trace, TraceFile, estimate, simulate, simulate_to_file
from aflqueue.sim.fast import record_fast
from aflqueue.sim.records import TaskRecorder
from aflqueue.sim.simpy_model import record_simpy
from aflqueue.sim.columns import COLUMNS, INT_COLUMNS
from aflqueue.sim.tracefile import MAX_JSON_DEPTH, TraceWriter, write_trace

ROOT = Path(__file__).resolve().parents[1]
SMALL = aq.System.from_rates([1.0, 0.5, 0.2], routing=[0.5, 0.3, 0.2], concurrency=4)
CHUNK = 256  # several chunks per file


# ------------------------------------------------------------------ crafting files
def npy(a: np.ndarray, pickle: bool = False) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, a, allow_pickle=pickle)
    return b.getvalue()


def header_npy(d) -> bytes:
    return npy(np.frombuffer(json.dumps(d).encode(), dtype=np.uint8))


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_members(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]],
                  compression=zipfile.ZIP_STORED) -> Path:
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w", compression=compression) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name is the point of one case
        for name, data in items:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            z.writestr(info, data)
    return path


def mark_encrypted(data: bytes, name: bytes) -> bytes:
    """The archive with ``name``'s entry flagged as encrypted (local header and directory)."""
    out = bytearray(data)
    for sig, flags, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = out.find(sig)
        while pos >= 0:
            if out[pos + name_at:pos + name_at + len(name)] == name:
                out[pos + flags] |= 0x1
            pos = out.find(sig, pos + 4)
    return bytes(out)


def load_array(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def header_of(members) -> dict:
    return json.loads(load_array(members["header.npy"]).tobytes())


def column(members, name: str) -> np.ndarray:
    """A column reassembled from a format-2 file's chunks (aliases resolved)."""
    aliases = {"downlink_end": "dispatch_time", "uplink_end": "compute_end", "completion_time": "uplink_end"}
    h = header_of(members)
    out = []
    for i in range(-(-h["tasks"] // h["chunk"])):
        c = name
        while f"{c}.{i:05d}.npy" not in members:
            c = aliases[c]
        out.append(load_array(members[f"{c}.{i:05d}.npy"]))
    return np.concatenate(out)


def with_column(members, name: str, values: np.ndarray) -> dict[str, bytes]:
    """``members`` with a column replaced (every chunk stored explicitly)."""
    h = header_of(members)
    out = dict(members)
    for i in range(-(-h["tasks"] // h["chunk"])):
        out[f"{name}.{i:05d}.npy"] = npy(values[i * h["chunk"]:(i + 1) * h["chunk"]])
    return out


def with_header(members, **changes) -> dict[str, bytes]:
    h = {**header_of(members), **changes}
    return {**members, "header.npy": header_npy(h)}


def write_v1(path: Path, trace: Trace, **header_changes) -> Path:
    """A trace file as the earlier Trace.save wrote it (format 1: np.savez_compressed of int64 and
    float64 columns, the JSON header as uint8, routing)."""
    header = {"n_clients": trace.n_clients, "concurrency": trace.concurrency, "meta": trace.meta, "format": 1,
              **header_changes}
    cols = {c: np.asarray(getattr(trace, c), dtype=np.int64 if c in INT_COLUMNS else np.float64) for c in COLUMNS}
    with open(path, "wb") as f:
        np.savez_compressed(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), routing=trace.routing,
                            **cols)
    return path


@pytest.fixture(scope="module")
def small_trace():
    return simulate(SMALL, 600, seed=3)


@pytest.fixture(scope="module")
def good(tmp_path_factory, small_trace):
    """A valid format-2 file in several chunks, and its members."""
    p = write_trace(small_trace, tmp_path_factory.mktemp("good") / "good.npz", chunk=CHUNK)
    return p, read_members(p)


def patch_end_record(data: bytes, dir_size: int) -> bytes:
    pos = data.rfind(b"PK\x05\x06")
    return data[:pos + 12] + struct.pack("<L", dir_size) + data[pos + 16:]


def zip64_bomb(data: bytes) -> bytes:
    """A zip64 end record and locator claiming a 2^60-byte directory, before the end record."""
    pos = data.rfind(b"PK\x05\x06")
    rec = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 10, 10, 2**60, 0)
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, pos, 1)
    end = bytearray(data[pos:])
    end[8:12] = struct.pack("<2H", 0xFFFF, 0xFFFF)
    return data[:pos] + rec + loc + bytes(end)


def hostile_cases(good, small_trace, tmp: Path) -> dict[str, Path]:
    """name -> a malformed trace file."""
    path, m = good
    raw = path.read_bytes()
    h = header_of(m)
    T, U = h["tasks"], h["updates"]
    av = column(m, "applied_version")
    dv = column(m, "dispatch_version")
    ct = column(m, "completion_time")
    cs = column(m, "compute_start")
    late = int(np.flatnonzero(cs > 1.0)[0])
    done = np.flatnonzero(av >= 1)
    first_done, last_done = int(np.flatnonzero(av == 1)[0]), int(np.flatnonzero(av == U)[0])

    def swap(a, i, j):
        b = a.copy()
        b[i], b[j] = a[j], a[i]
        return b.astype(np.int32)

    cases: dict[str, bytes | dict] = {
        "empty": b"", "not_a_zip": b"not a zip archive " * 100, "truncated_100": raw[:100],
        "truncated_half": raw[:len(raw) // 2], "truncated_end_record": raw[:-10], "truncated_last_byte": raw[:-1],
        "directory_bomb": patch_end_record(raw, 0xFFFFFFF0), "zip64_directory_bomb": zip64_bomb(raw),
        "corrupt_data": raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:],
        # header
        "header_not_json": {**m, "header.npy": npy(np.frombuffer(b"{nope", dtype=np.uint8))},
        "header_not_utf8": {**m, "header.npy": npy(np.frombuffer(b"\xff\xfe\x00", dtype=np.uint8))},
        "header_a_list": {**m, "header.npy": header_npy([1, 2, 3])},
        "header_deep_meta": {**m, "header.npy": npy(np.frombuffer(
            (b'{"format": 2, "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), dtype=np.uint8))},
        "header_just_too_deep": with_header(m, meta={"x": json.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)}),
        "header_int64": {**m, "header.npy": npy(np.frombuffer(json.dumps(h).encode(), dtype=np.uint8).astype(np.int64))},
        "header_declares_2e12_bytes": {**m, "header.npy": m["header.npy"].replace(
            f"({len(json.dumps(h).encode())},)".encode(), b"(2000000000000,)", 1)},
        "header_missing_n_clients": {**m, "header.npy": header_npy({k: v for k, v in h.items() if k != "n_clients"})},
        "n_clients_1e12": with_header(m, n_clients=10**12), "n_clients_0": with_header(m, n_clients=0),
        "n_clients_string": with_header(m, n_clients="3"), "n_clients_bool": with_header(m, n_clients=True),
        "n_clients_fraction": with_header(m, n_clients=2.5), "n_clients_too_few": with_header(m, n_clients=2),
        "concurrency_1e12": with_header(m, concurrency=10**12), "concurrency_0": with_header(m, concurrency=0),
        "concurrency_inconsistent": with_header(m, concurrency=2, updates=U),
        "tasks_1e12": with_header(m, tasks=10**12), "tasks_more_than_arrays": with_header(m, tasks=T + 5, updates=U + 5),
        "updates_off_by_one": with_header(m, updates=U - 1), "updates_negative": with_header(m, updates=-1),
        "chunk_0": with_header(m, chunk=0), "chunk_1": with_header(m, chunk=1, tasks=10**9, updates=10**9 - 4),
        "format_3": with_header(m, format=3), "format_string": with_header(m, format="2"),
        "meta_a_list": with_header(m, meta=[1]),
        # members
        "extra_member": {**m, "evil.npy": npy(np.zeros(3))},
        "extra_chunk": {**m, "client.00009.npy": m["client.00000.npy"]},
        "missing_member": {k: v for k, v in m.items() if k != "compute_start.00001.npy"},
        "missing_header": {k: v for k, v in m.items() if k != "header.npy"},
        "duplicate_member": list(m.items()) + [("client.00000.npy", m["client.00000.npy"])],
        "object_array": {**m, "client.00000.npy": npy(np.array([{"a": 1}] * CHUNK, dtype=object), pickle=True)},
        "structured_dtype": {**m, "client.00000.npy": npy(np.zeros(CHUNK, dtype=[("a", "<i4")]))},
        "client_float64": {**m, "client.00000.npy": npy(load_array(m["client.00000.npy"]).astype(np.float64))},
        "client_int64": {**m, "client.00000.npy": npy(load_array(m["client.00000.npy"]).astype(np.int64))},
        "times_float32": {**m, "compute_end.00000.npy": npy(load_array(m["compute_end.00000.npy"]).astype(np.float32))},
        "times_int32": {**m, "compute_end.00000.npy": npy(load_array(m["compute_end.00000.npy"]).astype(np.int32))},
        "times_big_endian": {**m, "compute_end.00000.npy": npy(load_array(m["compute_end.00000.npy"]).astype(">f8"))},
        "two_dimensional": {**m, "client.00000.npy": npy(load_array(m["client.00000.npy"]).reshape(2, -1))},
        "one_short": {**m, "client.00000.npy": npy(load_array(m["client.00000.npy"])[:-1])},
        "declares_2e12_entries": {**m, "client.00000.npy": m["client.00000.npy"].replace(
            f"({CHUNK},)".encode(), b"(2000000000000,)", 1)},
        "bzip2_member": ("bzip2", m), "encrypted_flag": mark_encrypted(raw, b"client.00000.npy"),
        # values
        "dispatch_time_nan": with_column(m, "dispatch_time", np.where(np.arange(T) == 7, np.nan, column(m, "dispatch_time"))),
        "compute_end_inf": with_column(m, "compute_end", np.where(np.arange(T) == 9, np.inf, column(m, "compute_end"))),
        "compute_start_negative": with_column(m, "compute_start", np.where(np.arange(T) == 0, -1.0,
                                                                            column(m, "compute_start"))),
        "stages_out_of_order": with_column(m, "compute_end", np.where(np.arange(T) == late, cs[late] - 1e-9,
                                                                       column(m, "compute_end"))),
        "dispatch_time_decreasing": with_column(m, "dispatch_time", column(m, "dispatch_time")[::-1].copy()),
        "completion_on_a_task_in_flight": with_column(m, "completion_time", np.where(av < 0, 1e6, ct)),
        "client_out_of_range": with_column(m, "client", np.where(np.arange(T) == 5, 3, column(m, "client")).astype(np.int32)),
        "client_negative": with_column(m, "client", np.where(np.arange(T) == 5, -1, column(m, "client")).astype(np.int32)),
        "applied_version_shifted_1e9": with_column(m, "applied_version", np.where(av >= 1, av + 10**9, av).astype(np.int32)),
        "dispatch_version_shifted_1e9": with_column(m, "dispatch_version", (dv + 10**9).astype(np.int32)),
        "dispatch_version_shifted_minus_1e9": with_column(m, "dispatch_version", (dv - 10**9).astype(np.int32)),
        "applied_version_zero": with_column(m, "applied_version", np.where(np.arange(T) == done[3], 0, av).astype(np.int32)),
        "applied_version_repeated": with_column(m, "applied_version", np.where(np.arange(T) == done[3], av[done[4]],
                                                                                av).astype(np.int32)),
        "applied_version_missing": with_column(m, "applied_version", np.where(np.arange(T) == done[-1], -1,
                                                                               av).astype(np.int32)),
        "relative_delay_negative": with_column(m, "applied_version", swap(av, first_done, last_done)),
        "routing_wrong_length": {**m, "routing.npy": npy(np.array([0.5, 0.5]))},
        "routing_nan": {**m, "routing.npy": npy(np.array([np.nan, 0.5, 0.5]))},
        "routing_sums_to_2": {**m, "routing.npy": npy(np.array([1.0, 0.5, 0.5]))},
        "routing_int": {**m, "routing.npy": npy(np.array([1, 0, 0]))},
    }
    # two consecutive updates whose tasks both waited: swapping their versions keeps every other rule
    rd = av - 1 - dv
    k = next(i for i in range(len(done) - 1) if rd[done[i]] >= 1 and rd[done[i + 1]] >= 1 and True)
    by_version = done[np.argsort(av[done])]
    a, b = by_version[k], by_version[k + 1]
    if ct[a] != ct[b] and rd[a] >= 1 and rd[b] >= 1:
        swapped = av.copy()
        swapped[a], swapped[b] = av[b], av[a]
        cases["completion_decreasing_in_version"] = with_column(m, "applied_version", swapped.astype(np.int32))
    out = {}
    for name, spec in cases.items():
        p = tmp / f"{name}.npz"
        if isinstance(spec, bytes):
            p.write_bytes(spec)
        elif isinstance(spec, tuple) and spec[0] == "bzip2":
            write_members(p, spec[1], compression=zipfile.ZIP_BZIP2)
        else:
            write_members(p, spec)
        out[name] = p
    # format 1
    out["v1_concurrency_1e12"] = write_v1(tmp / "v1_concurrency_1e12.npz", small_trace, concurrency=10**12)
    v1 = read_members(write_v1(tmp / "v1.npz", small_trace))
    v1_cases = {
        "v1_length_mismatch": {**v1, "client.npy": npy(np.asarray(small_trace.client, dtype=np.int64)[:-1])},
        "v1_object_array": {**v1, "client.npy": npy(np.array([None] * len(small_trace), dtype=object), pickle=True)},
        "v1_extra_member": {**v1, "evil.npy": npy(np.zeros(2))},
        "v1_versions_shifted": {**v1, "applied_version.npy": npy(np.where(small_trace.completed,
                                                                          np.asarray(small_trace.applied_version,
                                                                                     dtype=np.int64) + 10**9, -1))},
        "v1_uint64": {**v1, "client.npy": npy(np.asarray(small_trace.client, dtype=np.uint64))},
    }
    for name, spec in v1_cases.items():
        out[name] = write_members(tmp / f"{name}.npz", spec, compression=zipfile.ZIP_DEFLATED)
    corrupt = bytearray((tmp / "v1.npz").read_bytes())
    start = corrupt.find(b"compute_end.npy") + 200
    corrupt[start:start + 50] = b"\x00" * 50
    out["v1_corrupt_deflate"] = tmp / "v1_corrupt_deflate.npz"
    out["v1_corrupt_deflate"].write_bytes(bytes(corrupt))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, good, small_trace):
    return hostile_cases(good, small_trace, tmp_path_factory.mktemp("hostile"))


# ------------------------------------------------------------------ hostile files
def test_the_good_file_is_good(good, small_trace):
    path, _ = good
    t = Trace.load(path)
    assert t.digest() == small_trace.digest()


def test_every_malformed_file_is_one_validation_error_naming_it(hostile, tmp_path):
    assert len(hostile) >= 70
    for name, path in hostile.items():
        with pytest.raises(ValidationError) as e:
            Trace.load(path)
        assert str(path) in str(e.value), (name, str(e.value))
        assert e.value.field.startswith("trace"), (name, e.value.field)
        assert "\n" not in str(e.value), name


@pytest.mark.parametrize("name, field, words", [
    ("truncated_half", "trace", "not"), ("concurrency_1e12", "trace.concurrency", "[1, "),
    ("n_clients_1e12", "trace.n_clients", "[1, 16777216]"), ("header_deep_meta", "trace.header", "nested deeper"),
    ("applied_version_shifted_1e9", "trace.applied_version", "[1, "), ("dispatch_version_shifted_1e9",
                                                                       "trace.dispatch_version", "max(0, task - m + 1)"),
    ("object_array", "trace.client", "dtype object"), ("client_float64", "trace.client", "allowed: int32"),
    ("declares_2e12_entries", "trace.client", "2000000000000"), ("dispatch_time_nan", "trace.dispatch_time", "set"),
    ("compute_end_inf", "trace.compute_end", "finite"), ("extra_member", "trace", "unexpected member 'evil.npy'"),
    ("missing_member", "trace.compute_start", "missing"), ("directory_bomb", "trace", "members"),
    ("zip64_directory_bomb", "trace", "members"), ("applied_version_repeated", "trace.applied_version", "once"),
    ("completion_decreasing_in_version", "trace.completion_time", "non-decreasing in version"),
    ("stages_out_of_order", "trace.compute_end", ">= compute_start"), ("v1_concurrency_1e12", "trace.concurrency", "[1, "),
])
def test_the_error_names_the_field_and_what_is_allowed(hostile, name, field, words):
    with pytest.raises(ValidationError) as e:
        Trace.load(hostile[name])
    assert e.value.field == field and words in e.value.detail, (name, str(e.value))


def test_schedule_exits_2_with_one_line_naming_the_file(hostile, tmp_path, capsys):
    for name, path in hostile.items():
        assert main(["schedule", str(path), "-o", str(tmp_path / "s")]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "s").exists()


def test_schedule_of_a_truncated_file_in_a_fresh_process(hostile, tmp_path):
    r = subprocess.run([sys.executable, "-m", "aflqueue.cli", "schedule", str(hostile["truncated_half"]), "-o",
                        str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(hostile["truncated_half"]) in r.stderr, r.stderr


CHILD = r"""
import json, resource, sys, tracemalloc
from aflqueue.sim import Trace
from aflqueue.errors import ValidationError
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 512 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
out = {}
for name, path in json.loads(sys.argv[1]).items():
    tracemalloc.start()
    try:
        Trace.load(path)
        kind = "loaded"
    except ValidationError:
        kind = "ValidationError"
    except BaseException as e:
        kind = type(e).__name__
    out[name] = [kind, tracemalloc.get_traced_memory()[1]]
    tracemalloc.stop()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_malformed_files_allocate_little_under_a_tight_address_space_limit(hostile, good):
    cases = {k: str(v) for k, v in hostile.items()}
    cases["good"] = str(good[0])
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res.pop("good")[0] == "loaded"  # the limit leaves room for real work
    for name, (kind, peak) in res.items():
        assert kind == "ValidationError", (name, kind)
        assert peak < 16 * 2**20, (name, peak)  # the small files are ~40 kB; nothing sized by a claim


def test_memory_cap_refuses_before_allocating(good, small_trace):
    path, _ = good
    with pytest.raises(ValidationError, match="max_memory_gb") as e:
        Trace.load(path, max_memory_gb=1e-5)
    assert str(path) in str(e.value)
    with pytest.raises(ValidationError, match="max_memory_gb"):
        Trace.load(path, max_memory_gb=-1)
    with TraceFile.open(path) as tf:  # what a load needs: the columns stored, plus the reader's chunk
        assert tf.load_bytes() >= 36 * len(small_trace)


def test_saving_an_invalid_trace_is_refused_and_leaves_no_file(small_trace, tmp_path):
    cols = {c: np.array(getattr(small_trace, c)) for c in COLUMNS}
    cols["client"][3] = 99
    bad = Trace(**cols, n_clients=small_trace.n_clients, concurrency=small_trace.concurrency,
                routing=small_trace.routing)
    with pytest.raises(ValidationError, match="trace.client"):
        bad.save(tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ faithful files
def assert_same_trace(a: Trace, b: Trace) -> None:
    for c in COLUMNS:
        x, y = getattr(a, c), getattr(b, c)
        assert np.array_equal(x, y, equal_nan=c not in INT_COLUMNS), c
        if c not in INT_COLUMNS:
            assert np.array_equal(x.view(np.uint64), y.view(np.uint64)), c  # bit for bit, NaNs included
    assert a.n_clients == b.n_clients and a.concurrency == b.concurrency
    assert (a.routing is None) == (b.routing is None)
    if a.routing is not None:
        assert np.array_equal(a.routing, b.routing)
    assert a.digest() == b.digest()


def streamed(system, updates, seed, engine, path: Path, chunk: int) -> Path:
    """The streaming path of simulate_to_file, with a small chunk."""
    T = system.concurrency + updates
    with open(path, "wb") as f, TraceWriter(f, n_clients=system.n, concurrency=system.concurrency, tasks=T,
                                            updates=updates, routing=system.routing, source="test", chunk=chunk) as w:
        rec = TaskRecorder(T, w, chunk=chunk)
        meta = (record_fast if engine == "fast" else record_simpy)(system, updates, seed, rec)
        rec.close()
        w.close({**meta, "system": system.to_dict()})
    return path


SYSTEMS = {
    "single": lambda n, m: aq.System.from_rates(list(np.linspace(0.2, 2.0, n)), concurrency=m),
    "links": lambda n, m: aq.System.from_rates(list(np.linspace(0.2, 2.0, n)), concurrency=m,
                                               downlink_rates=3.0, uplink_rates=2.0, uplink_discipline="delay"),
    "server": lambda n, m: aq.System.from_rates(list(np.linspace(0.2, 2.0, n)), concurrency=m, uplink_rates=2.0,
                                                server_rate=5.0),
    "ties": lambda n, m: aq.System.from_rates([1.0] * n, concurrency=m, service="deterministic"),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(SYSTEMS)), n=st.integers(1, 5), m=st.integers(1, 9), updates=st.integers(1, 500),
       seed=st.integers(0, 2**31), chunk=st.sampled_from([5, 64, 4096]))
def test_random_valid_traces_round_trip_bit_for_bit(tmp_path, kind, n, m, updates, seed, chunk):
    system = SYSTEMS[kind](n, m)
    engine = "fast" if kind in ("single", "ties") and seed % 2 else "simpy"
    t = simulate(system, updates, seed=seed, engine=engine)
    t.verify()
    loaded = Trace.load(write_trace(t, tmp_path / f"{seed}.npz", chunk=chunk))
    assert_same_trace(loaded, t)
    assert loaded.meta == json.loads(json.dumps(t.meta))
    from_stream = Trace.load(streamed(system, updates, seed, engine, tmp_path / f"{seed}.s.npz", chunk))
    assert_same_trace(from_stream, t)
    if updates >= 40:  # enough for a warm-up and batches
        with TraceFile.open(tmp_path / f"{seed}.s.npz") as tf:
            assert estimate(tf, batches=4).to_dict() == estimate(t, batches=4).to_dict()


def test_simulate_to_file_is_simulate(tmp_path):
    for system, engine in ((SYSTEMS["single"](4, 6), "fast"), (SYSTEMS["server"](3, 5), "simpy")):
        t = simulate(system, 5000, seed=11, engine=engine)
        tf = simulate_to_file(system, 5000, tmp_path / f"{engine}.npz", seed=11, engine=engine)
        assert_same_trace(tf.load(Trace), t)
        assert tf.num_updates == 5000 and tf.meta["engine"] == engine and tf.meta["system"] == system.to_dict()
        a, b = estimate(tf, warmup=0.2, batches=10), estimate(t, warmup=0.2, batches=10)
        assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
        assert [e.mean for e in a.relative_delay] == [e.mean for e in b.relative_delay]  # exact floats
        tf.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.npz", "simpy.npz"]  # no temporary left


def test_single_stage_columns_are_stored_once(tmp_path):
    t = simulate(SYSTEMS["single"](3, 4), 1000, seed=2, engine="fast")
    assert np.shares_memory(t.downlink_end, t.dispatch_time) and np.shares_memory(t.uplink_end, t.compute_end)
    assert np.shares_memory(t.completion_time, t.compute_end)
    assert not t.client.flags.writeable and t.client.dtype == np.int32
    names = zipfile.ZipFile(t.save(tmp_path / "t.npz")).namelist()
    assert not any(n.startswith(("downlink_end", "uplink_end", "completion_time")) for n in names)
    loaded = Trace.load(tmp_path / "t.npz")
    assert np.shares_memory(loaded.downlink_end, loaded.dispatch_time)
    # a system with links stores what differs
    t2 = simulate(SYSTEMS["links"](3, 4), 1000, seed=2)
    assert not np.shares_memory(t2.downlink_end, t2.dispatch_time)
    assert_same_trace(Trace.load(t2.save(tmp_path / "t2.npz")), t2)


def test_format_1_files_still_load(tmp_path):
    for system in (SYSTEMS["single"](3, 4), aq.load_system(ROOT / "examples" / "flat.toml")):
        t = simulate(system, 3000, seed=5)
        p = write_v1(tmp_path / "old.npz", t)
        loaded = Trace.load(p)
        assert_same_trace(loaded, t)
        assert loaded.meta["engine"] == t.meta["engine"] and loaded.client.dtype == np.int32
        with TraceFile.open(p) as tf:
            assert tf.format == 1 and tf.num_updates == 3000
            assert estimate(tf).to_dict() == estimate(t).to_dict()


def test_digest_does_not_depend_on_integer_dtypes(small_trace):
    wide = Trace(**{c: np.asarray(getattr(small_trace, c), dtype=np.int64 if c in INT_COLUMNS else np.float64)
                    for c in COLUMNS}, n_clients=small_trace.n_clients, concurrency=small_trace.concurrency,
                 routing=small_trace.routing)
    assert wide.digest() == small_trace.digest()
    shifted = Trace(**{c: np.array(getattr(small_trace, c)) for c in COLUMNS}, n_clients=small_trace.n_clients,
                    concurrency=small_trace.concurrency + 1, routing=small_trace.routing)
    assert shifted.digest() != small_trace.digest()


class _Touch:
    """Unpickling this creates ``marker``: proof that a pickle was run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return self.marker.touch, ()


def test_an_object_array_is_never_unpickled(good, tmp_path):
    _, m = good
    marker = tmp_path / "pickle-ran"
    evil = np.array([_Touch(marker)] * CHUNK, dtype=object)
    for name in ("client.00000.npy", "compute_end.00000.npy", "routing.npy", "header.npy"):
        p = write_members(tmp_path / f"evil-{name}.npz", {**m, name: npy(evil, pickle=True)})
        with pytest.raises(ValidationError, match="dtype object"):
            Trace.load(p)
        assert not marker.exists()
    np.lib.format.read_array(io.BytesIO(npy(evil, pickle=True)), allow_pickle=True)  # the bait works
    assert marker.exists()
