"""Trace files: written as a run goes, read chunk by chunk, validated before anything is allocated.

A trace file is a zip archive of ``.npy`` arrays (``numpy.load`` opens it; nothing in it is ever
unpickled). **Format 2** (written since this module exists)::

    header.npy              uint8: UTF-8 JSON {"format": 2, "n_clients", "concurrency", "tasks",
                            "updates", "chunk", "meta"}
    routing.npy             float64 (n,), optional: the routing the dispatches were drawn with
    <column>.<i:05d>.npy    chunk i of a column: tasks [i * chunk, min(tasks, (i + 1) * chunk)),
                            int32 (client, dispatch_version, applied_version) or float64 (times)

Members are stored uncompressed: writing costs a copy, not a compression (deflate runs at about
60 MB/s on these columns, slower than the simulator produces them). A chunk of a column of
:data:`~aflqueue.sim.columns.ALIASES` equal to its target, bit for bit, is left out and read as the
target's. **Format 1** (earlier versions; still read): one compressed member per column
(``client.npy`` ... ``applied_version.npy``, any integer dtype of 4 or 8 bytes, float64 times),
``header.npy`` (``"format": 1``, ``n_clients``, ``concurrency``, ``meta``) and ``routing.npy``.

Reading (:class:`TraceFile`) validates before it allocates: the zip directory (at most
:data:`MAX_MEMBERS` entries, read from its end record before ``zipfile`` parses it), member names
(no unknown, missing or repeated ones), compression (stored or deflate only, no encryption), each
``.npy`` header (dtype exactly as above, never an object dtype, shape one entry per task of the
chunk, declared size consistent with the zip entry), the JSON header (at most
:data:`MAX_HEADER_BYTES`, nesting at most :data:`MAX_JSON_DEPTH`, integer sizes in range:
``1 <= n_clients <= MAX_CLIENTS``, ``1 <= concurrency <= tasks <= MAX_TASKS``,
``updates = tasks - concurrency``) and the memory needed (refused beyond
``max_memory_gb``); then the values, chunk by chunk, with
:class:`~aflqueue.sim.tracecheck.TraceChecker`. Every failure, a truncated or corrupt archive
included, is one :class:`~aflqueue.errors.ValidationError` naming the file, the field and what is
allowed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from ..errors import ValidationError, check_integer
from ..io import atomic_write, json_safe
from .records import TraceAssembler, same_bits
from .columns import ALIASES, CHUNK, COLUMN_DTYPES, COLUMNS, INT_COLUMNS, MAX_TASKS, check_routing
from .tracecheck import TraceChecker

__all__ = ["TraceFile", "TraceWriter", "write_trace", "FORMAT", "DEFAULT_MAX_MEMORY_GB", "MAX_CLIENTS",
           "MAX_HEADER_BYTES", "MAX_JSON_DEPTH", "MAX_CHUNKS", "MAX_MEMBERS"]

#: The format written.
FORMAT = 2
#: Memory a reader may use unless told otherwise (GB = 2^30 bytes), as ``aflqueue simulate --max-memory``.
DEFAULT_MAX_MEMORY_GB = 4.0
#: Most clients in a trace file.
MAX_CLIENTS = 2**24
#: Largest JSON header (bytes); its ``meta`` holds the system (about 60 bytes per client).
MAX_HEADER_BYTES = 16 * 2**20
#: Deepest nesting of arrays/objects in the JSON header (a system needs about 6).
MAX_JSON_DEPTH = 32
#: Most chunks per column (2**31 tasks in chunks of :data:`~aflqueue.sim.columns.CHUNK`).
MAX_CHUNKS = 8192
#: Most members in a trace file (header, routing, nine columns per chunk).
MAX_MEMBERS = 2 + len(COLUMNS) * MAX_CHUNKS
#: Largest zip central directory read (bytes): 128 per member, twice what the writer needs.
MAX_DIRECTORY_BYTES = 128 * MAX_MEMBERS
#: Largest ``.npy`` header of a member (numpy's own default limit).
MAX_NPY_HEADER = 10_000
#: Format-1 integer columns: little-endian 4- or 8-byte integers.
_V1_INT_DTYPES = (np.dtype("<i8"), np.dtype("<i4"))
_MEMBER = re.compile(r"^([a-z_]+)\.(\d{5})\.npy$")
#: Bytes held per task by a loaded trace, for each column.
_ITEM = {c: COLUMN_DTYPES[c].itemsize for c in COLUMNS}


def _member(column: str, index: int) -> str:
    return f"{column}.{index:05d}.npy"


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (a linear scan, no recursion)."""
    bare = re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', '""', text)  # unrolled: no backtracking state per character
    b = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def header_text(header: dict[str, Any], field: str = "meta") -> bytes:
    """The JSON header as bytes, refused (``field``) if a reader would refuse it."""
    text = json.dumps(json_safe(header), allow_nan=False)
    data = text.encode("utf-8")
    if len(data) > MAX_HEADER_BYTES:
        raise ValidationError(field, f"the trace header would take {len(data):,} bytes (at most "
                                     f"{MAX_HEADER_BYTES:,})")
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise ValidationError(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return data


# --------------------------------------------------------------------------- writing
class TraceWriter:
    """Writes a trace file (format 2) chunk by chunk: a sink for
    :class:`~aflqueue.sim.records.TaskRecorder` or for the chunks of a trace in memory.

    Each chunk is validated (:class:`~aflqueue.sim.tracecheck.TraceChecker`) before it is
    written, so a file that this writer completes is one that :class:`TraceFile` reads. Call
    :meth:`close` with the metadata after the last chunk; ``fileobj`` must be seekable. Use it as a
    context manager so that a failed write releases the archive.
    """

    def __init__(self, fileobj: BinaryIO, *, n_clients: int, concurrency: int, tasks: int, updates: int,
                 routing: np.ndarray | None, source: str, chunk: int = CHUNK):
        n = check_integer(n_clients, "n_clients", 1, MAX_CLIENTS)
        T = check_integer(tasks, "tasks", 1, MAX_TASKS)
        m = check_integer(concurrency, "concurrency", 1, T)
        U = check_integer(updates, "updates", T - m, T - m)  # m tasks in flight at the end
        self.chunk = check_integer(chunk, "chunk", max(1, -(-T // MAX_CHUNKS)), MAX_TASKS)
        self.n, self.m, self.T, self.U = n, m, T, U
        self.routing = None if routing is None else check_routing(routing, n)
        self.checker = TraceChecker(source, n, m, T, U)
        self.zip = zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.written = 0

    def _array(self, name: str, a: np.ndarray) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same run, same bytes
        info.compress_type = zipfile.ZIP_STORED
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(a.dtype),
                                                    "fortran_order": False, "shape": a.shape})
        info.file_size = head.tell() + a.nbytes
        with self.zip.open(info, "w") as f:
            f.write(head.getvalue())
            f.write(memoryview(a).cast("B"))

    def __call__(self, start: int, cols: dict[str, np.ndarray]) -> None:
        """Write tasks ``start ..`` (``start`` a multiple of the chunk; chunks in order, each whole
        but the last)."""
        k = cols["client"].size
        if start != self.written or (k != self.chunk and start + k != self.T):
            raise RuntimeError("trace writer: chunks must come in order, each whole but the last")
        cols = dict(cols)
        for c in COLUMNS:  # targets come first: an alias of an alias ends at the stored column
            if c in ALIASES and same_bits(cols[c], cols[ALIASES[c]]):
                cols[c] = cols[ALIASES[c]]
        self.checker.check(start, cols)
        index = start // self.chunk
        for c in COLUMNS:
            if c in ALIASES and cols[c] is cols[ALIASES[c]]:
                continue
            self._array(_member(c, index), np.ascontiguousarray(cols[c], dtype=COLUMN_DTYPES[c]))
        self.written = start + k

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if kind is not None and self.zip.fp is not None:  # a failed write: the caller discards the file
            try:
                self.zip.close()
            except (OSError, ValueError):
                pass

    def close(self, meta: dict[str, Any]) -> None:
        """Check the whole trace, write the header and routing, and finish the archive."""
        self.checker.finish()
        header = {"format": FORMAT, "n_clients": self.n, "concurrency": self.m, "tasks": self.T,
                  "updates": self.U, "chunk": self.chunk, "meta": meta}
        self._array("header.npy", np.frombuffer(header_text(header), dtype=np.uint8))
        if self.routing is not None:
            self._array("routing.npy", np.ascontiguousarray(self.routing, dtype=np.float64))
        self.zip.close()


def write_trace(trace: Any, path: str | Path, chunk: int = CHUNK) -> Path:
    """Write ``trace`` to ``path`` (``.npz``, format 2), validated and atomically."""
    p = Path(path)
    if p.suffix != ".npz":
        raise ValidationError("trace", f"trace files are .npz (got {str(p)!r}); use to_csv for CSV")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f, TraceWriter(f, n_clients=trace.n_clients, concurrency=trace.concurrency,
                                               tasks=len(trace), updates=trace.num_updates, routing=trace.routing,
                                               source=f"the trace being saved to {str(p)!r}", chunk=chunk) as w:
            for start, cols in trace.chunks(size=w.chunk):
                w(start, cols)
            w.close(trace.meta)

    return atomic_write(p, write)


# --------------------------------------------------------------------------- reading
@contextlib.contextmanager
def _readable(source: str):
    """Any failure of the archive or of numpy's header parser as one ValidationError."""
    try:
        yield
    except ValidationError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, struct.error, ValueError,
            KeyError, TypeError, NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError,
            SyntaxError, RecursionError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValidationError("trace", f"{source} is not a readable trace file ({type(e).__name__}: {reason})") from None


def _directory_size(f: BinaryIO, size: int, source: str) -> tuple[int, int]:
    """``(entries, directory bytes)`` as ``zipfile`` will find them (its end-record search, zip64
    record included), read before ``zipfile`` parses the directory: it reads the whole directory
    into memory, whatever size the end record declares."""
    if size < 22:
        raise ValidationError("trace", f"{source} is not a zip archive (too short: {size} bytes; truncated?)")
    f.seek(size - 22)
    rec = f.read(22)
    at = size - 22
    if not (rec[:4] == b"PK\x05\x06" and rec[-2:] == b"\x00\x00"):
        first = max(size - 2**16 - 22, 0)
        f.seek(first)
        data = f.read()
        hit = data.rfind(b"PK\x05\x06")
        rec = data[hit:hit + 22] if hit >= 0 else b""
        if len(rec) != 22:
            raise ValidationError("trace", f"{source} is not a zip archive (no end record; truncated?)")
        at = first + hit
    entries, dir_size = struct.unpack("<4s4H2LH", rec)[4:6]
    if at >= 20 + 56:  # a zip64 locator right before the end record, and its record right before that
        f.seek(at - 20 - 56)
        z64 = f.read(76)
        if z64[56:60] == b"PK\x06\x07" and z64[:4] == b"PK\x06\x06":
            entries, dir_size = struct.unpack("<QQ", z64[32:48])
    return int(entries), int(dir_size)


class _Members:
    """The archive's members, checked against what a format allows; arrays read with bounds."""

    def __init__(self, zf: zipfile.ZipFile, source: str):
        self.zf = zf
        self.source = source
        infos = zf.infolist()
        self.info: dict[str, zipfile.ZipInfo] = {}
        for i in infos:
            if i.filename in self.info:
                raise ValidationError("trace", f"{source}: member {i.filename!r} appears twice")
            if i.flag_bits & 0x1:
                raise ValidationError("trace", f"{source}: member {i.filename!r} is encrypted")
            if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValidationError("trace", f"{source}: member {i.filename!r} uses compression method "
                                               f"{i.compress_type} (allowed: stored, deflate)")
            self.info[i.filename] = i

    def has(self, name: str) -> bool:
        return name in self.info

    def open_array(self, name: str, field: str, dtypes: Sequence[np.dtype], count: int | None,
                   max_count: int) -> tuple[BinaryIO, np.dtype, int]:
        """Open member ``name`` and check its ``.npy`` header: a 1-D C-order array of one of
        ``dtypes`` with ``count`` entries (or at most ``max_count``), whose byte size matches the
        zip entry. Returns ``(stream at the data, dtype, count)``."""
        src = self.source
        info = self.info.get(name)
        if info is None:
            raise ValidationError(field, f"{src}: member {name!r} is missing")
        f = self.zf.open(info)
        try:
            major, _ = np.lib.format.read_magic(f)
            if major not in (1, 2):
                raise ValidationError(field, f"{src}: member {name!r} has .npy version {major} (allowed: 1, 2)")
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f, max_header_size=MAX_NPY_HEADER)
            allowed = ", ".join(str(d) for d in dtypes)
            if dtype.hasobject or dtype not in dtypes:
                raise ValidationError(field, f"{src}: member {name!r} has dtype {dtype} (allowed: {allowed})")
            if not isinstance(shape, tuple) or len(shape) != 1 or fortran:
                raise ValidationError(field, f"{src}: member {name!r} must be 1-D (got shape {shape})")
            k = shape[0]
            if count is not None and k != count:
                raise ValidationError(field, f"{src}: member {name!r} has {k} entries (expected {count})")
            if not 0 <= k <= max_count:
                raise ValidationError(field, f"{src}: member {name!r} declares {k} entries (allowed: 0 to {max_count:,})")
            if info.file_size != f.tell() + k * dtype.itemsize:
                raise ValidationError(field, f"{src}: member {name!r} holds {info.file_size:,} bytes, its header "
                                             f"declares {f.tell() + k * dtype.itemsize:,}")
            return f, dtype, int(k)
        except BaseException:
            f.close()
            raise

    def read(self, f: BinaryIO, dtype: np.dtype, k: int, name: str, field: str) -> np.ndarray:
        """The next ``k`` entries of an open member (native byte order)."""
        nbytes = k * dtype.itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValidationError(field, f"{self.source}: member {name!r} is truncated ({len(data):,} of {nbytes:,} "
                                         "bytes)")
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)

    def array(self, name: str, field: str, dtypes: Sequence[np.dtype], count: int | None,
              max_count: int) -> np.ndarray:
        f, dtype, k = self.open_array(name, field, dtypes, count, max_count)
        with f:
            return self.read(f, dtype, k, name, field)


