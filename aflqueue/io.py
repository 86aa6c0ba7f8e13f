"""Writing results safely: atomic files and strict JSON.

A crash, a kill or a full disk while writing must never leave a truncated file that looks
complete, nor a stray temporary file: every file is written to a temporary name in the same
folder, flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows); on any error the temporary file is removed and the error is reported as one line
naming the path. JSON is strict (RFC 8259): non-finite floats become ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import ValidationError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "json_safe", "dumps_json", "json_digest",
           "read_json", "dumps_toml"]


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
    import hashlib

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


def read_json(path: str | Path, field: str = "file") -> Any:
    """Parse a JSON file; any failure is one :class:`ValidationError` naming the file."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
        raise ValidationError(field, f"cannot read {str(p)!r} as JSON ({reason})") from None


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
    """TOML text of a nested dict (tables, arrays, numbers, strings, booleans; ``None`` values are
    left out, since TOML has no null; numpy values become Python values first). Enough for the
    files the toolkit writes; :mod:`tomllib` reads them back."""
    obj = json_safe(obj) if not isinstance(obj, dict) else {str(k): _plain(v) for k, v in obj.items()}
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


def _plain(v: Any) -> Any:
    """numpy scalars/arrays and tuples as Python values; floats kept (NaN/inf are valid TOML)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):
        return _plain(v.tolist())
    if isinstance(v, Path):
        return str(v)
    return v
