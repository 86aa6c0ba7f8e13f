"""Local training of tasks on flat parameter vectors: serial and batched (``torch.func.vmap``).

A task = ``K`` optimiser steps (SGD or Adam) on minibatches of one client's data, starting from
the model version it was dispatched with; it returns ``delta = w_local - w_start``. Every
random choice of a task (its minibatches) comes from a generator seeded by ``(seed, task id)``,
so a task's result does not depend on when or next to which other tasks it is computed: this
is what lets the engine batch tasks whose start models are known, and resume exactly.

The serial path runs one task at a time with ``torch.autograd``; the batched path stacks the
start models of ``T`` tasks into a ``(T, P)`` tensor and takes each step for all of them with
``vmap(grad(loss))``. The two are separate implementations, checked against each other in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..errors import require

__all__ = ["ParamSpec", "LocalConfig", "ClientData", "task_batches", "train_serial", "train_batched", "train_rows",
           "linear_weights", "to_layout", "evaluate", "feature_statistics", "activation_statistics",
           "STAT_LAYERS"]

#: Layers whose outputs are summarised by :func:`feature_statistics` (all but the last one).
STAT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


class ParamSpec:
    """Layout of a model's parameters in one flat vector (float32, shape ``(P,)``)."""

    def __init__(self, model: nn.Module):
        self.names = [k for k, _ in model.named_parameters()]
        self.shapes = [tuple(v.shape) for _, v in model.named_parameters()]
        self.sizes = [int(np.prod(s)) if s else 1 for s in self.shapes]
        self.numel = int(sum(self.sizes))
        self.tied = len(list(model.named_parameters(remove_duplicate=False))) != len(self.names)
        require(not list(model.buffers()), "model", "models with buffers (e.g. BatchNorm) are not supported")

    def flatten(self, model: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def call(self, model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with ``params`` (as :meth:`unflatten` names them) in place of its own. Tied
        weights are looked for only in a model that has some: the search walks every module on
        every call (measured: 4% of the digits MLP's serial training time)."""
        return functional_call(model, params, (x,), tie_weights=self.tied)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (shape ``(P,)``) as the model's named parameters."""
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}


@dataclass(frozen=True)
class LocalConfig:
    """Local training of one task.

    Attributes:
        steps: ``K`` optimiser steps per task (the analysis of docs/theory.md section 1: ``K = 1`` with SGD).
        lr: local learning rate.
        batch_size: minibatch size (capped by the client's data size).
        optimizer: ``"sgd"`` or ``"adam"`` (fresh Adam state per task).
        weight_decay: L2 coefficient added to the loss gradient.
        betas, eps: Adam parameters.
    """

    steps: int = 1
    lr: float = 0.05
    batch_size: int = 32
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        require(isinstance(self.steps, int) and self.steps >= 1, "local.steps", f"must be an integer >= 1 (got {self.steps!r})")
        require(self.lr > 0, "local.lr", f"must be > 0 (got {self.lr})")
        require(isinstance(self.batch_size, int) and self.batch_size >= 1, "local.batch_size",
                f"must be an integer >= 1 (got {self.batch_size!r})")
        require(self.optimizer in ("sgd", "adam"), "local.optimizer", f"must be 'sgd' or 'adam' (got {self.optimizer!r})")
        require(self.weight_decay >= 0, "local.weight_decay", f"must be >= 0 (got {self.weight_decay})")


class ClientData:
    """All clients' training data concatenated on one device, with per-client offsets."""

    def __init__(self, clients: Sequence, device: torch.device):
        self.x = torch.cat([c.x for c in clients]).to(device)
        self.y = torch.cat([c.y for c in clients]).to(device)
        sizes = [len(c.x) for c in clients]
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def task_seed(seed: int, task: int) -> int:
    """Deterministic 63-bit seed of a task's minibatch stream: splitmix64 of ``(seed, task)``
    (a well-mixed hash, ~50x cheaper than a SeedSequence per task)."""
    return _splitmix64(_splitmix64(int(seed)) ^ int(task)) >> 1


def task_batches(data: ClientData, client: int, task: int, seed: int, cfg: LocalConfig) -> torch.Tensor:
    """Global sample indices of a task's minibatches, shape ``(K, B)`` (``B = min(batch, N_i)``),
    each minibatch drawn without replacement from the client's data."""
    n_i = int(data.sizes[client])
    b = min(cfg.batch_size, n_i)
    g = torch.Generator().manual_seed(task_seed(seed, task))
    rows = [torch.randperm(n_i, generator=g)[:b] for _ in range(cfg.steps)]
    idx = torch.stack(rows) + int(data.offsets[client])
    if data.x.device.type == "cuda":
        # A copy from pageable host memory synchronises the stream (the host waits for all queued
        # GPU work, once per task); from pinned memory it is queued like a kernel. The caching
        # host allocator keeps the pinned block until the copy has run.
        return idx.pin_memory().to(data.x.device, non_blocking=True)
    return idx.to(data.x.device)


def _adam_step(w, g, m, v, t, cfg: LocalConfig, lr=None):
    """One Adam step; ``lr``: a number or a ``(T, 1)`` column of per-task rates (default ``cfg.lr``)."""
    b1, b2 = cfg.betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh = m / (1 - b1**t)
    vh = v / (1 - b2**t)
    return w - (cfg.lr if lr is None else lr) * mh / (vh.sqrt() + cfg.eps), m, v


def train_serial(model: nn.Module, spec: ParamSpec, start: torch.Tensor, data: ClientData, batches: torch.Tensor,
                 cfg: LocalConfig) -> torch.Tensor:
    """One task with plain autograd: ``delta`` of shape ``(P,)``."""
    w = start.detach().clone()
    adam = cfg.optimizer == "adam"
    m = torch.zeros_like(w) if adam else None
    v = torch.zeros_like(w) if adam else None
    for k in range(batches.shape[0]):
        idx = batches[k]
        wk = w.detach().requires_grad_(True)
        out = spec.call(model, spec.unflatten(wk), data.x[idx])
        loss = nn.functional.cross_entropy(out, data.y[idx])
        (g,) = torch.autograd.grad(loss, [wk])
        if cfg.weight_decay:
            g = g + cfg.weight_decay * w
        with torch.no_grad():
            if adam:
                w, m, v = _adam_step(w, g, m, v, k + 1, cfg)
            else:
                w = w - cfg.lr * g
    return (w - start).detach()


def train_batched(model: nn.Module, spec: ParamSpec, starts: torch.Tensor, data: ClientData, batches: torch.Tensor,
                  cfg: LocalConfig) -> torch.Tensor:
    """``T`` tasks at once: ``starts`` ``(T, P)``, ``batches`` ``(T, K, B)`` (equal ``B``);
    returns deltas ``(T, P)``."""

    def batch_loss(w, xb, yb):
        out = spec.call(model, spec.unflatten(w), xb)
        return nn.functional.cross_entropy(out, yb)

    g_fn = vmap(grad(batch_loss))
    w = starts.detach().clone()
    adam = cfg.optimizer == "adam"
    m = torch.zeros_like(w) if adam else None
    v = torch.zeros_like(w) if adam else None
    for k in range(batches.shape[1]):
        idx = batches[:, k]  # (T, B)
        g = g_fn(w, data.x[idx], data.y[idx])
        if cfg.weight_decay:
            g = g + cfg.weight_decay * w
        if adam:
            w, m, v = _adam_step(w, g, m, v, k + 1, cfg)
        else:
            w = w - cfg.lr * g
    return (w - starts).detach()


def linear_weights(model: nn.Module) -> tuple[str, ...]:
    """Names of the ``nn.Linear`` weights of ``model`` (the parameters a layer uses transposed)."""
    return tuple(f"{name}.weight" if name else "weight" for name, mod in model.named_modules()
                 if isinstance(mod, nn.Linear))


def to_layout(spec: ParamSpec, flat: torch.Tensor, transposed: Sequence[str], inverse: bool = False) -> torch.Tensor:
    """``flat`` (shape ``(..., P)``, :class:`ParamSpec` order) with the 2-D parameters named in
    ``transposed`` stored transposed (``(in, out)`` for an ``(out, in)`` weight); ``inverse``:
    back to the standard layout. A permutation of the entries: values are unchanged."""
    if not transposed:
        return flat
    lead = flat.shape[:-1]
    pieces = []
    for n, t, s in zip(spec.names, torch.split(flat, spec.sizes, dim=-1), spec.shapes):
        if n in transposed:
            shape = (s[1], s[0]) if inverse else s
            t = t.reshape(*lead, *shape).transpose(-1, -2)
        pieces.append(t.reshape(*lead, -1))
    return torch.cat(pieces, dim=-1)


def train_rows(model: nn.Module, spec: ParamSpec, starts: torch.Tensor, data: ClientData, batches: torch.Tensor,
               counts: torch.Tensor, lr: torch.Tensor, cfg: LocalConfig, *, transposed: Sequence[str] = (),
               scale: torch.Tensor | None = None,
               into: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor | None:
    """``T`` tasks at once, each with its own learning rate and minibatch size; returns deltas ``(T, P)``
    (times ``scale`` if given).

    Args:
        starts: start models ``(T, P)`` (not modified; may be an expanded view).
        batches: global sample indices ``(T, K, B)``; task ``t`` uses the first ``counts[t]``
            entries of each row, the rest are padding (any valid index: they get weight 0).
        counts: minibatch size of each task ``(T,)`` (int, ``1 <= counts <= B``).
        lr: learning rate of each task ``(T,)``, in the dtype of ``starts``.
        cfg: steps, optimiser, weight decay and Adam parameters (its ``lr`` and ``batch_size``
            are not used).
        transposed: names of 2-D parameters that ``starts`` holds transposed (:func:`to_layout`;
            the deltas come back in the same layout). For ``nn.Linear`` weights
            (:func:`linear_weights`) this is the layout the batched product ``x @ W^T`` reads, and
            spares two transposing copies of every weight per step (measured: 40% of the time
            of a step of the digits MLP at ``T = 10``). The products then read their operands in
            another layout, which rounds differently (as ``bmm`` and ``addmm`` do).
        scale: optional ``(T,)`` factors: the result is then ``scale[t] * delta_t``, rounded as that
            product of the rounded delta is (the server's ``coefficient x delta``).
        into: ``(store, rows)``: write the result into ``store[rows]`` (``store`` of shape
            ``(S, P)``, ``rows`` ``(T,)``) and return None. The last step of plain SGD is then
            finished parameter by parameter in the gradients' own memory, with no ``(T, P)``
            temporary (each full pass over ``(T, P)`` is memory traffic: measured 13% of the
            update arithmetic of the digits MLP at ``T = 16``); the values are the same.

    The maths of :func:`train_serial` row by row: the loss is the cross-entropy summed with weight
    ``1 / counts[t]`` on the real samples and 0 on the padding, whose gradient with respect to each
    real sample's loss is the ``1 / B`` of the serial mean, to the bit. Results differ from the
    serial path only by the rounding of the batched matrix products (``torch.bmm`` vs ``addmm``).
    The forward pass runs under ``vmap`` and the backward pass with plain autograd on the batched
    tensors (measured 1.2-1.6x faster than ``vmap(grad(...))`` for the digits MLP at ``T = 10``,
    same kernels); each parameter tensor is its own leaf, so no ``split``/``cat`` enters the
    backward pass.
    """
    K, B = batches.shape[1:]
    starts = starts.detach()
    dtype, dev = starts.dtype, starts.device
    weights = (torch.arange(B, device=dev) < counts[:, None]).to(dtype) / counts.to(dtype)[:, None]  # 1/B_t or 0
    lr_col = lr.to(device=dev, dtype=dtype)[:, None]
    scale_col = None if scale is None else scale.to(device=dev, dtype=dtype)[:, None]

    # the forward pass of all T models at once (vmap over their parameters and minibatches);
    # the backward pass is plain autograd on the batched tensors: the gradient of the sum of the
    # T losses with respect to the stacked parameters is each task's own gradient
    def one(params, xb):
        params = {n: (t.t() if n in transposed else t) for n, t in params.items()}
        return spec.call(model, params, xb)

    forward = vmap(one)
    flat_weights = weights.reshape(-1)
    adam = cfg.optimizer == "adam"
    m = torch.zeros_like(starts) if adam else None
    v = torch.zeros_like(starts) if adam else None
    w = starts
    for k in range(K):
        ws = torch.split(w, spec.sizes, dim=1)
        grads = _row_gradients(forward, spec, ws, data, batches[:, k], flat_weights, transposed, cfg)
        if adam:
            w, m, v = _adam_step(w, torch.cat(grads, dim=1), m, v, k + 1, cfg, lr_col)
        elif k < K - 1:
            w = w - lr_col * torch.cat(grads, dim=1)
        else:
            return _last_sgd_step(spec, grads, ws, starts, lr_col, scale_col, into)
    delta = w - starts
    if scale_col is not None:
        delta.mul_(scale_col)
    if into is None:
        return delta
    into[0].index_copy_(0, into[1], delta)
    return None


def _row_gradients(forward, spec: ParamSpec, ws: Sequence[torch.Tensor], data: ClientData, idx: torch.Tensor,
                   flat_weights: torch.Tensor, transposed: Sequence[str], cfg: LocalConfig) -> list[torch.Tensor]:
    """One step's gradients of :func:`train_rows`, one ``(T, size)`` tensor per parameter, weight
    decay included: ``ws`` are the ``T`` models split by parameter, ``idx`` the step's minibatches
    ``(T, B)``, ``flat_weights`` the samples' loss weights ``(T * B,)``."""
    T, B = idx.shape
    leaves = [t.view(T, *((s[1], s[0]) if n in transposed else s)).detach().requires_grad_(True)
              for n, t, s in zip(spec.names, ws, spec.shapes)]
    with torch.enable_grad():
        logits = forward(dict(zip(spec.names, leaves)), data.x[idx])  # (T, B, classes)
        losses = nn.functional.cross_entropy(logits.reshape(T * B, -1), data.y[idx].reshape(-1), reduction="none")
        grads = [gr.reshape(T, -1) for gr in torch.autograd.grad((losses * flat_weights).sum(), leaves)]
    if cfg.weight_decay:
        for g_, w_ in zip(grads, ws):
            g_.add_(cfg.weight_decay * w_)  # g + wd w
    return grads


def _last_sgd_step(spec: ParamSpec, grads: list[torch.Tensor], ws: Sequence[torch.Tensor], starts: torch.Tensor,
                   lr_col: torch.Tensor, scale_col: torch.Tensor | None,
                   into: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
    """The last plain-SGD step of :func:`train_rows`, finished parameter by parameter in the
    gradients' memory (``grads`` are overwritten): the deltas ``(T, P)`` (times ``scale_col``, a
    ``(T, 1)`` column, if given), or None after writing them into ``into``."""
    # train_serial's operations: delta = (w - lr g) - start. Rounding to nearest is symmetric,
    # so with t = lr g - w this is -(t + start) to the bit (but for the sign of an exact zero),
    # and s * delta is (-s) * (t + start)
    factor = -scale_col if scale_col is not None else None
    for g_, w_, s_ in zip(grads, ws, torch.split(starts, spec.sizes, dim=1)):
        g_.mul_(lr_col).sub_(w_).add_(s_)
        if factor is None:
            g_.neg_()
        else:
            g_.mul_(factor)
    if into is None:
        return torch.cat(grads, dim=1)
    store, rows = into
    for g_, piece in zip(grads, torch.split(store, spec.sizes, dim=1)):
        piece.index_copy_(0, rows, g_)
    return None


@torch.no_grad()
def evaluate(model: nn.Module, spec: ParamSpec, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             chunk: int = 2048) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of the flat model ``params`` on ``(x, y)``."""
    p = spec.unflatten(params)
    correct, total_loss, n = 0, 0.0, len(y)
    for a in range(0, n, chunk):
        out = spec.call(model, p, x[a:a + chunk])
        total_loss += float(nn.functional.cross_entropy(out, y[a:a + chunk], reduction="sum"))
        correct += int((out.argmax(1) == y[a:a + chunk]).sum())
    return correct / n, total_loss / n


def feature_statistics(model: nn.Module, spec: ParamSpec, params: torch.Tensor, x: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Logits of the flat model ``params`` on inputs ``x``, and the per-channel mean and biased
    variance of every Linear/Conv output except the last (the logits): ``{layer name: (mean (C,),
    var (C,))}``. Differentiable (the server's feature matching differentiates through it)."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []

    def hook(name):
        def f(_mod, _inp, y):
            dims = [0] + list(range(2, y.dim()))  # all but the channel axis
            out[name] = (y.mean(dims), y.var(dims, unbiased=False))
        return f

    for name, mod in [(n, m) for n, m in model.named_modules() if isinstance(m, STAT_LAYERS)][:-1]:
        hooks.append(mod.register_forward_hook(hook(name)))
    try:
        logits = spec.call(model, spec.unflatten(params), x)
    finally:
        for h in hooks:
            h.remove()
    return logits, out


@torch.no_grad()
def activation_statistics(model: nn.Module, spec: ParamSpec, params: torch.Tensor, x: torch.Tensor
                          ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The statistics of :func:`feature_statistics`, without gradients.

    This is what a client of a model without normalisation layers uploads next to its update
    so that the server can match feature statistics (FedRevive's ``L_bn``): the role BatchNorm's
    running statistics play for models that have them.
    """
    return feature_statistics(model, spec, params, x)[1]
