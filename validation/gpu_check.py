"""The GPU check: CUDA tests, CPU/GPU agreement, trainer benchmark and a validation slice, in one call.

    bash validation/gpu_check.sh                       # on a lent GPU (validation/GPU_CHECK.md)
    bash validation/gpu_check.sh --device cpu --quick  # dry run of every part on a CPU

Parts, in order, each in its own process with its own time budget (time a part leaves unused
passes to the next), so that a crash, a hang or running out of memory loses that part only:

* ``environment``: versions (torch, CUDA, cuDNN, the project's other needs), GPU, TF32 defaults,
  git commit (or ``GPU_CHECK_COMMIT``) and a digest of the sources;
* ``cuda_tests``: pytest on ``tests/fl/test_cuda.py`` and the engine's CUDA test (pass/fail counts);
* ``agreement``: replays of :mod:`validation.agreement` on the device against the CPU (float64,
  float32 with TF32 off, float32 with the device's defaults; serial and batched; single tasks);
* ``benchmark``: ``validation/bench_trainer.py``'s measurement, batched vs serial, for each model
  and ``m`` (n = m): updates per second and their ratio;
* ``profile``: torch.profiler on a serial and a batched run (``--profile auto``: of the small
  models whose batched speed-up is below 5x), key tables in ``profile.txt``, traces gzipped;
* ``grid_slice``: a few validation-grid cells on the device and on the CPU (in parallel worker
  processes), accuracy side by side, with the committed CPU result where there is one.

Everything lands in ``$OUT`` (or ``runs/gpu_check`` when ``OUT`` is unset): ``gpu_check.json``
(rewritten atomically after every part, and by a running part as it goes), ``gpu_check.log`` and
the profiler's files: at most 5 files, no folder. Exit status: 0 when every part ran and every
check passed, 1 otherwise, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("environment", "cuda_tests", "agreement", "benchmark", "profile", "grid_slice")
#: seconds per part on a GPU (sum 450: the whole check in ~8 minutes with the wheels' install)
BUDGETS = {"environment": 30, "cuda_tests": 90, "agreement": 45, "benchmark": 165, "profile": 35, "grid_slice": 85}
GRID_CELLS = ("digits__five-types__dir0.5__uniform__generalized-asyncsgd__s0",
              "digits__five-types__dir0.5__wallclock__generalized-asyncsgd__s0",
              "digits__two-groups__iid__uniform__fedbuff__s0")
#: largest |accuracy difference| between the device's and the CPU's run of a grid cell reported
#: as agreeing: thousands of float32 arrivals part trajectories (validation.agreement), so the
#: runs agree in distribution, not in bits; 0.03 is about 10 of the 359 digits test images.
GRID_TOLERANCE = 0.03
CUDA_TESTS = ("tests/fl/test_cuda.py", "tests/fl/test_engine.py::test_cuda_matches_cpu")
SOURCE_GLOBS = ("aflqueue/**/*.py", "validation/*.py", "validation/*.sh", "tests/**/*.py", "pyproject.toml")
PROG = "gpu_check"


class BadInput(Exception):
    pass


# --------------------------------------------------------------------------- arguments
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise BadInput(message)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _positive_ints(text: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in _csv(text)]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise BadInput(f"--{name} must list integers >= 1 (got {text!r})")
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = _Parser(prog=PROG, description="GPU check (validation/GPU_CHECK.md)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    ap.add_argument("--out", help="output folder (default: $OUT, else runs/gpu_check)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} (default all)")
    ap.add_argument("--budget", type=float, default=None,
                    help=f"seconds for the whole check (default {sum(BUDGETS.values())}; scales the part budgets)")
    ap.add_argument("--part-budget", default="", help="per-part seconds, e.g. benchmark=200,grid_slice=60")
    ap.add_argument("--quick", action="store_true", help="tiny sizes everywhere (a dry run of the machinery)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads of the parts (default 1: the CPU runs are of tiny models)")
    ap.add_argument("--bench-models", default="mlp,cnn28,resnet18")
    ap.add_argument("--bench-concurrency", default="100,1000", help="m values (n = m); default 100,1000")
    ap.add_argument("--bench-seconds", type=float, default=3.0, help="target seconds per timed run (default 3)")
    ap.add_argument("--bench-updates", type=int, default=20000, help="most updates per timed run (default 20000)")
    ap.add_argument("--bench-repeats", type=int, default=3)
    ap.add_argument("--bench-batch-size", type=int, default=32)
    ap.add_argument("--bench-test-size", type=int, default=500)
    ap.add_argument("--bench-channels", default="32,64", help="cnn28 channels (default 32,64)")
    ap.add_argument("--bench-hidden", type=int, default=512, help="cnn28 hidden units (default 512)")
    ap.add_argument("--agreement-cases", default="mlp,cnn28")
    ap.add_argument("--profile", default="auto",
                    help="auto (small models below 5x), none, or comma-separated models (default auto)")
    ap.add_argument("--profile-updates", type=int, default=200, help="updates per profiled run (default 200)")
    ap.add_argument("--grid-preset", default="default")
    ap.add_argument("--grid-cells", default=",".join(GRID_CELLS), help="comma-separated cell ids")
    ap.add_argument("--grid-workers", type=int, default=None,
                    help="processes for the CPU runs of the cells (default: one per cell on cuda, 0 = in turn on cpu)")
    ap.add_argument("--print-digest", action="store_true",
                    help="print the digest of the sources (environment.source_digest) and exit")
    ap.add_argument("--validate-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run-part", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_part:
        return args
    if args.device not in ("cuda", "cpu"):
        raise BadInput(f"--device must be 'cuda' or 'cpu' (got {args.device!r})")
    parts = _csv(args.parts)
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise BadInput(f"unknown part(s) {', '.join(bad) or '(none)'}; allowed: {', '.join(PARTS)}")
    args.parts = [p for p in PARTS if p in parts]
    if args.quick:
        defaults = {"bench_models": "mlp,cnn28,resnet18", "bench_concurrency": "4", "bench_seconds": 0.0,
                    "bench_updates": 8, "bench_repeats": 1, "bench_batch_size": 4, "bench_test_size": 20,
                    "bench_channels": "8,16", "bench_hidden": 32, "profile": "mlp", "profile_updates": 20,
                    "grid_preset": "tiny", "grid_cells": "synthetic__two-groups__dir0.5__uniform__generalized-asyncsgd__s0"}
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
        for k, v in defaults.items():
            if k not in given:
                setattr(args, k, v)
    base = dict(BUDGETS)
    if args.budget is not None:
        if not args.budget > 0:
            raise BadInput(f"--budget must be > 0 (got {args.budget})")
        scale = args.budget / sum(BUDGETS.values())
        base = {k: v * scale for k, v in base.items()}
    elif args.quick:
        base = {k: max(v, 120.0) for k, v in base.items()}  # CPU dry runs are slower than the GPU
    for item in _csv(args.part_budget):
        name, _, val = item.partition("=")
        try:
            seconds = float(val)
        except ValueError:
            seconds = -1.0
        if name not in PARTS or not seconds > 0:
            raise BadInput(f"--part-budget wants part=seconds with a part of {', '.join(PARTS)} (got {item!r})")
        base[name] = seconds
    args.budgets = base
    from_models = _csv(args.bench_models)
    unknown = [m for m in from_models if m not in ("mlp", "cnn28", "resnet18")]
    if unknown or not from_models:
        raise BadInput(f"--bench-models: unknown {', '.join(unknown) or '(none)'}; allowed: mlp, cnn28, resnet18")
    args.bench_models = from_models
    args.bench_concurrency = _positive_ints(args.bench_concurrency, "bench-concurrency")
    args.bench_channels = _positive_ints(args.bench_channels, "bench-channels")
    if len(args.bench_channels) != 2:
        raise BadInput(f"--bench-channels needs two integers (got {args.bench_channels})")
    for name in ("bench_updates", "bench_repeats", "bench_batch_size", "bench_test_size", "bench_hidden",
                 "profile_updates"):
        if getattr(args, name) < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")
    if args.bench_seconds < 0 or not math.isfinite(args.bench_seconds):
        raise BadInput(f"--bench-seconds must be >= 0 (got {args.bench_seconds})")
    if args.threads < 1:
        raise BadInput(f"--threads must be >= 1 (got {args.threads})")
    cases = _csv(args.agreement_cases)
    if not cases or any(c not in ("mlp", "cnn28") for c in cases):
        raise BadInput(f"--agreement-cases must list mlp and/or cnn28 (got {args.agreement_cases!r})")
    args.agreement_cases = cases
    prof = _csv(args.profile)
    if prof not in (["auto"], ["none"]) and (not prof or any(p not in ("mlp", "cnn28", "resnet18") for p in prof)):
        raise BadInput(f"--profile must be auto, none or models of mlp, cnn28, resnet18 (got {args.profile!r})")
    args.profile = prof
    args.grid_cells = _csv(args.grid_cells)
    if not args.grid_cells:
        raise BadInput("--grid-cells must name at least one cell")
    if args.grid_workers is not None and args.grid_workers < 0:
        raise BadInput(f"--grid-workers must be >= 0 (got {args.grid_workers})")
    _check_cells(args.grid_preset, args.grid_cells)
    out = args.out or os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check")
    args.out = str(Path(out).resolve())
    return args


def _check_cells(preset_name: str, ids: list[str]) -> None:
    """Cell ids must belong to the preset (checked without importing torch)."""
    sys.path.insert(0, str(ROOT))
    from validation.grid.experiment import PRESETS, cells_of

    if preset_name not in PRESETS:
        raise BadInput(f"--grid-preset must be one of {', '.join(PRESETS)} (got {preset_name!r})")
    seeds = 1
    for cid in ids:
        tail = cid.rsplit("__s", 1)
        if len(tail) == 2 and tail[1].isdigit():
            seeds = max(seeds, int(tail[1]) + 1)
    known = {c.id for c in cells_of(PRESETS[preset_name], seeds=seeds)}
    for cid in ids:
        if cid not in known:
            raise BadInput(f"--grid-cells: {cid!r} is not a cell of preset {preset_name!r}")


# --------------------------------------------------------------------------- small helpers
def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(x: Any):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def _clean(x: Any) -> Any:
    """NaN and infinities as None (strict JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def source_digest() -> str:
    h = hashlib.sha256()
    files = sorted({p for g in SOURCE_GLOBS for p in ROOT.glob(g) if p.is_file() and "__pycache__" not in p.parts})
    for p in files:
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return r.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("GPU_CHECK_COMMIT") or None


# --------------------------------------------------------------------------- parts (run in a child process)
def _torch_setup(cfg: dict) -> Any:
    import torch

    torch.set_num_threads(max(1, int(cfg["threads"])))
    return torch


def part_environment(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    from importlib import metadata

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "git_commit": cfg["git_commit"],
                           "source_digest": cfg["source_digest"], "versions": {}}
    for name in ("torch", "torchvision", "numpy", "scipy", "numba", "llvmlite", "simpy", "cvxpy", "clarabel", "osqp",
                 "scikit-learn", "pytest"):
        try:
            env["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env["versions"][name] = None
    missing = []
    for mod in ("simpy", "cvxpy", "numba", "sklearn", "torchvision", "pytest"):
        try:
            __import__(mod)
        except Exception as e:  # noqa: BLE001 (any import failure is a finding)
            missing.append(f"{mod}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200])
    env["import_failures"] = missing
    emit(env)
    torch = _torch_setup(cfg)
    env["torch_threads"] = torch.get_num_threads()
    env["cuda_available"] = torch.cuda.is_available()
    env["torch_cuda"] = torch.version.cuda
    env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv"):
        env["fp32_precision"] = {"matmul": torch.backends.cuda.matmul.fp32_precision,
                                 "cudnn_conv": torch.backends.cudnn.conv.fp32_precision}
    else:
        env["allow_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_bytes": int(p.total_memory),
                      "multiprocessors": p.multi_processor_count, "count": torch.cuda.device_count()}
        free, total = torch.cuda.mem_get_info()
        env["gpu"]["free_bytes"] = int(free)
        if shutil.which("nvidia-smi"):  # read-only query
            r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,"
                                "temperature.gpu,power.draw", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        env["device_error"] = "--device cuda but torch sees no CUDA device"
    return env


def part_cuda_tests(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    import xml.etree.ElementTree as ET

    junit = Path(cfg["tmp"]) / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-p", "no:randomly",
           f"--junitxml={junit}", *CUDA_TESTS]
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, timeout=max(5.0, deadline - time.time() - 5), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        rc, output = r.returncode, r.stdout
    except subprocess.TimeoutExpired as e:
        rc, output = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    print(output, flush=True)
    res: dict[str, Any] = {"command": " ".join(cmd[2:]), "exit_code": rc, "seconds": time.perf_counter() - t,
                           "device": cfg["device"]}
    if junit.is_file():
        root = ET.parse(junit).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        tests = sum(int(s.get("tests", 0)) for s in suites)
        failures = sum(int(s.get("failures", 0)) for s in suites)
        errors = sum(int(s.get("errors", 0)) for s in suites)
        skipped = sum(int(s.get("skipped", 0)) for s in suites)
        failed = []
        for case in root.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                msg = (bad.get("message") or "").splitlines()
                failed.append({"test": f"{case.get('classname')}::{case.get('name')}",
                               "message": (msg[0] if msg else "")[:300]})
        res.update({"tests": tests, "passed": tests - failures - errors - skipped, "failed": failures, "errors": errors,
                    "skipped": skipped, "failures": failed})
    else:
        res["error"] = "pytest wrote no report: " + (output.strip().splitlines() or ["no output"])[-1][:300]
    return res


def part_agreement(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    _torch_setup(cfg)
    from validation import agreement as A

    dev = cfg["device"]
    res: dict[str, Any] = {"device": dev, "tolerances": {**A.TOLERANCES, "tf32_informational": A.TF32_TOLERANCE,
                                                         "accuracy": A.ACCURACY_TOLERANCE},
                           "metric": "displacement_rel_l2 = |w - w_ref| / |w_ref - w0| of the final server model; "
                                     "loss_max_rel over 4 test evaluations; deltas: per-task |d - d_ref| / |d_ref|",
                           "comparisons": []}

    def add(entry: dict) -> None:
        res["comparisons"].append(_clean(entry))
        emit(res)

    for name in cfg["agreement_cases"]:
        case = A.CASES[name]
        built = A.build(case)
        ref = {dt: A.replay(case, built, "cpu", dtype=dt) for dt in ("float64", "float32")}
        runs = [("float64", False, True), ("float64", True, True), ("float32", False, True), ("float32", True, True),
                ("float32", True, False)]
        for dtype, batched, strict in runs:
            if time.time() > deadline - 5:
                add({"case": name, "skipped": "time budget"})
                break
            what = {"case": name, "what": "replay", "arrivals": case.arrivals, "dtype": dtype,
                    "mode": "batched" if batched else "serial", "tf32": "off" if strict else "device default"}
            try:
                run = A.replay(case, built, dev, batched=batched, dtype=dtype, strict=strict)
            except Exception as e:  # noqa: BLE001 (one failing run must not lose the others)
                add({**what, "checked": True, "violations": [f"{type(e).__name__}: {e}"[:300]]})
                continue
            print(f"{name}: {dtype} {'batched' if batched else 'serial'} (TF32 {'off' if strict else 'default'}) "
                  f"on {run.device} in {run.seconds:.1f} s", flush=True)
            refs = [("cpu " + dtype, ref[dtype])] + ([("cpu float64", ref["float64"])] if dtype == "float32" else [])
            for label, r in refs:
                diff = A.compare(run, r)
                tol = None if strict else A.TF32_TOLERANCE
                checked = strict and (dtype == "float64" or case.stable_replay)
                add({**what, "device": run.device, "reference": label, **diff, "seconds": run.seconds,
                     "tolerance": A.TOLERANCES[dtype] if tol is None else tol, "checked": checked,
                     "violations": A.violations(diff, dtype, tol)})
        d_ref = A.task_deltas(case, built, "cpu", dtype="float64")
        for batched in (False, True):
            what = {"case": name, "what": "task updates", "dtype": "float32", "mode": "batched" if batched else "serial",
                    "tf32": "off", "reference": "cpu float64", "tolerance": A.TOLERANCES["float32"], "checked": True}
            try:
                d = A.compare_deltas(A.task_deltas(case, built, dev, batched=batched), d_ref)
            except Exception as e:  # noqa: BLE001
                add({**what, "violations": [f"{type(e).__name__}: {e}"[:300]]})
                continue
            ok = d["finite"] and d["max_rel_l2"] <= A.TOLERANCES["float32"]
            add({**what, **d,
                 "violations": [] if ok else [f"max_rel_l2 = {d['max_rel_l2']:.3g} > {A.TOLERANCES['float32']:g}"]})
    checked = [c for c in res["comparisons"] if c.get("checked")]
    res["checked"] = len(checked)
    res["failed"] = sum(1 for c in checked if c["violations"])
    return res


def _bench_module():
    sys.path.insert(0, str(ROOT / "validation"))
    import bench_trainer

    return bench_trainer


def part_benchmark(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    torch = _torch_setup(cfg)
    bt = _bench_module()
    dev = cfg["device"]
    res: dict[str, Any] = {"device": dev, "target_speedup_gpu": 5.0, "rows": [],
                           "note": "n = m; random inputs; one local step per task, batch size "
                                   f"{cfg['bench_batch_size']}; medians over alternating runs; each run includes one "
                                   f"final evaluation on {cfg['bench_test_size']} test samples"}
    emit(res)
    configs = [(m, name) for m in cfg["bench_concurrency"] for name in cfg["bench_models"]]
    for i, (m, name) in enumerate(configs):
        left = deadline - time.time()
        share = left / (len(configs) - i)
        row: dict[str, Any] = {"model": name, "clients": m, "concurrency": m}
        if left < 10:
            row["skipped"] = "time budget"
            res["rows"].append(row)
            emit(res)
            continue
        try:
            opts = {"channels": tuple(cfg["bench_channels"]), "hidden": cfg["bench_hidden"]} if name == "cnn28" else {}
            b = bt.Bench(name, dev, m, m, cfg["bench_updates"], 1, cfg["bench_batch_size"], options=opts,
                         test_size=cfg["bench_test_size"])
            if dev == "cuda":
                free, _ = torch.cuda.mem_get_info()
                need = (m + 1) * b.parameters * 4
                row["snapshot_bytes"] = need
                if need > 0.6 * free:
                    row["skipped"] = f"memory: {m + 1} model snapshots need {need / 2**30:.1f} GiB of {free / 2**30:.1f} free"
                    res["rows"].append(row)
                    emit(res)
                    continue
            seconds = cfg["bench_seconds"] or None
            if seconds:  # each timed run gets its share: 2 modes x (repeats + warm-up and calibration)
                seconds = min(seconds, max(0.5, share / (2 * (cfg["bench_repeats"] + 2))))
            row = bt.bench(b, cfg["bench_updates"], cfg["bench_repeats"], seconds,
                           min_updates=min(20, cfg["bench_updates"]), deadline=time.perf_counter() + share,
                           log=lambda s: print(s, flush=True))
            print(bt.describe(row), flush=True)
        except Exception as e:  # noqa: BLE001 (one configuration's failure must not lose the others)
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            print(f"{name} m={m}: {row['error']}", flush=True)
            if dev == "cuda":
                torch.cuda.empty_cache()
        finally:
            b = None
            if dev == "cuda":
                torch.cuda.empty_cache()
        res["rows"].append(_clean(row))
        emit(res)
    return res


def _profile_models(cfg: dict) -> tuple[list[str], str]:
    want = cfg["profile"]
    if want == ["none"]:
        return [], "--profile none"
    if want != ["auto"]:
        return want, "asked for"
    bench = (cfg.get("report") or {}).get("benchmark") or {}
    rows = [r for r in bench.get("rows", []) if "speedup" in r and r["model"] in ("mlp", "cnn28")]
    if not rows:
        return [], "auto: no benchmark rows of mlp or cnn28 to decide from"
    m0 = min(r["concurrency"] for r in rows)
    slow = [r["model"] for r in rows if r["concurrency"] == m0 and r["speedup"] < 5.0]
    return slow, f"auto: small models at m = {m0} with batched below 5x serial"


def part_profile(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    models, why = _profile_models(cfg)
    res: dict[str, Any] = {"device": cfg["device"], "models": models, "why": why, "runs": []}
    if not models:
        return res
    _torch_setup(cfg)
    from torch.profiler import ProfilerActivity, profile

    bt = _bench_module()
    dev = cfg["device"]
    out = Path(cfg["out"])
    table_path = out / "profile.txt"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    m = min(cfg["bench_concurrency"])
    with table_path.open("w") as table:
        for k, name in enumerate(models):
            if time.time() > deadline - 10:
                res["runs"].append({"model": name, "skipped": "time budget"})
                break
            opts = {"channels": tuple(cfg["bench_channels"]), "hidden": cfg["bench_hidden"]} if name == "cnn28" else {}
            u = cfg["profile_updates"]
            b = bt.Bench(name, dev, m, m, max(u, 2 * m), 1, cfg["bench_batch_size"], options=opts,
                         test_size=cfg["bench_test_size"])
            for batched in (False, True):
                b.run(batched, min(u, 2 * m))  # warm-up
                with profile(activities=acts) as prof:
                    wall, _ = b.run(batched, u)
                events = prof.key_averages()

                def dev_time(e):
                    return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

                kernel_us = sum(dev_time(e) for e in events)
                launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                                     "cudaLaunchKernelExC", "cuLaunchKernelEx"))
                syncs = sum(e.count for e in events if "Synchronize" in e.key)
                mode = "batched" if batched else "serial"
                run = {"model": name, "mode": mode, "concurrency": m, "updates": u, "wall_seconds": wall,
                       "device_busy_fraction": (kernel_us / 1e6) / wall if dev == "cuda" else None,
                       "kernel_launches_per_update": launches / u if dev == "cuda" else None,
                       "synchronizations": syncs if dev == "cuda" else None,
                       "top_self_cpu_ms": [[e.key, round(e.self_cpu_time_total / 1e3, 3), e.count]
                                           for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]]}
                if dev == "cuda":
                    run["top_self_device_ms"] = [[e.key, round(dev_time(e) / 1e3, 3), e.count]
                                                 for e in sorted(events, key=lambda e: -dev_time(e))[:8]]
                text = ""
                keys = ("self_device_time_total", "self_cuda_time_total") if dev == "cuda" else ()
                for key in (*keys, "self_cpu_time_total"):  # the device key's name changed across versions
                    try:
                        text = events.table(sort_by=key, row_limit=25)
                        break
                    except Exception:  # noqa: BLE001
                        continue
                table.write(f"=== {name} {mode}, m = {m}, {u} updates, {wall:.3f} s ===\n{text}\n\n")
                table.flush()
                if k == 0:  # one model's traces: enough to see the timeline, within the file limits
                    raw = Path(cfg["tmp"]) / f"trace_{mode}.json"
                    prof.export_chrome_trace(str(raw))
                    gz = out / f"profile_{name}_{mode}.json.gz"
                    with raw.open("rb") as f, gzip.open(gz, "wb", compresslevel=6) as g:
                        shutil.copyfileobj(f, g)
                    raw.unlink()
                    if gz.stat().st_size > 15 * 2**20:
                        gz.unlink()
                        run["trace"] = "dropped: over 15 MiB gzipped"
                    else:
                        run["trace"] = gz.name
                res["runs"].append(_clean(run))
                emit(res)
    res["tables"] = table_path.name
    return res


def _cell_on_cpu(cid: str, preset: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from validation.grid.experiment import PRESETS, cells_of, run_cell

    cell = next(c for c in cells_of(PRESETS[preset], seeds=int(cid.rsplit("__s", 1)[1]) + 1) if c.id == cid)
    return run_cell(cell, PRESETS[preset], device="cpu")


def _summarise_cell(rec: dict) -> dict:
    m = rec["measured"]
    return {"final_accuracy": m["final_accuracy"], "final_loss": m["final_loss"], "arrivals": m["arrivals"],
            "time_to_target": m.get("time_to_target"), "concurrency": rec.get("concurrency"),
            "wall_time": rec.get("timing", {}).get("wall_time")}


def part_grid_slice(cfg: dict, deadline: float, emit: Callable[[dict], None]) -> dict:
    import concurrent.futures as cf
    import multiprocessing as mp

    _torch_setup(cfg)
    from validation.grid.experiment import PRESETS, cells_of, run_cell

    dev, preset = cfg["device"], cfg["grid_preset"]
    ids = cfg["grid_cells"]
    workers = cfg["grid_workers"]
    if workers is None:
        workers = min(len(ids), max(1, (os.cpu_count() or 2) - 2)) if dev == "cuda" else 0
    res: dict[str, Any] = {"device": dev, "preset": preset, "tolerance_accuracy": GRID_TOLERANCE, "cells": [],
                           "cpu_workers": workers,
                           "note": "device run vs a CPU run of the same cell on this machine (and the committed CPU "
                                   "result, validation/grid/results/<preset>/cells, where present)"}
    by_id = {c.id: c for c in cells_of(PRESETS[preset], seeds=max(int(i.rsplit("__s", 1)[1]) for i in ids) + 1)}
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) if workers else None
    futures = {cid: pool.submit(_cell_on_cpu, cid, preset) for cid in ids} if pool else {}
    rows: dict[str, dict] = {}
    try:
        for cid in ids:  # the device runs (the CPU ones run beside them)
            row = rows.setdefault(cid, {"id": cid})
            if time.time() > deadline - 10:
                row["device_error"] = "time budget"
                continue
            try:
                rec = run_cell(by_id[cid], PRESETS[preset], device=dev)
                print(f"{cid} on {dev}: accuracy {rec['measured']['final_accuracy']:.4f}", flush=True)
                row["device"] = _summarise_cell(rec)
                row["routing_device"] = rec["routing"]
            except Exception as e:  # noqa: BLE001
                row["device_error"] = f"{type(e).__name__}: {e}"[:300]
            res["cells"] = list(rows.values())
            emit(_clean(res))
        for cid in ids:
            row = rows[cid]
            try:
                if pool:
                    rec = futures[cid].result(timeout=max(1.0, deadline - time.time() - 5))
                elif time.time() > deadline - 10:
                    raise TimeoutError("time budget")
                else:
                    rec = _cell_on_cpu(cid, preset)
                print(f"{cid} on cpu: accuracy {rec['measured']['final_accuracy']:.4f}", flush=True)
                row["cpu"] = _summarise_cell(rec)
                row["routing_cpu"] = rec["routing"]
            except Exception as e:  # noqa: BLE001
                row["cpu_error"] = f"{type(e).__name__}: {e}"[:300]
            committed = ROOT / "validation" / "results" / f"grid_{preset}" / "cells" / f"{cid}.json"
            if committed.is_file():
                row["committed_cpu"] = _summarise_cell(json.loads(committed.read_text()))
            if "device" in row and "cpu" in row:
                d = abs(row["device"]["final_accuracy"] - row["cpu"]["final_accuracy"])
                row["accuracy_abs_diff"] = d
                row["within_tolerance"] = d <= GRID_TOLERANCE
                row["same_arrivals"] = row["device"]["arrivals"] == row["cpu"]["arrivals"]
                row["routing_max_abs_diff"] = max(abs(a - b) for a, b in zip(row.pop("routing_device"),
                                                                              row.pop("routing_cpu")))
            row.pop("routing_device", None)
            row.pop("routing_cpu", None)
            res["cells"] = list(rows.values())
            emit(_clean(res))
    finally:
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
    return _clean(res)


PART_FUNCS = {"environment": part_environment, "cuda_tests": part_cuda_tests, "agreement": part_agreement,
              "benchmark": part_benchmark, "profile": part_profile, "grid_slice": part_grid_slice}


def run_part(name: str, state_file: str) -> int:
    """Child process: run one part, writing its JSON (atomically) as it goes."""
    state = json.loads(Path(state_file).read_text())
    cfg, out_json = state["cfg"], Path(state["part_json"])
    sys.path.insert(0, str(ROOT))

    def emit(obj: dict) -> None:
        write_json(out_json, {"status": "running", **_clean(obj)})

    t = time.time()
    res = PART_FUNCS[name](cfg, state["deadline"], emit)
    write_json(out_json, {"status": "ok", **_clean(res), "seconds": time.time() - t})
    return 0


# --------------------------------------------------------------------------- the parent
def _verdict(name: str, sec: dict) -> tuple[bool, str]:
    """(passed, one-line summary) of a finished part."""
    st = sec.get("status")
    if st != "ok":
        return False, f"{st}: {sec.get('error', '')}"[:200]
    if name == "environment":
        gpu = sec.get("gpu", {}).get("name", "no GPU")
        bad = sec.get("device_error") or (f"imports failed: {sec['import_failures']}" if sec.get("import_failures") else "")
        text = f"torch {sec['versions'].get('torch')}, CUDA {sec.get('torch_cuda')}, {gpu}"
        return not bad, text + (f"; {bad}" if bad else "")
    if name == "cuda_tests":
        if "tests" not in sec:
            return False, sec.get("error", "no report")
        ok = sec["failed"] == 0 and sec["errors"] == 0 and sec["passed"] > 0
        return ok, f"{sec['passed']} passed, {sec['failed']} failed, {sec['errors']} errors, {sec['skipped']} skipped"
    if name == "agreement":
        worst = {}
        for c in sec.get("comparisons", []):
            if c.get("checked"):
                key = c["dtype"] + (" tasks" if c["what"] == "task updates" else "")
                val = c.get("displacement_rel_l2", c.get("max_rel_l2"))
                worst[key] = max(worst.get(key, 0.0), val if val is not None else math.inf)
        txt = ", ".join(f"{k} worst {v:.1e}" for k, v in sorted(worst.items()))
        ok = sec.get("failed", 1) == 0 and sec.get("checked", 0) > 0
        return ok, f"{sec.get('checked', 0)} checked, {sec.get('failed')} failed ({txt})"
    if name == "benchmark":
        rows = sec.get("rows", [])
        done = [r for r in rows if "speedup" in r]
        errors = [r for r in rows if "error" in r]
        skipped = len(rows) - len(done) - len(errors)
        return bool(done) and not errors, f"{len(done)} measured, {skipped} skipped, {len(errors)} errors"
    if name == "profile":
        return True, f"{len(sec.get('runs', []))} runs ({sec.get('why')})"
    if name == "grid_slice":
        cells = sec.get("cells", [])
        both = [c for c in cells if "accuracy_abs_diff" in c]
        agree = sum(1 for c in both if c["within_tolerance"])
        ok = len(both) == len(cells) and bool(cells)
        return ok, f"{len(both)}/{len(cells)} cells on both, {agree} within {GRID_TOLERANCE}"
    return True, ""


def _table(report: dict) -> list[str]:
    lines = []
    bench = report.get("benchmark", {})
    for r in bench.get("rows", []):
        if "speedup" in r:
            lines.append(f"  {r['model']:9s} m={r['concurrency']:<5d} serial {r['serial_updates_per_s']:10.1f} upd/s   "
                         f"batched {r['batched_updates_per_s']:10.1f} upd/s   ratio {r['speedup']:6.2f}x")
        else:
            lines.append(f"  {r['model']:9s} m={r['concurrency']:<5d} {r.get('skipped') or r.get('error')}")
    for c in report.get("grid_slice", {}).get("cells", []):
        dv, cp = c.get("device", {}), c.get("cpu", {})
        lines.append(f"  {c['id']}: device {dv.get('final_accuracy', float('nan')):.4f}  "
                     f"cpu {cp.get('final_accuracy', float('nan')):.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except BadInput as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.run_part:
        return run_part(args.run_part, args.state)
    if args.validate_only:
        return 0
    if args.print_digest:
        print(source_digest())
        return 0
    if args.device == "cuda":  # before any output: a CUDA check without CUDA is bad input
        probe = subprocess.run([sys.executable, "-c", "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            why = ("torch sees no CUDA device" if probe.returncode == 3 else
                   "torch does not import: " + (probe.stderr.strip().splitlines() or ["?"])[-1][:160])
            print(f"{PROG}: error: --device cuda but {why} (use --device cpu for a dry run)", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in ("gpu_check.json", "gpu_check.log", "profile.txt"):  # a fresh check, not a mix with an old one
        (out / old).unlink(missing_ok=True)
    for old in out.glob("profile_*.json.gz"):
        old.unlink()
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    log_path, json_path = out / "gpu_check.log", out / "gpu_check.json"
    log = log_path.open("a", buffering=1)

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log.write(line + "\n")

    cfg = {k: v for k, v in vars(args).items() if k not in ("run_part", "state")}
    cfg.update(tmp=str(tmp), git_commit=git_commit(), source_digest=source_digest())
    report: dict[str, Any] = {"schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": args.device,
                              "argv": argv, "budgets": args.budgets, "parts_requested": args.parts}
    write_json(json_path, report)
    say(f"gpu check on {args.device}: parts {', '.join(args.parts)}; output {out}")
    verdicts: dict[str, tuple[bool, str]] = {}
    t_all = time.time()
    planned_end = t_all
    for name in args.parts:
        # each part may run until the planned end of its slot: time an earlier part left unused
        # passes on, an overrun is taken from later parts (each keeps at least 30% of its own)
        planned_end += args.budgets[name]
        start = time.time()
        budget = max(0.3 * args.budgets[name], planned_end - start)
        deadline = start + budget
        part_json = tmp / f"{name}.json"
        state = tmp / f"{name}.state.json"
        write_json(state, {"cfg": {**cfg, "report": report}, "deadline": deadline, "part_json": str(part_json)})
        say(f"-- {name} (budget {budget:.0f} s)")
        log.write(f"----- output of part {name} -----\n")
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--run-part", name, "--state", str(state)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=budget + 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
        log.write(f"----- end of part {name} (exit {rc}) -----\n")
        try:
            sec = json.loads(part_json.read_text()) if part_json.is_file() else {}
        except json.JSONDecodeError:
            sec = {}
        if rc != 0:
            sec["status"] = "timeout" if rc == "timeout" else "failed"
            sec["error"] = (f"killed after {budget + 20:.0f} s" if rc == "timeout" else
                            f"exit code {rc}; see gpu_check.log")
        sec["part_seconds"] = time.time() - start
        report[name] = sec
        verdicts[name] = _verdict(name, sec)
        report.setdefault("verdicts", {})[name] = {"passed": verdicts[name][0], "summary": verdicts[name][1]}
        write_json(json_path, report)
        say(f"   {name}: {'PASS' if verdicts[name][0] else 'FAIL'} - {verdicts[name][1]} ({sec['part_seconds']:.0f} s)")
        if name == "environment" and sec.get("device_error"):
            say(f"stopping: {sec['device_error']}")
            break
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["seconds"] = time.time() - t_all
    passed = all(v[0] for v in verdicts.values())
    report["passed"] = passed
    write_json(json_path, report)
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"done in {report['seconds']:.0f} s: {'PASS' if passed else 'FAIL'}")
    for line in _table(report):
        say(line)
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    say(f"files in {out}: {', '.join(files)}")
    log.close()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