class TraceFile:
    """A trace file opened for reading: header and structure validated, values read (and
    validated) chunk by chunk by :meth:`chunks`, or all at once by :meth:`load`.

    Works where a :class:`~aflqueue.sim.trace.Trace` does for :func:`aflqueue.sim.estimate`, in
    memory bounded by the chunk (plus the windows of :class:`~aflqueue.sim.records.VersionOrder`).
    Holds the file open; use as a context manager or call :meth:`close`.

    Attributes:
        path, format (1 or 2), n_clients, concurrency, tasks (``T``), routing (or None), meta,
        chunk (tasks per chunk), max_memory (bytes).
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile, members: _Members, header: dict[str, Any], fmt: int,
                 tasks: int, updates: int | None, routing: np.ndarray | None, max_memory: int):
        self.path = path
        self.source = repr(str(path))
        self._zip = zf
        self._members = members
        self.format = fmt
        self.n_clients = int(header["n_clients"])
        self.concurrency = int(header["concurrency"])
        self.tasks = tasks
        self.chunk = int(header.get("chunk", CHUNK))
        self.meta: dict[str, Any] = header.get("meta") if isinstance(header.get("meta"), dict) else {}
        self.routing = routing
        self.max_memory = max_memory
        self._summary: dict[str, Any] | None = None if updates is None else {"updates": updates}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, max_memory_gb: float | None = None) -> "TraceFile":
        """Open and validate ``path`` (module docstring); :class:`ValidationError` if it is not a
        trace file this version reads, or needs more than ``max_memory_gb`` to stream."""
        p = Path(path)
        src = repr(str(p))
        gb = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else max_memory_gb
        if isinstance(gb, bool) or not isinstance(gb, (int, float)) or not math.isfinite(gb) or gb <= 0:
            raise ValidationError("max_memory_gb", f"must be a finite number > 0 (got {max_memory_gb!r})")
        cap = int(gb * 2**30)
        if not p.is_file():
            raise ValidationError("trace", f"no such trace file: {src}")
        with _readable(src):
            with open(p, "rb") as f:
                entries, dir_size = _directory_size(f, p.stat().st_size, src)
            if entries > MAX_MEMBERS or dir_size > MAX_DIRECTORY_BYTES:
                raise ValidationError("trace", f"{src}: the archive lists {entries:,} members in {dir_size:,} bytes "
                                               f"(a trace file has at most {MAX_MEMBERS:,} in {MAX_DIRECTORY_BYTES:,})")
            zf = zipfile.ZipFile(p)
            try:
                return cls._validated(p, zf, src, cap)
            except BaseException:
                zf.close()
                raise

    @classmethod
    def _validated(cls, p: Path, zf: zipfile.ZipFile, src: str, cap: int) -> "TraceFile":
        members = _Members(zf, src)
        raw = members.array("header.npy", "trace.header", (np.dtype("u1"),), None, MAX_HEADER_BYTES)
        text = raw.tobytes().decode("utf-8")
        if _json_depth(text) > MAX_JSON_DEPTH:
            raise ValidationError("trace.header", f"{src}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        header = json.loads(text)
        if not isinstance(header, dict):
            raise ValidationError("trace.header", f"{src}: must be a JSON object")

        def integer(key: str, lo: int, hi: int) -> int:
            if key not in header:
                raise ValidationError(f"trace.{key}", f"{src}: missing from the header")
            try:
                return check_integer(header[key], f"trace.{key}", lo, hi)
            except ValidationError as e:
                raise ValidationError(e.field, f"{src}: {e.detail}") from None

        fmt = integer("format", 1, FORMAT)
        n = integer("n_clients", 1, MAX_CLIENTS)
        if "meta" in header and not isinstance(header["meta"], dict):
            raise ValidationError("trace.meta", f"{src}: must be a JSON object")
        cols = COLUMNS + ("header", "routing")
        if fmt == 2:
            T = integer("tasks", 1, MAX_TASKS)
            m = integer("concurrency", 1, T)
            U = integer("updates", T - m, T - m)
            K = integer("chunk", max(1, -(-T // MAX_CHUNKS)), MAX_TASKS)
            chunks = -(-T // K)
            for name in members.info:
                hit = _MEMBER.match(name)
                ok = name in ("header.npy", "routing.npy") or (
                    hit is not None and hit.group(1) in COLUMNS and int(hit.group(2)) < chunks)
                if not ok:
                    raise ValidationError("trace", f"{src}: unexpected member {name!r} (a format-2 trace holds "
                                                   f"header.npy, routing.npy and <column>.<chunk>.npy for chunks 0 to "
                                                   f"{chunks - 1})")
            for c in COLUMNS:
                if c in ALIASES:
                    continue
                missing = [i for i in range(chunks) if not members.has(_member(c, i))]
                if missing:
                    raise ValidationError(f"trace.{c}", f"{src}: member {_member(c, missing[0])!r} is missing")
            updates: int | None = U
        else:
            expected = {f"{c}.npy" for c in cols}
            extra = sorted(set(members.info) - expected)
            if extra:
                raise ValidationError("trace", f"{src}: unexpected member {extra[0]!r} (a format-1 trace holds "
                                               f"{', '.join(sorted(expected))})")
            f, _, T = members.open_array("client.npy", "trace.client", _V1_INT_DTYPES, None, MAX_TASKS)
            f.close()
            if T < 1:
                raise ValidationError("trace.client", f"{src}: the trace has no task")
            for c in COLUMNS:
                f, _, _ = members.open_array(f"{c}.npy", f"trace.{c}", _V1_INT_DTYPES if c in INT_COLUMNS else
                                             (np.dtype("<f8"),), T, MAX_TASKS)
                f.close()
            m = integer("concurrency", 1, T)
            updates = None
            header = {**header, "chunk": CHUNK}
        routing = None
        if members.has("routing.npy"):
            r = members.array("routing.npy", "trace.routing", (np.dtype("<f8"),), n, n)
            try:
                routing = check_routing(r, n)
            except ValidationError as e:
                raise ValidationError(e.field, f"{src}: {e.detail}") from None
        tf = cls(p, zf, members, header, fmt, T, updates, routing, cap)
        need = tf._stream_bytes()
        if need > cap:
            raise ValidationError("trace", f"{src}: reading it needs about {need / 2**30:.2f} GB (> the "
                                           f"{cap / 2**30:g} GB allowed; raise max_memory_gb)")
        return tf

    def _stream_bytes(self) -> int:
        """Memory of a pass over the file, windows aside: a chunk of every column read, checked and
        converted (about four copies), the header, per-client arrays."""
        header = self._members.info["header.npy"].file_size
        return 4 * min(self.chunk, self.tasks) * 8 * len(COLUMNS) + 16 * header + 1024 * self.n_clients

    def window_budget(self) -> int:
        """Bytes a reader's own reordering window may use: half of what the memory limit leaves
        after a chunk (the validation's window in :meth:`chunks` has the other half)."""
        return max(self.max_memory - self._stream_bytes(), 0) // 2

    def load_bytes(self) -> int:
        """Memory to hold the whole trace (:meth:`load`), from the columns actually stored."""
        per_task = 0
        for c in COLUMNS:
            stored = c not in ALIASES or self.format == 1 or any(
                self._members.has(_member(c, i)) for i in range(self.num_chunks))
            per_task += _ITEM[c] if stored else 0
        return per_task * self.tasks + self._stream_bytes()

    # ------------------------------------------------------------------ reading
    @property
    def num_chunks(self) -> int:
        return -(-self.tasks // self.chunk)

    def __len__(self) -> int:
        return self.tasks

    @property
    def num_updates(self) -> int:
        """Updates applied (``U``): from the header (format 2), or a validating pass (format 1)."""
        if self._summary is None:
            for _ in self.chunks(("client",)):
                pass
        return int(self._summary["updates"])

    @property
    def horizon(self) -> float:
        """Time of the last applied update (a validating pass the first time)."""
        if self._summary is None or "horizon" not in self._summary:
            for _ in self.chunks(("client",)):
                pass
        return float(self._summary["horizon"])

    def chunks(self, columns: Sequence[str] | None = None, size: int | None = None,
               window_budget: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first task, {column: array})`` for consecutive chunks of :attr:`chunk` tasks (the last
        shorter), in task order; int32 and float64 columns. Every chunk is validated (all
        columns, whatever ``columns`` asks for) before it is yielded, and the whole after the last
        one. ``size`` is accepted for the interface of :meth:`Trace.chunks` and ignored.
        ``window_budget``: bytes the check of the version order may hold (default: half of what
        the memory limit leaves after a chunk)."""
        want = COLUMNS if columns is None else tuple(columns)
        for c in want:
            if c not in COLUMNS:
                raise ValueError(f"unknown trace column {c!r}")
        budget = self.window_budget() if window_budget is None else window_budget
        checker = TraceChecker(self.source, self.n_clients, self.concurrency, self.tasks,
                               None if self._summary is None else self._summary["updates"], budget)
        with _readable(self.source):
            source = self._chunks_v2() if self.format == 2 else self._chunks_v1()
            for start, cols in source:
                checker.check(start, cols)
                yield start, {c: cols[c].astype(COLUMN_DTYPES[c], copy=False) for c in want}
            self._summary = checker.finish()

    def _chunks_v2(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        members = self._members
        for i in range(self.num_chunks):
            start = i * self.chunk
            k = min(self.chunk, self.tasks - start)
            cols: dict[str, np.ndarray] = {}
            for c in COLUMNS:
                name = _member(c, i)
                if not members.has(name):  # an alias: the target's chunk (ALIASES lists targets first)
                    cols[c] = cols[ALIASES[c]]
                    continue
                cols[c] = members.array(name, f"trace.{c}", (COLUMN_DTYPES[c].newbyteorder("<"),), k, k)
            yield start, cols

    def _chunks_v1(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        members = self._members
        with contextlib.ExitStack() as stack:
            streams = {}
            for c in COLUMNS:
                f, dtype, _ = members.open_array(f"{c}.npy", f"trace.{c}", _V1_INT_DTYPES if c in INT_COLUMNS else
                                                 (np.dtype("<f8"),), self.tasks, MAX_TASKS)
                stack.enter_context(f)
                streams[c] = (f, dtype)
            for start in range(0, self.tasks, self.chunk):
                k = min(self.chunk, self.tasks - start)
                yield start, {c: members.read(f, dtype, k, f"{c}.npy", f"trace.{c}") for c, (f, dtype) in streams.items()}
            for c, (f, _) in streams.items():
                if f.read(1):
                    raise ValidationError(f"trace.{c}", f"{self.source}: member '{c}.npy' holds more than it declares")

    def load(self, cls: type) -> Any:
        """The whole trace in memory, an instance of ``cls`` (:class:`~aflqueue.sim.trace.Trace`,
        whose ``load`` calls this), refused beyond the memory limit."""
        need = self.load_bytes()
        if need > self.max_memory:
            raise ValidationError("trace", f"{self.source}: {self.tasks:,} tasks need about {need / 2**30:.2f} GB in "
                                           f"memory (> the {self.max_memory / 2**30:g} GB allowed; raise max_memory_gb)")
        out = TraceAssembler(self.tasks)
        for start, cols in self.chunks(window_budget=self.max_memory - need):
            out(start, cols)
        return out.trace(cls, self.n_clients, self.concurrency, self.routing, self.meta)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "TraceFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"TraceFile({self.source}: format {self.format}, {self.tasks:,} tasks, {self.n_clients} clients, "
                f"m = {self.concurrency})")
