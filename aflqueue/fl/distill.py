"""Building blocks of the distillation-based server algorithms (FedEcho, FedRevive).

Pure functions and small modules, each checked by hand in ``tests/fl/test_distill.py``:

* losses: :func:`temperature_kl` (``KL(teacher_T || student_T)``), :func:`normalized_entropy`,
  :func:`entropy_alpha` and :func:`uncertainty_weighted_loss` (FedEcho's entropy-weighted mix of
  soft and hard labels); FedRevive's synthesis terms :func:`feature_matching_loss` (one teacher's
  ``L_feat``), :func:`weighted_feature_loss`, :func:`onehot_loss` (per-teacher cross-entropy,
  sample-teacher weighted) and :func:`masked_adversarial_loss`; :class:`LossSpikeGuard` (the
  reference's loss stabiliser);
* update rules: :func:`clip_by_norm`, :func:`outer_adam_step` (the generator's meta-update),
  :func:`staleness_beta` and :func:`hybrid_delta` (FedRevive's staleness-dependent mix of raw and
  distilled updates);
* probes and samplers: :func:`probe_class_proportions` (class mix a model predicts on Gaussian
  inputs), :func:`teacher_class_weights`, :func:`sample_by_class`;
* :class:`ClassConditionalGenerator` (latent + weighted class embedding -> an input-shaped sample)
  and :class:`TeacherBuffer` (the ``c`` most recently returned client models).

FedRevive's pieces follow the public reference implementation (NVIDIA NVFlare,
``research/fedrevive/dfkd.py`` and ``fedrevive.py``, read at commit f1d470e); each says where it
differs.

Every random choice takes an explicit ``torch.Generator`` (see :func:`seeded_generator`); nothing
here touches torch's global RNG, so algorithms built on it checkpoint and resume exactly.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import check_integer, check_number, require

__all__ = ["seeded_generator", "temperature_kl", "normalized_entropy", "entropy_alpha", "uncertainty_weighted_loss",
           "onehot_loss", "masked_adversarial_loss", "weighted_feature_loss", "LossSpikeGuard", "clip_by_norm",
           "outer_adam_step", "staleness_beta", "hybrid_delta", "flat_forward", "logits_in_chunks",
           "probe_class_proportions", "feature_matching_loss", "teacher_class_weights",
           "sample_by_class", "ClassConditionalGenerator", "TeacherBuffer", "tensor_bytes", "int_param", "float_param"]


# ---------------------------------------------------------------------------------------------- randomness
def seeded_generator(seed: int, tag: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, tag)`` (independent streams per purpose)."""
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32] + [ord(ch) for ch in tag]
    s = int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(s >> 1)


# ---------------------------------------------------------------------------------------------- losses
def temperature_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T))`` summed over classes, averaged over the batch.

    Not multiplied by ``T^2`` (callers that want the usual gradient scale do that)."""
    t = float(temperature)
    log_p = F.log_softmax(teacher_logits / t, dim=-1)
    log_q = F.log_softmax(student_logits / t, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the entropy of ``softmax(logits)``, divided by ``log C``: in ``[0, 1]``
    (0 for one-hot predictions, 1 for uniform ones; 0 when ``C = 1``)."""
    c = logits.shape[-1]
    if c < 2:
        return logits.new_zeros(())
    log_p = F.log_softmax(logits, dim=-1)
    h = -(log_p.exp() * log_p).sum(-1).mean()
    return (h / math.log(c)).clamp(0.0, 1.0)


def entropy_alpha(h: float | torch.Tensor, alpha_min: float, alpha_max: float):
    """FedEcho's weight of the soft-label term: ``alpha_min + (alpha_max - alpha_min) * H``."""
    return alpha_min + (alpha_max - alpha_min) * h


