"""FedRevive: data-free distillation of stale updates (ALGORITHMS.md; Askin et al. 2025,
"Reviving stale updates", arXiv 2511.00655)."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch.nn import functional as F

from ...errors import require
from ..distill import (ClassConditionalGenerator, TeacherBuffer, feature_matching_loss, feature_statistics,
                       flat_forward, float_param, hybrid_delta, int_param, logits_in_chunks, probe_class_proportions,
                       reptile_step, sample_by_class, seeded_generator, staleness_beta, teacher_class_weights,
                       temperature_kl, tensor_bytes)
from .base import AlgorithmContext, Arrival, check_params
from .fedbuff import FedBuff

__all__ = ["FedRevive"]


class FedRevive(FedBuff):
    """FedBuff-style aggregation of hybrid updates that mix each raw delta with a data-free
    distilled one, more so the staler it is.

    **Teachers.** A :class:`~aflqueue.fl.distill.TeacherBuffer` of the ``teachers`` (``c``) most
    recently returned client models ``x_i = w_start + delta`` with the activation statistics the
    client uploaded with it (``client_statistics = True``: per-channel mean/variance of every
    Linear/Conv output but the logits on the task's last minibatch; our models have no
    normalisation layers, so this replaces BatchNorm's running statistics for ``L_bn``). With
    ``distinct_teachers`` (default) a client holds at most one slot (its newest model). Each
    client's class proportions ``pi_i`` = mean of ``softmax(logits / probe_temperature)`` over
    ``probe_samples`` Gaussian inputs, averaged over its first ``probe_uploads`` uploads, then frozen.

    **Synthesis.** Every ``t_gen`` server versions (when the version reaches a multiple of
    ``t_gen``, from ``warmup_versions`` on): clone the class-conditional generator, take
    ``k_synth`` Adam steps (lr ``gen_lr``, fresh state per round) on
    ``w_bn L_bn + w_ce L_ce + w_adv L_adv`` over a batch of ``synth_batch`` samples with uniformly
    drawn target labels ``y``:

    * ``L_bn``: mean over teachers (with statistics) of ``sum_l ||mu_l - mu_l^i|| + ||var_l - var_l^i||``
      between the synthetic batch's activation statistics through teacher ``i`` and those it uploaded;
    * ``L_ce = CE(sum_i w_i(y) f_i(x), y)``, ``w_i(y) = pi_i[y] / sum_k pi_k[y]`` (teacher-weighted
      ensemble logits, FedFTG-style);
    * ``L_adv = -KL(softmax(ensemble) || softmax(student))`` with the current global model as the
      student: minimising it rewards samples on which student and teachers disagree (DENSE/FedFTG);

    then Reptile ``theta <- theta + reptile_lr (theta_fast - theta)``; the last inner batch
    (detached, with its labels) is appended to a FIFO pool of at most ``pool_size`` samples.

    **Distillation.** ``delta_KD``: from the current global model, ``k_kd`` Adam steps (lr ``kd_lr``,
    fresh state) on ``KL(teacher_i || student)`` (temperature ``kd_temperature``), each step on
    ``kd_batch // c`` pool samples per teacher ``i`` whose classes are drawn from ``pi_i``;
    ``delta_KD = student - w``. It is computed at most once per server version (cached: with
    ``buffer > 1`` the arrivals of one version share it) and only when needed: never while
    ``version < kd_start_version``, never when ``beta = 0`` (``tau = 0``), never with an empty pool.

    **Hybrid update.** ``beta(tau) = 1 - (1 + cos(pi min(tau, 2 s_max) / (2 s_max))) / 2``,
    ``delta' = (1 - beta) delta + beta delta_KD``, added to the FedBuff buffer (``buffer``, ``eta_g``,
    ``staleness_weighting``, ``weighting`` as in FedBuff); a full buffer applies
    ``w <- w + eta_g mean(buffer)`` and advances the version.

    **Warm-up** (the spec's "no distillation for the first versions (50), synthesis only until 100"),
    in server versions ``v`` (the model version when the arrival is handled):

    * ``v < warmup_versions`` (50): plain FedBuff; teachers and class proportions are recorded
      but nothing is synthesised (the generator would learn from untrained teachers);
    * ``warmup_versions <= v < kd_start_version`` (50..99): synthesis only: the generator trains and
      the pool fills (versions 50, 60, ..., 90: 5 rounds, 320 samples by default), every arrival is
      still applied raw (``beta = 0``);
    * ``v >= kd_start_version`` (100): synthesis every ``t_gen`` versions and hybrid updates.

    Defaults not fixed by the spec (justification next to each in :attr:`defaults`): ``gen_lr``,
    ``reptile_lr``, ``synth_batch``, ``noise_dim``, ``gen_hidden``, ``probe_samples``, ``kd_batch``,
    ``kd_temperature``, ``distinct_teachers``, ``pool_size = 16384`` (16k read as 2^14).
    """

    name = "fedrevive"
    client_statistics = True
    defaults = {
        "buffer": 1,  # spec
        "eta_g": 0.1,  # spec
        "staleness_weighting": False,  # FedBuff's default (the hybrid update already handles staleness)
        "weighting": "uniform",  # FedBuff's default
        "teachers": 8,  # c (spec)
        # spec silent: one slot per client; a fast client's consecutive models are near-duplicates
        # and would crowd out the slow clients' knowledge that distillation is meant to revive
        "distinct_teachers": True,
        "probe_temperature": 0.8,  # spec
        "probe_uploads": 2,  # spec
        "probe_samples": 256,  # spec silent: the standard error of a class share is <= 0.5/sqrt(256) = 0.03
        "t_gen": 10,  # T_gen (spec)
        "k_synth": 2,  # K_synth (spec)
        "w_bn": 0.003, "w_ce": 1.0, "w_adv": 0.1,  # spec
        "gen_lr": 1e-3,  # spec silent: the generator learning rate of DENSE and FastDFKD
        # spec silent: halfway between keeping the meta-parameters (robust to the changing set of
        # teachers) and following the adapted generator (which must progress with only 2 inner steps)
        "reptile_lr": 0.5,
        "synth_batch": 64,  # spec silent: a 16k pool then holds the last 256 synthesis rounds
        "noise_dim": 64, "gen_hidden": 256,  # spec silent: a small MLP generator, cheap next to the clients
        "pool_size": 16384,  # spec: "16k"
        "k_kd": 10,  # K_KD (spec)
        "kd_lr": 1e-4,  # spec
        "kd_batch": 64,  # spec silent: total pool samples per KD step, split evenly among the teachers
        "kd_temperature": 1.0,  # spec writes plain KL(teacher || student): temperature 1
        "s_max": 75,  # spec
        "warmup_versions": 50,  # spec: no distillation (and, as interpreted above, no synthesis) before
        "kd_start_version": 100,  # spec: synthesis only until 100
    }
    _fedbuff_keys = ("buffer", "eta_g", "staleness_weighting", "weighting")

    def __init__(self, params: torch.Tensor, ctx: AlgorithmContext, **hp):
        hp = check_params(self.name, hp, self.defaults)
        super().__init__(params, ctx, **{k: hp[k] for k in self._fedbuff_keys})
        require(ctx.model is not None and ctx.spec is not None, "algorithm",
                "FedRevive needs the model template (ctx.model, ctx.spec)")
        require(len(ctx.input_shape) > 0 and ctx.num_classes >= 1, "algorithm",
                "FedRevive needs the input shape and the number of classes (ctx.input_shape, ctx.num_classes)")
        self.hp = dict(hp)
        self.probe_temperature = float_param(hp["probe_temperature"], "probe_temperature")
        self.probe_uploads = int_param(hp["probe_uploads"], "probe_uploads")
        self.probe_samples = int_param(hp["probe_samples"], "probe_samples")
        self.t_gen = int_param(hp["t_gen"], "t_gen")
        self.k_synth = int_param(hp["k_synth"], "k_synth")
        self.w_bn = float_param(hp["w_bn"], "w_bn", lo_open=False)
        self.w_ce = float_param(hp["w_ce"], "w_ce", lo_open=False)
        self.w_adv = float_param(hp["w_adv"], "w_adv", lo_open=False)
        self.gen_lr = float_param(hp["gen_lr"], "gen_lr")
        self.reptile_lr = float_param(hp["reptile_lr"], "reptile_lr", 0.0, 1.0)
        self.synth_batch = int_param(hp["synth_batch"], "synth_batch")
        self.pool_size = int_param(hp["pool_size"], "pool_size")
        self.k_kd = int_param(hp["k_kd"], "k_kd")
        self.kd_lr = float_param(hp["kd_lr"], "kd_lr")
        self.kd_batch = int_param(hp["kd_batch"], "kd_batch")
        self.kd_temperature = float_param(hp["kd_temperature"], "kd_temperature")
        self.s_max = float_param(hp["s_max"], "s_max")
        self.warmup_versions = int_param(hp["warmup_versions"], "warmup_versions", 0)
        self.kd_start_version = int_param(hp["kd_start_version"], "kd_start_version", 0)
        self.teachers = TeacherBuffer(int_param(hp["teachers"], "teachers"), bool(hp["distinct_teachers"]))
        C, n = int(ctx.num_classes), int(ctx.n_clients)
        self.num_classes = C
        self.proportion_sum = torch.zeros(n, C, dtype=torch.float64)
        self.probe_count = torch.zeros(n, dtype=torch.int64)
        # seeded initialisation on the CPU; fork_rng restores the CPU generator, and no CUDA
        # generator is touched (torch.manual_seed would reseed those too)
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seeded_generator(ctx.seed, "fedrevive/init").initial_seed())
            self.generator = ClassConditionalGenerator(ctx.input_shape, C, int_param(hp["noise_dim"], "noise_dim"),
                                                       int_param(hp["gen_hidden"], "gen_hidden"))
        self.generator.to(ctx.device)
        self.rng = {"probe": seeded_generator(ctx.seed, "fedrevive/probe"),
                    "synth": seeded_generator(ctx.seed, "fedrevive/synth"),
                    "kd": seeded_generator(ctx.seed, "fedrevive/kd")}
        # synthetic pool: sample j (0-based, in order of creation) lives in slot j % pool_size
        self.pool_x: torch.Tensor | None = None
        self.pool_y: torch.Tensor | None = None
        self.pool_total = 0
        self.kd_cache: tuple[int, torch.Tensor] | None = None
        self.cost.update({"probe_seconds": 0.0, "probes": 0, "synthesis_seconds": 0.0, "syntheses": 0,
                          "distillation_seconds": 0.0, "distillations": 0, "kd_cache_hits": 0,
                          "kd_skipped_warmup": 0, "kd_skipped_beta0": 0, "beta_sum": 0.0, "hybrid_arrivals": 0,
                          "synthesis_loss_last": None})

    # ------------------------------------------------------------------ pieces
    @property
    def pool_len(self) -> int:
        return min(self.pool_total, self.pool_size)

    def proportions(self, client: int) -> torch.Tensor:
        """Client's class-proportion estimate (uniform before its first upload)."""
        k = int(self.probe_count[client])
        if k == 0:
            return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=torch.float64)
        return self.proportion_sum[client] / k

    def _teacher_proportions(self) -> torch.Tensor:
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
        """One generator round: ``k_synth`` Adam steps on a clone, Reptile update, pool append."""
        ctx = self.ctx
        teachers = self.teachers.entries
        props = self._teacher_proportions()
        fast = copy.deepcopy(self.generator)
        opt = torch.optim.Adam(fast.parameters(), lr=self.gen_lr)
        student = self.params.detach()
        x = y = None
        for _ in range(self.k_synth):
            z, y = self.generator.sample_inputs(self.synth_batch, self.rng["synth"], ctx.device)
            x = fast(z, y)
            logits, l_bn, n_bn = [], 0.0, 0
            for e in teachers:
                out, stats = feature_statistics(ctx.model, ctx.spec, e["params"], x)
                logits.append(out)
                if e["stats"]:
                    l_bn = l_bn + feature_matching_loss(stats, e["stats"])
                    n_bn += 1
            l_bn = l_bn / max(n_bn, 1)
            w = teacher_class_weights(props, y)  # (B, J)
            ens = (torch.stack(logits, 1) * w.unsqueeze(-1)).sum(1)
            l_ce = F.cross_entropy(ens, y)
            l_adv = -temperature_kl(flat_forward(ctx.model, ctx.spec, student, x), ens, 1.0)
            loss = self.w_bn * l_bn + self.w_ce * l_ce + self.w_adv * l_adv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.cost["synthesis_loss_last"] = [float(l_bn.detach()) if torch.is_tensor(l_bn) else float(l_bn),
                                               float(l_ce.detach()), float(l_adv.detach())]
        reptile_step(self.generator.parameters(), fast.parameters(), self.reptile_lr)
        self._pool_append(x.detach(), y.detach())

    def delta_kd(self) -> torch.Tensor:
        """``student - w`` after ``k_kd`` Adam steps of multi-teacher KL on the pool (cached per version)."""
        if self.kd_cache is not None and self.kd_cache[0] == self.version:
            self.cost["kd_cache_hits"] += 1
            return self.kd_cache[1]
        ctx = self.ctx
        teachers = self.teachers.entries
        per = max(1, self.kd_batch // len(teachers))
        n = self.pool_len
        px, py = self.pool_x[:n], self.pool_y[:n]
        props = [self.proportions(c) for c in self.teachers.clients()]
        J, K = len(teachers), self.k_kd
        # all K steps' samples at once: one class-stratified draw and one forward pass per teacher
        idx = torch.stack([sample_by_class(py, p, K * per, self.rng["kd"]).view(K, per) for p in props], 1)
        idx = idx.to(px.device)  # (K, J, per)
        with torch.no_grad():
            t_all = torch.stack([logits_in_chunks(ctx.model, ctx.spec, e["params"], px[idx[:, j].reshape(-1)])
                                 for j, e in enumerate(teachers)])  # (J, K * per, C)
        t_all = t_all.view(J, K, per, -1).transpose(0, 1).reshape(K, J * per, -1)
        w = self.params.detach()
        s = w.clone().requires_grad_(True)
        opt = torch.optim.Adam([s], lr=self.kd_lr)
        for k in range(K):
            x = px[idx[k].reshape(-1)]  # teacher-major, matching t_all[k]
            loss = temperature_kl(flat_forward(ctx.model, ctx.spec, s, x), t_all[k], self.kd_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        d = (s.detach() - w).clone()
        self.kd_cache = (self.version, d)
        self.cost["distillations"] += 1
        return d

    # ------------------------------------------------------------------ the algorithm
    def on_arrival(self, a: Arrival) -> None:
        t0 = time.perf_counter()
        ctx, i = self.ctx, int(a.client)
        tau = self.staleness(a)
        local = a.start + a.delta
        if int(self.probe_count[i]) < self.probe_uploads:
            t = time.perf_counter()
            p = probe_class_proportions(ctx.model, ctx.spec, local, ctx.input_shape, self.probe_samples,
                                        self.probe_temperature, self.rng["probe"], ctx.device)
            self.proportion_sum[i] += p.double().cpu()
            self.probe_count[i] += 1
            self.cost["probes"] += 1
            self.cost["probe_seconds"] += time.perf_counter() - t
        self.teachers.add(i, local, a.extras.get("activation_stats"))

        d_kd, beta = None, 0.0
        if self.version < self.kd_start_version or self.pool_len == 0:
            self.cost["kd_skipped_warmup"] += 1  # warm-up (or nothing synthesised yet)
        else:
            beta = staleness_beta(tau, self.s_max)
            if beta > 0.0:
                t = time.perf_counter()
                d_kd = self.delta_kd()
                self.cost["distillation_seconds"] += time.perf_counter() - t
            else:
                self.cost["kd_skipped_beta0"] += 1
            self.cost["beta_sum"] += beta
            self.cost["hybrid_arrivals"] += 1
        w = self.weights[i]
        if self.staleness_weighting:
            w = w / (1.0 + tau) ** 0.5
        self.acc = self.acc + w * hybrid_delta(a.delta, d_kd, beta)
        self.count += 1
        v = self.version
        if self.count >= self.buffer_size:
            self.flush()
        if self.version != v and self.version >= self.warmup_versions and self.version % self.t_gen == 0:
            t = time.perf_counter()
            self.synthesize()
            self.cost["syntheses"] += 1
            self.cost["synthesis_seconds"] += time.perf_counter() - t
        self.cost["arrivals"] += 1
        self.cost["server_seconds"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ checkpoints and costs
    def state_dict(self) -> dict[str, Any]:
        n = self.pool_len
        return {**super().state_dict(), "teachers": self.teachers.state_dict(),
                "proportion_sum": self.proportion_sum, "probe_count": self.probe_count,
                "generator": {k: v.clone() for k, v in self.generator.state_dict().items()},
                "rng": {k: g.get_state() for k, g in self.rng.items()},
                "pool_x": None if self.pool_x is None else self.pool_x[:n].clone(),
                "pool_y": None if self.pool_y is None else self.pool_y[:n].clone(),
                "pool_total": self.pool_total, "kd_cache": self.kd_cache}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        super().load_state_dict(d)
        dev = self.params.device
        self.teachers.load_state_dict(d["teachers"], dev)
        self.proportion_sum = d["proportion_sum"].cpu().clone()
        self.probe_count = d["probe_count"].cpu().clone()
        self.generator.load_state_dict(d["generator"])
        for k, g in self.rng.items():
            g.set_state(d["rng"][k])
        self.pool_x = None if d["pool_x"] is None else d["pool_x"].to(dev).clone()
        self.pool_y = None if d["pool_y"] is None else d["pool_y"].to(dev).clone()
        self.pool_total = int(d["pool_total"])
        kc = d["kd_cache"]
        self.kd_cache = None if kc is None else (int(kc[0]), kc[1].to(dev))

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
        # like FedEcho, the teachers x_i = w_start + delta are rebuilt from the start checkpoints the
        # engine keeps for the tasks in flight (at most m); clients uploading x_i would avoid them
        c["memory_checkpoints_bytes"] = int(self.ctx.concurrency) * int(self.ctx.spec.numel) * 4
        c["memory_teacher_buffer_bytes"] = self.teachers.nbytes()
        c["memory_pool_bytes"] = 0 if self.pool_x is None else tensor_bytes(self.pool_x) + tensor_bytes(self.pool_y)
        c["memory_generator_bytes"] = gen_bytes
        # transient during a synthesis round: the fast clone and its two Adam moments
        c["memory_generator_peak_extra_bytes"] = 3 * gen_bytes
        c["memory_class_proportions_bytes"] = tensor_bytes(self.proportion_sum) + tensor_bytes(self.probe_count)
        c["memory_kd_cache_bytes"] = 0 if self.kd_cache is None else tensor_bytes(self.kd_cache[1])
        c["memory_buffer_bytes"] = tensor_bytes(self.acc)
        c["memory_total_bytes"] = sum(c[k] for k in (
            "memory_checkpoints_bytes", "memory_teacher_buffer_bytes", "memory_pool_bytes", "memory_generator_bytes",
            "memory_class_proportions_bytes", "memory_kd_cache_bytes", "memory_buffer_bytes"))
        return c
