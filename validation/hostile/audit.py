"""Black-box hostile-input audit of every file aflqueue reads, and of its command-line flags.

The project's rule: bad input, on the command line or in any file the toolkit reads, ends in
exactly one line on stderr naming the file, the field and the allowed range, exit status 2;
never a traceback, never silent garbage, never a silently ignored flag or key, never unbounded
memory or time; writes are atomic and existing run folders are not silently overwritten. The
Python API raises :class:`aflqueue.errors.ValidationError` for the same inputs.

This script checks that rule from the outside. It builds small *valid* files with the toolkit
itself (tiny synthetic runs: every training run finishes in seconds), mutates each of them
systematically and semi-randomly (seeded), runs each case through the command line (a fresh
``python -m aflqueue.cli`` process under a 60 s timeout and a 4 GB address-space limit) and,
where one exists, through the matching Python API function (in a driver process under the same
limits), and classifies the outcome:

* ``OK``: refused with exit status 2 and one stderr line that names the file (or a valid control
  accepted);
* ``BAD-TRACEBACK``: a Python traceback (CLI), or an exception other than ``ValidationError`` (API);
* ``BAD-EXIT``: another exit status (1: "aflqueue: failed: ..."), or an API call that crashed;
* ``BAD-SILENT``: accepted (exit 0 / the API returned) where it should have been refused, a flag
  or key that changes nothing, or records of other settings reused;
* ``BAD-MESSAGE``: refused, but on more than one line or without naming the file/field;
* ``BAD-MEMORY`` / ``BAD-TIME``: MemoryError, killed, or past the timeout;
* ``BAD-WRITE``: output half-written, left behind, or overwritten;
* ``ACCEPTED``: a mutation whose validity depends on its value (e.g. a rate replaced by 1e308)
  was accepted: listed for review, not counted as bad; ``WARN``: accepted with warning lines
  on stderr; ``CONTROL-FAIL``: a valid control file was refused (the harness is wrong, or the
  toolkit is).

    python validation/hostile/audit.py [--work /tmp/fuzz/audit] [--seed 0] [--only TEXT]
                                       [--out validation/hostile/results.md] [--reuse-fixtures]

One process at a time (the machine is shared); about 10 minutes on one core. Writes the table of
cases and classifications to ``--out`` (Markdown) and ``results.json`` beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
MEMORY_LIMIT = 4_000_000_000  # bytes of address space for every process the audit starts
TIMEOUT = 60  # seconds per command
VERSION = 1  # of the fixtures' recipe (--reuse-fixtures rebuilds when it changes)

# tiny training runs: 4 clients, 200 synthetic samples of 4 features, 2 classes
TINY_OPTIONS = '{"num_samples":200,"num_features":4,"num_classes":2}'
TINY = ["--dataset", "synthetic", "--clients", "4", "--set", f"data.options={TINY_OPTIONS}", "--rates", "1,1,0.2,0.2",
        "--device", "cpu"]
OTHER_DATA = ["--dataset", "synthetic", "--clients", "4", "--set",
              'data.options={"num_samples":400,"num_features":6,"num_classes":3}', "--rates", "1,1,0.2,0.2",
              "--device", "cpu"]
TRAIN_TINY = [*TINY, "--updates", "40", "--set", "run.eval_every=10", "--set", "run.checkpoint_every=20"]
CALIBRATE = ["calibrate", "--pilot", *TINY, "--updates", "40", "--lrs", "0.05,0.1", "--routings", "uniform,p2",
             "--bootstrap", "20", "-o", "consts.toml", "--quiet"]
TUNE = ["tune", *TINY, "--updates", "40", "--set", "data.validation_fraction=0.2", "--lr-grid", "0.05,0.1",
        "--pilot-seeds", "1", "-o", "tune", "--quiet", "--json"]
VALIDATE = ["validate", *TINY, "--updates", "100", "--seeds", "1", "--backend", "serial", "-o", "val", "--quiet"]
RECOMMEND = ["recommend", *TINY, "--updates", "100", "--set", "data.validation_fraction=0.2", "--backend", "serial",
             "-o", "rec", "--quiet", "--json"]

TINY_TOML = """\
# a tiny run configuration: 4 clients, 200 synthetic samples, 40 updates
seed = 0
device = "cpu"

[data]
dataset = "synthetic"
clients = 4
options = { num_samples = 200, num_features = 4, num_classes = 2 }

[system]
profile = "custom"
rates = [1.0, 1.0, 0.2, 0.2]

[local]
lr = 0.05
batch_size = 16

[run]
updates = 40
eval_every = 10
checkpoint_every = 20
"""

EMPIRICAL_SYSTEM = """\
concurrency = 2

[[clients]]
rate = 1.0
service = { law = "empirical", file = "t.csv", column = "seconds" }

[[clients]]
rate = 0.5
"""

API_PRELUDE = """
import json, math
from pathlib import Path
"""


# ====================================================================================== cases
@dataclass
class Case:
    """One hostile input and how to feed it to the toolkit.

    ``files``: relative path -> bytes/str content, or a callable ``f(case_dir)`` making it;
    ``copy``: ``(fixture path, case path)`` pairs copied first. ``argv``: the command line after
    ``aflqueue`` (run in the case folder); ``api``: Python statements run in the case folder by
    the driver (``None``: no API for this case). ``expect``: ``refuse``, ``accept`` (a control)
    or ``either`` (validity depends on the value). ``names``: strings the one error line must
    contain (the file's name). ``after(case_dir, result)``: a further check returning
    ``(class, note)`` or None (silent reuse, files overwritten...). ``custom(case_dir)``: runs the
    case itself instead of ``argv`` and returns ``(class, note)``."""

    kind: str
    name: str
    what: str
    files: dict[str, Any] = field(default_factory=dict)
    copy: list[tuple[str, str]] = field(default_factory=list)
    argv: list[str] | None = None
    api: str | None = None
    expect: str = "refuse"
    names: tuple[str, ...] = ()
    after: Callable[[Path, dict], tuple[str, str] | None] | None = None
    custom: Callable[[Path], tuple[str, str]] | None = None
    timeout: int = TIMEOUT
    userns: bool = False  # run as root of a user namespace: files owned by uid 65534 obey their mode bits

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def _write(dest: Path, rel: str, content: Any) -> None:
    p = dest / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if callable(content):
        content(dest)
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_bytes(str(content).encode("utf-8"))


def prepare(case: Case, fx: Path, dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        _rmtree(dest)
    dest.mkdir(parents=True)
    for src, rel in case.copy:
        s, d = fx / src, dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, symlinks=True)
        else:
            shutil.copy2(s, d)
    for rel, content in case.files.items():
        if callable(content):
            content(dest)
        else:
            _write(dest, rel, content)


def _rmtree(p: Path) -> None:
    def onerror(func, path, exc):  # a FIFO, a read-only folder...
        try:
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass
    if p.is_symlink() or p.is_file():
        p.unlink()
    else:
        shutil.rmtree(p, onerror=onerror)


# ------------------------------------------------------------------------- special file makers
def make_dir(rel: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        if (d / rel).exists() or (d / rel).is_symlink():
            _rmtree(d / rel)
        (d / rel).mkdir(parents=True)
    return f


def make_symlink(rel: str, target: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        if (d / rel).exists() or (d / rel).is_symlink():
            _rmtree(d / rel)
        os.symlink(target, d / rel)
    return f


def make_fifo(rel: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        if (d / rel).exists():
            _rmtree(d / rel)
        os.mkfifo(d / rel)
    return f


def make_sparse(rel: str, size: int, head: bytes = b"") -> Callable[[Path], None]:
    def f(d: Path) -> None:
        with open(d / rel, "wb") as fh:
            fh.write(head)
            fh.truncate(size)
    return f


def remove(rel: str) -> Callable[[Path], None]:
    return lambda d: _rmtree(d / rel) if (d / rel).exists() or (d / rel).is_symlink() else None


def edit_json(rel: str, fn: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Rewrite the JSON file ``rel`` (copied from a fixture) after ``fn(data)`` edits it in place
    (whatever ``fn`` returns, e.g. the value a ``pop`` removed, is ignored)."""
    def f(d: Path) -> None:
        p = d / rel
        data = json.loads(p.read_text())
        fn(data)
        p.write_text(json.dumps(data, allow_nan=True))
    return f


def python_edit(code: str) -> Callable[[Path], None]:
    """Run ``code`` in a fresh interpreter in the case folder (to edit torch files without importing
    torch into the audit process)."""
    def f(d: Path) -> None:
        subprocess.run([PY, "-c", code], cwd=d, env=child_env(), check=True, timeout=120,
                       stdout=subprocess.DEVNULL)
    return f


# ======================================================================= running and classifying
def child_env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e.pop("AFLQUEUE_DEBUG", None)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMEXPR_NUM_THREADS="1",
             PYTHONHASHSEED="0")
    return e


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


#: A user namespace mapping only root: root there keeps its powers over root's files (the interpreter,
#: the toolkit) but not over files owned by an unmapped user, so a file chowned to uid 65534 with
#: mode 000 is "permission denied" even though the audit runs as root.
USERNS = ["unshare", "--user", "--map-root-user"]


def run_cli(argv: list[str], cwd: Path, timeout: int = TIMEOUT, userns: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = subprocess.Popen([*(USERNS if userns else []), PY, "-m", "aflqueue.cli", *argv], cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=_limits, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc: Any = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = "timeout"
    return {"rc": rc, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "secs": time.perf_counter() - t0}


_RANGE_WORDS = re.compile(r"must|allowed|at most|at least|expected|one of|needs?|give|use |only|in \[|in \(|>=|<=|"
                          r"> |< |not a|no such|missing|unknown|cannot|empty|refus|too|holds|declares|lie", re.I)


def message_quality(line: str) -> str:
    """A rough reading of an error line: does it name a field (``name: ``) and what is allowed?"""
    body = line.split("error: ", 1)[-1]
    has_field = bool(re.match(r"^[\w.\[\]\-' ]{1,80}: ", body))
    has_range = bool(_RANGE_WORDS.search(body))
    return ("field" if has_field else "no-field") + "," + ("range" if has_range else "no-range")


def classify_cli(case: Case, r: dict[str, Any]) -> tuple[str, str]:
    rc, err = r["rc"], r["stderr"]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if rc == "timeout":
        return "BAD-TIME", f"no answer within {case.timeout} s"
    if "MemoryError" in err or rc in (-9, 137, -6):
        return "BAD-MEMORY", first[:200] or f"killed (status {rc})"
    if "Traceback (most recent call last)" in err:
        return "BAD-TRACEBACK", _traceback_tail(err)
    if case.expect == "accept":
        return ("OK", "control accepted") if rc == 0 else ("CONTROL-FAIL", f"status {rc}: {first[:200]}")
    if rc == 2:
        if len(lines) != 1:
            return "BAD-MESSAGE", f"{len(lines)} stderr lines: " + " | ".join(x[:120] for x in lines[:3])
        missing = [n for n in case.names if n not in first]
        if missing:
            return "BAD-MESSAGE", f"does not name {', '.join(missing)}: {first[:220]}"
        return "OK", first[:220]
    if rc == 0:
        if case.expect == "refuse":
            return "BAD-SILENT", "accepted (exit 0)" + (f"; stderr: {first[:120]}" if first else "")
        if any("Warning" in ln for ln in lines):
            return "WARN", "accepted with warnings: " + " | ".join(x[:100] for x in lines[:2])
        return "ACCEPTED", "exit 0"
    return "BAD-EXIT", f"status {rc}: {first[:220]}"


def _traceback_tail(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1][:220] if lines else "traceback"


def classify_api(case: Case, r: dict[str, Any]) -> tuple[str, str]:
    st = r.get("status")
    if st == "crash":
        return ("BAD-MEMORY" if r.get("signal") in (9, 6) else "BAD-EXIT"), r.get("message", "driver died")
    if st == "timeout":
        return "BAD-TIME", f"no answer within {case.timeout} s"
    if st == "raised":
        t, msg = r["type"], r["message"]
        if t == "MemoryError":
            return "BAD-MEMORY", "MemoryError"
        if case.expect == "accept":
            return "CONTROL-FAIL", f"{t}: {msg[:200]}"
        if t != "ValidationError":
            return "BAD-TRACEBACK", f"{t} (not ValidationError): {msg[:200]}"
        if "\n" in msg.strip():
            return "BAD-MESSAGE", "multi-line: " + msg.strip().splitlines()[0][:200]
        missing = [n for n in case.names if n not in msg]
        if missing:
            return "BAD-MESSAGE", f"does not name {', '.join(missing)}: {msg[:220]}"
        return "OK", msg[:220]
    if case.expect == "refuse":
        return "BAD-SILENT", "returned: " + str(r.get("result", ""))[:180]
    if case.expect == "accept":
        return "OK", "control accepted"
    return "ACCEPTED", "returned: " + str(r.get("result", ""))[:160]


# ------------------------------------------------------------------------------ the API driver
def driver_main() -> int:
    """``audit.py --driver``: run API cases from stdin (one JSON list), one JSON line per case on
    stdout. Each case runs in its folder under a per-case alarm; the process is address-space
    limited like the command-line runs."""
    _limits()
    jobs = json.loads(sys.stdin.read())

    class _Timeout(BaseException):
        pass

    def on_alarm(*_):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    ns0: dict[str, Any] = {}
    exec(API_PRELUDE, ns0)  # noqa: S102 - the audit's own code
    for job in jobs:
        print(json.dumps({"start": job["key"]}), flush=True)
        os.chdir(job["cwd"])
        ns = dict(ns0)
        t0 = time.perf_counter()
        signal.alarm(int(job["timeout"]))
        try:
            exec(job["code"], ns)  # noqa: S102 - the audit's own code
            res = {"status": "returned", "result": repr(ns.get("result"))[:300]}
        except _Timeout:
            res = {"status": "timeout"}
        except BaseException as e:  # noqa: BLE001 - classifying every outcome is the point
            res = {"status": "raised", "type": type(e).__name__, "module": type(e).__module__,
                   "message": str(e)[:2000], "where": _frames(e)}
        finally:
            signal.alarm(0)
        res.update(key=job["key"], secs=time.perf_counter() - t0)
        print(json.dumps(res), flush=True)
    return 0


def _frames(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    own = [f for f in tb if "aflqueue" in f.filename.replace("\\", "/").split("/site-packages/")[-1]]
    f = (own or tb)[-1] if (own or tb) else None
    return f"{Path(f.filename).name}:{f.lineno} {f.name}" if f else ""


def run_api_batch(jobs: list[dict[str, Any]], userns: bool = False) -> dict[str, dict[str, Any]]:
    """Run API jobs in driver processes; a driver that dies takes only its current case down."""
    results: dict[str, dict[str, Any]] = {}
    todo = list(jobs)
    while todo:
        p = subprocess.Popen([*(USERNS if userns else []), PY, str(Path(__file__).resolve()), "--driver"], env=child_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        budget = sum(j["timeout"] for j in todo) + 120
        try:
            out, err = p.communicate(json.dumps(todo).encode(), timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        current = None
        for line in out.decode("utf-8", "replace").splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "start" in msg:
                current = msg["start"]
            elif "key" in msg:
                results[msg["key"]] = msg
                current = None
        done = set(results)
        if current is not None and current not in done:
            results[current] = {"status": "crash", "signal": -p.returncode if (p.returncode or 0) < 0 else None,
                                "message": f"driver died (status {p.returncode}): "
                                           + (err.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]}
            done.add(current)
        rest = [j for j in todo if j["key"] not in done]
        if len(rest) == len(todo):  # no progress at all: give up on these
            for j in rest:
                results[j["key"]] = {"status": "crash", "message": "driver made no progress"}
            break
        todo = rest
    return results


# ===================================================================================== fixtures
FIXTURE_STEPS = [
    ("runs/a", ["train", *TRAIN_TINY, "--seed", "0", "-o", "runs/a", "--quiet"]),
    ("runs/b", ["train", *TRAIN_TINY, "--seed", "1", "-o", "runs/b", "--quiet"]),
    ("trace.npz", ["simulate", "--rates", "1,1,0.2", "--updates", "2000", "--trace", "trace.npz", "--json"]),
    ("consts.toml", CALIBRATE),
    ("tune", TUNE),
    ("val", VALIDATE),
    ("rec", RECOMMEND),
]


def idx_bytes(arr: Any, dtype_code: int = 0x08) -> bytes:
    """An idx file (MNIST's format): magic 0 0 <dtype> <ndim>, big-endian sizes, the data."""
    head = struct.pack(">HBB", 0, dtype_code, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(">u1").tobytes()


def make_mnist(root: Path, ntr: int = 60, nte: int = 20, h: int = 28, w: int = 28, ntr_labels: int | None = None,
               max_label: int = 9, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 255, (ntr, h, w))))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, max_label + 1,
                                                                         (ntr if ntr_labels is None else ntr_labels,))))
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 255, (nte, h, w))))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, max_label + 1, (nte,))))


CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def make_cifar(root: Path, per_batch: int = 12, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR_FILES:
        batch = {b"data": rng.integers(0, 255, (per_batch, 3072)).astype(np.uint8),
                 b"labels": [int(x) for x in rng.integers(0, 10, per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol=2))


def build_fixtures(fx: Path, reuse: bool, log: Callable[[str], None]) -> None:
    stamp = fx / "STAMP"
    if reuse and stamp.is_file() and stamp.read_text() == str(VERSION):
        log(f"fixtures reused from {fx}")
        return
    if fx.exists():
        _rmtree(fx)
    fx.mkdir(parents=True)
    for what, argv in FIXTURE_STEPS:
        t0 = time.perf_counter()
        r = run_cli(argv, fx, timeout=600)
        if r["rc"] != 0:
            raise SystemExit(f"fixture {what} failed (status {r['rc']}): {r['stderr'][-800:]}")
        log(f"fixture {what}: {time.perf_counter() - t0:.1f} s")
    import tomllib

    import yaml

    ex = ROOT / "examples"
    (fx / "sys").mkdir()
    for name in ("flat.toml", "structured.toml", "multistage.yaml", "compute_times.csv"):
        shutil.copy2(ex / name, fx / "sys" / name)
    (fx / "sys" / "flat.json").write_text(json.dumps(tomllib.loads((ex / "flat.toml").read_text()), indent=1))
    (fx / "sys" / "structured.json").write_text(json.dumps(tomllib.loads((ex / "structured.toml").read_text()), indent=1))
    (fx / "sys" / "multistage.json").write_text(json.dumps(yaml.safe_load((ex / "multistage.yaml").read_text()), indent=1))
    (fx / "sys" / "empirical.toml").write_text(EMPIRICAL_SYSTEM)
    (fx / "sys" / "t.csv").write_text("seconds\n1.0\n2.0\n0.5\n1.5\n")
    (fx / "tiny.toml").write_text(TINY_TOML)
    (fx / "tiny.json").write_text(json.dumps(tomllib.loads(TINY_TOML), indent=1))
    (fx / "consts.json").write_text(json.dumps(tomllib.loads((fx / "consts.toml").read_text()), indent=1))
    shutil.copy2(ROOT / "validation" / "recommend" / "results-v2" / "calibration.json", fx / "calibration.json")
    make_mnist(fx / "mnist")
    make_cifar(fx / "cifar")
    stamp.write_text(str(VERSION))


# ================================================================================== mutations
def leaves(obj: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every scalar of a parsed file with its path (keys and list indices)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += leaves(v, path + (i,))
    else:
        out.append((path, obj))
    return out


def tables(obj: Any, path: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(obj, dict):
        out.append(path)
        for k, v in obj.items():
            out += tables(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += tables(v, path + (i,))
    return out


def set_at(obj: Any, path: tuple, value: Any) -> Any:
    new = json.loads(json.dumps(obj, allow_nan=True))
    node = new
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return new


def get_at(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def path_text(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "<top>"


#: (name, mutation, expectation) per kind of scalar; "either": valid or not depending on the field
NUMBER_MUTATIONS = [
    ("string", lambda v: str(v), "refuse"), ("list", lambda v: [v], "refuse"), ("table", lambda v: {"v": v}, "refuse"),
    ("bool", lambda v: True, "refuse"), ("null", lambda v: None, "either"), ("NaN", lambda v: float("nan"), "refuse"),
    ("Infinity", lambda v: float("inf"), "refuse"), ("negative", lambda v: -abs(v) - 1, "either"),
    ("zero", lambda v: 0, "either"), ("minus-zero", lambda v: -0.0, "either"), ("1e308", lambda v: 1e308, "either"),
    ("10^400", lambda v: 10**400, "refuse"), ("2^63", lambda v: 2**63, "refuse"),
]
STRING_MUTATIONS = [
    ("number", lambda v: 5, "either"), ("list", lambda v: [v], "refuse"), ("table", lambda v: {"v": v}, "refuse"),
    ("null", lambda v: None, "either"), ("empty", lambda v: "", "either"), ("1MB-string", lambda v: "x" * 2**20, "either"),
    ("NUL-char", lambda v: v + "\x00", "either"),
]
BOOL_MUTATIONS = [("integer-1", lambda v: 1, "refuse"), ("string", lambda v: "true", "refuse"),
                  ("null", lambda v: None, "either")]


def field_cases(kind: str, fname: str, data: Any, rng: random.Random, *, leaves_per_file: int, cli_share: float,
                api: str, argv: list[str] | None, copy: list[tuple[str, str]], names: tuple[str, ...],
                free: Callable[[tuple], bool] = lambda p: False, unknown_tables: int = 4, prefix: str = "",
                files_fn: Callable[[Any], dict[str, Any]] | None = None) -> list[Case]:
    """Seeded field-level mutations of a parsed (JSON-able) file: wrong types, non-finite and huge
    numbers, out-of-range values, null, long strings; and an unknown key in some tables."""
    cases: list[Case] = []
    all_leaves = [(p, v) for p, v in leaves(data) if p]
    rng.shuffle(all_leaves)
    picked = sorted(all_leaves[:leaves_per_file], key=lambda pv: path_text(pv[0]))

    def files_of(new: Any) -> dict[str, Any]:
        if files_fn is not None:
            return files_fn(new)
        return {fname: json.dumps(new, allow_nan=True).encode()}

    for path, value in picked:
        muts = BOOL_MUTATIONS if isinstance(value, bool) else NUMBER_MUTATIONS if isinstance(value, (int, float)) \
            else STRING_MUTATIONS if isinstance(value, str) else [("number", lambda v: 1.5, "either"),
                                                                   ("list", lambda v: [1], "either")]
        for mname, fn, expect in muts:
            new = set_at(data, path, fn(value))
            exp = "either" if free(path) and expect == "refuse" and mname not in ("NaN", "Infinity", "10^400", "2^63") \
                else expect
            cases.append(Case(kind, f"{prefix}{path_text(path)}={mname}", f"{path_text(path)}: {short(value)} -> {mname}",
                              files=files_of(new), copy=copy, api=api,
                              argv=argv if rng.random() < cli_share else None, expect=exp, names=names))
    tabs = [t for t in tables(data) if not free(t + ("zz_unknown",))]
    rng.shuffle(tabs)
    for t in sorted(tabs[:unknown_tables], key=path_text):
        new = json.loads(json.dumps(data, allow_nan=True))
        get_at(new, t)["zz_unknown"] = 1
        cases.append(Case(kind, f"{prefix}unknown-key@{path_text(t)}", f"key zz_unknown = 1 added to {path_text(t)}",
                          files=files_of(new), copy=copy, api=api, argv=argv, expect="refuse", names=names))
    return cases


def short(v: Any, n: int = 40) -> str:
    t = repr(v)
    return t if len(t) <= n else t[:n - 3] + "..."


DEEP = {"json": "[" * 100_000 + "]" * 100_000, "toml": "deep = " + "[" * 5_000 + "]" * 5_000 + "\n",
        "yaml": "deep: " + "[" * 5_000 + "]" * 5_000 + "\n"}
YAML_BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def generic_cases(kind: str, fname: str, valid: bytes, fmt: str, rng: random.Random, *, api: str | None,
                  argv: list[str] | None, copy: list[tuple[str, str]], names: tuple[str, ...],
                  max_bytes: int, truncations: int = 3, prefix: str = "") -> list[Case]:
    """File-level mutations of a valid data file: empty, truncated, not UTF-8, NUL bytes, deep
    nesting, a folder/symlink loop/FIFO/device in its place, a huge (sparse) file, BOM, CRLF..."""
    def c(name: str, what: str, content: Any, expect: str = "refuse") -> Case:
        return Case(kind, prefix + name, what, files={fname: content}, copy=copy, api=api, argv=argv, expect=expect,
                    names=names)

    n = len(valid)
    out = [c("valid", "the valid file itself (control)", valid, "accept"),
           c("BOM", "a UTF-8 byte-order mark before the valid text", b"\xef\xbb\xbf" + valid, "accept"),
           c("CRLF", "Windows line ends", valid.replace(b"\n", b"\r\n"), "accept"),
           c("empty", "an empty file", b""), c("blank", "only whitespace", b" \n\t \n"),
           c("UTF-16", "the valid text encoded as UTF-16", valid.decode("utf-8").encode("utf-16")),
           c("deep-nesting", "100 000 (JSON) or 5 000 (TOML/YAML) nested lists", DEEP[fmt].encode()),
           c("a-folder", "a folder where the file should be", make_dir(fname)),
           c("symlink-loop", "a symlink pointing to itself", make_symlink(fname, Path(fname).name)),
           c("symlink-dev-zero", "a symlink to /dev/zero", make_symlink(fname, "/dev/zero")),
           c("FIFO", "a named pipe (reading it would block)", make_fifo(fname)),
           c("huge-sparse", f"{max_bytes + 1:,} bytes (sparse, one more than the format's limit)",
             make_sparse(fname, max_bytes + 1, valid)),
           c("missing", "the file does not exist", remove(fname))]
    for k in sorted(rng.sample(range(1, n - 1), min(truncations, n - 2))):
        out.append(c(f"truncated@{k}", f"cut after {k} of {n} bytes", valid[:k], "either"))
    for label, ins in (("non-UTF-8", b"\xff\xfe"), ("NUL", b"\x00")):
        k = rng.randrange(1, n - 1)
        out.append(c(f"{label}@{k}", f"{ins!r} inserted at byte {k}", valid[:k] + ins + valid[k:]))
    if fmt == "json":
        out += [c("top-list", "a JSON list at top level", b"[" + valid + b"]"),
                c("top-number", "a JSON number at top level", b"3"),
                c("cut-last-byte", "the closing brace cut", valid.rstrip()[:-1])]
    if fmt == "yaml":
        out += [c("python-tag", "a !!python/object tag", b"!!python/object/apply:os.system ['true']\n"),
                c("alias-bomb", "a billion-laughs alias expansion", YAML_BOMB.encode()),
                c("two-documents", "two YAML documents", valid + b"\n---\nx: 1\n"),
                c("binary-tag", "a !!binary value", valid + b"\nzz: !!binary aGVsbG8=\n"),
                c("timestamp", "a date value", valid + b"\nzz: 2001-12-14\n")]
    return out


def duplicate_key_case(kind: str, fname: str, valid: bytes, fmt: str, key: str, value: Any, *, api: str | None,
                       argv: list[str] | None, copy: list[tuple[str, str]], names: tuple[str, ...]) -> Case:
    """The first key given twice with different values (JSON/YAML parsers keep the last silently)."""
    text = valid.decode("utf-8")
    if fmt == "json":
        body = text.strip()
        dup = body[:-1].rstrip() + f', "{key}": {json.dumps(value)}' + "\n}"
    else:
        dup = text + f"\n{key}: {json.dumps(value)}\n"
    return Case(kind, f"{fname}:duplicate-key-{key}", f"key {key!r} given twice (second: {short(value)})",
                files={fname: dup.encode()}, copy=copy, api=api, argv=argv, expect="refuse", names=names)


# ================================================================================ case builders
MAX_BYTES = {"json": 64 * 2**20, "toml": 16 * 2**20, "yaml": 4 * 2**20}


def api_call(code: str) -> str:
    return code.strip() + "\n"


def cases_system(fx: Path, rng: random.Random) -> list[Case]:
    kind = "system-file"
    out: list[Case] = []
    for fname, fmt in (("flat.toml", "toml"), ("multistage.yaml", "yaml"), ("flat.json", "json")):
        valid = (fx / "sys" / fname).read_bytes()
        api = api_call(f"from aflqueue.system import load_system\nresult = load_system({fname!r}).n")
        out += generic_cases(kind, fname, valid, fmt, rng, api=api, argv=["analyze", fname], copy=[],
                             names=(fname,), max_bytes=MAX_BYTES[fmt], prefix=f"{fname}:")
    for fname, fmt, key, value in (("flat.json", "json", "concurrency", 3),
                                   ("multistage.yaml", "yaml", "concurrency", 3)):
        out.append(duplicate_key_case(kind, fname, (fx / "sys" / fname).read_bytes(), fmt, key, value,
                                      api=api_call(f"from aflqueue.system import load_system\n"
                                                   f"result = load_system({fname!r}).concurrency"),
                                      argv=["analyze", fname], copy=[], names=(fname,)))
    for fname in ("flat.json", "structured.json", "multistage.json"):
        data = json.loads((fx / "sys" / fname).read_text())
        out += field_cases(kind, fname, data, rng, leaves_per_file=5, cli_share=0.12,
                           api=api_call(f"from aflqueue.system import load_system\nresult = load_system({fname!r})"),
                           argv=["analyze", fname], copy=[], names=(fname,), prefix=f"{fname}:")
    load = "from aflqueue.system import load_system\nresult = load_system('s.toml')"
    sim = ("from aflqueue.system import load_system\nfrom aflqueue.sim import simulate_and_estimate\n"
           "result = simulate_and_estimate(load_system('s.toml'), 2000).estimates.throughput")
    hand = [
        ("discipline-without-stage", 'rates = [1, 1]\nuplink_discipline = "delay"\n', "refuse", load, ["analyze"],
         "uplink_discipline given without uplink rates (the flag --uplink-discipline is refused for this)"),
        ("service-mean-with-rates", 'rates = [1, 1]\nservice = "exponential:mean=5"\n', "refuse", load, ["analyze"],
         "a law's mean given next to rates (rescaled to 1/rate: the mean is discarded)"),
        ("service-parameter-twice", 'rates = [1, 1]\nservice = "lognormal:cv=1.5,cv=0.01"\n', "refuse", load,
         ["analyze"], "a law parameter given twice"),
        ("lognormal-cv-1e300", 'rates = [1, 1]\nservice = "lognormal:cv=1e300"\n', "refuse", sim,
         ["simulate", "--updates", "2000"], "lognormal cv = 1e300 (finite, accepted by the law's check)"),
        ("gamma-cv-1e300", 'rates = [1, 1]\nservice = "gamma:cv=1e300"\n', "refuse", sim,
         ["simulate", "--updates", "2000"], "gamma cv = 1e300"),
        ("weibull-shape-1e-300", 'rates = [1, 1]\nservice = "weibull:shape=1e-300"\n', "refuse", sim,
         ["simulate", "--updates", "2000"], "weibull shape = 1e-300"),
        ("gamma-shape-1e-300", 'rates = [1, 1]\nservice = "gamma:shape=1e-300"\n', "refuse", sim,
         ["simulate", "--updates", "2000"], "gamma shape = 1e-300 (every duration 0: what is wrong is the law)"),
        ("rates-1e-300-simulate", "rates = [1e-300, 1]\n", "either", sim, ["simulate", "--updates", "2000"],
         "a rate of 1e-300 (finite, > 0)"),
        ("rate-1e-320", "rates = [1e-320, 1]\n", "refuse", load, ["analyze"], "a subnormal rate (1/rate overflows)"),
        ("empirical-samples-and-file", '[[clients]]\nrate = 1\nservice = { law = "empirical", samples = [1, 2], '
         'file = "x.csv" }\n[[clients]]\nrate = 1\n', "refuse", load, ["analyze"], "samples and file both given"),
        ("availability-extreme", '[[clients]]\nrate = 1\navailability = { on = "exponential:mean=1e-300", '
         'off = "exponential:mean=1e300" }\n[[clients]]\nrate = 1\n', "either", sim, ["simulate", "--updates", "2000"],
         "a client on for 1e-300 and off for 1e300 time units"),
    ]
    for name, text, expect, api, argv, what in hand:
        out.append(Case(kind, name, what, files={"s.toml": text}, api=api_call(api), argv=[argv[0], "s.toml", *argv[1:]],
                        expect=expect, names=("s.toml",)))
    return out


def cases_empirical(fx: Path, rng: random.Random) -> list[Case]:
    kind = "empirical-csv"
    api = api_call("from aflqueue.system import load_system\nresult = load_system('sys.toml').clients[0].compute.law.cv")

    def big(d: Path) -> None:
        with open(d / "t.csv", "w") as f:
            f.write("seconds\n")
            f.write("1\n" * 100_000_000)

    rows = [
        ("valid", "seconds\n1.0\n2.0\n", "accept", "the valid file (control)"),
        ("NaN", "seconds\n1.0\nnan\n", "refuse", "a NaN duration"), ("inf", "seconds\n1.0\ninf\n", "refuse", "inf"),
        ("negative", "seconds\n1.0\n-2\n", "refuse", "a negative duration"), ("zero", "seconds\n0\n", "refuse", "zero"),
        ("header-only", "seconds\n", "refuse", "no durations"), ("empty", "", "refuse", "an empty file"),
        ("1e308", "seconds\n1e308\n1e308\n", "refuse", "durations of 1e308 (their mean overflows)"),
        ("1e-320", "seconds\n1e-320\n", "refuse", "a subnormal duration (rescaling overflows)"),
        ("binary", b"\xff\xfe\x00\x01", "refuse", "not UTF-8"),
        ("bad-row-line-number", "seconds\n1.0\n\n0x10\n", "refuse", "'0x10' on line 4 (after a blank line 3)"),
        ("BOM", b"\xef\xbb\xbfseconds\n1.0\n", "accept", "a byte-order mark before the header"),
        ("CRLF", "seconds\r\n1.0\r\n2.0\r\n", "accept", "Windows line ends"),
        ("semicolons", "seconds;x\n1.0;2\n", "refuse", "semicolon-separated"),
        ("underscore-number", "seconds\n1_000\n", "either", "Python-style 1_000"),
    ]
    out = []
    for name, content, expect, what in rows:
        names = ("t.csv", "line 4") if name == "bad-row-line-number" else ("t.csv",)
        out.append(Case(kind, name, what, files={"sys.toml": EMPIRICAL_SYSTEM, "t.csv": content}, api=api,
                        argv=["analyze", "sys.toml"], expect=expect, names=names))
    for name, maker, what in (("a-folder", make_dir("t.csv"), "a folder named t.csv"),
                              ("symlink-loop", make_symlink("t.csv", "t.csv"), "a symlink loop"),
                              ("FIFO", make_fifo("t.csv"), "a named pipe"),
                              ("dev-zero", make_symlink("t.csv", "/dev/zero"), "a symlink to /dev/zero")):
        out.append(Case(kind, name, what, files={"sys.toml": EMPIRICAL_SYSTEM, "t.csv": maker}, api=api,
                        argv=["analyze", "sys.toml"], names=("t.csv",)))
    for col, what in (("5", "column index 5 of a one-column file"), ("-1", "column -1"), ("true", "column = true"),
                      ("1.5", "column = 1.5"), ('"nope"', "a header that is not there")):
        text = EMPIRICAL_SYSTEM.replace('column = "seconds"', f"column = {col}")
        out.append(Case(kind, f"column={col}", what, files={"sys.toml": text, "t.csv": "seconds\n1.0\n"}, api=api,
                        argv=["analyze", "sys.toml"], names=("sys.toml",)))
    out.append(Case(kind, "200MB-file", "a 200 MB CSV of 100 million durations (no size bound on this reader)",
                    files={"sys.toml": EMPIRICAL_SYSTEM, "t.csv": big}, argv=["analyze", "sys.toml"],
                    names=("t.csv",), timeout=120))
    return out


def cases_config(fx: Path, rng: random.Random) -> list[Case]:
    kind = "run-config"
    out: list[Case] = []
    train = ["train", "-o", "out", "--quiet"]
    for fname, fmt in (("tiny.toml", "toml"), ("tiny.json", "json")):
        api = api_call(f"from aflqueue.config import load_config\nresult = load_config({fname!r}).local.lr")
        gen = generic_cases(kind, fname, (fx / fname).read_bytes(), fmt, rng, api=api, argv=[train[0], fname, *train[1:]],
                            copy=[], names=(fname,), max_bytes=MAX_BYTES[fmt], prefix=f"{fname}:",
                            truncations=3 if fmt == "toml" else 1)
        out += gen if fmt == "toml" else [c for c in gen if c.name.split(":")[1] in
                                          ("valid", "empty", "top-list", "cut-last-byte", "deep-nesting")]
    out.append(duplicate_key_case(kind, "tiny.json", (fx / "tiny.json").read_bytes(), "json", "seed", 7,
                                  api=api_call("from aflqueue.config import load_config\n"
                                               "result = load_config('tiny.json').seed"),
                                  argv=["train", "tiny.json", "-o", "out", "--quiet"], copy=[], names=("tiny.json",)))
    data = json.loads((fx / "tiny.json").read_text())
    out += field_cases(kind, "tiny.json", data, rng, leaves_per_file=8, cli_share=0.06,
                       api=api_call("from aflqueue.config import load_config\nresult = load_config('tiny.json')"),
                       argv=["train", "tiny.json", "-o", "out", "--quiet"], copy=[], names=("tiny.json",),
                       free=lambda p: p[:2] == ("data", "options"), prefix="tiny.json:")
    base = (fx / "tiny.toml").read_text()

    def cfg(extra: str) -> dict[str, Any]:
        return {"c.toml": base + extra}

    # what train checks before it trains: the configuration, then the data, model, system and schedule
    api = api_call("from aflqueue.config import load_config\nfrom aflqueue.pipeline import prepare\n"
                   "result = prepare(load_config('c.toml')).system.n")
    hand = [
        ("options.num_samples=1e12", base.replace("num_samples = 200", "num_samples = 1000000000000"), "refuse",
         "synthetic data of 10^12 samples (allocation)"),
        ("options.num_features=1e8", base.replace("num_features = 4", "num_features = 100000000"), "refuse",
         "10^8 features per sample"),
        ("options.num_classes=1e6", base.replace("num_classes = 2", "num_classes = 1000000"), "either",
         "10^6 classes for 200 samples"),
        ("options.unknown", base.replace("num_classes = 2 }", "num_classes = 2, bogus = 1 }"), "refuse",
         "an unknown data-set option"),
        ("model.options.unknown", base + '\n[model]\nname = "mlp"\noptions = { bogus = 1 }\n', "refuse",
         "an unknown model option"),
        ("algorithm.params.unknown", base + '\n[algorithm]\nparams = { bogus = 1 }\n', "refuse",
         "an unknown algorithm parameter"),
        ("data_root-for-offline-set", base.replace('dataset = "synthetic"', 'dataset = "synthetic"\ndata_root = "nowhere"'),
         "refuse", "data.data_root given for the offline synthetic set (ignored?)"),
        ("routing.constants-missing", base + '\n[routing]\nkind = "optimal"\nconstants = "missing.toml"\n', "refuse",
         "routing.constants names a file that does not exist"),
        ("system.file-bad", base.replace('profile = "custom"\nrates = [1.0, 1.0, 0.2, 0.2]', 'file = "bad.toml"'),
         "refuse", "system.file names a system file with a bad rate"),
        ("clients-1e6", base.replace("clients = 4", "clients = 1000000").replace(
            'profile = "custom"\nrates = [1.0, 1.0, 0.2, 0.2]', 'profile = "two-groups"'), "either",
         "10^6 clients for 200 samples"),
        ("batch_size-1e9", base.replace("batch_size = 16", "batch_size = 1000000000"), "either", "batch size 10^9"),
        ("eval_every-1", base.replace("eval_every = 10", "eval_every = 1"), "either", "evaluate after every update"),
    ]
    for name, text, expect, what in hand:
        files: dict[str, Any] = {"c.toml": text}
        names = ("c.toml",)
        if name == "system.file-bad":
            files["bad.toml"] = "rates = [1, -1]\n"
            names = ("bad.toml",)
        if name == "routing.constants-missing":
            names = ("missing.toml",)
        # prepare() builds data, model, system and schedule but not the algorithm (train checks its
        # parameters); the allocations are left to the command line's address-space limit
        out.append(Case(kind, name, what, files=files, api=api if name not in ("options.num_samples=1e12",
                                                                                 "options.num_features=1e8",
                                                                                 "algorithm.params.unknown") else None,
                        argv=["train", "c.toml", "-o", "out", "--quiet"], expect=expect, names=names))
    sets = [("lr=nan", "local.lr=nan", "refuse"), ("unknown-key", "bogus=1", "refuse"),
            ("no-equals", "local.lr", "refuse"), ("options-1e999", 'data.options={"num_samples":1e999}', "refuse"),
            ("seed=2^64", "seed=18446744073709551616", "refuse"), ("lr-string", 'local.lr="fast"', "refuse"),
            ("lr-bool", "local.lr=true", "refuse"), ("options.unknown", "data.options.bogus=1", "refuse"),
            ("section-as-value", "local=1", "refuse"), ("updates=0", "run.updates=0", "refuse")]
    for name, s, expect in sets:
        field_name = "bogus" if "bogus" in s else s.split("=")[0].split(".")[-1]
        out.append(Case("cli-flags", f"train --set {name}", f"train --set {s}", files={}, copy=[("tiny.toml", "tiny.toml")],
                        argv=["train", "tiny.toml", "--set", s, "-o", "out", "--quiet"], expect=expect,
                        names=(field_name,)))
    return out


def cases_constants(fx: Path, rng: random.Random) -> list[Case]:
    kind = "constants-file"
    out: list[Case] = []
    opt = ["optimize", "--rates", "1,1,0.2,0.2", "--json", "--constants"]
    for fname, fmt in (("consts.toml", "toml"), ("consts.json", "json")):
        api = api_call(f"from aflqueue.pilot_fit import load_constants\nresult = load_constants({fname!r}).constants")
        gen = generic_cases(kind, fname, (fx / fname).read_bytes(), fmt, rng, api=api, argv=[*opt, fname], copy=[],
                            names=(fname,), max_bytes=MAX_BYTES[fmt], prefix=f"{fname}:",
                            truncations=3 if fmt == "toml" else 1)
        out += gen if fmt == "toml" else [c for c in gen if c.name.split(":")[1] in
                                          ("valid", "empty", "top-list", "cut-last-byte", "deep-nesting")]
    data = json.loads((fx / "consts.json").read_text())
    out += field_cases(kind, "consts.json", data, rng, leaves_per_file=8, cli_share=0.12,
                       api=api_call("from aflqueue.pilot_fit import load_constants\nresult = load_constants('consts.json')"),
                       argv=[*opt, "consts.json"], copy=[], names=("consts.json",), prefix="consts.json:",
                       # the fit's diagnostics and settings are reported, not used (settings.clients aside)
                       free=lambda p: p[:2] in (("pilot", "diagnostics"), ("pilot", "settings"))
                       and p[:3] != ("pilot", "settings", "clients"))
    good = (fx / "consts.toml").read_text()
    api = api_call("from aflqueue.pilot_fit import load_constants\nresult = load_constants('c.toml').constants")
    delta = re.search(r"^Delta = (.*)$", good, re.M).group(1)
    hand = [
        ("extra-table", good + "\n[bogus]\nx = 1\n", "refuse", "an unknown table next to [constants]"),
        ("edited-constant", good.replace(f"Delta = {delta}", "Delta = 5.0", 1), "refuse",
         "Delta edited by hand (no longer the pilot fit's)"),
        ("L-string", '[constants]\nL = "1"\n', "refuse", "a constant given as a string"),
        ("hand-written", "Delta = 2.0\nL = 0.5\nsigma2 = 0.1\n", "accept", "hand-written constants at top level"),
        ("duplicate-in-flag-file", "[constants]\nDelta = 2.0\n", "accept", "one constant only (control)"),
    ]
    for name, text, expect, what in hand:
        out.append(Case(kind, name, what, files={"c.toml": text}, api=api, argv=[*opt, "c.toml"], expect=expect,
                        names=("c.toml",)))
    pred = ["predict", *TINY, "--updates", "40", "--constants"]
    out += [Case(kind, "predict-valid", "predict with the calibrated file (control)", copy=[("consts.toml", "c.toml")],
                 argv=[*pred, "c.toml"], expect="accept"),
            Case(kind, "predict-other-size", "predict for 6 clients with constants fitted on 4",
                 copy=[("consts.toml", "c.toml")],
                 argv=["predict", "--dataset", "synthetic", "--clients", "6", "--set", f"data.options={TINY_OPTIONS}",
                       "--updates", "40", "--constants", "c.toml"], names=("c.toml",)),
            Case(kind, "predict-bad-system-file", "predict with a system file holding a negative rate",
                 copy=[("consts.toml", "c.toml")], files={"bad.toml": "rates = [1, 1, 1, -1]\n"},
                 argv=["predict", "bad.toml", "--constants", "c.toml"], names=("bad.toml",)),
            Case(kind, "predict-extra-table", "predict with an unknown table next to [constants]",
                 files={"c.toml": good + "\n[bogus]\nx = 1\n"}, argv=[*pred, "c.toml"], names=("c.toml",))]
    return out


def cases_calibration(fx: Path, rng: random.Random) -> list[Case]:
    kind = "calibration-file"
    api = api_call("from aflqueue.recommendation import Calibration\nresult = Calibration.load('calibration.json')")
    argv = [*RECOMMEND, "--calibration", "calibration.json"]
    copy = [("rec", "rec")]
    valid = (fx / "calibration.json").read_bytes()
    out = [c for c in generic_cases(kind, "calibration.json", valid, "json", rng, api=api, argv=argv, copy=copy,
                                    names=("calibration.json",), max_bytes=MAX_BYTES["json"], truncations=1)
           if c.name in ("valid", "empty", "top-list", "a-folder")]
    data = json.loads(valid)
    out += field_cases(kind, "calibration.json", data, rng, leaves_per_file=5, cli_share=0.04, api=api, argv=argv,
                       copy=copy, names=("calibration.json",), free=lambda p: p[:1] == ("source",), unknown_tables=1)
    for k in data:
        out.append(Case(kind, f"missing-{k}", f"key {k} left out",
                        files={"calibration.json": json.dumps({a: b for a, b in data.items() if a != k})},
                        copy=copy, api=api, argv=argv if k == "quantile" else None,
                        expect="refuse" if k in ("quantile", "confidence", "sigma_floor", "regimes") else "either",
                        names=("calibration.json",)))
    typo = {("quantil" if a == "quantile" else a): b for a, b in data.items()}
    out.append(Case(kind, "typo-quantil", "'quantile' misspelt 'quantil' (the interval silently disappears)",
                    files={"calibration.json": json.dumps(typo)}, copy=copy, api=api, argv=argv,
                    names=("calibration.json",)))
    return out


CURVES = ("time", "updates", "test_accuracy", "test_loss")


def cases_run_folder(fx: Path, rng: random.Random) -> list[Case]:
    kind = "run-folder"
    copy = [("runs/a", "a")]
    api = api_call("from aflqueue.runs import compare_paths\nresult = compare_paths(['a'])['target']")
    argv = ["compare", "a"]
    out: list[Case] = []
    valid = (fx / "runs" / "a" / "results.json").read_bytes()
    gen = generic_cases(kind, "a/results.json", valid, "json", rng, api=api, argv=argv, copy=copy,
                        names=("results.json",), max_bytes=MAX_BYTES["json"], truncations=2, prefix="results.json:")
    out += [c for c in gen if not c.name.endswith(("BOM", "CRLF"))]
    res = json.loads(valid)
    out += field_cases(kind, "a/results.json", res, rng, leaves_per_file=8, cli_share=0.15, api=api, argv=argv,
                       copy=copy, names=("results.json",), prefix="results.json:",
                       free=lambda p: p[0] not in (*CURVES, "final_accuracy", "final_loss", "seed", "routing"),
                       unknown_tables=0)
    cfg = json.loads((fx / "runs" / "a" / "config.json").read_text())
    out += field_cases(kind, "a/config.json", cfg, rng, leaves_per_file=4, cli_share=0.15, api=api, argv=argv,
                       copy=copy, names=("config.json",), prefix="config.json:",
                       free=lambda p: (p[0] != "seed" and p[-1] != "zz_unknown")
                       or (len(p) >= 2 and p[-2] in ("options", "params", "constants")), unknown_tables=3)
    two = [("runs/a", "r/a"), ("runs/b", "r/b")]
    out += [
        Case(kind, "two-seeds (control)", "two seeds of one configuration", copy=two, argv=["compare", "r"],
             api=api_call("from aflqueue.runs import compare_paths\nresult = compare_paths(['r'])['target']"),
             expect="accept"),
        Case(kind, "same-seed-twice", "a run folder copied: two runs of one configuration and seed",
             copy=[("runs/a", "r/a"), ("runs/a", "r/a2")], argv=["compare", "r"],
             api=api_call("from aflqueue.runs import compare_paths\nresult = compare_paths(['r'])"), names=("r/a",)),
        Case(kind, "self-symlink-inside", "a folder of runs holding a symlink to itself", copy=two,
             files={"loop": make_symlink("r/loop", ".")}, argv=["plot", "r", "-o", "plots"],
             api=api_call("from aflqueue.runs import load_runs\nresult = len(load_runs(['r']))"), expect="either"),
        Case(kind, "results-is-a-folder", "results.json is a folder", copy=copy,
             files={"y": remove("a/results.json"), "x": make_dir("a/results.json")}, argv=argv, api=api,
             names=("a",)),
        Case(kind, "run-is-a-file", "the run folder is a file", files={"a": b"not a folder"}, argv=argv, api=api,
             names=("a",)),
        Case(kind, "results-symlink-loop", "results.json is a symlink loop", copy=copy,
             files={"x": make_symlink("a/results.json", "results.json")}, argv=argv, api=api, names=("a",)),
        Case(kind, "results-huge-sparse", "results.json of 2 GB (sparse)", copy=copy,
             files={"x": make_sparse("a/results.json", 2 * 2**30, b"{")}, argv=argv, api=api, names=("results.json",)),
        Case(kind, "config-a-folder", "config.json is a folder", copy=copy,
             files={"y": remove("a/config.json"), "x": make_dir("a/config.json")}, argv=argv, api=api,
             expect="either", names=("config.json",)),
        Case(kind, "time-all-zero", "every evaluation at time 0", copy=copy,
             files={"x": edit_json("a/results.json", lambda d: d.update(time=[0.0] * len(d["time"])))}, argv=argv,
             api=api, names=("time",)),
        Case(kind, "seed-differs-config-results", "config.json seed 0, results.json seed 5", copy=copy,
             files={"x": edit_json("a/results.json", lambda d: d.update(seed=5))}, argv=argv, api=api,
             expect="either"),
    ]
    # updates.csv (read by the API only: Run.updates_log)
    uapi = api_call("from aflqueue.runs import load_run\nresult = len(load_run('a').updates_log()['time'])")
    text = (fx / "runs" / "a" / "updates.csv").read_text()
    head, *rows = text.splitlines()

    def cell(i: int, j: int, v: str) -> str:
        cells = [r.split(",") for r in rows]
        cells[i][j] = v
        return "\n".join([head] + [",".join(c) for c in cells]) + "\n"

    for name, content, expect in (("valid", text, "accept"), ("empty", "", "refuse"), ("header-only", head + "\n", "either"),
                                  ("time-NaN", cell(2, 1, "nan"), "refuse"), ("client-99", cell(2, 2, "99"), "refuse"),
                                  ("arrival-skips", cell(3, 0, "77"), "refuse"), ("extra-column", text.replace("\n", ",1\n"),
                                                                                   "refuse"),
                                  ("version-2^60", cell(4, 5, str(2**60)), "refuse"), ("binary", b"\xff\x00\xfe", "refuse"),
                                  ("CRLF", text.replace("\n", "\r\n"), "either")):
        out.append(Case("updates-csv", name, f"updates.csv: {name}", copy=copy, files={"a/updates.csv": content},
                        api=uapi, expect=expect, names=("updates.csv",)))
    out.append(Case("updates-csv", "huge-sparse", "updates.csv of 20 GB (sparse)", copy=copy,
                    files={"x": make_sparse("a/updates.csv", 20 * 2**30, head.encode() + b"\n")}, api=uapi,
                    names=("updates.csv",)))
    return out


def npy_bytes(arr: Any) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def rezip(src: Path, edit: Callable[[dict[str, bytes]], dict[str, bytes]], rel: str = "t.npz") -> Callable[[Path], None]:
    """Rewrite the trace ``src`` member by member (stored, CRCs recomputed) through ``edit``."""
    def f(d: Path) -> None:
        with zipfile.ZipFile(src) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
        members = edit(members)
        with zipfile.ZipFile(d / rel, "w", zipfile.ZIP_STORED) as z:
            for k, v in members.items():
                z.writestr(zipfile.ZipInfo(k, date_time=(1980, 1, 1, 0, 0, 0)), v)
    return f


def _array_edit(member: str, fn: Callable[[Any], Any]) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    def edit(m: dict[str, bytes]) -> dict[str, bytes]:
        import io

        import numpy as np

        a = np.load(io.BytesIO(m[member]), allow_pickle=False).copy()
        m[member] = npy_bytes(fn(a))
        return m
    return edit


def _header_edit(fn: Callable[[dict], Any]) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    def edit(m: dict[str, bytes]) -> dict[str, bytes]:
        import io

        import numpy as np

        h = json.loads(np.load(io.BytesIO(m["header.npy"]), allow_pickle=False).tobytes().decode())
        r = fn(h)
        text = r if isinstance(r, str) else json.dumps(h, allow_nan=True)
        m["header.npy"] = npy_bytes(np.frombuffer(text.encode(), dtype=np.uint8))
        return m
    return edit


def _huge_shape(member: str, shape: int) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    def edit(m: dict[str, bytes]) -> dict[str, bytes]:
        import io

        import numpy as np

        a = np.load(io.BytesIO(m[member]), allow_pickle=False)
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(a.dtype),
                                                    "fortran_order": False, "shape": (shape,)})
        m[member] = head.getvalue() + a.tobytes()
        return m
    return edit


def _eocd_entries(n: int) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / "t.npz"
        b = bytearray(p.read_bytes())
        at = b.rfind(b"PK\x05\x06")
        struct.pack_into("<HH", b, at + 8, n & 0xFFFF, n & 0xFFFF)
        struct.pack_into("<L", b, at + 12, 0xFFFFFFF0)
        p.write_bytes(bytes(b))
    return f


def cases_trace(fx: Path, rng: random.Random) -> list[Case]:
    import numpy as np

    kind = "trace-file"
    src = fx / "trace.npz"
    copy = [("trace.npz", "t.npz")]
    api = api_call("from aflqueue.sim.trace import Trace\nresult = len(Trace.load('t.npz'))")
    argv = ["schedule", "t.npz", "-o", "out"]
    valid = src.read_bytes()
    n = len(valid)
    out = [Case(kind, "valid", "the trace itself (control)", copy=copy, api=api, argv=argv, expect="accept"),
           Case(kind, "empty", "an empty file", files={"t.npz": b""}, api=api, argv=argv, names=("t.npz",)),
           Case(kind, "text", "a text file named .npz", files={"t.npz": b"hello\n" * 10}, api=api, argv=argv,
                names=("t.npz",)),
           Case(kind, "a-folder", "a folder named t.npz", files={"t.npz": make_dir("t.npz")}, api=api, argv=argv,
                names=("t.npz",)),
           Case(kind, "symlink-loop", "a symlink loop", files={"t.npz": make_symlink("t.npz", "t.npz")}, api=api,
                argv=argv, names=("t.npz",)),
           Case(kind, "FIFO", "a named pipe", files={"t.npz": make_fifo("t.npz")}, api=api, argv=argv,
                names=("t.npz",))]
    for k in sorted(rng.sample(range(22, n - 22), 4)):
        out.append(Case(kind, f"truncated@{k}", f"cut after {k} of {n} bytes", files={"t.npz": valid[:k]}, api=api,
                        argv=argv, names=("t.npz",)))
    for k in sorted(rng.sample(range(0, n), 6)):
        flipped = bytearray(valid)
        flipped[k] ^= 0xFF
        out.append(Case(kind, f"byte-flip@{k}", f"byte {k} inverted", files={"t.npz": bytes(flipped)}, api=api,
                        argv=argv, expect="either", names=("t.npz",)))
    with zipfile.ZipFile(src) as z:
        names = [i.filename for i in z.infolist()]
    col = next(x for x in names if x.startswith("client."))
    tcol = next(x for x in names if x.startswith("compute_end."))
    edits = [
        ("header-NaN-tasks", "header tasks = NaN", _header_edit(lambda h: h.update(tasks=float("nan")))),
        ("header-tasks-1e12", "header tasks = 10^12 (members unchanged)", _header_edit(lambda h: h.update(tasks=10**12))),
        ("header-n_clients-10^400", "header n_clients = 10^400", _header_edit(lambda h: h.update(n_clients=10**400))),
        ("header-not-json", "header bytes are not JSON", _header_edit(lambda h: "{not json")),
        ("header-deep", "header nested 100 000 deep", _header_edit(lambda h: "[" * 100_000 + "]" * 100_000)),
        ("header-missing-tasks", "header without tasks", _header_edit(lambda h: h.pop("tasks"))),
        ("header-meta-list", "header meta is a list", _header_edit(lambda h: h.update(meta=[1, 2]))),
        ("header-format-3", "header format = 3", _header_edit(lambda h: h.update(format=3))),
        ("client-out-of-range", "one client index = n", _array_edit(col, lambda a: (a.__setitem__(5, 3), a)[1])),
        ("client-negative", "one client index = -1", _array_edit(col, lambda a: (a.__setitem__(5, -1), a)[1])),
        ("time-NaN", "one completion time NaN", _array_edit(tcol, lambda a: (a.__setitem__(7, np.nan), a)[1])),
        ("time-reversed", "completion times reversed", _array_edit(tcol, lambda a: a[::-1].copy())),
        ("time-negative", "completion times negative", _array_edit(tcol, lambda a: -a)),
        ("client-int64", "client column as int64", _array_edit(col, lambda a: a.astype(np.int64))),
        ("client-2-D", "client column 2-D", _array_edit(col, lambda a: a.reshape(-1, 1))),
        ("huge-declared-shape", "a member whose header declares 2^40 entries", _huge_shape(col, 2**40)),
        ("extra-member", "an unexpected member", lambda m: {**m, "evil.npy": npy_bytes(np.zeros(3))}),
        ("missing-member", "a column chunk left out", lambda m: {k: v for k, v in m.items() if k != col}),
        ("object-dtype", "a member of dtype object (a pickle)",
         lambda m: {**m, col: b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (3,), }"
                    .ljust(128, b" ")[:127] + b"\n" + pickle.dumps([1, 2, 3])}),
    ]
    for name, what, edit in edits:
        out.append(Case(kind, name, what, files={"t.npz": rezip(src, edit)}, api=api, argv=argv, names=("t.npz",)))
    out.append(Case(kind, "end-record-10^9-entries", "zip end record claims 65535 entries in a 4 GB directory",
                    copy=copy, files={"x": _eocd_entries(65535)}, api=api, argv=argv, names=("t.npz",)))
    out.append(Case(kind, "deflate-bomb", "a member compressed 1000:1 whose header declares 2^31 entries",
                    files={"t.npz": _bomb(src, col)}, api=api, argv=argv, names=("t.npz",), timeout=90))
    # schedule of a run folder: trace.npz with the run's results.json (read without check_results)
    sapi = api_call("from aflqueue.schedule import load_schedule\nt, arrivals, r = load_schedule('a')\nresult = arrivals")
    rcopy = [("runs/a", "a")]
    out += [Case("schedule-run-folder", "valid", "a run folder (control)", copy=rcopy, api=sapi,
                 argv=["schedule", "a", "-o", "out"], expect="accept"),
            Case("schedule-run-folder", "arrivals-true", "results.json arrivals = true (a bool read as 1 arrival)",
                 copy=rcopy, files={"x": edit_json("a/results.json", lambda d: d.update(arrivals=True))}, api=sapi,
                 argv=["schedule", "a", "-o", "out"], names=("results.json",)),
            Case("schedule-run-folder", "arrivals-string", "results.json arrivals = 'many'",
                 copy=rcopy, files={"x": edit_json("a/results.json", lambda d: d.update(arrivals="many"))}, api=sapi,
                 argv=["schedule", "a", "-o", "out"], names=("results.json",)),
            Case("schedule-run-folder", "results-NaN-curves", "results.json time curve NaN (read without checks)",
                 copy=rcopy, files={"x": edit_json("a/results.json", lambda d: d.update(time=[float("nan")] * len(d["time"])))},
                 api=sapi, argv=["schedule", "a", "-o", "out"], expect="either", names=("results.json",)),
            Case("schedule-run-folder", "trace-is-a-folder", "trace.npz is a folder", copy=rcopy,
                 files={"y": remove("a/trace.npz"), "x": make_dir("a/trace.npz")}, api=sapi,
                 argv=["schedule", "a", "-o", "out"], names=("trace.npz",))]
    return out


def _bomb(src: Path, col: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        import io

        import numpy as np

        with zipfile.ZipFile(src) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<i4", "fortran_order": False, "shape": (2**31 - 1,)})
        # the column replaced by a deflated member declaring 2^31 - 1 entries, holding 1 GiB of zeros
        with zipfile.ZipFile(d / "t.npz", "w", zipfile.ZIP_STORED) as z:
            for k, v in members.items():
                if k == col:
                    info = zipfile.ZipInfo(k, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with z.open(info, "w", force_zip64=True) as w:
                        w.write(head.getvalue())
                        zero = bytes(2**24)
                        for _ in range(64):  # 1 GiB of zeros, about 1 MB compressed
                            w.write(zero)
                else:
                    z.writestr(zipfile.ZipInfo(k, date_time=(1980, 1, 1, 0, 0, 0)), v)
    return f


def _unchanged(*rels: str) -> Callable[[Path, dict], tuple[str, str] | None]:
    """After a refused command: the files ``rels`` of the case folder must be as the fixture had them."""
    def check(d: Path, r: dict) -> tuple[str, str] | None:
        before = json.loads((d / ".before.json").read_text()) if (d / ".before.json").is_file() else {}
        changed = [rel for rel in rels if before.get(rel) != _digest(d / rel)]
        if changed and r.get("rc") != 0:
            return "BAD-WRITE", f"refused, yet changed {', '.join(changed)}"
        return None
    return check


def _digest(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def _remember(*rels: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        (d / ".before.json").write_text(json.dumps({rel: _digest(d / rel) for rel in rels}))
    return f


def cases_checkpoint(fx: Path, rng: random.Random) -> list[Case]:
    kind = "checkpoint"
    copy = [("runs/a", "runs/a")]
    argv = ["train", *TRAIN_TINY, "--seed", "0", "-o", "runs/a", "--resume", "--quiet"]
    ck = "runs/a/checkpoint.pt"
    keep = ("runs/a/results.json", "runs/a/updates.csv")
    tamper = ("import torch; p = 'runs/a/checkpoint.pt'; b = torch.load(p, weights_only=True); {}; torch.save(b, p)")
    rows = [
        ("valid", None, "accept", "resume of the complete run (control)"),
        ("empty", b"", "refuse", "an empty checkpoint"),
        ("truncated-half", lambda d: (d / ck).write_bytes((fx / ck).read_bytes()[: (fx / ck).stat().st_size // 2]),
         "refuse", "cut in half"),
        ("pickle-os-system", lambda d: (d / ck).write_bytes(
            b"cos\nsystem\n(S'touch PWNED'\ntR."), "refuse", "a plain pickle calling os.system"),
        ("a-folder", lambda d: (_rmtree(d / ck), (d / ck).mkdir()), "refuse", "a folder named checkpoint.pt"),
        ("symlink-loop", lambda d: (_rmtree(d / ck), os.symlink("checkpoint.pt", d / ck)), "refuse", "a symlink loop"),
        ("other-config", python_edit(tamper.format("b['config_hash'] = 'x' * 16")), "refuse", "another configuration"),
        ("k=10^12", python_edit(tamper.format("b['k'] = 10**12")), "refuse", "arrivals k = 10^12 (of 40)"),
        ("k=-1", python_edit(tamper.format("b['k'] = -1")), "refuse", "arrivals k = -1"),
        ("k=20", python_edit(tamper.format("b['k'] = 20")), "refuse", "k = 20 with the log of 40 arrivals"),
        ("accuracy-7", python_edit(tamper.format("b['curves']['test_accuracy'] = [7.0] * len(b['curves']['test_accuracy'])")),
         "refuse", "test accuracy 7.0 (700%) in the saved curves"),
        ("log-garbage", python_edit(tamper.format("b['log'] = [('a',)] * len(b['log'])")), "refuse",
         "the arrival log replaced by garbage rows"),
        ("time-NaN", python_edit(tamper.format("b['time'] = float('nan')")), "refuse", "simulated time NaN"),
        ("alg-missing", python_edit(tamper.format("del b['alg']")), "refuse", "the algorithm's state missing"),
    ]
    out = []
    for name, content, expect, what in rows:
        files: dict[str, Any] = {}
        if content is not None:
            files[ck] = content
        files[".before"] = _remember(*keep)
        out.append(Case(kind, name, what, copy=copy, files=files, argv=argv, expect=expect, names=("checkpoint.pt",),
                        after=_both(_unchanged(*keep), _no_pwned)))
    return out


def _record_case(kind: str, name: str, what: str, copy: list[tuple[str, str]], record: str, fn: Callable[[dict], Any],
                 argv: list[str], api: str | None, expect: str = "refuse", names: tuple[str, ...] = (),
                 after: Callable | None = None) -> Case:
    return Case(kind, name, what, copy=copy, files={"x": edit_json(record, fn)}, argv=argv, api=api, expect=expect,
                names=names or (Path(record).name,), after=after)


def _same_scores(fixture_tune: Path) -> Callable[[Path, dict], tuple[str, str] | None]:
    want = json.loads(fixture_tune.read_text())["table"]

    def check(d: Path, r: dict) -> tuple[str, str] | None:
        if r.get("rc") != 0:
            return None
        try:
            got = json.loads(r["stdout"])["table"]
        except (ValueError, KeyError):
            return None
        if [(x["lr"], x["score"]) for x in got] == [(x["lr"], x["score"]) for x in want]:
            return "BAD-SILENT", "exit 0 with the scores of the other configuration's records (reused, not recomputed)"
        return "OK", "recomputed"
    return check


def _same_summary(fixture_summary: Path) -> Callable[[Path, dict], tuple[str, str] | None]:
    want = json.loads(fixture_summary.read_text())

    def check(d: Path, r: dict) -> tuple[str, str] | None:
        if r.get("rc") != 0:
            return None
        got = json.loads((d / "val" / "summary.json").read_text())
        if got.get("per_arm") == want.get("per_arm"):
            return "BAD-SILENT", "exit 0 with the other configuration's runs (summary identical: reused, not recomputed)"
        return "OK", "recomputed"
    return check


def cases_records(fx: Path, rng: random.Random) -> list[Case]:
    out: list[Case] = []
    # ---- calibrate --pilot: its pilot records (checked by pilot.check_pilot_record)
    kind = "pilot-records"
    copy = [("consts.toml", "consts.toml"), ("consts_pilots", "consts_pilots")]
    rec = "consts_pilots/cells/" + sorted(p.name for p in (fx / "consts_pilots" / "cells").glob("*.json"))[0]
    sets = ['data.dataset="synthetic"', "data.clients=4", f"data.options={TINY_OPTIONS}", 'system.profile="custom"',
            "system.rates=[1.0, 1.0, 0.2, 0.2]", 'device="cpu"', "run.updates=40"]
    api = api_call(f"from aflqueue.config import load_config\nfrom aflqueue.pilot import calibrate\n"
                   f"cfg = load_config(None, {sets!r})\n"
                   "result = calibrate(cfg, method='pilot', output='consts.toml', routings=['uniform', 'p2'], "
                   "lrs=[0.05, 0.1], bootstrap=20, progress=None).constants")
    for name, fn, expect, what in (
            ("valid", lambda r: None, "accept", "the records as written (control: a resumed calibration)"),
            ("lr-missing", lambda r: r.pop("lr"), "refuse", "lr removed"),
            ("lr-string", lambda r: r.update(lr="0.05"), "refuse", "lr a string"),
            ("S1-negative", lambda r: r.update(S1=-1.0), "refuse", "S1 = -1"),
            ("accuracy-7", lambda r: r["measured"]["curves"].update(test_accuracy=[7.0] * len(
                r["measured"]["curves"]["test_accuracy"])), "refuse", "validation accuracy 7.0"),
            ("curves-short", lambda r: r["measured"]["curves"].update(test_loss=r["measured"]["curves"]["test_loss"][:-1]),
             "refuse", "loss curve one shorter"),
            ("measured-missing", lambda r: r.pop("measured"), "refuse", "measured removed"),
            ("settings-changed", lambda r: r["settings"].update(lr=0.5), "either", "settings of another job (stale)"),
            ("id-mismatch", lambda r: r.update(id="other"), "either", "id of another job (set aside as corrupt)")):
        out.append(_record_case(kind, name, what, copy, rec, fn, CALIBRATE, api, expect))
    # ---- tune: records read back without checks
    kind = "tune-records"
    copy = [("tune", "tune")]
    rec = "tune/cells/tune__lr0.05__s1.json"
    tapi = api_call(f"from aflqueue.config import load_config\nfrom aflqueue.tuning import tune\n"
                    f"cfg = load_config(None, {sets + ['data.validation_fraction=0.2']!r})\n"
                    "result = tune(cfg, [0.05, 0.1], [1], 'tune', progress=None).best_lr")
    for name, fn, expect, what in (
            ("valid", lambda r: None, "accept", "the records as written (control: resumed tuning)"),
            ("lr-missing", lambda r: r.pop("lr"), "refuse", "lr removed from one record"),
            ("score-string", lambda r: r.update(score="abc"), "refuse", "score 'abc'"),
            ("score-5", lambda r: r.update(score=5.0), "refuse", "score 5.0 (a mean accuracy above 1)"),
            ("seed-string", lambda r: r.update(seed="x"), "refuse", "seed 'x' (the record no longer counts, yet is 'done')"),
            ("lr-list", lambda r: r.update(lr=[1]), "refuse", "lr [1]"),
            ("diverged-table", lambda r: r.update(diverged={"a": 1}), "refuse", "diverged a table (read as true)"),
            ("truncated", lambda r: None, "either", "a truncated record (set aside, recomputed)")):
        c = _record_case(kind, name, what, copy, rec, fn, TUNE, tapi, expect)
        if name == "truncated":
            c.files = {"x": lambda d, rec=rec: (d / rec).write_text('{"id": "tune__lr0.05__s1", "lr"')}
        out.append(c)
    out.append(Case(kind, "foreign-record", "a record of another experiment in the same cells/ folder", copy=copy,
                    files={"tune/cells/zz_other.json": json.dumps({"id": "zz_other", "note": "from another study"})},
                    argv=TUNE, api=tapi, names=("zz_other",)))
    other = ["tune", *OTHER_DATA, *TUNE[1 + len(TINY):]]
    out.append(Case(kind, "other-config-same-folder", "tune another configuration (other data) into the same folder",
                    copy=copy, argv=other, expect="either", after=_same_scores(fx / "tune" / "tune.json")))
    # ---- validate: records read back without checks
    kind = "validate-records"
    copy = [("val", "val")]
    rec = "val/runs/cells/uniform_s0.json"
    for name, fn, expect, what in (
            ("valid", lambda r: None, "accept", "the records as written (control)"),
            ("seed-missing", lambda r: r.pop("seed"), "refuse", "seed removed"),
            ("final_accuracy-string", lambda r: r.update(final_accuracy="abc"), "refuse", "final_accuracy 'abc'"),
            ("final_accuracy-7", lambda r: r.update(final_accuracy=7.0), "refuse", "final_accuracy 7.0"),
            ("routing_kind-bogus", lambda r: r.update(routing_kind="bogus"), "refuse", "routing_kind 'bogus'"),
            ("curves-number", lambda r: r.update(curves=3), "refuse", "curves = 3")):
        out.append(_record_case(kind, name, what, copy, rec, fn, VALIDATE, None, expect))
    other = ["validate", *OTHER_DATA, *VALIDATE[1 + len(TINY):]]
    out.append(Case(kind, "other-config-same-folder", "validate another configuration (other data) into the same folder",
                    copy=copy, argv=other, expect="either", after=_same_summary(fx / "val" / "summary.json")))
    # ---- recommend: records keyed by content, read back without checks
    kind = "recommend-records"
    copy = [("rec", "rec")]
    first = sorted(p.name for p in (fx / "rec" / "cells").glob("asyncsgd__*__f0.1111__*.json"))[0]
    rec = f"rec/cells/{first}"
    for name, fn, expect, what in (
            ("valid", lambda r: None, "accept", "the records as written (control: resumed)"),
            ("score-missing", lambda r: r.pop("score"), "refuse", "score removed"),
            ("score-string", lambda r: r.update(score="abc"), "refuse", "score 'abc'"),
            ("score-5", lambda r: r.update(score=5.0), "refuse", "score 5.0 (a mean accuracy above 1)"),
            ("arrivals-negative", lambda r: r.update(arrivals=-5), "refuse", "arrivals -5"),
            ("curves-number", lambda r: r.update(curves=3), "refuse", "curves = 3"),
            ("final_accuracy-string", lambda r: r.update(final_accuracy="x"), "refuse", "final_accuracy 'x'")):
        out.append(_record_case(kind, name, what, copy, rec, fn, RECOMMEND, None, expect))
    return out


MNIST_TRAIN = ["train", "--dataset", "mnist", "--data-root", "mn", "--clients", "2", "--rates", "1,1", "--device", "cpu",
               "--updates", "10", "--set", 'model.name="mlp"', "-o", "out", "--quiet"]
CIFAR_TRAIN = ["train", "--dataset", "cifar10", "--data-root", "cf", "--clients", "2", "--rates", "1,1", "--device",
               "cpu", "--updates", "10", "--set", 'model.name="mlp"', "-o", "out", "--quiet"]


def cases_data_root(fx: Path, rng: random.Random) -> list[Case]:
    import numpy as np

    kind = "data-root-mnist"
    api = api_call("from aflqueue.fl.data import load_dataset\ntr, te = load_dataset('mnist', 'mn')\n"
                   "result = tuple(tr.x.shape)")
    raw = "mn/MNIST/raw"
    img = f"{raw}/train-images-idx3-ubyte"
    lab = f"{raw}/train-labels-idx1-ubyte"
    copy = [("mnist", "mn")]

    def patch(rel: str, offset: int, data: bytes) -> Callable[[Path], None]:
        def f(d: Path) -> None:
            b = bytearray((d / rel).read_bytes())
            b[offset:offset + len(data)] = data
            (d / rel).write_bytes(bytes(b))
        return f

    rows = [
        ("valid", {}, "accept", "60 + 20 random 28x28 images (control)"),
        ("label-count", {"x": lambda d: make_mnist(d / "mn", ntr_labels=50)}, "refuse", "60 images, 50 labels"),
        ("images-5x5", {"x": lambda d: make_mnist(d / "mn", h=5, w=5)}, "either", "5x5 images (an MLP takes them)"),
        ("labels-200", {"x": lambda d: make_mnist(d / "mn", max_label=200)}, "refuse", "labels up to 200"),
        ("zero-images", {"x": lambda d: make_mnist(d / "mn", ntr=0, ntr_labels=0)}, "refuse", "no training image"),
        ("truncated", {"x": lambda d: os.truncate(d / img, 1000)}, "refuse", "images file cut at 1000 bytes"),
        ("dims-2^31", {"x": patch(img, 4, b"\x7f\xff\xff\xff")}, "refuse", "header declares 2^31 - 1 images"),
        ("dtype-code", {"x": patch(img, 2, b"\x0d")}, "refuse", "dtype code float32"),
        ("ndim-9", {"x": patch(img, 3, b"\x09")}, "refuse", "9 dimensions declared"),
        ("empty-file", {"x": lambda d: (d / img).write_bytes(b"")}, "refuse", "an empty images file"),
        ("a-folder", {"x": lambda d: (_rmtree(d / img), (d / img).mkdir())}, "refuse", "the images file is a folder"),
        ("symlink-loop", {"x": lambda d: (_rmtree(d / lab), os.symlink(Path(lab).name, d / lab))}, "refuse",
         "the labels file is a symlink loop"),
        ("legacy-garbage", {"x": lambda d: ((d / "mn/MNIST/processed").mkdir(parents=True),
                                            (d / "mn/MNIST/processed/training.pt").write_bytes(b"garbage"),
                                            (d / "mn/MNIST/processed/test.pt").write_bytes(b"garbage"))},
         "refuse", "legacy processed/training.pt and test.pt that are garbage"),
    ]
    out = []
    for name, files, expect, what in rows:
        # the command line for a few (each trains: 4 s); the API (the same reader) for all
        out.append(Case(kind, name, what, copy=copy, files=files, api=api, expect=expect, names=("mn",),
                        argv=MNIST_TRAIN if name in ("valid", "label-count", "truncated", "dims-2^31", "legacy-garbage",
                                                     "symlink-loop") else None))
    kind = "data-root-cifar"
    capi = api_call("from aflqueue.fl.data import load_dataset\ntr, te = load_dataset('cifar10', 'cf')\n"
                    "result = tuple(tr.x.shape)")
    b1 = "cf/cifar-10-batches-py/data_batch_1"
    copy = [("cifar", "cf")]

    def batch(obj: Any, protocol: int = 2) -> Callable[[Path], None]:
        return lambda d: (d / b1).write_bytes(pickle.dumps(obj, protocol=protocol))

    good = {b"data": np.zeros((12, 3072), np.uint8), b"labels": [0] * 12}
    rows = [
        ("valid", {}, "accept", "tiny CIFAR-10 batches (control)"),
        ("os-system-global", {"x": lambda d: (d / b1).write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")}, "refuse",
         "a pickle calling os.system"),
        ("data-shape", {"x": batch({b"data": np.zeros((12, 100), np.uint8), b"labels": [0] * 12})}, "refuse",
         "rows of 100 values"),
        ("labels-missing", {"x": batch({b"data": good[b"data"]})}, "refuse", "no labels"),
        ("labels-50", {"x": batch({**good, b"labels": [50] * 12})}, "refuse", "label 50 in CIFAR-10"),
        ("labels-count", {"x": batch({**good, b"labels": [0] * 5})}, "refuse", "5 labels for 12 images"),
        ("top-level-list", {"x": batch([1, 2, 3])}, "refuse", "a list instead of a dict"),
        ("truncated", {"x": lambda d: os.truncate(d / b1, 100)}, "refuse", "cut at 100 bytes"),
        ("garbage", {"x": lambda d: (d / b1).write_bytes(b"\x00garbage" * 10)}, "refuse", "not a pickle"),
        ("protocol-5", {"x": batch(good, protocol=5)}, "either", "the same batch pickled with protocol 5"),
    ]
    for name, files, expect, what in rows:
        out.append(Case(kind, name, what, copy=copy, files=files, api=capi, expect=expect, names=("cf",),
                        after=_no_pwned, argv=CIFAR_TRAIN if name in ("valid", "os-system-global", "labels-50",
                                                                      "truncated", "protocol-5") else None))
    return out


def _no_pwned(d: Path, r: dict) -> tuple[str, str] | None:
    if (d / "PWNED").exists():
        return "BAD-SILENT", "CODE EXECUTED from a data file (PWNED written)"
    return None


def _both(*checks: Callable[[Path, dict], tuple[str, str] | None]) -> Callable[[Path, dict], tuple[str, str] | None]:
    def check(d: Path, r: dict) -> tuple[str, str] | None:
        for c in checks:
            got = c(d, r)
            if got is not None and got[0] != "OK":
                return got
        return None
    return check


def cases_flags(fx: Path, rng: random.Random) -> list[Case]:
    """Command-line flags: out of range, NaN, negative, conflicting, ignored."""
    copy = [("runs/a", "ra"), ("trace.npz", "tr.npz"), ("consts.toml", "consts.toml")]
    sim = ["simulate", "--rates", "1,1", "--updates", "2000"]
    cal = ["calibrate", *TINY, "--updates", "40"]
    pred = ["predict", *TINY, "--updates", "40", "--constants", "consts.toml"]
    tune = ["tune", *TINY, "--updates", "40", "--set", "data.validation_fraction=0.2", "-o", "t", "--quiet"]
    train = ["train", *TINY, "--updates", "40", "-o", "o", "--quiet"]
    rows: list[tuple[str, list[str], str, str]] = [
        ("simulate --warmup nan", [*sim, "--warmup", "nan"], "refuse", "warmup"),
        ("simulate --max-memory nan", [*sim, "--max-memory", "nan"], "refuse", "max-memory"),
        ("simulate --confidence 1", [*sim, "--confidence", "1"], "refuse", "confidence"),
        ("simulate --batches 1", [*sim, "--batches", "1"], "refuse", "batches"),
        ("simulate --updates 0", ["simulate", "--rates", "1,1", "--updates", "0"], "refuse", "updates"),
        ("simulate --updates 1e14", ["simulate", "--rates", "1,1", "--updates", str(10**14)], "refuse", "updates"),
        ("simulate --replications 0", [*sim, "--replications", "0"], "refuse", "replications"),
        ("simulate --seed -1", [*sim, "--seed", "-1"], "refuse", "seed"),
        ("simulate --seed 1e23", [*sim, "--seed", str(10**23)], "either", "seed"),
        ("simulate --trace x.txt", [*sim, "--trace", "x.txt"], "refuse", "trace"),
        ("simulate --trace FOLDER", [*sim, "--trace", "ra"], "refuse", "trace"),
        ("simulate --workers 2 (serial)", [*sim, "--workers", "2"], "refuse", "workers"),
        ("simulate --address (no ray)", [*sim, "--address", "x"], "refuse", "address"),
        ("simulate --downlink-discipline alone", [*sim, "--downlink-discipline", "delay"], "refuse", "downlink"),
        ("simulate --server-rate nan", [*sim, "--server-rate", "nan"], "refuse", "server"),
        ("simulate --service bogus", [*sim, "--service", "bogus"], "refuse", "service"),
        ("simulate --service unknown parameter", [*sim, "--service", "lognormal:bogus=1"], "refuse", "service"),
        ("simulate --service exponential:mean=5", [*sim, "--service", "exponential:mean=5"], "refuse", "service"),
        ("simulate --service cv twice", [*sim, "--service", "lognormal:cv=1.5,cv=0.01"], "refuse", "service"),
        ("simulate --service lognormal:cv=1e300", [*sim, "--service", "lognormal:cv=1e300"], "refuse", "service"),
        ("simulate --service gamma:cv=1e300", [*sim, "--service", "gamma:cv=1e300"], "refuse", "service"),
        ("simulate --service weibull:shape=1e-300", [*sim, "--service", "weibull:shape=1e-300"], "refuse", "service"),
        ("simulate --service empirical:file=/etc/hostname", [*sim, "--service", "empirical:file=/etc/hostname"],
         "refuse", "/etc/hostname"),
        ("analyze --rates 1,,1", ["analyze", "--rates", "1,,1", "--json"], "refuse", "rates"),
        ("analyze --rates 1e-320,1", ["analyze", "--rates", "1e-320,1"], "refuse", "rates"),
        ("analyze --rates nan,1", ["analyze", "--rates", "nan,1"], "refuse", "rates"),
        ("analyze --routing -0.5,1.5", ["analyze", "--rates", "1,1", "--routing", "-0.5,1.5"], "refuse", "routing"),
        ("analyze --concurrency 2e6", ["analyze", "--rates", "1,1", "--concurrency", "2000000"], "refuse", "concurrency"),
        ("analyze --method with --analysis approx", ["analyze", "--rates", "1,1", "--method", "convolution", "--analysis",
                                                     "approx"], "refuse", "method"),
        ("schedule --window nan:5", ["schedule", "tr.npz", "--window", "nan:5", "-o", "s"], "refuse", "window"),
        ("schedule --window 5:5", ["schedule", "tr.npz", "--window", "5:5", "-o", "s"], "refuse", "window"),
        ("schedule --window 0:1e308", ["schedule", "tr.npz", "--window", "0:1e308", "-o", "s"], "either", "window"),
        ("schedule --clients 99", ["schedule", "tr.npz", "--clients", "99", "-o", "s"], "refuse", "clients"),
        ("schedule --clients 0.5", ["schedule", "tr.npz", "--clients", "0.5", "-o", "s"], "refuse", "clients"),
        ("schedule -o FILE", ["schedule", "tr.npz", "-o", "tr.npz"], "refuse", "tr.npz"),
        ("plot --target nan", ["plot", "ra", "--target", "nan", "-o", "p"], "refuse", "target"),
        ("plot -o FILE", ["plot", "ra", "-o", "ra/results.json"], "refuse", "results.json"),
        ("plot RUN RUN", ["plot", "ra", "ra", "-o", "p"], "refuse", "ra"),
        ("compare --time nan", ["compare", "ra", "--time", "nan"], "refuse", "time"),
        ("compare --time -1", ["compare", "ra", "--time", "-1"], "refuse", "time"),
        ("compare --target 1.5", ["compare", "ra", "--target", "1.5"], "refuse", "target"),
        ("compare --reference TRACE", ["compare", "ra", "--reference", "tr.npz"], "refuse", "tr.npz"),
        ("sweep --concurrency-range 0:5", ["sweep", "--rates", "1,1", "--concurrency-range", "0:5", "-o", "sw"],
         "refuse", "concurrency-range"),
        ("sweep --pareto-points 102", ["sweep", "--rates", "1,1", "--concurrency-range", "1:2", "--pareto-points",
                                       "102", "-o", "sw"], "refuse", "pareto-points"),
        ("sweep -o FILE", ["sweep", "--rates", "1,1", "--concurrency-range", "1:2", "--pareto-points", "0",
                           "--objective", "per-update", "-o", "tr.npz", "--quiet"], "refuse", "tr.npz"),
        ("figures -o FILE", ["figures", "-o", "tr.npz"], "refuse", "tr.npz"),
        ("optimize --p-min nan", ["optimize", "--rates", "1,1", "--p-min", "nan"], "refuse", "p-min"),
        ("optimize --p-min 0.6", ["optimize", "--rates", "1,1", "--p-min", "0.6"], "refuse", "p_min"),
        ("optimize --starts 0", ["optimize", "--rates", "1,1", "--starts", "0"], "refuse", "starts"),
        ("optimize --constants Delta twice", ["optimize", "--rates", "1,1", "--constants", "Delta=1,Delta=5"],
         "refuse", "Delta"),
        ("optimize --constants Delta=nan", ["optimize", "--rates", "1,1", "--constants", "Delta=nan"], "refuse", "Delta"),
        ("optimize --eta 0", ["optimize", "--rates", "1,1", "--eta", "0"], "refuse", "eta"),
        ("optimize --kappa 1e13", ["optimize", "--rates", "1,1", "--kappa", "1e13"], "refuse", "kappa"),
        ("optimize --objective twice", ["optimize", "--rates", "1,1", "--objective", "wallclock", "--objective",
                                        "per-update"], "either", "objective"),
        ("calibrate --pilot --initial", [*cal, "--pilot", "--initial"], "refuse", "initial"),
        ("calibrate --initial --lrs", [*cal, "--initial", "--lrs", "0.1", "-o", "c.toml"], "refuse", "lrs"),
        ("calibrate --lrs nan", [*cal, "--pilot", "--lrs", "nan", "-o", "c.toml"], "refuse", "lrs"),
        ("calibrate --budget-fraction 0", [*cal, "--pilot", "--budget-fraction", "0", "-o", "c.toml"], "refuse",
         "budget-fraction"),
        ("calibrate --bootstrap -1", [*cal, "--pilot", "--bootstrap", "-1", "-o", "c.toml"], "refuse", "bootstrap"),
        ("calibrate --routings bogus", [*cal, "--pilot", "--routings", "bogus", "-o", "c.toml"], "refuse", "routings"),
        ("calibrate --pilot-seed -1", [*cal, "--pilot", "--pilot-seed", "-1", "-o", "c.toml"], "refuse", "seed"),
        ("calibrate -o .txt", [*cal, "--initial", "-o", "c.txt"], "refuse", "c.txt"),
        ("predict --target-fraction nan", [*pred, "--target-fraction", "nan"], "refuse", "target"),
        ("predict --confidence 2", [*pred, "--confidence", "2"], "refuse", "confidence"),
        ("predict --starts 0", [*pred, "--starts", "0"], "refuse", "starts"),
        ("predict --p-min nan", [*pred, "--p-min", "nan"], "refuse", "p"),
        ("predict without --constants", ["predict", *TINY, "--updates", "40"], "refuse", "constants"),
        ("tune --lr-grid one rate", [*tune, "--lr-grid", "0.1"], "refuse", "lr-grid"),
        ("tune --lr-grid nan", [*tune, "--lr-grid", "nan,0.1"], "refuse", "lr-grid"),
        ("tune --pilot-seeds -1", [*tune, "--pilot-seeds", "-1"], "refuse", "pilot-seeds"),
        ("tune --replicas 0", [*tune, "--replicas", "0"], "refuse", "replicas"),
        ("tune without validation split", ["tune", *TINY, "--updates", "40", "-o", "t", "--quiet"], "refuse",
         "validation"),
        ("train --updates 0", [*train, "--updates", "0"], "refuse", "updates"),
        ("train --time-budget nan", [*train, "--time-budget", "nan"], "refuse", "time_budget"),
        ("train --clients 0", [*train, "--clients", "0"], "refuse", "clients"),
        ("train --rates/--clients mismatch", ["train", "--dataset", "synthetic", "--clients", "3", "--rates", "1,1",
                                              "--updates", "40", "-o", "o", "--quiet"], "refuse", "rates"),
        ("train --serial --batched", [*train, "--serial", "--batched"], "refuse", "batched"),
        ("train --device tpu", [*train, "--device", "tpu"], "refuse", "device"),
        ("train -m 0", [*train, "-m", "0"], "either", "concurrency"),  # documented: 0 means n
        ("train --resume --force", [*train, "--resume", "--force"], "refuse", "resume"),
        ("train --tensorboard ''", [*train, "--tensorboard", ""], "refuse", "tensorboard"),
        ("run --seeds 0", ["run", "--seeds", "0", "--quiet"], "refuse", "seeds"),
        ("run --updates 99", ["run", "--updates", "99", "--quiet"], "refuse", "updates"),
        ("run --workers 0", ["run", "--workers", "0", "--quiet"], "refuse", "workers"),
        ("validate --target nan", ["validate", *TINY, "--updates", "100", "--target", "nan", "--quiet"], "refuse",
         "target"),
        ("validate --preset paper", ["validate", "--preset", "paper"], "refuse", "preset"),
        ("recommend --calibration missing", ["recommend", *TINY, "--updates", "100", "--calibration", "missing.json",
                                             "-o", "r", "--quiet"], "refuse", "missing.json"),
    ]
    return [Case("cli-flags", name, " ".join(argv), copy=copy, argv=argv, expect=expect, names=(field,))
            for name, argv, expect, field in rows]



def _sigterm_during_trace(d: Path) -> dict[str, Any]:
    """SIGTERM (what a job scheduler or ``timeout`` sends) while ``simulate --trace`` writes."""
    p = subprocess.Popen([PY, "-m", "aflqueue.cli", "simulate", "--rates", "1,1,0.5", "--updates", "20000000",
                          "--trace", "big.npz", "--json"], cwd=d, env=child_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=_limits, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(d.glob(".big.npz.*")) and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    left = sorted(x.name for x in d.iterdir())
    tmp = [x for x in d.glob(".big.npz.*")]
    size = sum(x.stat().st_size for x in tmp)
    for x in tmp:
        x.unlink()
    (d / "big.npz").unlink(missing_ok=True)
    if tmp:
        return {"class": "BAD-WRITE", "note": f"SIGTERM while writing: status {p.returncode}, stray temporary file(s) "
                                              f"{', '.join(x.name for x in tmp)} ({size / 2**20:.0f} MiB) left behind",
                "rc": p.returncode, "stderr": err.decode("utf-8", "replace")}
    return {"class": "OK", "note": f"status {p.returncode}; folder: {left}", "rc": p.returncode, "stderr": ""}


def cases_output(fx: Path, rng: random.Random) -> list[Case]:
    kind = "output"
    keep = ("runs/a/results.json", "runs/a/updates.csv", "runs/a/checkpoint.pt", "runs/a/config.json")
    base = ["train", *TRAIN_TINY, "-o", "runs/a", "--quiet"]
    return [
        Case(kind, "train-into-existing-run", "train into a folder that holds a run, same configuration",
             copy=[("runs/a", "runs/a")], files={".b": _remember(*keep)}, argv=[*base, "--seed", "0"],
             names=("runs/a",), after=_unchanged(*keep)),
        Case(kind, "train-into-existing-run-other-seed", "train another seed into a folder that holds a run",
             copy=[("runs/a", "runs/a")], files={".b": _remember(*keep)}, argv=[*base, "--seed", "5"],
             names=("runs/a",), after=_unchanged(*keep)),
        Case(kind, "train-output-is-a-file", "train -o FILE", files={"f": "x"},
             argv=["train", *TRAIN_TINY, "-o", "f", "--quiet"], names=("f",)),
        Case(kind, "tune-into-a-run-folder", "tune -o a training run's folder", copy=[("runs/a", "runs/a")],
             files={".b": _remember(*keep)},
             argv=["tune", *TINY, "--updates", "40", "--set", "data.validation_fraction=0.2", "--lr-grid", "0.05,0.1",
                   "--pilot-seeds", "1", "-o", "runs/a", "--quiet"], expect="either", after=_unchanged(*keep)),
        Case(kind, "simulate-trace-over-a-trace", "simulate --trace onto an existing trace file",
             copy=[("trace.npz", "t.npz")], argv=["simulate", "--rates", "1,1", "--updates", "2000", "--trace", "t.npz"],
             expect="either"),
        Case(kind, "sigterm-while-writing-trace", "SIGTERM 0.5 s after simulate --trace starts writing (20M updates)",
             custom=_sigterm_during_trace, timeout=90),
    ]


IGNORED = {
    "per-update": [["--epsilon", "0.5"], ["--weight", "0.3"], ["--kappa", "2"], ["--idle-power", "0.5"],
                   ["--dispersion", "3"], ["--time-budget", "50"]],
    "wall-clock": [["--epsilon", "0.5"], ["--weight", "0.3"], ["--kappa", "2"], ["--updates", "50"],
                   ["--dispersion", "3"]],
    "time-to-accuracy": [["--weight", "0.3"], ["--kappa", "2"], ["--dispersion", "3"], ["--time-budget", "50"]],
    "energy": [["--weight", "0.3"], ["--dispersion", "3"], ["--time-budget", "50"]],
    "max-throughput": [["--epsilon", "0.5"], ["--constants", "Delta=3,sigma2=5"], ["--eta", "0.01"],
                       ["--time-budget", "50"]],
}
_BASELINES: dict[str, dict[str, Any]] = {}


def _optimum(r: dict[str, Any]) -> str | None:
    try:
        d = json.loads(r["stdout"])
    except ValueError:
        return None
    return json.dumps({k: d.get(k) for k in ("routing", "concurrency", "eta", "objective_value")}, sort_keys=True)


def _ignored_flag(objective: str, flag: list[str]) -> Callable[[Path], dict[str, Any]]:
    base = ["optimize", "--rates", "1,1,0.1", "--json", "--objective", objective]

    def run(d: Path) -> dict[str, Any]:
        if objective not in _BASELINES:
            _BASELINES[objective] = run_cli(base, d)
        r = run_cli([*base, *flag], d)
        same = r["rc"] == 0 and _optimum(r) == _optimum(_BASELINES[objective])
        if same:
            r.update({"class": "BAD-SILENT", "note": f"exit 0; routing, m, eta and objective value identical to the run "
                                                     f"without {' '.join(flag)}"})
        elif r["rc"] == 0:
            r.update({"class": "OK", "note": "the flag changes the optimum"})
        else:
            cls, note = classify_cli(Case("x", "x", "x", expect="refuse"), r)
            r.update({"class": cls, "note": note})
        return r
    return run


def cases_ignored_flags(fx: Path, rng: random.Random) -> list[Case]:
    return [Case("ignored-flag", f"optimize --objective {obj} {' '.join(flag)}",
                 f"does {' '.join(flag)} change the {obj} optimum? (compared with the same command without it)",
                 custom=_ignored_flag(obj, flag)) for obj, flags in IGNORED.items() for flag in flags]


def lock(rel: str, mode: int = 0) -> Callable[[Path], None]:
    """Make ``rel`` belong to uid 65534 with ``mode``: unreadable (or unwritable) for the user
    namespace the permission cases run in."""
    def f(d: Path) -> None:
        os.chown(d / rel, 65534, 65534)
        os.chmod(d / rel, mode)
    return f


def cases_permission(fx: Path, rng: random.Random) -> list[Case]:
    kind = "permission"
    rows = [
        ("system-file", [("sys/flat.toml", "flat.toml")], "flat.toml", 0, ["analyze", "flat.toml"],
         "from aflqueue.system import load_system\nresult = load_system('flat.toml')", ("flat.toml",)),
        ("empirical-csv", [("sys/empirical.toml", "sys.toml"), ("sys/t.csv", "t.csv")], "t.csv", 0,
         ["analyze", "sys.toml"], "from aflqueue.system import load_system\nresult = load_system('sys.toml')", ("t.csv",)),
        ("run-config", [("tiny.toml", "tiny.toml")], "tiny.toml", 0, ["train", "tiny.toml", "-o", "out", "--quiet"],
         "from aflqueue.config import load_config\nresult = load_config('tiny.toml')", ("tiny.toml",)),
        ("constants-file", [("consts.toml", "c.toml")], "c.toml", 0,
         ["optimize", "--rates", "1,1,0.2,0.2", "--constants", "c.toml"],
         "from aflqueue.pilot_fit import load_constants\nresult = load_constants('c.toml')", ("c.toml",)),
        ("calibration-file", [("calibration.json", "cal.json")], "cal.json", 0,
         ["recommend", *TINY, "--updates", "100", "--calibration", "cal.json", "-o", "r", "--quiet"],
         "from aflqueue.recommendation import Calibration\nresult = Calibration.load('cal.json')", ("cal.json",)),
        ("results.json", [("runs/a", "a")], "a/results.json", 0, ["compare", "a"],
         "from aflqueue.runs import load_run\nresult = load_run('a')", ("results.json",)),
        ("config.json", [("runs/a", "a")], "a/config.json", 0, ["compare", "a"],
         "from aflqueue.runs import load_run\nresult = load_run('a')", ("config.json",)),
        ("run-folder-unlistable", [("runs/a", "r/a")], "r", 0, ["compare", "r"],
         "from aflqueue.runs import load_runs\nresult = load_runs(['r'])", ("r",)),
        ("trace", [("trace.npz", "t.npz")], "t.npz", 0, ["schedule", "t.npz", "-o", "s"],
         "from aflqueue.sim.trace import Trace\nresult = Trace.load('t.npz')", ("t.npz",)),
        ("checkpoint", [("runs/a", "runs/a")], "runs/a/checkpoint.pt", 0,
         ["train", *TRAIN_TINY, "--seed", "0", "-o", "runs/a", "--resume", "--quiet"], None, ("checkpoint.pt",)),
        ("mnist-images", [("mnist", "mn")], "mn/MNIST/raw/train-images-idx3-ubyte", 0, MNIST_TRAIN,
         "from aflqueue.fl.data import load_dataset\nresult = load_dataset('mnist', 'mn')", ("train-images",)),
        ("tune-record", [("tune", "tune")], "tune/cells/tune__lr0.05__s1.json", 0, TUNE, None, ("tune__lr0.05",)),
        ("output-folder-read-only", [], "ro", 0o555,
         ["sweep", "--rates", "1,1", "--concurrency-range", "1:2", "--pareto-points", "0", "--objective", "per-update",
          "-o", "ro/sweep", "--quiet"], None, ("ro",)),
        ("train-output-read-only", [], "ro", 0o555, ["train", *TRAIN_TINY, "-o", "ro/run", "--quiet"], None, ("ro",)),
        ("trace-output-read-only", [], "ro", 0o555,
         ["simulate", "--rates", "1,1", "--updates", "2000", "--trace", "ro/t.npz"], None, ("ro",)),
    ]
    out = []
    for name, copy, rel, mode, argv, api, names in rows:
        files: dict[str, Any] = {}
        if rel == "ro":
            files["ro"] = make_dir("ro")
        files["lock"] = lock(rel, mode)
        expect = "either" if name == "tune-record" else "refuse"
        out.append(Case(kind, name, f"{rel} owned by another user, mode {mode:o}", copy=copy, files=files, argv=argv,
                        api=api_call(api) if api else None, expect=expect, names=names, userns=True))
    return out


BUILDERS = [cases_system, cases_empirical, cases_config, cases_constants, cases_calibration, cases_run_folder,
            cases_trace, cases_checkpoint, cases_records, cases_data_root, cases_flags, cases_output, cases_ignored_flags,
            cases_permission]


# ======================================================================================= report
SEVERITY = ["BAD-MEMORY", "BAD-TIME", "BAD-WRITE", "BAD-SILENT", "BAD-TRACEBACK", "BAD-EXIT", "BAD-MESSAGE",
            "CONTROL-FAIL", "WARN", "ACCEPTED", "OK", "-"]


def _cell(text: str, n: int = 160) -> str:
    t = " ".join(str(text).split())
    t = t if len(t) <= n else t[:n - 3] + "..."
    return t.replace("|", "\\|")


def write_report(rows: list[dict[str, Any]], out: Path, args: argparse.Namespace, wall: float) -> None:
    def worst(r: dict[str, Any]) -> str:
        return min((r["cli_class"], r["api_class"]), key=SEVERITY.index)

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = ["# Hostile-input audit: results", "",
             f"Generated by `python validation/hostile/audit.py --seed {args.seed}` at commit `{commit}` "
             f"({len(rows)} cases, {wall / 60:.1f} min). Each case is a mutated copy of a valid file written by the "
             "toolkit (or a command line), run through the CLI (`python -m aflqueue.cli`, 60 s, 4 GB address space) "
             "and, where one exists, the matching Python API function. Classes: see the script's docstring "
             "(`ACCEPTED`: a value-dependent mutation was accepted, for review; `-`: not run that way).", ""]
    kinds = sorted({r["kind"] for r in rows})
    classes = [c for c in SEVERITY if c != "-"]
    lines += ["## Counts per class", "", "| class | CLI | API |", "|---|---|---|"]
    for c in classes:
        a = sum(r["cli_class"] == c for r in rows)
        b = sum(r["api_class"] == c for r in rows)
        if a or b:
            lines.append(f"| {c} | {a} | {b} |")
    lines += ["", "## Counts per file kind (worst of CLI and API per case)", "",
              "| kind | cases | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
    for k in kinds:
        sub = [r for r in rows if r["kind"] == k]
        lines.append(f"| {k} | {len(sub)} | " + " | ".join(str(sum(worst(r) == c for r in sub)) or "" for c in classes)
                     + " |")
    bad = sorted((r for r in rows if worst(r).startswith(("BAD", "CONTROL", "WARN"))),
                 key=lambda r: (SEVERITY.index(worst(r)), r["kind"], r["case"]))
    lines += ["", f"## Not OK ({len(bad)} cases, worst class first)", "",
              "| worst | case | mutation | CLI | CLI output (first stderr line or note) | API | API outcome |",
              "|---|---|---|---|---|---|---|"]
    for r in bad:
        lines.append(f"| {worst(r)} | `{_cell(r['kind'] + '/' + r['case'], 80)}` | {_cell(r['what'], 90)} | "
                     f"{r['cli_class']} | {_cell(r['cli_note'])} | {r['api_class']} | {_cell(r['api_note'])} |")
    lines += ["", "## Every case", "", "| case | expect | CLI | API | message quality (CLI) | CLI note | API note |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["kind"], r["case"])):
        lines.append(f"| `{_cell(r['kind'] + '/' + r['case'], 80)}` | {r['expect']} | {r['cli_class']} | "
                     f"{r['api_class']} | {r.get('quality', '')} | {_cell(r['cli_note'], 110)} | "
                     f"{_cell(r['api_note'], 110)} |")
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


# ========================================================================================= main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/fuzz/audit", help="scratch folder (fixtures, one folder per case)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random mutations")
    ap.add_argument("--only", action="append", help="run only cases whose kind/name contains this (repeatable)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results.md"))
    ap.add_argument("--reuse-fixtures", action="store_true", help="keep the fixtures of an earlier run")
    ap.add_argument("--keep", action="store_true", help="keep every case folder (default: only those not OK)")
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.driver:
        return driver_main()
    t_start = time.perf_counter()
    work = Path(args.work).resolve()
    fx, cases_dir = work / "fixtures", work / "cases"
    build_fixtures(fx, args.reuse_fixtures, print)
    cases: list[Case] = []
    for build in BUILDERS:
        cases += build(fx, random.Random(f"{args.seed}:{build.__name__}"))
    keys = [c.key for c in cases]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise SystemExit(f"duplicate case names: {dup[:5]}")
    if args.only:
        cases = [c for c in cases if any(o in c.key for o in args.only)]
    if cases_dir.exists():
        _rmtree(cases_dir)
    print(f"{len(cases)} cases ({sum(c.argv is not None or c.custom is not None for c in cases)} on the command line, "
          f"{sum(c.api is not None for c in cases)} through the API)", flush=True)

    def folder(c: Case, how: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.=@+-]+", "_", c.name)[:100]
        return cases_dir / c.kind / safe / how

    # ---- the API, one driver process per kind
    api_results: dict[str, dict[str, Any]] = {}
    for kind, userns in sorted({(c.kind, c.userns) for c in cases if c.api}):
        jobs = []
        for c in cases:
            if c.kind == kind and c.userns == userns and c.api:
                d = folder(c, "api")
                prepare(c, fx, d)
                jobs.append({"key": c.key, "cwd": str(d), "code": c.api, "timeout": c.timeout})
        t0 = time.perf_counter()
        api_results.update(run_api_batch(jobs, userns=userns))
        print(f"API {kind}: {len(jobs)} cases in {time.perf_counter() - t0:.0f} s", flush=True)
    # ---- the command line, one process per case
    rows = []
    for i, c in enumerate(cases):
        row: dict[str, Any] = {"kind": c.kind, "case": c.name, "what": c.what, "expect": c.expect,
                               "argv": c.argv, "cli_class": "-", "cli_note": "", "api_class": "-", "api_note": ""}
        keep = args.keep
        if c.argv is not None or c.custom is not None:
            d = folder(c, "cli")
            prepare(c, fx, d)
            if c.custom is not None:
                r = c.custom(d)
                cls, note = r["class"], r["note"]
            else:
                r = run_cli(c.argv, d, timeout=c.timeout, userns=c.userns)
                cls, note = classify_cli(c, r)
                if c.after is not None:
                    extra = c.after(d, r)
                    if extra is not None:
                        cls, note = extra[0], extra[1] + (f" ({note})" if extra[0] != "OK" else "")
            first = next((ln for ln in r.get("stderr", "").splitlines() if ln.strip()), "")
            row.update(cli_class=cls, cli_note=note, rc=r.get("rc"), stderr=r.get("stderr", "")[-3000:],
                       secs=round(r.get("secs", 0.0), 2), quality=message_quality(first) if r.get("rc") == 2 else "")
            keep = keep or cls not in ("OK", "ACCEPTED")
            if not keep or c.name == "200MB-file":
                _rmtree(d)
        if c.api is not None:
            ar = api_results.get(c.key, {"status": "crash", "message": "no result"})
            cls, note = classify_api(c, ar)
            row.update(api_class=cls, api_note=note, api_where=ar.get("where", ""))
            d = folder(c, "api")
            if not (args.keep or cls not in ("OK", "ACCEPTED")) and d.exists():
                _rmtree(d)
        rows.append(row)
        print(f"[{i + 1}/{len(cases)}] {c.key}: CLI {row['cli_class']}, API {row['api_class']} "
              f"{'' if row['cli_class'] in ('OK', '-') else '- ' + row['cli_note'][:100]}", flush=True)
    wall = time.perf_counter() - t_start
    write_report(rows, Path(args.out), args, wall)
    print(f"done in {wall / 60:.1f} min; report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