def uncertainty_weighted_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                              alpha_min: float, alpha_max: float,
                              hard_label_max_entropy: float = 1.0) -> tuple[torch.Tensor, float]:
    """FedEcho's distillation loss of one batch and its ``alpha``.

    ``H`` = :func:`normalized_entropy` of the teacher at temperature 1 (the teacher's own
    predictive uncertainty), ``alpha = alpha_min + (alpha_max - alpha_min) H`` and
    ``loss = alpha T^2 KL(teacher_T || student_T) + (1 - alpha) CE(student, argmax teacher)``:
    uncertain teachers lean on soft labels, confident ones on hard labels. When
    ``H > hard_label_max_entropy`` the teacher's argmax is taken as uninformative and
    ``alpha = 1`` (soft labels only; the default 1 never triggers: ``H <= 1``). The teacher is a
    constant (no gradient flows into it). Shapes: logits ``(B, C)``; returns a scalar and a float."""
    teacher = teacher_logits.detach()
    h = float(normalized_entropy(teacher))
    alpha = 1.0 if h > hard_label_max_entropy else float(entropy_alpha(h, alpha_min, alpha_max))
    t = float(temperature)
    soft = temperature_kl(student_logits, teacher, t) * (t * t)
    if alpha >= 1.0:
        return soft, alpha
    hard = F.cross_entropy(student_logits, teacher.argmax(-1))
    return alpha * soft + (1.0 - alpha) * hard, alpha


def feature_matching_loss(stats: dict[str, tuple[torch.Tensor, torch.Tensor]],
                          reference: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """DeepInversion's feature-statistics term: ``sum_l ||mu_l - mu_l^ref||_2 + ||var_l - var_l^ref||_2``
    over the layers present in both (0 if none)."""
    total = None
    for name, (mu, var) in stats.items():
        if name not in reference:
            continue
        mr, vr = reference[name]
        term = torch.linalg.vector_norm(mu - mr.to(mu)) + torch.linalg.vector_norm(var - vr.to(var))
        total = term if total is None else total + term
    if total is None:
        first = next(iter(stats.values()), None)
        return torch.zeros(()) if first is None else first[0].new_zeros(())
    return total


def weighted_feature_loss(per_teacher: Sequence[torch.Tensor | None], sample_weights: torch.Tensor) -> torch.Tensor:
    """FedRevive's ``L_feat``: ``(1/B) sum_j (sum_b w_bj) L_j`` with ``L_j`` teacher ``j``'s
    :func:`feature_matching_loss` (None: the teacher uploaded no statistics, it counts 0) and
    ``sample_weights`` ``(B, J)`` from :func:`teacher_class_weights` (reference: ``_synthesize``)."""
    B = sample_weights.shape[0]
    total = sample_weights.new_zeros(())
    for j, lj in enumerate(per_teacher):
        if lj is not None:
            total = total + sample_weights[:, j].sum() * lj
    return total / B


def onehot_loss(teacher_logits: torch.Tensor, targets: torch.Tensor, sample_weights: torch.Tensor) -> torch.Tensor:
    """FedRevive's ``L_onehot``: ``(1/B) sum_b sum_j w_bj CE(f_j(x_b), y_b)``, each teacher's own
    cross-entropy on the target label weighted per sample by its class share (not the CE of a
    weighted ensemble). ``teacher_logits`` ``(J, B, C)``, ``targets`` ``(B,)``, ``sample_weights``
    ``(B, J)``; returns a scalar."""
    J, B, _ = teacher_logits.shape
    ce = torch.stack([F.cross_entropy(teacher_logits[j], targets, reduction="none") for j in range(J)])  # (J, B)
    return (sample_weights * ce.T).sum() / B


def masked_adversarial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            sample_weights: torch.Tensor) -> torch.Tensor:
    """FedRevive's ``L_adv``: ``-(1/B) sum_b sum_j w_bj m_bj KL(f_j(x_b) || s(x_b))`` with
    ``m_bj = 1`` where the student's and teacher ``j``'s argmax agree, else 0. Minimising it seeks
    samples where the student's confidence departs from a teacher's while both still predict the
    same label (reference behaviour: samples on which they already disagree get no push).
    Temperature 1 (reference ``_kldiv(..., 1.0)``).
    ``student_logits`` ``(B, C)``, ``teacher_logits`` ``(J, B, C)``, ``sample_weights`` ``(B, J)``."""
    J, B, _ = teacher_logits.shape
    log_q = F.log_softmax(student_logits, dim=-1)
    s_arg = student_logits.argmax(-1)
    per = []
    for j in range(J):
        log_p = F.log_softmax(teacher_logits[j], dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B,)
        mask = s_arg.eq(teacher_logits[j].argmax(-1)).to(kl.dtype)
        per.append(-(kl * mask))
    return (sample_weights * torch.stack(per).T).sum() / B


