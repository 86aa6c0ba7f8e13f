"""Replica-batched training: ``R`` independent trace replays in one process, in lockstep.

A study runs the same kind of replay many times: other seeds, other routings (arms), other
learning rates. Each replay alone is a long chain of tiny steps (one minibatch of 13-32 samples
through a small MLP per arrival) whose cost is mostly fixed per-operation overhead, not
arithmetic. :class:`ReplicaTrainer` runs ``R`` of them side by side: the ``k``-th arrival of every
replica is handled in the same step, with one batched forward pass (``torch.func.vmap`` of
``functional_call``) and one backward pass for all the local updates
(:func:`aflqueue.fl.local.train_rows`) and one tensor operation for all the server updates, so
the overhead is paid once per step instead of once per replica.

**What each replica keeps.** Its own trace (routing, concurrency, schedule), data split, initial
model, seed (so its tasks' minibatches are the ones :func:`aflqueue.fl.local.task_batches` gives
the serial run), learning rate, batch size, algorithm parameters, budget and evaluation grid,
and its own :class:`~aflqueue.fl.engine.TrainResult`, built as
:class:`~aflqueue.fl.engine.TraceTrainer` builds it (curves, per-arrival log, final metrics,
``stopped_by``, divergence, costs; ``meta["execution"] = "replica-batched(R=..)"``, and
``wall_time`` is the replica's share of the batch's, in proportion to its arrivals). Each
replica's setup *is* a ``TraceTrainer`` (constructed, never run), so its budget, validation and
schedule are the engine's own.

**How a step works.** The engine computes a task's update when it arrives, from a snapshot of
the model the task was sent with. Here a task's update is computed when the task is *dispatched*,
from the server model of that moment (which is what the snapshot would hold), and kept until
it arrives: the same number, computed earlier. The server model of each replica then never needs
a snapshot, and at step ``k`` every replica (1) adds the update of its ``k``-th arrival to its
model (:data:`BATCHABLE_ALGORITHMS` only: the updates they apply are a fixed coefficient, known
at dispatch, times the task's delta), (2) stops if its model became non-finite (as the engine
does: the log ends with that arrival, the last evaluation is of the non-finite model), (3)
computes the update of the task it dispatches next, if that task arrives within the replica's
budget. Tasks in flight are held as ``coefficient x delta`` in one tensor of shape
``(sum_r m_r, P)``: a dispatched task takes the row its arrival freed. Replicas that finish or
diverge leave the batch (the step tensors shrink), so a replica that stops early costs nothing
afterwards.

**Memory** (bytes, ``s`` = 4 for float32): ``s * P * (sum_r m_r + (2 + a) R + 2 max(R, max_rows))``:
the tasks in flight, the ``R`` server models and a gather buffer, FedBuff's buffers (``a`` = 1 if
any replica runs FedBuff, else 0), and the gradients of one step; plus the data sets. The engine
holds up to ``m`` snapshots per run, so this is about the memory of ``R`` serial runs side by side
(for the paper preset's digits MLP, ``P = 55,210``: 22 MB per replica at ``m = 100``).
:func:`memory_bytes` computes it and the trainer refuses a batch above ``max_memory_gb``.

**Agreement with the serial engine.** Identical: the schedule (logs, versions, staleness, the
evaluation grid, ``stopped_by``, budgets), the minibatches, the server arithmetic (the same
operations in the same order, per replica), the evaluation (the engine's
:func:`~aflqueue.fl.local.evaluate` on the replica's model). Different: the local gradients come
from batched matrix products (``bmm``, with ``nn.Linear`` weights held transposed) instead of
the serial path's ``addmm``/``mm``, which round differently (1-5% of a float32 gradient's
entries differ in their last bit; about 1e-16 relative in float64), and training carries the
difference forward. So a replica agrees with the same run done alone to the tolerances of
:mod:`validation.agreement` (in the source repository) (float64: 1e-9; float32: 1e-4 for the smooth MLP case), not bit for
bit; ``tests/fl/test_replicas.py`` checks both. A run that is chaotic in float32 (measured: the
digits MLP at the top learning rate of the paper's grid, 0.3) parts from its serial twin as it
parts under any other rounding: the engine's own batched mode parts from its serial mode by as
much (test losses 40% apart); such runs agree in distribution, not trajectory by trajectory.

**Determinism.** A batch gives the same bits when run again. Minibatches of different sizes
(clients with fewer samples than the batch size) are padded to one size ``B`` per batch, the
largest any replica of the batch can draw, with weight 0 on the padding; a replica's gradient
then does not depend on which other replicas share the step (each ``bmm`` matrix is its own
product), and on the CPU it does not depend on ``B`` either (measured: padding with zero-weight
rows leaves MKL's results unchanged), so a replica's result is the same alone or in any batch
(tested on the CPU). On CUDA, cuBLAS may choose its kernels by the batch shape: there results
are deterministic for a given batch but may depend on its composition
(``validation/bench_replicas.py --device cuda`` reports both).

**Speed** (``validation/bench_replicas.py``, one CPU core): the paper preset's runs cost 2.1-2.7x
fewer core-seconds at ``R`` = 10-32 than one run at a time (digits, IID; 2.2-2.8x at the whole
budget; MNIST-1D 1.8-2.4x); splits whose minibatches are mostly padded cost more (digits with
Dirichlet(0.2): 1.8-2.0x). What is left is mostly memory traffic: every step passes over
``(R, P)`` tensors (models, gradients, tasks in flight) that no longer fit in the caches, where
a serial run's ``(P,)`` vectors do; the batched products themselves run 2-3x slower on cold
operands than warm. ``R = 1`` is slower than the serial engine (0.7x), but :mod:`aflqueue.replicated`
still batches a lone batchable run, so that no result depends on how a job list was split.

What is not supported (a :class:`~aflqueue.errors.ValidationError` says so): other algorithms
(their updates depend on the server state at arrival), replicas of different architectures or
local optimiser settings (steps, optimiser, weight decay, Adam parameters) in one batch,
callbacks, checkpoints and resume (a batch is the unit of work: it is rerun whole).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ValidationError, require
from ..sim.trace import Trace
from .algorithms import algorithm_class, make_algorithm
from .engine import EngineSettings, TraceTrainer, TrainResult, evaluation_points, resolve_device
from .local import ClientData, LocalConfig, ParamSpec, evaluate, linear_weights, task_batches, to_layout, train_rows

__all__ = ["Replica", "ReplicaTrainer", "BATCHABLE_ALGORITHMS", "memory_bytes", "batch_key"]

#: Algorithms whose update at an arrival is a coefficient known at dispatch times the task's
#: delta (FedBuff: into its buffer), which is what lets the trainer compute it at dispatch.
BATCHABLE_ALGORITHMS = ("generalized-asyncsgd", "asyncsgd", "fedbuff")


@dataclass(frozen=True)
class Replica:
    """One replay: the arguments :class:`~aflqueue.fl.engine.TraceTrainer` takes for it.

    Attributes:
        model: initial model (its parameters are read, not modified; moved to the device).
        data: federated data (``clients``, ``test``, ``num_classes``, ``input_shape``); replicas
            given the same object share one copy on the device.
        trace: the schedule (it owns the routing and concurrency).
        algorithm: one of :data:`BATCHABLE_ALGORITHMS`; algorithm_params: its hyper-parameters.
        local: local training (per replica: ``lr`` and ``batch_size``; the rest must match
            across the batch).
        settings: budget, evaluation grid and seed (``checkpoint_every``, ``batched`` and
            ``max_batch`` do not apply).
        meta: entries copied into the result's ``meta``.
    """

    model: torch.nn.Module
    data: Any
    trace: Trace
    algorithm: str = "generalized-asyncsgd"
    algorithm_params: Mapping[str, Any] = field(default_factory=dict)
    local: LocalConfig = LocalConfig()
    settings: EngineSettings = EngineSettings()
    meta: Mapping[str, Any] = field(default_factory=dict)


def batch_key(model: torch.nn.Module, local: LocalConfig, algorithm: Any) -> tuple | None:
    """What replicas must share to run in one batch (architecture, parameter dtype, local
    optimiser settings but ``lr`` and ``batch_size``), or None if ``algorithm`` cannot be batched."""
    name = algorithm.name if isinstance(algorithm, type) else str(algorithm).strip().lower().replace("_", "-")
    if name not in BATCHABLE_ALGORITHMS:
        return None
    if isinstance(algorithm, type) and algorithm is not algorithm_class(name):
        return None  # a subclass may change the update rule
    dtypes = {p.dtype for p in model.parameters()}
    spec = ParamSpec(model)
    return (str(model), tuple(spec.names), tuple(spec.shapes), tuple(sorted(map(str, dtypes))), local.steps,
            local.optimizer, local.weight_decay, tuple(local.betas), local.eps)


def memory_bytes(parameters: int, concurrencies: Sequence[int], fedbuff: bool = False, element_size: int = 4,
                 max_rows: int = 64) -> int:
    """Bytes of model-sized tensors a batch holds (module docstring, Memory): ``parameters`` =
    ``P``, ``concurrencies`` = each replica's ``m``, ``fedbuff``: whether any replica runs FedBuff."""
    R = len(concurrencies)
    rows = int(sum(concurrencies)) + (3 if fedbuff else 2) * R + 2 * max(R, max_rows)
    return int(element_size) * int(parameters) * rows


