"""Files in and out: atomic writes, strict JSON, and the one bounded reader of data files.

**Writing.** A crash, a kill or a full disk while writing must never leave a truncated file that
looks complete, nor a stray temporary file: every file is written to a temporary name in the same
folder, flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows); on any error the temporary file is removed and the error is reported as one line
naming the path. JSON is strict (RFC 8259): non-finite floats become ``null``.

**Reading** (:func:`read_data`, :func:`read_mapping`, :func:`read_json`). Every JSON, TOML or YAML
file the toolkit reads -- run configurations, system files, constants files, run folders, job
records -- is a hostile input: it comes from another machine, another version, a truncated copy.
Before anything uses it, this layer checks, in this order:
* the file: it exists, is a regular file, holds at most :data:`MAX_DATA_BYTES` for its format
  (checked from its size before it is read) and is UTF-8 text, not empty;
* the syntax: one parse (YAML with the safe loader only, no object construction from tags; JSON
  nesting measured by a linear scan before the recursive parser sees it; a parser's
  ``RecursionError`` is a refusal, not a crash);
* the values, in one iterative pass: nesting at most :data:`MAX_DEPTH` tables/lists, table keys
  strings, values tables, lists, strings, booleans, null, integers within ``+-MAX_INTEGER`` (no
  400-digit integers) and finite floats (no NaN, no inf; :func:`read_json` accepts them only
  when asked, for old records); dates and other YAML/TOML types refused; YAML aliases may not
  expand to more values than the file has characters (no "billion laughs").

Each failure is one :class:`~aflqueue.errors.ValidationError` whose detail starts with the quoted
file name and whose field is the dotted path of the offending value (``clients[2].rate``), so the
CLI prints one line, exit status 2. The checks of a kind of file (ranges, shapes, known keys)
come after, in the module that owns the kind; :func:`naming_file` makes their errors name the
file too.

Memory: a parsed value takes at most about 25 bytes per byte of JSON or TOML text and 250 per
byte of YAML (measured on lists of empty tables, the worst case), so the size limits keep a parse
under about 1.6 GB (JSON), 0.4 GB (TOML) and 1 GB (YAML).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import tomllib

from .errors import ValidationError, short_repr

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_write_data", "json_safe", "dumps_json",
           "json_digest", "read_json", "read_data", "read_mapping", "parse_data", "check_values", "json_depth",
           "naming_file", "file_errors", "join_field", "source_name", "dumps_toml", "DATA_FORMATS", "MAX_DATA_BYTES", "MAX_DEPTH",
           "MAX_INTEGER"]

#: File extensions of data files, and the parser each one means.
DATA_FORMATS = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}
#: Largest data file read, per format (bytes): the parse's memory stays bounded (module docstring).
#: The files the toolkit writes are far smaller (a run's results.json: about 100 bytes per
#: evaluation; a constants file with 100 000 bootstrap refits: 10 MB of JSON).
MAX_DATA_BYTES = {"json": 64 * 2**20, "toml": 16 * 2**20, "yaml": 4 * 2**20}
#: Deepest nesting of tables and lists in a data file (the toolkit's files need at most about 8).
MAX_DEPTH = 32
#: Largest magnitude of an integer in a data file (a signed 64-bit integer).
MAX_INTEGER = 2**63 - 1


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by ``None`` and numpy scalars/arrays as Python values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars, torch tensors
        return json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def json_digest(obj: Any, chars: int = 16) -> str:
    """The first ``chars`` hex digits of the SHA-256 of ``obj``'s compact strict JSON: a short,
    stable name for a (possibly large) description, e.g. a system in a record's settings."""

    return hashlib.sha256(dumps_json(obj, None).encode()).hexdigest()[:chars]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    Errors (disk full, permission denied, a folder in the way) raise :class:`ValidationError`
    naming ``path`` and leave neither a temporary file nor a partial ``path`` behind."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise ValidationError("output", f"cannot write {str(p)!r}: {e.strerror or type(e).__name__}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ValidationError("output", f"cannot write {str(p)!r}: {e.strerror or type(e).__name__}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write strict JSON to ``path`` atomically (the text is built before the file is touched)."""
    return atomic_write_text(path, dumps_json(obj, indent) + "\n")


def source_name(path: str | Path) -> str:
    """How a file is named in messages: its path, quoted."""
    return repr(str(path))


def json_depth(text: str, chunk: int = 2**22) -> int:
    """Deepest nesting of ``[``/``{`` outside JSON strings: a linear scan, no recursion, in memory
    bounded by ``chunk`` bytes beyond a copy of the text."""

    bare = re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', '""', text).encode("utf-8", "replace")  # unrolled: no backtracking
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    depth = deepest = 0
    for at in range(0, len(bare), chunk):
        level = depth + np.cumsum(step[np.frombuffer(bare, dtype=np.uint8, count=min(chunk, len(bare) - at),
                                                     offset=at)], dtype=np.int64)
        if level.size:
            deepest = max(deepest, int(level.max()))
            depth = int(level[-1])
    return deepest


def join_field(prefix: str, path: str) -> str:
    """``prefix`` and a path within it as one dotted field name (``run`` + ``time[3]`` ->
    ``run.time[3]``; ``clients`` + ``[2].rate`` -> ``clients[2].rate``)."""
    prefix = prefix.rstrip(".")
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def _path_text(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def check_values(value: Any, source: str, *, prefix: str = "", finite: bool = True, max_depth: int = MAX_DEPTH,
                 max_values: int | None = None) -> None:
    """Check a parsed data value (module docstring): nesting, key and value types, integer sizes,
    finite floats. One iterative pass in memory proportional to the nesting (a stack of
    iterators, the path of the value in hand); ``max_values`` bounds the values visited (aliases
    of YAML expand). Raises :class:`ValidationError` with field ``prefix + path`` and a detail
    naming ``source``."""

    keys: list[Any] = []  # the key of each container on the stack (the top one has none)

    def fail(key: Any, detail: str) -> None:
        path = keys[1:] + ([] if key is _NO_KEY else [key])
        raise ValidationError(join_field(prefix, _path_text(tuple(path))) or "file", f"{source}: {detail}")

    def scalar(v: Any, key: Any) -> None:
        if v is None or isinstance(v, (bool, str)):
            return
        if isinstance(v, int):
            if abs(v) > MAX_INTEGER:
                fail(key, f"integers must lie in [-(2^63 - 1), 2^63 - 1] (got {short_repr(v)})")
        elif isinstance(v, float):
            if finite and not math.isfinite(v):
                fail(key, f"must be a finite number (got {v!r})")
        else:
            fail(key, f"must be a table, list, string, number, boolean or null (got a {type(v).__name__}: "
                      f"{short_repr(v)})")

    def items(v: Any) -> Iterator[tuple[Any, Any]]:
        return iter(v.items()) if isinstance(v, dict) else enumerate(v)

    if not isinstance(value, (dict, list)):
        scalar(value, _NO_KEY)
        return
    stack = [items(value)]
    keys.append(None)
    visited = 1
    while stack:
        try:
            k, x = next(stack[-1])
        except StopIteration:
            stack.pop()
            keys.pop()
            continue
        visited += 1
        if max_values is not None and visited > max_values:
            fail(_NO_KEY, f"expands to more than {max_values:,} values, more than it has characters (YAML aliases "
                          "repeating themselves?)")
        if not isinstance(k, str) and not isinstance(stack[-1], enumerate):
            fail(_NO_KEY, f"table keys must be strings (got {short_repr(k)})")
        if isinstance(x, (dict, list)):
            if len(stack) >= max_depth:
                fail(k, f"nested deeper than {max_depth} levels of tables and lists")
            if isinstance(x, list) and _plain_scalars(x, finite):  # a curve, a row: checked at C speed
                visited += len(x)
                if max_values is not None and visited > max_values:
                    fail(k, f"expands to more than {max_values:,} values, more than it has characters (YAML "
                            "aliases repeating themselves?)")
                continue
            stack.append(items(x))
            keys.append(k)
        else:
            scalar(x, k)


def _plain_scalars(values: list, finite: bool) -> bool:
    """Whether ``values`` holds only scalars :func:`check_values` accepts (a fast path: False sends
    the list through the element-by-element check, which finds and names the first bad one)."""
    kinds = set(map(type, values))
    if not kinds <= {int, float, str, bool, type(None)}:
        return False
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if max(ints) > MAX_INTEGER or min(ints) < -MAX_INTEGER:
            return False
    if float in kinds and finite:
        return all(map(math.isfinite, (v for v in values if type(v) is float)))
    return True


_NO_KEY = object()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; a key given twice is an error (the parser would keep the last)."""
    d = dict(pairs)
    if len(d) < len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {dup!r} given twice")
    return d


_YAML_LOADER: Any = None


def _yaml_loader() -> Any:
    """The safe YAML loader (no object construction from tags) that refuses a key given twice."""
    global _YAML_LOADER
    if _YAML_LOADER is None:
        import yaml  # lazy: yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
            def construct_mapping(self, node, deep=False):
                seen = set()
                for key_node, _ in node.value:  # as written (a merge key's entries may be overridden)
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                        key = self.construct_object(key_node)
                        if key in seen:
                            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                                    key_node.start_mark)
                        seen.add(key)
                return super().construct_mapping(node, deep=deep)

        _YAML_LOADER = UniqueKeyLoader
    return _YAML_LOADER


def parse_data(text: str, fmt: str, source: str, field: str = "file") -> Any:
    """Parse ``text`` as ``fmt`` (``json``, ``toml`` or ``yaml``); a syntax error, or nesting too
    deep for the parser, is one :class:`ValidationError` naming ``source``."""
    if fmt == "json":
        if json_depth(text) > MAX_DEPTH:
            raise ValidationError(field, f"{source}: nested deeper than {MAX_DEPTH} levels of tables and lists")
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise ValidationError(field, f"cannot read {source} as JSON ({reason})") from None
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        if fmt == "yaml":
            import yaml  # lazy: yaml

            return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - the safe loader
    except RecursionError:
        raise ValidationError(field, f"{source}: nested deeper than {MAX_DEPTH} levels of tables and lists") from None
    except Exception as e:  # the parsers' errors differ in type (TOMLDecodeError, YAMLError, ValueError...)
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ValidationError(field, f"cannot parse {source}: {reason}") from None
    raise ValueError(f"unknown data format {fmt!r}")


def read_data(path: str | Path, field: str = "file", *, fmt: str | None = None, prefix: str = "",
              finite: bool = True, table: bool = True, max_bytes: int | None = None) -> Any:
    """A data file, parsed and checked (module docstring).

    Args:
        path: the file; its extension chooses the format (:data:`DATA_FORMATS`) unless ``fmt``.
        field: the field named by errors about the file as a whole.
        prefix: put before the dotted path of a value in errors about values.
        finite: refuse NaN and infinite floats (default).
        table: the top level must be a table (default).
        max_bytes: the largest size accepted (default :data:`MAX_DATA_BYTES` of the format).
    """
    p = Path(path)
    src = source_name(p)
    if not p.exists():
        raise ValidationError(field, f"no such file: {src}")
    if not p.is_file():
        raise ValidationError(field, f"{src} is not a file")
    if fmt is None:
        suffix = p.suffix.lower()
        if suffix not in DATA_FORMATS:
            raise ValidationError(field, f"unknown extension {suffix!r} for {src}; use .toml, .yaml/.yml or .json")
        fmt = DATA_FORMATS[suffix]
    limit = MAX_DATA_BYTES[fmt] if max_bytes is None else int(max_bytes)
    try:
        size = p.stat().st_size
        if size > limit:
            raise ValidationError(field, f"{src} holds {size:,} bytes (a {fmt.upper()} file read here holds at most "
                                         f"{limit:,})")
        with open(p, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise ValidationError(field, f"cannot read {src} ({e.strerror or type(e).__name__})") from None
    if len(raw) > limit:  # it grew while we looked
        raise ValidationError(field, f"{src} holds more than {limit:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if fmt == "json":
            raise ValidationError(field, f"cannot read {src} as JSON (not UTF-8 text: byte {e.start})") from None
        raise ValidationError(field, f"cannot read {src} as UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise ValidationError(field, f"{src} is empty")
    data = parse_data(text, fmt, src, field)
    check_values(data, src, prefix=prefix, finite=finite, max_values=len(text) + 1 if fmt == "yaml" else None)
    if table and not isinstance(data, dict):
        raise ValidationError(field, f"{src} must hold a table of keys at top level (got "
                                     f"{'null' if data is None else type(data).__name__})")
    return data


def read_mapping(path: str | Path, field: str = "file", *, prefix: str = "") -> dict[str, Any]:
    """A TOML, YAML or JSON file (chosen by extension) holding a table: :func:`read_data`."""
    return read_data(path, field, prefix=prefix)


def read_json(path: str | Path, field: str = "file", *, finite: bool = False, table: bool = False,
              prefix: str = "", max_bytes: int | None = None) -> Any:
    """A JSON file whatever its extension, checked as :func:`read_data` does, except that NaN and
    infinite numbers are accepted unless ``finite`` (records written before JSON was strict hold
    them) and any top level is accepted unless ``table``."""
    return read_data(path, field, fmt="json", prefix=prefix, finite=finite, table=table, max_bytes=max_bytes)


def naming_file(error: ValidationError, source: str, prefix: str = "") -> ValidationError:
    """``error`` with ``source`` at the start of its detail (unless it names it already) and
    ``prefix`` before its field: for the checks of a kind of file, which see values, not files."""
    if source in error.detail:
        return error if not prefix else ValidationError(join_field(prefix, error.field), error.detail)
    return ValidationError(join_field(prefix, error.field), f"{source}: {error.detail}")


@contextlib.contextmanager
def file_errors(source: str, prefix: str = "") -> Iterator[None]:
    """Re-raise a :class:`ValidationError` of the block as :func:`naming_file` says."""
    try:
        yield
    except ValidationError as e:
        raise naming_file(e, source, prefix) from None


def atomic_write_data(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` (a table) atomically as JSON, TOML or YAML by ``path``'s extension, as
    :func:`read_data` reads it back (NaN and inf become null, left out in TOML)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in DATA_FORMATS:
        raise ValidationError("output", f"unknown extension {suffix!r} for {str(p)!r}; use .toml, .yaml/.yml or .json")
    fmt = DATA_FORMATS[suffix]
    if fmt == "json":
        return atomic_write_json(p, obj, indent=1)
    if fmt == "toml":
        return atomic_write_text(p, dumps_toml(json_safe(obj)))
    import yaml  # lazy: yaml

    return atomic_write_text(p, yaml.safe_dump(json_safe(obj), sort_keys=False))


_BARE_KEY = __import__("re").compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):  # an inline table (inside arrays)
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps_toml(obj: dict[str, Any]) -> str:
    """TOML text of a nested dict (tables, arrays, numbers, strings, booleans; ``None``, NaN and
    inf values are left out, since TOML has no null and the readers refuse non-finite numbers;
    numpy values become Python values first). Enough for the files the toolkit writes;
    :mod:`tomllib` reads them back."""
    obj = json_safe(obj)
    lines: list[str] = []

    def table(d: dict[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if path and (scalars or not subs):
            lines.append(("\n" if lines else "") + "[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in scalars:
            if isinstance(v, (list, tuple)) and len(v) > 1 and all(isinstance(x, (list, tuple, dict)) for x in v):
                rows = ",\n".join(f"  {_toml_value(x)}" for x in v)  # one row per line
                lines.append(f"{_toml_key(k)} = [\n{rows},\n]")
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            table(v, path + [k])

    table(obj, [])
    return "\n".join(lines) + "\n"