class LossSpikeGuard:
    """The reference's loss stabiliser (``DFKDReviver._stabilize``), one window per loss name.

    A non-finite loss becomes 0 through ``nan_to_num`` (the graph is kept, as in the reference);
    once a window holds 10
    values, a loss more than ``factor`` (3) times their mean (when that mean is positive) is
    multiplied by 0 and not recorded; otherwise it is recorded, keeping the last 20. A zeroed
    loss still lets the optimiser step (Adam's momentum and weight decay act), as in the
    reference. State (:meth:`state_dict`): plain lists of floats and spike counts."""

    def __init__(self, min_values: int = 10, keep: int = 20, factor: float = 3.0):
        self.min_values, self.keep, self.factor = int(min_values), int(keep), float(factor)
        self.windows: dict[str, list[float]] = {}
        self.spikes: dict[str, int] = {}

    def __call__(self, loss: torch.Tensor, name: str) -> torch.Tensor:
        if not bool(torch.isfinite(loss)):
            self.spikes[name] = self.spikes.get(name, 0) + 1
            return torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        w = self.windows.setdefault(name, [])
        value = float(loss.detach())
        if len(w) >= self.min_values:
            mean = sum(w) / len(w)
            if mean > 0 and value > self.factor * mean:
                self.spikes[name] = self.spikes.get(name, 0) + 1
                return loss * 0.0
        w.append(value)
        del w[:-self.keep]
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"windows": {k: list(v) for k, v in self.windows.items()}, "spikes": dict(self.spikes)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.windows = {str(k): [float(x) for x in v] for k, v in d["windows"].items()}
        self.spikes = {str(k): int(v) for k, v in d["spikes"].items()}


# ---------------------------------------------------------------------------------------------- update rules
def clip_by_norm(g: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, float]:
    """``g * min(1, max_norm / ||g||)`` and the norm before clipping."""
    norm = float(torch.linalg.vector_norm(g))
    if norm > max_norm and norm > 0:
        return g * (max_norm / norm), norm
    return g, norm


def outer_adam_step(theta: Sequence[torch.Tensor], theta_fast: Sequence[torch.Tensor],
                    optimizer: torch.optim.Optimizer) -> None:
    """The generator's Reptile meta-update as the reference does it: the pseudo-gradient
    ``theta - theta_fast`` becomes the gradient of ``theta`` and ``optimizer`` takes one step (the
    reference: a persistent ``Adam(theta, lr=3e-3, betas=(0.5, 0.999), eps=0)``, so the first step
    moves every coordinate by exactly ``lr`` towards ``theta_fast``)."""
    for p, q in zip(theta, theta_fast, strict=True):
        p.grad = (p.detach() - q.detach()).clone()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def staleness_beta(tau: float, s_max: float) -> float:
    """FedRevive's weight of the distilled update:
    ``beta(tau) = 1 - (1 + cos(pi min(tau, 2 s_max) / (2 s_max))) / 2``; 0 at ``tau = 0``, 1/2 at
    ``s_max``, 1 from ``2 s_max`` on."""
    x = min(max(float(tau), 0.0), 2.0 * s_max)
    return 1.0 - (1.0 + math.cos(math.pi * x / (2.0 * s_max))) / 2.0


def hybrid_delta(delta: torch.Tensor, delta_kd: torch.Tensor | None, beta: float) -> torch.Tensor:
    """``(1 - beta) delta + beta delta_kd`` (``delta`` itself when ``beta = 0`` or there is no ``delta_kd``)."""
    if delta_kd is None or beta <= 0.0:
        return delta
    return (1.0 - beta) * delta + beta * delta_kd