@dataclass
class _Plan:
    """One replica's schedule, precomputed from its trace (numpy; index ``k - 1`` for arrival ``k``)."""

    U: int
    m: int
    stopped_by: str
    times: np.ndarray  # (U,) completion time of arrival k
    slot: np.ndarray  # (U,) row (local) of the task arriving at k; the task dispatched after it reuses it
    need: np.ndarray  # (U,) bool: the task dispatched after arrival k arrives within the budget
    coef: np.ndarray  # (T,) float64 coefficient of each task's delta (by task id)
    log: dict[str, np.ndarray]
    eval_after: set  # arrivals k evaluated after they are applied
    eval_before: dict  # k -> grid times evaluated before arrival k
    eval_post: list  # grid times evaluated after the last arrival
    version: np.ndarray  # (U + 1,) server version after arrival k (version[0] = 0)
    flush: int  # FedBuff buffer size (1 for the others: every arrival makes a version)


def _plan(tt: TraceTrainer, alg, fedbuff: bool) -> _Plan:
    tr, U, m = tt.trace, tt.U, tt.trace.concurrency
    order = np.asarray(tt.order[:U], dtype=np.int64)
    times = np.asarray(tr.completion_time[order], dtype=np.float64)
    T = len(tr.client)
    k = np.arange(1, U + 1)
    flush = alg.buffer_size if fedbuff else 1
    version = np.concatenate([[0], k // flush]).astype(np.int64)
    # start version of each task: 0 for the first m, else the version after the arrival it followed
    start = np.zeros(T, dtype=np.int64)
    later = np.arange(m, T)
    dispatched_after = later - m + 1  # arrival after which task m + j - 1 was dispatched
    ok = dispatched_after <= U
    start[later[ok]] = version[dispatched_after[ok]]
    applied = np.asarray(tr.applied_version, dtype=np.int64)
    # staleness as the engine logs it: versions created between the task's start and its arrival
    tau = version[:-1] - start[order]
    # rows: the first m tasks hold rows 0..m-1; the task dispatched after arrival k takes the row
    # that arrival frees
    row = np.full(T, -1, dtype=np.int64)
    row[:m] = np.arange(m)
    for j in range(U):  # a recurrence: each row is reused in turn
        nxt = m + j
        if nxt < T:
            row[nxt] = row[order[j]]
    slot = row[order]
    nxt = m + np.arange(U)
    need = np.zeros(U, dtype=bool)
    inside = nxt < T
    need[inside] = (applied[nxt[inside]] >= 1) & (applied[nxt[inside]] <= U)
    # the coefficient the server multiplies the task's delta with, in the algorithm's own
    # float64 arithmetic: eta_g / (n p_i) (Generalized AsyncSGD), or FedBuff's buffer weight
    w = np.asarray(alg.weights, dtype=np.float64)[np.asarray(tr.client, dtype=np.int64)]
    if fedbuff:
        coef = w.copy()
        if alg.staleness_weighting:
            arr = applied[order]  # arrival index of each applied task (= k)
            tau_task = np.zeros(T, dtype=np.int64)
            tau_task[order] = version[arr - 1] - start[order]
            coef = coef / np.sqrt(1.0 + tau_task)
    else:
        coef = alg.eta_g * w
    log = {"arrival": k, "time": times, "client": np.asarray(tr.client[order], dtype=np.int64),
           "relative_delay": np.asarray(tt.relative_delay[order], dtype=np.int64), "staleness": tau,
           "model_version": version[1:]}
    after, grid = evaluation_points(tt.settings, U, float(times[U - 1]))
    before: dict[int, list[float]] = {}
    post = []
    for g in grid:  # the engine evaluates grid time g before the first arrival later than g
        kk = int(np.searchsorted(times, g, side="right")) + 1
        if kk <= U:
            before.setdefault(kk, []).append(g)
        else:
            post.append(g)
    return _Plan(U=U, m=m, stopped_by=tt.stopped_by, times=times, slot=slot, need=need, coef=coef, log=log,
                 eval_after=after, eval_before=before, eval_post=post, version=version, flush=flush)


class ReplicaTrainer:
    """Runs ``replicas`` in lockstep on one device (module docstring).

    Args:
        replicas: the replays (at least one).
        device: ``"auto"``, ``"cpu"``, ``"cuda[:k]"`` (one for the whole batch).
        max_rows: tasks per ``vmap`` call when computing the first ``m`` tasks of every replica.
        max_memory_gb: refuse a batch whose model-sized tensors (:func:`memory_bytes`) exceed this.
        progress: show a progress bar over the lockstep steps.
    """

    def __init__(self, replicas: Sequence[Replica], *, device: str | torch.device = "auto", max_rows: int = 64,
                 max_memory_gb: float = 4.0, progress: bool = False):
        reps = list(replicas)
        require(len(reps) >= 1, "replicas", "needs at least one replica")
        require(isinstance(max_rows, int) and max_rows >= 1, "max_rows", f"must be an integer >= 1 (got {max_rows!r})")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.replicas = reps
        self.max_rows = max_rows
        self.progress = progress
        keys = []
        for j, rep in enumerate(reps):
            key = batch_key(rep.model, rep.local, rep.algorithm)
            if key is None:
                raise ValidationError(f"replicas[{j}].algorithm",
                                      f"{getattr(rep.algorithm, 'name', rep.algorithm)!r} cannot be replica-batched; "
                                      f"allowed: {', '.join(BATCHABLE_ALGORITHMS)} (run it with TraceTrainer)")
            keys.append(key)
        for j, key in enumerate(keys):
            require(key == keys[0], f"replicas[{j}]",
                    "differs from replicas[0] in architecture, parameter dtype or local optimiser settings "
                    "(steps, optimizer, weight_decay, betas, eps); only lr and batch_size may differ in a batch")
        # each replica's setup is the engine's own (validation, budget, schedule)
        self.trainers = [TraceTrainer(model=rep.model, data=rep.data, trace=rep.trace,
                                      algorithm=rep.algorithm, algorithm_params=dict(rep.algorithm_params),
                                      local=rep.local, settings=rep.settings, device=self.device,
                                      meta=dict(rep.meta)) for rep in reps]
        self.model = self.trainers[0].model
        self.spec = self.trainers[0].spec
        self.names = [algorithm_class(getattr(rep.algorithm, "name", rep.algorithm)).name for rep in reps]
        self.algs = [make_algorithm(name, tt.spec.flatten(tt.model), tt.ctx, **dict(rep.algorithm_params))
                     for name, tt, rep in zip(self.names, self.trainers, reps)]
        self.fedbuff = [name == "fedbuff" for name in self.names]
        self.plans = [_plan(tt, alg, fb) for tt, alg, fb in zip(self.trainers, self.algs, self.fedbuff)]
        self.dtype = next(self.model.parameters()).dtype
        P = self.spec.numel
        need = memory_bytes(P, [p.m for p in self.plans], any(self.fedbuff),
                            torch.empty(0, dtype=self.dtype).element_size(), max_rows)
        require(need <= max_memory_gb * 2**30, "max_memory_gb",
                f"{len(reps)} replicas of {P:,} parameters with {sum(p.m for p in self.plans):,} tasks in flight need "
                f"about {need / 2**30:.2f} GB (> {max_memory_gb:g} GB); run fewer replicas per batch")
        # one copy of each distinct data set on the device; clients numbered across them
        groups: dict[int, int] = {}
        clients: list = []
        self.client_base = []
        for rep in reps:
            if id(rep.data) not in groups:
                groups[id(rep.data)] = len(clients)
                clients += list(rep.data.clients)
            self.client_base.append(groups[id(rep.data)])
        shapes = {(tuple(c.x.shape[1:]), c.x.dtype) for c in clients}
        require(len(shapes) == 1, "replicas.data",
                f"all replicas' samples must have one shape and dtype (got {shapes})")
        require(next(iter(shapes))[1] == self.dtype, "replicas.data",
                f"samples are {next(iter(shapes))[1]} but the model's parameters are {self.dtype}")
        self.data = ClientData(clients, self.device)
        # minibatch indices are drawn on the host (task_batches), then moved in one copy per step
        self.index_data = self.data if self.device.type == "cpu" else ClientData(clients, torch.device("cpu"))
        caps = [min(rep.local.batch_size, int(max(len(c.x) for c in rep.data.clients))) for rep in reps]
        self.B = max(caps)
        self.steps = reps[0].local.steps
        # the trainer's models are flat vectors with every nn.Linear weight stored transposed, the
        # layout the batched products read (aflqueue.fl.local.train_rows); the server arithmetic is
        # elementwise and does not see it; evaluations and results use the standard layout
        self.transposed = linear_weights(self.model)
        self.clients = [np.asarray(tt.trace.client, dtype=np.int64) for tt in self.trainers]
        self.seeds = [int(tt.settings.seed) for tt in self.trainers]
        self.locals = [rep.local for rep in reps]
        self.lrs = np.array([rep.local.lr for rep in reps], dtype=np.float64)

    # ------------------------------------------------------------------ main loop
    def run(self) -> list[TrainResult]:
        """Train every replica to the end of its budget (or its divergence); one result each, in order."""
        t_wall = time.perf_counter()
        R, P, dev = len(self.replicas), self.spec.numel, self.device
        plans = self.plans
        base = np.concatenate([[0], np.cumsum([p.m for p in plans])]).astype(np.int64)
        # coefficient x delta of the tasks in flight; a row is written when its task is dispatched,
        # before any read, so it needs no initial value
        store = torch.empty(int(base[-1]), P, dtype=self.dtype, device=dev)
        w0 = to_layout(self.spec, torch.stack([tt.spec.flatten(tt.model).to(device=dev, dtype=self.dtype)
                                               for tt in self.trainers]), self.transposed)
        self._reset_records()
        self._dispatch_initial(store, w0, base)
        W = w0  # the server models, one row per replica still running
        acc = torch.zeros_like(W) if any(self.fedbuff) else None
        K = max(p.U for p in plans)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm  # lazy: tqdm

            bar = tqdm(total=K, desc=f"train {R} replicas", unit="step")
        slots, need, before, after, ends = self._schedule(base, K)
        first_task = np.array([p.m - 1 for p in plans], dtype=np.int64)  # + k: the task dispatched after arrival k
        act = np.arange(R)  # replica of each row of W
        row = {r: r for r in range(R)}
        for k in range(1, K + 1):
            for r, g in before.get(k, ()):  # grid times before this arrival: the model as it stood
                if r in row:
                    self._evaluate(r, W[row[r]], g, k - 1)
            # (1) the server step of every replica
            t0 = time.perf_counter()
            self._server_step(W, acc, store, torch.from_numpy(slots[act, k - 1]).to(dev), act, k)
            self.server_seconds += time.perf_counter() - t0
            # (2) a non-finite model stays non-finite: that replica stops at this arrival
            leaving = set()
            for i in self._non_finite_rows(W):
                r = int(act[i])
                self.diverged[r], self.end[r] = k, k
                self._evaluate(r, W[i], float(plans[r].times[k - 1]), k)
                self._keep_final(r, W[i], None if acc is None else acc[i])
                leaving.add(i)
            # (3) the next task of every replica still running, if it arrives within the budget
            pos = np.flatnonzero(need[act, k - 1])
            if leaving:
                pos = np.array([i for i in pos if i not in leaving], dtype=np.int64)
            if pos.size:
                starts = W if pos.size == len(act) else W.index_select(0, torch.from_numpy(pos).to(dev))
                reps = act[pos]
                self._dispatch(store, starts, reps, first_task[reps] + k, slots[reps, k - 1])
            for r in after.get(k, ()):
                if r in row and row[r] not in leaving:
                    self._evaluate(r, W[row[r]], float(plans[r].times[k - 1]), k)
            for r in ends.get(k, ()):  # the end of these replicas' budgets
                if r in row and row[r] not in leaving:
                    i = row[r]
                    self.end[r] = k
                    for g in plans[r].eval_post:
                        self._evaluate(r, W[i], g, k)
                    self._keep_final(r, W[i], None if acc is None else acc[i])
                    leaving.add(i)
            if leaving:  # the batch shrinks: finished replicas cost nothing from here on
                keep = np.array([i for i in range(len(act)) if i not in leaving], dtype=np.int64)
                act = act[keep]
                row = {int(r): i for i, r in enumerate(act)}
                if not len(act):
                    break
                idx = torch.from_numpy(keep).to(dev)
                W = W.index_select(0, idx)
                acc = None if acc is None else acc.index_select(0, idx)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t_wall
        total = max(sum(self.end), 1)
        return [self._result(r, wall * self.end[r] / total, self.server_seconds * self.end[r] / total, R)
                for r in range(R)]

    # ------------------------------------------------------------------ pieces
    def _reset_records(self) -> None:
        """Empty per-replica records (curves, arrivals applied, divergence, final state) and
        server time for a run."""
        R = len(self.replicas)
        self.curves = [{"time": [], "updates": [], "model_version": [], "test_accuracy": [], "test_loss": []}
                       for _ in range(R)]
        self.end = [0] * R  # arrivals applied
        self.diverged = [None] * R
        self.server_seconds = 0.0
        self.final_state: list[dict[str, torch.Tensor]] = [{} for _ in range(R)]
        self._buffers: dict[str, torch.Tensor] = {}

    def _dispatch_initial(self, store: torch.Tensor, w0: torch.Tensor, base: np.ndarray) -> None:
        """The first ``m`` tasks of every replica, from its initial model (row ``r`` of ``w0``),
        into ``store`` rows ``base[r] + task``, at most ``max_rows`` tasks per call."""
        P = self.spec.numel
        for r, p in enumerate(self.plans):
            us = np.array([u for u in range(p.m) if self._arrives(r, u)], dtype=np.int64)
            for a in range(0, len(us), self.max_rows):
                chunk = us[a: a + self.max_rows]
                rs = np.full(len(chunk), r, dtype=np.int64)
                self._dispatch(store, w0[r].expand(len(chunk), P), rs, chunk, base[r] + chunk)

    def _schedule(self, base: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray, dict, dict, dict]:
        """The schedule of every replica as ``(R, K)`` arrays (the ``store`` row of the ``k``-th
        arrival, whether the task dispatched after it is needed) and its evaluations as events by
        arrival: grid times before it ``{k: [(r, time)]}``, evaluations after it ``{k: [r]}``, and
        the ends of the budgets ``{k: [r]}``."""
        R = len(self.plans)
        slots = np.full((R, K), -1, dtype=np.int64)
        need = np.zeros((R, K), dtype=bool)
        before: dict[int, list[tuple[int, float]]] = {}
        after: dict[int, list[int]] = {}
        ends: dict[int, list[int]] = {}
        for r, p in enumerate(self.plans):
            slots[r, :p.U] = base[r] + p.slot
            need[r, :p.U] = p.need
            for k, gs in p.eval_before.items():
                before.setdefault(k, []).extend((r, g) for g in gs)
            for k in p.eval_after:
                after.setdefault(k, []).append(r)
            ends.setdefault(p.U, []).append(r)
        return slots, need, before, after, ends

    def _arrives(self, r: int, u: int) -> bool:
        a = int(self.trainers[r].trace.applied_version[u])
        return 1 <= a <= self.plans[r].U

    @staticmethod
    def _non_finite_rows(W: torch.Tensor) -> list[int]:
        """Rows of ``W`` with a non-finite entry. Such a row has a non-finite sum (one cheap
        reduction; ``isfinite(W).all(1)`` costs 40x more); a non-finite sum, which an overflow of
        finite entries can also give, is confirmed entry by entry."""
        s = W.sum(dim=1)
        if bool(torch.isfinite(s).all()):
            return []
        return [i for i in torch.nonzero(~torch.isfinite(s)).flatten().tolist() if not bool(torch.isfinite(W[i]).all())]

    def _workspace(self, name: str, rows: int) -> torch.Tensor:
        """A reused ``(rows, P)`` buffer (allocating model-sized temporaries every step costs
        page faults that outweigh the arithmetic)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows:
            buf = torch.empty(max(rows, len(self.replicas)), self.spec.numel, dtype=self.dtype, device=self.device)
            self._buffers[name] = buf
        return buf[:rows]

    def _server_step(self, W, acc, store, rows, act, k) -> None:
        """Arrival ``k`` of every replica in ``act``: the algorithms' own arithmetic, row-wise."""
        if acc is None:  # w <- w + (eta_g / (n p_i)) delta, the coefficient applied at dispatch
            if W.device.type == "cpu":
                # row by row: two passes over (R, P) fewer than gathering first (measured 20% less
                # time for this step at R = 20); the same additions
                for i, r in enumerate(rows.tolist()):
                    W[i].add_(store[r])
            else:  # one kernel for all rows
                W.add_(torch.index_select(store, 0, rows, out=self._workspace("arrival", len(act))))
            return
        contrib = torch.index_select(store, 0, rows, out=self._workspace("arrival", len(act)))
        plain = [i for i, r in enumerate(act) if not self.fedbuff[r]]
        buffered = [i for i, r in enumerate(act) if self.fedbuff[r]]
        if plain:
            ip = torch.tensor(plain, device=W.device)
            W.index_copy_(0, ip, W.index_select(0, ip) + contrib.index_select(0, ip))
        if buffered:
            ib = torch.tensor(buffered, device=W.device)
            acc.index_copy_(0, ib, acc.index_select(0, ib) + contrib.index_select(0, ib))
            full = [i for i in buffered if k % self.plans[act[i]].flush == 0]
            if full:  # FedBuff's flush: w <- w + eta_g * acc / count, empty buffer, version + 1
                fi = torch.tensor(full, device=W.device)
                eta = torch.tensor([self.algs[act[i]].eta_g for i in full], dtype=W.dtype, device=W.device)[:, None]
                cnt = torch.tensor([float(self.plans[act[i]].flush) for i in full], dtype=W.dtype,
                                   device=W.device)[:, None]
                W.index_copy_(0, fi, W.index_select(0, fi) + eta * acc.index_select(0, fi) / cnt)
                acc.index_fill_(0, fi, 0.0)

    def _dispatch(self, store, starts, reps: np.ndarray, tasks: np.ndarray, rows: np.ndarray) -> None:
        """Compute tasks ``tasks`` of replicas ``reps`` from ``starts`` (one row each) and keep
        ``coefficient x delta`` in ``store`` rows ``rows``."""
        K, B, dev = self.steps, self.B, self.device
        batches = [task_batches(self.index_data, int(self.client_base[r] + self.clients[r][u]), int(u), self.seeds[r],
                                self.locals[r]) for r, u in zip(reps.tolist(), tasks.tolist())]
        counts = torch.tensor([b.shape[1] for b in batches], dtype=torch.int64)
        # padding: a real sample of the task (finite), weight 0
        idx = torch.stack([b if b.shape[1] == B else torch.cat((b, b[:, :1].expand(K, B - b.shape[1])), dim=1)
                           for b in batches])
        coef = torch.tensor([self.plans[r].coef[u] for r, u in zip(reps.tolist(), tasks.tolist())], dtype=torch.float64)
        lr = torch.from_numpy(self.lrs[reps])
        if dev.type == "cuda":
            idx, counts = idx.pin_memory().to(dev, non_blocking=True), counts.pin_memory().to(dev, non_blocking=True)
        # the server's coefficient times the delta, as the algorithm computes it at the arrival
        train_rows(self.model, self.spec, starts, self.data, idx, counts, lr.to(self.dtype), self.locals[0],
                   transposed=self.transposed, scale=coef.to(self.dtype), into=(store, torch.from_numpy(rows).to(dev)))

    def _evaluate(self, r: int, params: torch.Tensor, when: float, k: int) -> None:
        tt = self.trainers[r]
        acc, loss = evaluate(self.model, self.spec, to_layout(self.spec, params, self.transposed, inverse=True),
                             tt.test_x, tt.test_y)
        c = self.curves[r]
        c["time"].append(float(when))
        c["updates"].append(int(k))
        c["model_version"].append(int(self.plans[r].version[k]))
        c["test_accuracy"].append(float(acc))
        c["test_loss"].append(float(loss))

    def _keep_final(self, r: int, params: torch.Tensor, acc: torch.Tensor | None) -> None:
        def standard(t):
            return to_layout(self.spec, t.detach(), self.transposed, inverse=True).clone()

        self.final_state[r] = {"params": standard(params), "acc": None if acc is None else standard(acc)}

    def params(self, r: int) -> torch.Tensor:
        """Replica ``r``'s final server model (flat ``(P,)``) after :meth:`run`."""
        return self.final_state[r]["params"]

    def _result(self, r: int, wall: float, server: float, R: int) -> TrainResult:
        p, tt, alg = self.plans[r], self.trainers[r], self.algs[r]
        end = self.end[r]
        c = self.curves[r]
        # the algorithm object reports costs as the engine's would
        alg.params = self.final_state[r]["params"]
        alg.version = int(p.version[end])
        alg.cost = {"server_seconds": server, "arrivals": end}
        if self.fedbuff[r]:
            alg.acc = self.final_state[r]["acc"]
            alg.count = end % p.flush
        log = {name: col[:end].tolist() for name, col in p.log.items()}
        return TrainResult(
            final_accuracy=c["test_accuracy"][-1] if c["test_accuracy"] else float("nan"),
            final_loss=c["test_loss"][-1] if c["test_loss"] else float("nan"),
            curves={key: list(v) for key, v in c.items()}, arrivals=int(end), simulated_time=float(p.times[end - 1]),
            log=log, costs=alg.costs(), wall_time=float(wall), routing=tt.routing.copy(),
            concurrency=int(tt.trace.concurrency),
            algorithm=getattr(self.replicas[r].algorithm, "name", self.replicas[r].algorithm),
            algorithm_params=dict(self.replicas[r].algorithm_params), complete=True,
            stopped_by="diverged" if self.diverged[r] is not None else p.stopped_by,
            diverged=self.diverged[r] is not None, diverged_at=self.diverged[r],
            meta={**tt.meta, "execution": f"replica-batched(R={R})"})
