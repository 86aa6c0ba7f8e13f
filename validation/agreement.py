"""Does the trainer compute the same thing on another device, or in another mode?

:func:`replay` trains one simulated trace from a fixed initial model with fixed minibatches (a
task's minibatches depend only on ``(seed, task id)``, :func:`aflqueue.fl.local.task_batches`)
on a given device, serially or batched, in float32 or float64; :func:`compare` measures how far
the final server model and the test curves of one replay are from a reference replay, and
:func:`violations` says which tolerance a comparison breaks. ``tests/fl/test_cuda.py`` asserts
with them; ``validation/gpu_check.py`` reports them.

The tolerances, and why (:data:`TOLERANCES`):

* **float64**: about 1e-16 of rounding per operation, and training amplifies it little: a
  relative perturbation of 1e-15 of the initial model moves the final model of a whole replay
  by 4e-14 (CNN case) and 2e-15 (MLP case), measured here. So two replays of the same
  computation agree to far better than 1e-9 on any device (on this project's CPU, serial and
  batched replays agree bit for bit); a larger difference means they computed different things
  (another minibatch, another start model, a wrong index).
* **float32**: CPU and GPU kernels round differently (summation order, fused multiply-add,
  cuDNN's algorithms). One task's update from the same start model then differs by about 1e-6
  relative (L2; measured here against float64: at most 3e-6 over 200 tasks of each case), and
  1e-4 leaves a factor of 30 for another device's kernels. A whole replay carries the
  differences forward, and a ReLU or max-pool whose input lies within rounding of its switch
  point sends one sample's gradient elsewhere: from then on the two trajectories part. The MLP
  case is smooth enough that they do not (float32 vs float64 replays here: at most 2.5e-6 over
  six seeds), so its replays are held to 1e-4; the CNN case's replays are not (1.4e-3 for seed
  0, up to 0.5 for other seeds: as far apart as replays with other minibatches), so for it
  only single tasks are held to 1e-4 (``Case.stable_replay``). Replays with other minibatches
  differ by 0.2 to 1 (displacement), far above either bound.
* **TF32** (on CUDA, cuDNN runs float32 convolutions with a 10-bit mantissa by default): about
  1e-3 relative per product. Comparisons therefore run with TF32 off (``strict=True``); one
  with the device's defaults is reported against :data:`TF32_TOLERANCE` for information.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["Case", "CASES", "Replay", "TOLERANCES", "TF32_TOLERANCE", "ACCURACY_TOLERANCE", "build", "replay",
           "compare", "violations", "task_deltas", "compare_deltas", "strict_float32"]

#: Largest allowed relative differences (displacement L2 and test loss) per dtype.
TOLERANCES = {"float64": 1e-9, "float32": 1e-4}
#: Informational bound for a replay with TF32 allowed (the device's default for convolutions).
TF32_TOLERANCE = 1e-2
#: Largest allowed difference of test accuracy in float32 (a few of 500 test samples may flip
#: when two logits are within rounding of each other); float64 must match exactly.
ACCURACY_TOLERANCE = 0.01

_SPEEDS = (3.0, 1.5, 0.6, 0.25, 0.1)


@dataclass(frozen=True)
class Case:
    """A small training problem: class-template data, a model, a system and a trace."""

    name: str
    model: str
    input_shape: tuple[int, ...]
    model_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 10
    clients: int = 10
    concurrency: int = 10
    arrivals: int = 400
    steps: int = 2
    lr: float = 0.05
    batch_size: int = 16
    per_client: int = 48
    test_size: int = 500
    noise: float = 2.0
    seed: int = 0
    stable_replay: bool = True


CASES = {
    "mlp": Case("mlp", "mlp", (64,), {"hidden": (32, 32)}),
    "cnn28": Case("cnn28", "cnn28", (1, 28, 28), {"channels": (4, 8), "hidden": 32}, clients=8, concurrency=8,
                  arrivals=300, steps=1, per_client=32, stable_replay=False),
}


@dataclass
class Replay:
    """Outcome of :func:`replay`: final server model (CPU, float64) and test curves."""

    params: torch.Tensor
    initial: torch.Tensor
    test_loss: list[float]
    test_accuracy: list[float]
    log: dict[str, list]
    device: str
    batched: bool
    dtype: str
    strict: bool
    seconds: float


def build(case: Case):
    """``(data, system, trace)`` of a case, deterministic in ``case.seed``.

    Each class has a random template; a sample is its class's template plus Gaussian noise of
    standard deviation ``case.noise``, so the task is learnable but not trivial."""
    from aflqueue.system import System
    from aflqueue.sim import simulate
    from aflqueue.fl.data import Dataset, FederatedData

    g = torch.Generator().manual_seed(case.seed)
    templates = torch.randn(case.num_classes, *case.input_shape, generator=g)

    def draw(k: int) -> Dataset:
        y = torch.randint(0, case.num_classes, (k,), generator=g)
        x = templates[y] + case.noise * torch.randn(k, *case.input_shape, generator=g)
        return Dataset(x.float().contiguous(), y, case.num_classes, "agreement")

    clients = [draw(case.per_client) for _ in range(case.clients)]
    data = FederatedData(clients, draw(case.test_size), None, case.num_classes, case.input_shape, "agreement")
    system = System.from_rates(np.resize(np.asarray(_SPEEDS), case.clients), concurrency=case.concurrency)
    trace = simulate(system, case.arrivals, seed=case.seed)
    return data, system, trace


def _precision_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")


@contextmanager
def strict_float32(enabled: bool = True) -> Iterator[None]:
    """TF32 off for matrix products and cuDNN convolutions inside the block (no-op if not
    ``enabled``); the previous settings are restored after it."""
    if not enabled:
        yield
        return
    if _precision_api():
        old = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = old
    else:  # older torch
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _in_dtype(data, dtype: torch.dtype):
    """``data`` with inputs in ``dtype`` (the :class:`Dataset` type itself insists on float32)."""
    if dtype == torch.float32:
        return data

    def conv(d):
        return SimpleNamespace(x=d.x.to(dtype), y=d.y)

    return SimpleNamespace(clients=[conv(c) for c in data.clients], test=conv(data.test), unlabeled=None,
                           num_classes=data.num_classes, input_shape=data.input_shape)


def replay(case: Case, built, device: str = "cpu", *, batched: bool = False, dtype: str = "float32",
           strict: bool = True, minibatch_seed: int | None = None, max_batch: int | None = None) -> Replay:
    """Train ``case`` (``built = build(case)``) with Generalized AsyncSGD on ``device``.

    ``minibatch_seed`` (default ``case.seed``) seeds the tasks' minibatches only; the initial
    model always comes from ``case.seed``. The test set is evaluated four times."""
    from aflqueue.fl.algorithms.asyncsgd import GeneralizedAsyncSGD
    from aflqueue.fl.engine import EngineSettings, TraceTrainer
    from aflqueue.fl.local import LocalConfig
    from aflqueue.fl.models import build_model

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be 'float32' or 'float64' (got {dtype!r})")
    data, system, trace = built
    holder: dict[str, Any] = {}

    class Keep(GeneralizedAsyncSGD):  # keeps a handle on the engine's algorithm (final model)
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            holder["alg"] = self

    model = build_model(case.model, case.input_shape, case.num_classes, seed=case.seed, **case.model_options)
    model = model.to(dtypes[dtype])
    initial = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    settings = EngineSettings(eval_every=max(1, case.arrivals // 4), checkpoint_every=0, batched=batched,
                              max_batch=max_batch, seed=case.seed if minibatch_seed is None else minibatch_seed)
    tr = TraceTrainer(model=model, data=_in_dtype(data, dtypes[dtype]), trace=trace,
                      algorithm=Keep, local=LocalConfig(steps=case.steps, lr=case.lr, batch_size=case.batch_size),
                      settings=settings, device=device)
    with strict_float32(strict):
        t = time.perf_counter()
        res = tr.run()
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        seconds = time.perf_counter() - t
    return Replay(params=holder["alg"].params.detach().double().cpu(), initial=initial,
                  test_loss=list(res.curves["test_loss"]), test_accuracy=list(res.curves["test_accuracy"]),
                  log=res.log, device=str(tr.device), batched=tr.batched, dtype=dtype, strict=strict, seconds=seconds)


def task_deltas(case: Case, built, device: str = "cpu", *, tasks: int = 64, batched: bool = False,
                dtype: str = "float32", strict: bool = True, start: torch.Tensor | None = None) -> torch.Tensor:
    """Updates ``(tasks, P)`` (CPU, float64) of the trace's first ``tasks`` tasks, each computed
    from the same start model (default: the case's initial model) with its own minibatches, on
    ``device``, one by one or all at once (``torch.func.vmap``). No trajectory: each row depends
    on its task alone, so rounding cannot build up."""
    from aflqueue.fl.local import ClientData, LocalConfig, ParamSpec, task_batches, train_batched, train_serial
    from aflqueue.fl.models import build_model

    data, _, trace = built
    dt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    dev = torch.device(device)
    model = build_model(case.model, case.input_shape, case.num_classes, seed=case.seed, **case.model_options)
    model = model.to(device=dev, dtype=dt)
    spec = ParamSpec(model)
    cdata = ClientData(_in_dtype(data, dt).clients, dev)
    w0 = spec.flatten(model) if start is None else start.to(device=dev, dtype=dt)
    cfg = LocalConfig(steps=case.steps, lr=case.lr, batch_size=case.batch_size)
    ids = list(range(min(int(tasks), len(trace.client))))
    batches = [task_batches(cdata, int(trace.client[t]), t, case.seed, cfg) for t in ids]
    with strict_float32(strict):
        if batched:
            out = train_batched(model, spec, w0.expand(len(ids), -1).contiguous(), cdata, torch.stack(batches), cfg)
        else:
            out = torch.stack([train_serial(model, spec, w0, cdata, b, cfg) for b in batches])
    return out.double().cpu()


def compare_deltas(a: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    """Per-task relative L2 differences ``|a_t - ref_t| / |ref_t|``: largest and median."""
    if a.shape != ref.shape:
        raise ValueError(f"different shapes {tuple(a.shape)} and {tuple(ref.shape)}")
    rel = ((a - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-300)).numpy()
    return {"tasks": int(a.shape[0]), "max_rel_l2": float(np.max(rel)) if rel.size else 0.0,
            "median_rel_l2": float(np.median(rel)) if rel.size else 0.0, "finite": bool(torch.isfinite(a).all())}


def compare(run: Replay, ref: Replay) -> dict[str, Any]:
    """Differences of ``run`` from ``ref``.

    ``displacement_rel_l2`` = ``|w - w_ref| / |w_ref - w0|`` (L2): the error relative to what
    training moved, the quantity the tolerances bound; ``params_max_abs`` = ``max |w - w_ref|``;
    ``params_max_rel`` = ``params_max_abs / max |w_ref|``; ``params_rel_l2`` =
    ``|w - w_ref| / |w_ref|``; ``loss_max_rel``: largest relative difference of the test loss
    over the evaluation points; ``accuracy_max_abs``: same for accuracy; ``same_schedule``: the
    per-arrival logs (client, staleness, version) are equal, which holds whatever the numerics."""
    a, b = run.params, ref.params
    if a.shape != b.shape:
        raise ValueError(f"models of different sizes ({a.numel()} and {b.numel()} parameters)")
    d = a - b
    moved = float((b - ref.initial).norm())
    la, lb = np.asarray(run.test_loss, float), np.asarray(ref.test_loss, float)
    aa, ab = np.asarray(run.test_accuracy, float), np.asarray(ref.test_accuracy, float)
    same_points = la.shape == lb.shape
    return {
        "displacement_rel_l2": float(d.norm()) / moved if moved > 0 else float("inf"),
        "params_max_abs": float(d.abs().max()),
        "params_max_rel": float(d.abs().max()) / max(float(b.abs().max()), 1e-300),
        "params_rel_l2": float(d.norm()) / max(float(b.norm()), 1e-300),
        "loss_max_rel": float(np.max(np.abs(la - lb) / np.maximum(np.abs(lb), 1e-300))) if same_points else float("inf"),
        "accuracy_max_abs": float(np.max(np.abs(aa - ab))) if same_points else float("inf"),
        "same_schedule": run.log == ref.log,
        "finite": bool(torch.isfinite(a).all()) and bool(np.isfinite(la).all()),
    }


def violations(diff: dict[str, Any], dtype: str, tolerance: float | None = None) -> list[str]:
    """The ways ``diff`` (from :func:`compare`) breaks the tolerances of ``dtype`` (empty: agrees).
    ``tolerance`` overrides the relative bound (e.g. :data:`TF32_TOLERANCE`)."""
    tol = TOLERANCES[dtype] if tolerance is None else tolerance
    acc_tol = 0.0 if dtype == "float64" and tolerance is None else ACCURACY_TOLERANCE
    out = []
    if not diff["finite"]:
        out.append("non-finite parameters or loss")
    if not diff["same_schedule"]:
        out.append("different schedules (per-arrival logs differ)")
    for key in ("displacement_rel_l2", "loss_max_rel"):
        if not diff[key] <= tol:  # NaN fails too
            out.append(f"{key} = {diff[key]:.3g} > {tol:g}")
    if not diff["accuracy_max_abs"] <= acc_tol:
        out.append(f"accuracy_max_abs = {diff['accuracy_max_abs']:.3g} > {acc_tol:g}")
    return out
