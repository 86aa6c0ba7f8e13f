"""FedRevive: data-free distillation of stale updates (ALGORITHMS.md; Askin et al. 2025,
"Reviving stale updates", arXiv 2511.00655), as the public reference implementation does it
(NVIDIA NVFlare ``research/fedrevive``: ``fedrevive.py``, ``dfkd.py``, ``server.py``, read at
commit f1d470e; its ``paper-aligned`` mode, whose class proportions come from probing uploads and
whose generator runs every ``T_gen = 10`` versions).

Per arrival from client ``i`` with staleness ``tau`` while the server is at version ``v``
(reference ``FedReviveServer._process_outcome``):

1. **Class proportions** (reference ``ClassProportionProxyEstimator``): the first
   ``probe_uploads`` (2) models of a client are probed with ``probe_samples`` (64) standard normal
   inputs; its proportion vector ``pi_i`` = mean of ``softmax(logits / probe_temperature)`` (0.8)
   over its probes so far, normalised, then frozen. It is client state: every buffered model of
   the client uses the current ``pi_i``.
2. **Teacher buffer** (reference ``TeacherBuffer``): the returned model ``x_i = w_start + delta``
   joins the buffer of the ``teachers`` (``c = 8``) most recently returned models, a client
   possibly several times (``distinct_teachers = False``; ``True`` keeps one slot per client).
3. ``beta = beta(tau)``, the cosine ramp of :func:`~aflqueue.fl.distill.staleness_beta`
   (``s_max`` = 75). If ``v >= warmup_versions`` (50) and ``beta > 0``:

   a. **Synthesis** when ``v % t_gen == 0`` (reference ``DFKDReviver._synthesize``): target labels
      ``y`` (``synth_batch`` = 64) drawn from the mean of the teachers' proportions; fresh latents
      ``z`` and class embeddings ``E`` (standard normal); a copy of the persistent generator and
      ``(z, E)`` take ``k_synth`` (2) Adam steps (generator lr ``gen_lr`` 3e-3, latents and
      embeddings ``latent_lr`` 1e-3, betas (0.5, 0.999)) on
      ``w_bn L_feat + w_ce L_onehot + w_adv L_adv`` (0.003, 1, 0.1) for the samples
      ``G(z + 0.2 E_y)``, with per-sample teacher weights ``w_bj = pi_j[y_b] / sum_k pi_k[y_b]``:
      ``L_feat`` (:func:`~aflqueue.fl.distill.weighted_feature_loss`), ``L_onehot`` (per-teacher
      cross-entropy, :func:`~aflqueue.fl.distill.onehot_loss`) and, from ``v >= kd_start_version``
      (100) on, ``L_adv`` (per-teacher KL masked to samples where the current global model and the
      teacher agree, :func:`~aflqueue.fl.distill.masked_adversarial_loss`); each term passes the
      loss-spike guard. Then the meta-update of the persistent generator: a persistent Adam
      (``meta_lr`` 3e-3, betas (0.5, 0.999), ``eps`` 0) on the pseudo-gradient
      ``theta - theta_fast`` (:func:`~aflqueue.fl.distill.outer_adam_step`). The batch with the
      lowest loss among the inner steps (evaluated before each step) joins the FIFO pool of
      ``pool_size`` (16000) samples with its labels.
   b. **Distillation** when ``v > kd_start_version`` (reference ``DFKDReviver.revive``): from the
      global model ``w``, ``k_kd`` (10) Adam steps (lr ``kd_lr`` 1e-4, weight decay
      ``kd_weight_decay`` 1e-5) on ``T^2 KL(teacher || student)`` at ``kd_temperature`` (1)
      averaged over, per step, ``kd_per_teacher`` (32) pool samples for *each* teacher, drawn by
      that teacher's proportions (:func:`~aflqueue.fl.distill.sample_by_class`) and labelled by
      that teacher; each loss passes the spike guard. ``delta_KD = student - w``; before that
      version (or with an empty pool) ``delta_KD = 0``.
   c. **Blend**: ``delta' = (1 - beta) delta + beta delta_KD``. So from version 50 to 100 stale
      updates are shrunk by ``1 - beta`` (``delta_KD = 0``), as in the reference.

   Otherwise ``delta' = delta``. Then the FedBuff step (``buffer`` 1, ``eta_g`` 0.1,
   ``staleness_weighting``, ``weighting``).

The one-line summary of the warm-up: no DFKD before version 50; synthesis only (and the blend
with ``delta_KD = 0``) from 50 to 100; the adversarial term from 100; KD after 100.

Deviations kept (each justified where it is implemented):

* the generator is an MLP for any input shape, not the reference's CIFAR DCGAN
  (:class:`~aflqueue.fl.distill.ClassConditionalGenerator`); no data augmentation (the
  reference's random crop + flip + CIFAR normalisation is image- and CIFAR-specific: flipping or
  cropping 8x8 digits or 1-D signals changes their class);
* feature statistics: clients upload per-channel activation mean/variance of every Linear/Conv
  output but the logits on their task's last minibatch (``client_statistics = True``; our models
  have no normalisation layers), in place of the reference's ResNet ``StatTracker`` running
  statistics (an exponential average over the local training batches of the same activations);
* randomness from explicit generators (``probe``, ``synth``, ``kd``) seeded from the run seed,
  so runs and resumed runs are reproducible; the reference draws from torch's global RNG.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ...errors import require
from ..distill import (ClassConditionalGenerator, LossSpikeGuard, TeacherBuffer, feature_matching_loss,
                       flat_forward, float_param, hybrid_delta, int_param, logits_in_chunks,
                       masked_adversarial_loss, onehot_loss, outer_adam_step, probe_class_proportions,
                       sample_by_class, seeded_generator, staleness_beta, teacher_class_weights, temperature_kl,
                       tensor_bytes, weighted_feature_loss)
from ..local import feature_statistics
from .base import AlgorithmContext, Arrival
from .fedbuff import FedBuff

__all__ = ["FedRevive"]

#: Adam betas of the generator's inner and outer optimisers (reference ``DFKDReviver``)
GEN_BETAS = (0.5, 0.999)


class FedRevive(FedBuff):
    """FedBuff-style aggregation of hybrid updates that mix each stale delta with a data-free
    distilled one (module docstring: the reference's steps, parameters and the deviations kept).

    Every default is the reference's value (``paper-aligned`` mode) unless noted next to it in
    :attr:`defaults`.
    """

    name = "fedrevive"
    client_statistics = True
    defaults = {
        "buffer": 1, "eta_g": 0.1,  # reference FIGURE_2_METHOD_CONFIGS[FEDREVIVE]
        "staleness_weighting": False,  # the reference weighs every buffered update 1
        # the reference (uniform client sampling) weighs every update 1; "importance" = 1/(n p_i)
        "weighting": "uniform",
        "teachers": 8,  # teacher_buffer_size
        "distinct_teachers": False,  # reference: deque of the last c returns (duplicates allowed)
        "probe_temperature": 0.8, "probe_uploads": 2, "probe_samples": 64,  # proxy_* of DFKDConfig
        "t_gen": 10,  # generation_interval in paper-aligned mode
        "k_synth": 2,  # generator_steps
        "synth_batch": 64,  # synth_batch_size
        "w_bn": 0.003, "w_ce": 1.0, "w_adv": 0.1,  # feature_weight, one_hot_weight, adversarial_weight
        "gen_lr": 3e-3, "latent_lr": 1e-3,  # generator_lr, latent_lr (inner Adam, betas (0.5, 0.999))
        "meta_lr": 3e-3,  # the meta optimiser: Adam(generator_lr, betas (0.5, 0.999), eps 0)
        "embedding_weight": 0.2,  # class_embedding_weight
        "latent_dim": 256,  # latent_size
        "gen_hidden": 256,  # not in the reference (its generator is a DCGAN): MLP width = latent size
        "pool_size": 16000,  # max_images
        "k_kd": 10,  # kd_iterations
        "kd_per_teacher": 32,  # kd_batch_size: samples per teacher per KD step
        "kd_lr": 1e-4, "kd_weight_decay": 1e-5,  # revive(): Adam(kd_lr, weight_decay=1e-5)
        "kd_temperature": 1.0,  # temperature
        "s_max": 75,  # max_staleness
        "warmup_versions": 50,  # freeze_versions: no DFKD (no synthesis, no blend) before
        "kd_start_version": 100,  # warmup_versions: L_adv from this version on, KD after it
    }

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        super().__init__(params, ctx, **hp)
        require(ctx.model is not None and ctx.spec is not None, "algorithm",
                "FedRevive needs the model template (ctx.model, ctx.spec)")
        require(len(ctx.input_shape) > 0 and ctx.num_classes >= 1, "algorithm",
                "FedRevive needs the input shape and the number of classes (ctx.input_shape, ctx.num_classes)")
        h = self.hp
        self.probe_temperature = float_param(h["probe_temperature"], "probe_temperature")
        self.probe_uploads = int_param(h["probe_uploads"], "probe_uploads")
        self.probe_samples = int_param(h["probe_samples"], "probe_samples")
        self.t_gen = int_param(h["t_gen"], "t_gen")
        self.k_synth = int_param(h["k_synth"], "k_synth")
        self.synth_batch = int_param(h["synth_batch"], "synth_batch")
        self.w_bn = float_param(h["w_bn"], "w_bn", lo_open=False)
        self.w_ce = float_param(h["w_ce"], "w_ce", lo_open=False)
        self.w_adv = float_param(h["w_adv"], "w_adv", lo_open=False)
        self.gen_lr = float_param(h["gen_lr"], "gen_lr")
        self.latent_lr = float_param(h["latent_lr"], "latent_lr")
        self.embedding_weight = float_param(h["embedding_weight"], "embedding_weight", lo_open=False)
        self.pool_size = int_param(h["pool_size"], "pool_size")
        self.k_kd = int_param(h["k_kd"], "k_kd")
        self.kd_per_teacher = int_param(h["kd_per_teacher"], "kd_per_teacher")
        self.kd_lr = float_param(h["kd_lr"], "kd_lr")
        self.kd_weight_decay = float_param(h["kd_weight_decay"], "kd_weight_decay", lo_open=False)
        self.kd_temperature = float_param(h["kd_temperature"], "kd_temperature")
        self.s_max = float_param(h["s_max"], "s_max")
        self.warmup_versions = int_param(h["warmup_versions"], "warmup_versions", 0)
        self.kd_start_version = int_param(h["kd_start_version"], "kd_start_version", 0)
        self.teachers = TeacherBuffer(int_param(h["teachers"], "teachers"), bool(h["distinct_teachers"]))
        C, n = int(ctx.num_classes), int(ctx.n_clients)
        self.num_classes = C
        self.proportion_sum = torch.zeros(n, C, dtype=torch.float64)
        self.probe_count = torch.zeros(n, dtype=torch.int64)
        # seeded initialisation on the CPU; fork_rng restores the CPU generator, and no CUDA
        # generator is touched (torch.manual_seed would reseed those too)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seeded_generator(ctx.seed, "fedrevive/init").initial_seed())
            self.generator = ClassConditionalGenerator(ctx.input_shape, int_param(h["latent_dim"], "latent_dim"),
                                                       int_param(h["gen_hidden"], "gen_hidden"))
        self.generator.to(ctx.device)
        self.meta_opt = torch.optim.Adam(self.generator.parameters(), lr=float_param(h["meta_lr"], "meta_lr"),
                                         betas=GEN_BETAS, eps=0.0)
        self.guard = LossSpikeGuard()
        self.rng = {"probe": seeded_generator(ctx.seed, "fedrevive/probe"),
                    "synth": seeded_generator(ctx.seed, "fedrevive/synth"),
                    "kd": seeded_generator(ctx.seed, "fedrevive/kd")}
        # synthetic pool: sample j (0-based, in order of creation) lives in slot j % pool_size
        self.pool_x: torch.Tensor | None = None
        self.pool_y: torch.Tensor | None = None
        self.pool_total = 0
        self.cost.update({"probe_seconds": 0.0, "probes": 0, "synthesis_seconds": 0.0, "syntheses": 0,
                          "distillation_seconds": 0.0, "distillations": 0, "kd_skipped_warmup": 0,
                          "kd_skipped_beta0": 0, "beta_sum": 0.0, "hybrid_arrivals": 0,
                          "synthesis_loss_last": None})

    # ------------------------------------------------------------------ pieces
    @property
    def pool_len(self) -> int:
        return min(self.pool_total, self.pool_size)

    def proportions(self, client: int) -> torch.Tensor:
        """Client's class-proportion estimate, ``(C,)`` float64 summing to 1 (uniform before its
        first upload)."""
        k = int(self.probe_count[client])
        if k == 0:
            return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=torch.float64)
        p = self.proportion_sum[client] / k
        return p / p.sum().clamp_min(1e-8)

    def teacher_proportions(self) -> torch.Tensor:
        """``(J, C)`` float32 proportions of the buffered teachers (each by its client)."""
        return torch.stack([self.proportions(c) for c in self.teachers.clients()]).float().to(self.ctx.device)

    def _pool_append(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cap = self.pool_size
        if len(x) > cap:
            self.pool_total += len(x) - cap
            x, y = x[-cap:], y[-cap:]
        need = min(self.pool_total + len(x), cap)
        have = 0 if self.pool_x is None else len(self.pool_x)
        if need > have:  # grow geometrically up to the cap; the slot of a sample never depends on it
            size = min(cap, max(need, 2 * have))
            nx = x.new_zeros((size, *x.shape[1:]))
            ny = y.new_zeros((size,))
            if have:
                nx[:have], ny[:have] = self.pool_x, self.pool_y
            self.pool_x, self.pool_y = nx, ny
        slots = (self.pool_total + torch.arange(len(x), device=x.device)) % cap
        self.pool_x[slots] = x
        self.pool_y[slots] = y
        self.pool_total += len(x)

    def synthesize(self) -> None:
        """One generator round (module docstring, step 3a)."""
        ctx, B, C = self.ctx, self.synth_batch, self.num_classes
        teachers = self.teachers.entries
        props = self.teacher_proportions()  # (J, C)
        g = self.rng["synth"]
        y = torch.multinomial(props.mean(0).double().cpu(), B, replacement=True, generator=g).to(ctx.device)
        z = torch.randn(B, self.generator.latent_dim, generator=g).to(ctx.device).requires_grad_(True)
        emb = torch.randn(C, self.generator.latent_dim, generator=g).to(ctx.device).requires_grad_(True)
        w = teacher_class_weights(props, y)  # (B, J)
        fast = copy.deepcopy(self.generator)
        opt = torch.optim.Adam([{"params": list(fast.parameters())},
                                {"params": [z], "lr": self.latent_lr}, {"params": [emb], "lr": self.latent_lr}],
                               lr=self.gen_lr, betas=GEN_BETAS)
        adversarial = self.w_adv > 0 and self.version >= self.kd_start_version
        student = self.params.detach()
        best, best_x = float("inf"), None
        for _ in range(self.k_synth):
            x = fast(z, y, emb, self.embedding_weight)
            logits, feats = [], []
            for e in teachers:
                out, stats = feature_statistics(ctx.model, ctx.spec, e["params"], x)
                logits.append(out)
                feats.append(feature_matching_loss(stats, e["stats"]) if e["stats"] else None)
            logits = torch.stack(logits)  # (J, B, C)
            l_feat = self.guard(weighted_feature_loss(feats, w), "feature")
            l_ce = self.guard(onehot_loss(logits, y, w), "one_hot")
            l_adv = logits.new_zeros(())
            if adversarial:
                s_logits = flat_forward(ctx.model, ctx.spec, student, x)
                l_adv = self.guard(masked_adversarial_loss(s_logits, logits, w), "adversarial")
            loss = self.w_bn * l_feat + self.w_ce * l_ce + self.w_adv * l_adv
            if float(loss.detach()) < best:  # the batch as it was scored, before this step moves it
                best, best_x = float(loss.detach()), x.detach().clone()
            self.cost["synthesis_loss_last"] = [float(l_feat.detach()), float(l_ce.detach()), float(l_adv.detach())]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        outer_adam_step(list(self.generator.parameters()), list(fast.parameters()), self.meta_opt)
        if best_x is None:  # every inner loss was NaN: keep the last batch, as scoring could not choose
            best_x = x.detach().clone()
        self._pool_append(best_x, y.detach())

    def delta_kd(self) -> torch.Tensor:
        """``student - w`` after ``k_kd`` Adam steps of multi-teacher KL on the pool (step 3b)."""
        ctx = self.ctx
        w = self.params.detach()
        n = self.pool_len
        if n == 0:
            return torch.zeros_like(w)
        teachers = self.teachers.entries
        J, K, per = len(teachers), self.k_kd, self.kd_per_teacher
        px, py = self.pool_x[:n], self.pool_y[:n]
        props = self.teacher_proportions()
        # all K steps' draws at once (one forward pass per teacher): idx[k, j] = teacher j's samples at step k
        idx = torch.stack([sample_by_class(py, props[j], K * per, self.rng["kd"]).view(K, per) for j in range(J)], 1)
        idx = idx.to(px.device)  # (K, J, per)
        with torch.no_grad():
            t_all = torch.stack([logits_in_chunks(ctx.model, ctx.spec, e["params"], px[idx[:, j].reshape(-1)])
                                 for j, e in enumerate(teachers)])  # (J, K * per, C)
        t_all = t_all.view(J, K, per, -1).transpose(0, 1).reshape(K, J * per, -1)
        s = w.clone().requires_grad_(True)
        opt = torch.optim.Adam([s], lr=self.kd_lr, weight_decay=self.kd_weight_decay)
        T = self.kd_temperature
        for k in range(K):
            x = px[idx[k].reshape(-1)]  # teacher-major, matching t_all[k]
            loss = temperature_kl(flat_forward(ctx.model, ctx.spec, s, x), t_all[k], T) * (T * T)
            loss = self.guard(loss, "kd")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.cost["distillations"] += 1
        return (s.detach() - w).clone()

    # ------------------------------------------------------------------ the algorithm
    def apply(self, a: Arrival) -> None:
        ctx, i = self.ctx, int(a.client)
        tau = self.staleness(a)
        local = a.start + a.delta
        if int(self.probe_count[i]) < self.probe_uploads:
            with self.timed("probe_seconds"):
                p = probe_class_proportions(ctx.model, ctx.spec, local, ctx.input_shape, self.probe_samples,
                                            self.probe_temperature, self.rng["probe"], ctx.device)
                self.proportion_sum[i] += p.double().cpu()
                self.probe_count[i] += 1
            self.cost["probes"] += 1
        self.teachers.add(i, local, a.extras.get("activation_stats"))

        beta = staleness_beta(tau, self.s_max)
        delta = a.delta
        if self.version < self.warmup_versions:
            self.cost["kd_skipped_warmup"] += 1
        elif beta <= 0.0:
            self.cost["kd_skipped_beta0"] += 1
        else:
            if self.version % self.t_gen == 0:
                with self.timed("synthesis_seconds"):
                    self.synthesize()
                self.cost["syntheses"] += 1
            if self.version > self.kd_start_version:
                with self.timed("distillation_seconds"):
                    d_kd = self.delta_kd()
            else:
                d_kd = torch.zeros_like(delta)
                self.cost["kd_skipped_warmup"] += 1
            delta = hybrid_delta(delta, d_kd, beta)
            self.cost["beta_sum"] += beta
            self.cost["hybrid_arrivals"] += 1
        self.add_to_buffer(self.contribution(a, delta))

    # ------------------------------------------------------------------ checkpoints and costs
    def state_dict(self) -> dict[str, Any]:
        n = self.pool_len
        return {**super().state_dict(), "teachers": self.teachers.state_dict(),
                "proportion_sum": self.proportion_sum, "probe_count": self.probe_count,
                "generator": {k: v.clone() for k, v in self.generator.state_dict().items()},
                "meta_opt": copy.deepcopy(self.meta_opt.state_dict()), "guard": self.guard.state_dict(),
                "rng": {k: g.get_state() for k, g in self.rng.items()},
                "pool_x": None if self.pool_x is None else self.pool_x[:n].clone(),
                "pool_y": None if self.pool_y is None else self.pool_y[:n].clone(),
                "pool_total": self.pool_total}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        dev = self.params.device
        self.teachers.load_state_dict(d["teachers"], dev)
        self.proportion_sum = d["proportion_sum"].cpu().clone()
        self.probe_count = d["probe_count"].cpu().clone()
        self.generator.load_state_dict(d["generator"])
        self.meta_opt.load_state_dict(d["meta_opt"])
        self.guard.load_state_dict(d["guard"])
        for k, g in self.rng.items():
            g.set_state(d["rng"][k])
        self.pool_x = None if d["pool_x"] is None else d["pool_x"].to(dev).clone()
        self.pool_y = None if d["pool_y"] is None else d["pool_y"].to(dev).clone()
        self.pool_total = int(d["pool_total"])

    def costs(self) -> dict[str, Any]:
        c = super().costs()
        arrivals = max(c["arrivals"], 1)
        gen_bytes = tensor_bytes(list(self.generator.parameters()))
        c["probe_seconds_per_arrival"] = c["probe_seconds"] / arrivals
        c["synthesis_seconds_per_round"] = c["synthesis_seconds"] / max(c["syntheses"], 1)
        c["distillation_seconds_per_kd"] = c["distillation_seconds"] / max(c["distillations"], 1)
        c["distillation_seconds_per_arrival"] = c["distillation_seconds"] / arrivals
        c["beta_mean"] = c["beta_sum"] / c["hybrid_arrivals"] if c["hybrid_arrivals"] else None
        c["pool_samples"] = self.pool_len
        c["loss_spikes"] = dict(self.guard.spikes)
        # like FedEcho, the teachers x_i = w_start + delta are rebuilt from the start checkpoints the
        # engine keeps for the tasks in flight (at most m); clients uploading x_i would avoid them
        c["memory_checkpoints_bytes"] = int(self.ctx.concurrency) * int(self.ctx.spec.numel) * 4
        c["memory_teacher_buffer_bytes"] = self.teachers.nbytes()
        c["memory_pool_bytes"] = 0 if self.pool_x is None else tensor_bytes(self.pool_x) + tensor_bytes(self.pool_y)
        # the generator and its persistent meta-optimiser moments (2 per parameter once stepped)
        c["memory_generator_bytes"] = gen_bytes + tensor_bytes(self.meta_opt.state_dict()["state"])
        # transient during a synthesis round: the fast copy, its two Adam moments, latents, embeddings
        c["memory_generator_peak_extra_bytes"] = 3 * gen_bytes
        c["memory_class_proportions_bytes"] = tensor_bytes(self.proportion_sum) + tensor_bytes(self.probe_count)
        c["memory_buffer_bytes"] = tensor_bytes(self.acc)
        c["memory_total_bytes"] = sum(c[k] for k in (
            "memory_checkpoints_bytes", "memory_teacher_buffer_bytes", "memory_pool_bytes", "memory_generator_bytes",
            "memory_class_proportions_bytes", "memory_buffer_bytes"))
        return c