# ---------------------------------------------------------------------------------------------- models
def flat_forward(model: nn.Module, spec, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits of the flat model ``params`` on ``x`` (``model`` is an architecture template)."""
    return spec.call(model, spec.unflatten(params), x)


@torch.no_grad()
def logits_in_chunks(model: nn.Module, spec, params: torch.Tensor, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """``flat_forward`` without gradients, ``chunk`` samples at a time."""
    p = spec.unflatten(params)
    return torch.cat([spec.call(model, p, x[a:a + chunk]) for a in range(0, len(x), chunk)])


@torch.no_grad()
def probe_class_proportions(model: nn.Module, spec, params: torch.Tensor, input_shape: Sequence[int], num_samples: int,
                            temperature: float, generator: torch.Generator, device: Any = "cpu") -> torch.Tensor:
    """Class mix a model predicts on Gaussian noise: mean of ``softmax(logits / temperature)`` over
    ``num_samples`` standard-normal inputs of ``input_shape`` (FedRevive's class-proportion probe)."""
    x = torch.randn((int(num_samples), *input_shape), generator=generator).to(device)
    logits = logits_in_chunks(model, spec, params, x)
    return F.softmax(logits / float(temperature), dim=-1).mean(0)


def teacher_class_weights(proportions: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample weights of ``J`` teachers for target ``labels``: ``w_j(y) = pi_j[y] / sum_k pi_k[y]``
    (FedFTG-style: a teacher counts in proportion to how much of class ``y`` it knows).
    ``proportions`` ``(J, C)``, ``labels`` ``(B,)``; returns ``(B, J)``, rows summing to 1."""
    p = proportions[:, labels].T.clamp_min(0.0)  # (B, J)
    s = p.sum(1, keepdim=True)
    uniform = torch.full_like(p, 1.0 / p.shape[1])
    return torch.where(s > eps, p / s.clamp_min(eps), uniform)


def sample_by_class(pool_labels: torch.Tensor, probs: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` pool samples for one teacher, as the reference's ``SyntheticPool.sample``:
    each draw picks a class from ``probs`` (normalised; with replacement), then a sample of that
    class uniformly; a class absent from the pool falls back to a uniformly drawn pool sample.
    ``pool_labels`` ``(N,)`` int, ``probs`` ``(C,)``; returns ``(n,)`` int64 (CPU)."""
    labels = pool_labels.detach().cpu()
    require(len(labels) > 0, "pool", "the synthetic pool is empty")
    c = probs.shape[0]
    counts = torch.bincount(labels, minlength=c)[:c]
    p = probs.detach().cpu().double().clamp_min(0.0)
    cls = torch.multinomial(p / p.sum(), int(n), replacement=True, generator=generator)
    u = torch.rand(int(n), generator=generator, dtype=torch.float64)
    order = torch.argsort(labels, stable=True)
    offsets = torch.cumsum(counts, 0) - counts
    k = counts[cls]
    within = torch.minimum((u * k.clamp_min(1)).long(), (k - 1).clamp_min(0))
    anywhere = torch.minimum((u * len(labels)).long(), torch.tensor(len(labels) - 1))
    return torch.where(k > 0, order[(offsets[cls] + within).clamp_max(len(labels) - 1)], anywhere)


class ClassConditionalGenerator(nn.Module):
    """``G(z + w e_y)``: a latent ``z`` (``latent_dim``) plus ``w`` (the reference: 0.2) times the
    embedding ``e_y`` of the target class, through two hidden layers (Linear, LayerNorm,
    LeakyReLU 0.2) of width ``hidden`` and a linear read-out reshaped to ``input_shape``.

    As in the reference, the class embeddings ``(C, latent_dim)`` and the latents are *not*
    generator parameters: each synthesis round draws them afresh and optimises them next to a
    copy of the generator (:class:`aflqueue.fl.algorithms.fedrevive.FedRevive`).
    Deviation from the reference (a CIFAR-only DCGAN: Linear to 8x8, two upsampling convolutions
    with BatchNorm, Sigmoid, then the data set's normalisation): an MLP works for every input shape
    here (images ``(C, H, W)``, sequences ``(C, L)``, vectors ``(D,)``); LayerNorm instead of
    BatchNorm keeps it free of buffers and batch-dependent outputs; the linear read-out (no
    Sigmoid + normalisation) lets the samples take any range, which ``L_feat`` pulls towards the
    statistics of real data (data sets here differ in range)."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int = 256, hidden: int = 256):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        out = int(np.prod(self.input_shape))
        self.net = nn.Sequential(
            nn.Linear(self.latent_dim, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, out),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor, embeddings: torch.Tensor,
                embedding_weight: float = 0.2) -> torch.Tensor:
        """``z`` ``(B, latent_dim)``, ``y`` ``(B,)`` class indices, ``embeddings``
        ``(C, latent_dim)``; returns ``(B, *input_shape)``."""
        return self.net(z + float(embedding_weight) * embeddings[y]).view(len(z), *self.input_shape)


# ---------------------------------------------------------------------------------------------- teachers
class TeacherBuffer:
    """The ``capacity`` most recently returned client models, oldest first.

    Each entry: ``{"client", "params" (P,), "stats"}`` (``stats``: the activation statistics the
    client uploaded with that model, or None). With ``distinct=False`` (the reference's
    ``deque(maxlen=c)``) the buffer is exactly the last ``capacity`` arrivals and a client may
    occupy several slots; with ``distinct=True`` a client holds at most one entry (its newest
    model, moved to the newest position), so a fast client's near-identical consecutive models do
    not crowd out the others."""

    def __init__(self, capacity: int, distinct: bool = False):
        require(int(capacity) >= 1, "algorithm.teachers", f"must be an integer >= 1 (got {capacity!r})")
        self.capacity = int(capacity)
        self.distinct = bool(distinct)
        self.entries: list[dict[str, Any]] = []

    def add(self, client: int, params: torch.Tensor, stats=None) -> None:
        if self.distinct:
            self.entries = [e for e in self.entries if e["client"] != client]
        self.entries.append({"client": int(client), "params": params, "stats": stats})
        if len(self.entries) > self.capacity:
            del self.entries[: len(self.entries) - self.capacity]

    def __len__(self) -> int:
        return len(self.entries)

    def clients(self) -> list[int]:
        return [e["client"] for e in self.entries]

    def nbytes(self) -> int:
        return sum(tensor_bytes(e["params"]) + tensor_bytes(e["stats"]) for e in self.entries)

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "distinct": self.distinct, "entries": [dict(e) for e in self.entries]}

    def load_state_dict(self, d: dict[str, Any], device: Any = "cpu") -> None:
        self.capacity, self.distinct = int(d["capacity"]), bool(d["distinct"])
        self.entries = []
        for e in d["entries"]:
            stats = e["stats"]
            if stats is not None:
                stats = {k: (m.to(device), v.to(device)) for k, (m, v) in stats.items()}
            self.entries.append({"client": int(e["client"]), "params": e["params"].to(device), "stats": stats})


def tensor_bytes(obj: Any) -> int:
    """Bytes held by the tensors in ``obj`` (nested dicts, lists and tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


# ---------------------------------------------------------------------------------------------- validation
def int_param(value: Any, name: str, lo: int = 1) -> int:
    """``value`` as an int ``>= lo`` or a ValidationError naming ``algorithm.<name>``."""
    return check_integer(value, f"algorithm.{name}", lo)


def float_param(value: Any, name: str, lo: float = 0.0, hi: float = math.inf, lo_open: bool = True,
                hi_open: bool = False) -> float:
    """``value`` as a finite float in the interval or a ValidationError naming ``algorithm.<name>``."""
    return check_number(value, f"algorithm.{name}", lo, None if hi == math.inf else hi, lo_open=lo_open,
                        hi_open=hi_open)
