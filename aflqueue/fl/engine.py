"""Trace-driven training: replay a simulated schedule with a real model and data.

The trace says, in simulated wall-clock order, which task arrives at the server, from which
client, and (through its dispatch) which server model it started from. The engine:

1. keeps one snapshot of the server model per model version still referenced by a task in
   flight (at most ``m`` of them), so every task starts from exactly the model it was sent;
2. computes a task's local update when it is needed, or earlier together with other tasks whose
   start models are already known (batched mode, ``torch.func.vmap``);
3. hands each arrival to the server algorithm, then dispatches the next task of the trace with
   the algorithm's current model;
4. evaluates the server model on the test set on a grid of arrivals and of simulated times,
   logs every arrival, and checkpoints everything needed to resume to an identical result.

Outputs in ``output_dir``: ``results.json`` (rewritten at every checkpoint with
``"complete": false``, final at the end), ``updates.csv`` (one row per arrival),
``checkpoint.pt`` (atomic), ``trace.npz`` (the schedule) and ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from .._results import Result, require_pandas, result_repr
from ..errors import ValidationError, check_values, require
from ..io import atomic_write, dumps_json, json_safe
from ..sim.columns import UPDATES_COLUMNS
from ..sim.trace import Trace
from .algorithms import AlgorithmContext, Arrival, make_algorithm
from .local import (ClientData, LocalConfig, ParamSpec, activation_statistics, evaluate, task_batches, train_batched,
                    train_serial)

__all__ = ["EngineSettings", "TrainResult", "TraceTrainer", "evaluation_points", "resolve_device"]

CHECKPOINT_FORMAT = 1
#: The files a run writes into its output folder.
RUN_FILES = ("results.json", "updates.csv", "checkpoint.pt", "trace.npz", "config.json")


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    d = (device or "auto").lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError("device", "CUDA requested but no CUDA device is available; use 'cpu' or 'auto'")
    try:
        return torch.device(d)
    except RuntimeError:
        raise ValidationError("device", f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:k]'") from None


@dataclass(frozen=True)
class EngineSettings:
    """How far to train and what to record.

    Attributes:
        updates: stop after this many arrivals (None: all in the trace / within the time budget).
        time_budget: stop at this simulated time (arrivals after it are not applied).
        eval_every: evaluate every this many arrivals (0: never on an arrival grid).
        eval_times: number of equally spaced simulated times in ``(0, budget]`` to evaluate at.
        checkpoint_every: arrivals between checkpoints (0: only at the end).
        batched: compute tasks with known start models together (vmap); None: on CUDA only (on CPU
            the measured speed-up was 0.9-1.2x: the work is kernel-bound and vmap saves no FLOPs).
        max_batch: largest number of tasks computed together; None: 8 on CPU (measured best for a
            small CNN: larger vmap batches spill the caches and run slower), 256 on CUDA.
        seed: base seed of the tasks' minibatches and the algorithm's randomness.
    """

    updates: int | None = None
    time_budget: float | None = None
    eval_every: int = 50
    eval_times: int = 0
    checkpoint_every: int = 500
    batched: bool | None = None
    max_batch: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.updates is not None:
            require(isinstance(self.updates, int) and self.updates >= 1, "run.updates",
                    f"must be an integer >= 1 (got {self.updates!r})")
        if self.time_budget is not None:
            require(self.time_budget > 0, "run.time_budget", f"must be > 0 (got {self.time_budget})")
        for name in ("eval_every", "eval_times", "checkpoint_every"):
            v = getattr(self, name)
            require(isinstance(v, int) and v >= 0, f"run.{name}", f"must be an integer >= 0 (got {v!r})")
        if self.max_batch is not None:
            require(isinstance(self.max_batch, int) and self.max_batch >= 1, "run.max_batch",
                    f"must be an integer >= 1 (got {self.max_batch!r})")


@dataclass(frozen=True, eq=False)
class TrainResult(Result):
    """Outcome of a training run (JSON-serialisable through :meth:`to_dict`).

    Attributes:
        final_accuracy, final_loss: test metrics of the final server model.
        curves: ``time`` (simulated), ``updates`` (arrivals), ``model_version``,
            ``test_accuracy``, ``test_loss``, lists of equal length.
        arrivals: arrivals applied; simulated_time: time of the last one.
        log: per-arrival arrays ``arrival, time, client, relative_delay, staleness, model_version``.
        costs: server algorithm overhead; wall_time: seconds; complete: False for partial results.
        stopped_by: the limit that ended the run: ``"updates"``, ``"time_budget"`` or ``"trace"``
            (the schedule ran out), or ``"diverged"``.
        diverged: True if the loss or the server model became non-finite; the run then stops at
            that arrival (``diverged_at``), and ``final_loss`` is NaN (``null`` in JSON).
        routing: ``p`` the schedule was drawn with, shape ``(n,)``; concurrency: its ``m`` (both
            from the trace, which owns them).
        algorithm: the server algorithm's name; algorithm_params: its hyper-parameters as given.
        meta: what the caller attached (data set, predictions, step size, ...).
    """

    final_accuracy: float
    final_loss: float
    curves: dict[str, list]
    arrivals: int
    simulated_time: float
    log: dict[str, list]
    costs: dict[str, Any]
    wall_time: float
    routing: np.ndarray
    concurrency: int
    algorithm: str = "unknown algorithm"
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    stopped_by: str = "updates"
    diverged: bool = False
    diverged_at: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    frame_index: ClassVar[str] = "evaluation"

    def title(self) -> str:
        return f"TrainResult ({self.algorithm}{'' if self.complete else ', partial'})"

    def __repr__(self) -> str:
        c = self.curves
        return result_repr(self.title(), [
            ("final_accuracy", self.final_accuracy), ("final_loss", self.final_loss),
            ("arrivals", self.arrivals), ("simulated_time", self.simulated_time),
            ("routing", self.routing), ("concurrency", self.concurrency),
            ("curves", f"{len(c.get('time', []))} evaluations of {', '.join(c)} (see .to_frame())"),
            ("log", f"{len(self.log.get('arrival', []))} arrivals (see .log_frame())"),
            ("wall_time", self.wall_time), ("complete", self.complete)])

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (NaN and inf become ``null``): the final metrics, the curves as
        parallel lists (``time``, ``updates``, ``test_accuracy``, ``test_loss``,
        ``model_version``), ``arrivals``, ``simulated_time``, ``costs``, ``wall_time``,
        ``arrivals_per_second``, ``complete``, ``stopped_by``, ``diverged``, ``diverged_at``,
        ``algorithm``, ``algorithm_params``, ``routing``, ``concurrency`` and the entries of
        ``meta``. This is ``results.json``."""
        return json_safe({"final_accuracy": self.final_accuracy, "final_loss": self.final_loss,
                          "time": self.curves["time"], "updates": self.curves["updates"],
                          "test_accuracy": self.curves["test_accuracy"], "test_loss": self.curves["test_loss"],
                          "model_version": self.curves["model_version"], "arrivals": self.arrivals,
                          "simulated_time": self.simulated_time, "costs": self.costs, "wall_time": self.wall_time,
                          "arrivals_per_second": self.arrivals / self.wall_time if self.wall_time > 0 else None,
                          "complete": self.complete, "stopped_by": self.stopped_by, "diverged": self.diverged,
                          "diverged_at": self.diverged_at, "algorithm": self.algorithm,
                          "algorithm_params": self.algorithm_params, "routing": self.routing,
                          "concurrency": self.concurrency, **self.meta})

    def frame_columns(self) -> dict[str, np.ndarray]:
        """The learning curves: ``time`` (simulated), ``updates`` (arrivals applied),
        ``model_version``, ``test_accuracy``, ``test_loss``, one row per evaluation."""
        return {k: np.asarray(v) for k, v in self.curves.items()}

    def log_frame(self) -> Any:
        """The per-arrival log as a :class:`pandas.DataFrame` (the rows of ``updates.csv``): index
        ``arrival`` (1, 2, ...), columns ``time``, ``client``, ``relative_delay`` (arrivals between the
        task's dispatch and its own), ``staleness`` (server model versions created between the
        task's start and its arrival: equal to ``relative_delay`` when every arrival makes a new
        version, smaller for buffered algorithms such as FedBuff) and ``model_version`` (after the
        arrival). Needs pandas."""
        pd = require_pandas("TrainResult.log_frame()")
        log = dict(self.log)
        arrival = log.pop("arrival", [])
        return pd.DataFrame(log, index=pd.Index(arrival, name="arrival"))


@dataclass
class TrainerState:
    """Everything a run carries from one arrival to the next (and into a checkpoint).

    Attributes:
        alg: the server algorithm (owns the server model and its version).
        k: arrivals applied so far; time: simulated time of the last one.
        snapshots: server model (flat, shape ``(P,)``) per version still referenced by a task in
            flight; refs: how many in-flight tasks reference each version.
        start_version: version each dispatched, not yet applied task started from.
        pending: deltas (shape ``(P,)``) computed ahead of their arrival (batched mode).
        log: one row per arrival ``(k, time, client, relative_delay, staleness, model_version)``.
        curves: evaluation curves (``time``, ``updates``, ``model_version``, ``test_accuracy``,
            ``test_loss``); wall: seconds of training so far (across resumes).
    """

    alg: Any
    k: int
    time: float
    snapshots: dict[int, torch.Tensor]
    refs: dict[int, int]
    start_version: dict[int, int]
    pending: dict[int, torch.Tensor]
    log: list[tuple]
    curves: dict[str, list]
    wall: float
    diverged_at: int | None = None

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain containers and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        return {"k": self.k, "time": self.time, "alg": self.alg.state_dict(), "snapshots": self.snapshots,
                "refs": self.refs, "start_version": self.start_version, "pending": self.pending, "log": self.log,
                "curves": self.curves, "wall": self.wall, "diverged_at": self.diverged_at}


class FiniteGuard:
    """Notices the first arrival after which the server model is non-finite.

    On the CPU it checks after every arrival (:meth:`observe` returns False at once). On a GPU a
    check per arrival would read a flag back to the host and stall the queue of kernels once per
    arrival (measured by the GPU check: one synchronisation per arrival); there the guard records,
    on the device, the first non-finite arrival and the model it left, and the engine asks
    (:meth:`first_non_finite`) only where it reads results back anyway: before an evaluation, a
    checkpoint and at the end. The run is then wound back to that arrival, so both modes give the
    same result.
    """

    def __init__(self, device: torch.device, params: torch.Tensor, lazy: bool | None = None):
        self.lazy = device.type == "cuda" if lazy is None else bool(lazy)
        if self.lazy:
            self.first = torch.zeros((), dtype=torch.int64, device=params.device)  # 0: none yet
            self.params = torch.zeros_like(params)

    def observe(self, params: torch.Tensor, k: int) -> bool:
        """Record the model after arrival ``k``; False if it is known now to be non-finite."""
        if not self.lazy:
            # a sum is NaN or inf when an entry is (30x cheaper than isfinite over P entries); a
            # non-finite sum of finite entries (overflow) is told apart by the full check
            return math.isfinite(float(params.sum())) or bool(torch.isfinite(params).all())
        finite = torch.isfinite(params).all()
        first_now = (self.first == 0) & ~finite
        self.first = torch.where(first_now, k, self.first)
        self.params = torch.where(first_now, params, self.params)
        return True

    def first_non_finite(self) -> int | None:
        """The first arrival that left a non-finite model, if any (lazy mode reads it back)."""
        if not self.lazy:
            return None
        k = int(self.first)
        return k or None

    def params_at_first_non_finite(self) -> torch.Tensor:
        return self.params


def evaluation_points(s: EngineSettings, U: int, last_time: float) -> tuple[set[int], list[float]]:
    """Where a run of ``U`` arrivals (the last at simulated time ``last_time``) is evaluated: after
    every ``eval_every``-th arrival and after the last (unless a time grid ends at the budget, with
    the same final model), and at ``eval_times`` equal steps up to the budget (or ``last_time``).
    Returns ``(arrival counts, grid times)``."""
    ks = set(range(s.eval_every, U + 1, s.eval_every)) if s.eval_every else set()
    if not (s.eval_times and s.time_budget is not None):
        ks.add(U)
    horizon = s.time_budget if s.time_budget is not None else last_time
    grid = [horizon * (j + 1) / s.eval_times for j in range(s.eval_times)] if s.eval_times else []
    return ks, grid


def write_run_files(out: Path, result: TrainResult) -> None:
    """A run folder's ``results.json`` and ``updates.csv`` (columns :data:`UPDATES_COLUMNS`, one row
    per arrival), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    text = dumps_json(result.to_dict(), indent=2)
    atomic_write(out / "results.json", lambda p: p.write_text(text))
    rows = list(zip(*(result.log[c] for c in UPDATES_COLUMNS)))

    def write_csv(p: Path) -> None:
        with p.open("w") as f:
            f.write(",".join(UPDATES_COLUMNS) + "\n")
            for r in rows:
                f.write(f"{r[0]},{r[1]!r},{r[2]},{r[3]},{r[4]},{r[5]}\n")

    atomic_write(out / "updates.csv", write_csv)


class TraceTrainer:
    """Replays ``trace`` with ``model`` on ``data`` under a server algorithm (module docstring)."""

    def __init__(self, *, model: torch.nn.Module, data, trace: Trace, algorithm: str,
                 algorithm_params: dict[str, Any] | None = None, local: LocalConfig = LocalConfig(),
                 settings: EngineSettings = EngineSettings(), device: str | torch.device = "auto",
                 output_dir: str | Path | None = None, meta: dict[str, Any] | None = None,
                 progress: bool = False, inputs: dict[str, Any] | None = None, callbacks: Sequence[Any] = (),
                 output_files: dict[str, Any] | None = None):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        require(len(data.clients) == trace.n_clients, "data.clients",
                f"the trace has {trace.n_clients} clients but the data is split among {len(data.clients)}")
        self.model = model.to(self.device)
        self.spec = ParamSpec(self.model)
        self.data = ClientData(data.clients, self.device)
        self.test_x, self.test_y = data.test.x.to(self.device), data.test.y.to(self.device)
        self.trace = trace
        self.local = local
        self.settings = settings
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.meta = dict(meta or {})
        self.inputs = dict(inputs or {})
        self.progress = progress
        # observers (e.g. aflqueue.fl.tensorboard.TensorBoardLogger): on_arrival(arrival, time, client,
        # relative_delay, staleness, model_version) and on_evaluate(time, updates, test_accuracy,
        # test_loss); they never change the run, and none means no cost
        self.callbacks = tuple(callbacks)
        self.algorithm_name = algorithm
        self.algorithm_params = dict(algorithm_params or {})
        # the trace owns the routing: the importance weights 1/(n p_i) are unbiased only for the
        # routing its dispatches were drawn with
        require(trace.routing is not None, "trace.routing",
                "the trace does not record the routing its dispatches were drawn with; simulate it with "
                "aflqueue.sim.simulate or build it with Trace(..., routing=p)")
        self.routing = np.asarray(trace.routing, dtype=float)
        self.output_files = dict(output_files or {})
        unl = None if getattr(data, "unlabeled", None) is None else data.unlabeled.x.to(self.device)
        self.ctx = AlgorithmContext(n_clients=trace.n_clients, routing=self.routing, concurrency=trace.concurrency,
                                    model=self.model, spec=self.spec, num_classes=data.num_classes,
                                    input_shape=tuple(data.input_shape), unlabeled=unl, device=self.device,
                                    seed=settings.seed)
        self.order = trace.update_order
        self.relative_delay = trace.relative_delay  # computed once: the property scans the whole trace
        self.U = self._arrivals_to_apply()
        self.max_batch = settings.max_batch or (256 if self.device.type == "cuda" else 8)
        self.batched = self.device.type == "cuda" if settings.batched is None else bool(settings.batched)

    # ------------------------------------------------------------------ schedule
    def _arrivals_to_apply(self) -> int:
        """Arrivals inside the budget; sets ``self.stopped_by`` to the limit that binds."""
        s, times = self.settings, self.trace.completion_time[self.order]
        U = len(self.order)
        self.stopped_by = "trace"
        if s.time_budget is not None:
            covered = self.trace.horizon >= s.time_budget or (s.updates is not None and s.updates <= U)
            if not covered:
                raise ValidationError("run.time_budget", f"the trace ends at time {self.trace.horizon:g} < budget "
                                                         f"{s.time_budget:g}; simulate more updates")
            U = int(np.searchsorted(times, s.time_budget, side="right"))
            self.stopped_by = "time_budget"
        if s.updates is not None:
            require(s.updates <= len(self.order), "run.updates",
                    f"the trace has only {len(self.order)} updates (asked for {s.updates})")
            if s.updates < U or s.time_budget is None:
                U, self.stopped_by = s.updates, "updates"
        require(U >= 1, "run", "no arrival falls inside the budget")
        return U

    def _claim_output(self, state: TrainerState, resume: bool, force: bool) -> TrainerState:
        """Check the output folder before anything is written to it, then write the schedule and
        the caller's files (``output_files``); returns the state to start from."""
        out = self.output_dir
        require(not out.exists() or out.is_dir(), "output", f"{str(out)!r} exists and is not a folder")
        ckpt = out / "checkpoint.pt"
        held = [f for f in RUN_FILES if (out / f).exists()]
        resuming = resume and os.path.lexists(ckpt)  # a dangling or looping link is a bad checkpoint, not none
        if resuming:
            state = self._load(ckpt, state)  # refuses another configuration's checkpoint: nothing written yet
        elif held and not force:
            raise ValidationError("output", f"{str(out)!r} already holds a run ({', '.join(held)}); "
                                            + ("it has no checkpoint to resume from; " if resume else
                                               "pass --resume to continue it, ")
                                            + "pass --force to replace it, or choose another --output")
        else:
            for f in held:  # a replaced run leaves no file of its own behind
                (out / f).unlink()
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            self.trace.save(out / "trace.npz")
        for name, obj in self.output_files.items():
            text = dumps_json(obj, indent=2)
            atomic_write(out / name, lambda p, text=text: p.write_text(text))
        return state

    def config_hash(self) -> str:
        """Identity of the run's *inputs*: what the caller says the run is (``inputs``, e.g. the
        configuration), the algorithm and its settings, the trace's routing, and the schedule
        (:meth:`Trace.digest`). Derived numbers (predicted proxies, ``meta``) never enter it."""
        key = json.dumps({"inputs": self.inputs, "algorithm": getattr(self.algorithm_name, "name", self.algorithm_name),
                          "params": self.algorithm_params,
                          "local": self.local.__dict__, "settings": self.settings.__dict__,
                          "U": self.U, "routing": self.routing.tolist(), "trace": self.trace.digest()},
                         sort_keys=True, default=str)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = False, *, force: bool = False) -> TrainResult:
        """Train. With an ``output_dir``: ``resume`` continues from its checkpoint (refused, with
        every file left as it was, when the checkpoint belongs to another configuration);
        without ``resume`` a folder holding a run is refused unless ``force`` replaces it."""
        require(not (resume and force), "force", "give --resume (continue the run) or --force (replace it), not both")
        t_wall = time.perf_counter()
        tr, m = self.trace, self.trace.concurrency
        state = self._fresh_state()
        ckpt = None if self.output_dir is None else self.output_dir / "checkpoint.pt"
        if self.output_dir is not None:
            state = self._claim_output(state, resume, force)
        alg = state.alg
        eval_ks, eval_grid = evaluation_points(self.settings, self.U,
                                               float(self.trace.completion_time[self.order[self.U - 1]]))
        next_grid = sum(1 for g in eval_grid if g < state.time)  # the loop evaluates g < arrival time
        bar = None
        if self.progress:
            from tqdm.auto import tqdm  # lazy: tqdm

            bar = tqdm(total=self.U, initial=state.k, desc=f"train {getattr(self.algorithm_name, 'name', self.algorithm_name)}",
                       unit="upd")
        wall_before = state.wall
        k = state.k
        guard = FiniteGuard(self.device, alg.params)

        def diverged_before_now() -> bool:
            """Whether an arrival so far left a non-finite model (lazy guard: read back here);
            if so, the run is wound back to that arrival and stopped there."""
            kb = guard.first_non_finite()
            if kb is None:
                return False
            self._stop_diverged(state, alg, kb, guard.params_at_first_non_finite(), len(state.log))
            return True

        while k < self.U and state.diverged_at is None:
            k += 1
            t = int(self.order[k - 1])
            now = float(tr.completion_time[t])
            while next_grid < len(eval_grid) and eval_grid[next_grid] < now:
                # the model as it stood at that simulated time (no arrival in between)
                if diverged_before_now():
                    break
                self._evaluate(state, alg, eval_grid[next_grid], k - 1)
                next_grid += 1
            if state.diverged_at is not None:
                break
            v0 = self._apply_arrival(state, alg, t, k, now)
            if not guard.observe(alg.params, k):
                # a non-finite model stays non-finite: stop, and say where it happened
                self._stop_diverged(state, alg, k, alg.params, k)
                break
            self._release(state, v0)
            # dispatch the task that the trace sends out after this arrival
            self._dispatch(state, alg, m + k - 1)
            state.time = now
            state.k = k
            if k in eval_ks:
                if diverged_before_now():
                    break
                self._evaluate(state, alg, now, k)
            if bar is not None:
                bar.update(1)
            if self.settings.checkpoint_every and k % self.settings.checkpoint_every == 0 and k < self.U and ckpt:
                if diverged_before_now():
                    break
                state.wall = wall_before + time.perf_counter() - t_wall
                self._save(ckpt, state)
        if state.diverged_at is None:
            diverged_before_now()
        while next_grid < len(eval_grid) and state.diverged_at is None:  # grid times after the last arrival
            self._evaluate(state, alg, eval_grid[next_grid], k)
            next_grid += 1
        if bar is not None:
            bar.close()
        state.wall = wall_before + time.perf_counter() - t_wall
        result = self._result(state, complete=True)
        if self.output_dir is not None:
            write_run_files(self.output_dir, result)
            self._save(ckpt, state)
        return result

    # ------------------------------------------------------------------ pieces
    def _fresh_state(self) -> TrainerState:
        params = self.spec.flatten(self.model).to(self.device)
        alg = make_algorithm(self.algorithm_name, params, self.ctx, **self.algorithm_params)
        m = self.trace.concurrency
        return TrainerState(alg=alg, k=0, time=0.0, snapshots={0: params.clone()}, refs={0: m},
                            start_version={t: 0 for t in range(m)}, pending={}, log=[],
                            curves={"time": [], "updates": [], "model_version": [], "test_accuracy": [],
                                    "test_loss": []}, wall=0.0)

    def _stop_diverged(self, state, alg, k: int, params: torch.Tensor, applied: int) -> None:
        """End the run at arrival ``k``, the first after which the server model was non-finite:
        the log ends with that arrival, the model is the one it left (``params``), and it is
        evaluated at that arrival's time. ``applied`` arrivals were handed to the algorithm
        (more than ``k`` when a lazy guard noticed late); the ones after ``k`` are undone from
        the record, so that the result does not depend on when the divergence was noticed (the
        algorithm's timers may include them)."""
        del state.log[k:]
        row = state.log[k - 1]
        alg.params, alg.version = params, int(row[5])
        alg.cost["arrivals"] -= applied - k
        state.diverged_at, state.k, state.time = k, k, float(row[1])
        self._evaluate(state, alg, state.time, k)

    def _apply_arrival(self, state, alg, t: int, k: int, now: float) -> int:
        """Hand task t's update to the algorithm as arrival ``k`` at simulated time ``now`` (its
        delta computed first if not yet), log it and tell the observers; returns the version the
        task started from."""
        if t not in state.pending:
            self._compute(state, t, k)
        delta = state.pending.pop(t)
        v0 = state.start_version.pop(t)
        start = state.snapshots[v0]
        i = int(self.trace.client[t])
        extras = {}
        if alg.client_statistics:
            extras["activation_stats"] = self._client_statistics(t, start + delta)
        arr = Arrival(index=k, task=t, client=i, delta=delta, start=start, start_version=v0,
                      relative_delay=int(self.relative_delay[t]), time=now, extras=extras)
        tau = alg.version - v0
        alg.on_arrival(arr)
        state.log.append((k, now, i, int(self.relative_delay[t]), tau, alg.version))
        for cb in self.callbacks:
            cb.on_arrival(*state.log[-1])
        return v0

    def _dispatch(self, state, alg, task: int) -> None:
        """Task ``task`` starts from the server model as it is now: a snapshot of that version is
        kept while some task in flight references it."""
        if alg.version not in state.snapshots:
            state.snapshots[alg.version] = alg.params.detach().clone()
            state.refs[alg.version] = 0
        state.start_version[task] = alg.version
        state.refs[alg.version] += 1
        self._drop_unreferenced(state, alg.version)

    def _release(self, state, version: int) -> None:
        state.refs[version] -= 1

    def _drop_unreferenced(self, state, current: int) -> None:
        for v in [v for v, r in state.refs.items() if r <= 0 and v != current]:
            del state.refs[v]
            del state.snapshots[v]

    def _compute(self, state, t: int, k: int) -> None:
        """Compute task t's delta, batched with other in-flight tasks when enabled."""
        tr = self.trace
        tasks = [t]
        if self.batched:
            # other tasks already dispatched, not computed, and arriving within the budget,
            # soonest first (they are needed soonest)
            arrive = tr.applied_version
            others = [u for u in state.start_version if u != t and u not in state.pending
                      and 0 < arrive[u] <= self.U]
            others.sort(key=lambda u: arrive[u])
            tasks += others[: self.max_batch - 1]
        groups: dict[int, list[int]] = {}
        for u in tasks:
            b = min(self.local.batch_size, int(self.data.sizes[int(tr.client[u])]))
            groups.setdefault(b, []).append(u)
        for group in groups.values():
            batches = [task_batches(self.data, int(tr.client[u]), u, self.settings.seed, self.local) for u in group]
            starts = [state.snapshots[state.start_version[u]] for u in group]
            if self.batched and len(group) > 1:
                deltas = train_batched(self.model, self.spec, torch.stack(starts), self.data, torch.stack(batches),
                                       self.local)
                for u, d in zip(group, deltas):
                    state.pending[u] = d
            else:
                for u, s, b in zip(group, starts, batches):
                    state.pending[u] = train_serial(self.model, self.spec, s, self.data, b, self.local)

    def _client_statistics(self, t: int, local_params: torch.Tensor):
        """Activation statistics of task t's local model on its last minibatch (client side)."""
        b = task_batches(self.data, int(self.trace.client[t]), t, self.settings.seed, self.local)[-1]
        return activation_statistics(self.model, self.spec, local_params, self.data.x[b])

    def _evaluate(self, state, alg, when: float, k: int) -> None:
        acc, loss = evaluate(self.model, self.spec, alg.params, self.test_x, self.test_y)
        c = state.curves
        c["time"].append(float(when))
        c["updates"].append(int(k))
        c["model_version"].append(int(alg.version))
        c["test_accuracy"].append(float(acc))
        c["test_loss"].append(float(loss))
        for cb in self.callbacks:
            cb.on_evaluate(float(when), int(k), float(acc), float(loss))

    def _result(self, state, complete: bool) -> TrainResult:
        c = state.curves
        log = state.log
        return TrainResult(
            final_accuracy=c["test_accuracy"][-1] if c["test_accuracy"] else float("nan"),
            final_loss=c["test_loss"][-1] if c["test_loss"] else float("nan"),
            curves={k: list(v) for k, v in c.items()}, arrivals=int(state.k), simulated_time=float(state.time),
            log={name: [row[j] for row in log] for j, name in enumerate(UPDATES_COLUMNS)},
            costs=state.alg.costs(), wall_time=float(state.wall), routing=self.routing.copy(),
            concurrency=int(self.trace.concurrency), algorithm=getattr(self.algorithm_name, "name", self.algorithm_name),
            algorithm_params=dict(self.algorithm_params), complete=complete,
            stopped_by="diverged" if state.diverged_at is not None else self.stopped_by,
            diverged=state.diverged_at is not None, diverged_at=state.diverged_at, meta=dict(self.meta),
        )

    def _save(self, path: Path, state: TrainerState) -> None:
        blob = {"format": CHECKPOINT_FORMAT, "config_hash": self.config_hash(), **state.to_checkpoint()}
        atomic_write(path, lambda p: torch.save(blob, p))
        if state.k < self.U:  # partial results next to the checkpoint
            write_run_files(self.output_dir, self._result(state, complete=False))

    def _load(self, path: Path, fresh: TrainerState) -> TrainerState:
        # weights_only: the unpickler accepts tensors and plain containers only, so a crafted
        # checkpoint cannot run code; everything the engine stores is of those types.
        try:
            blob = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # truncated/corrupt zip, foreign pickle, empty file: all one message
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ValidationError("resume", f"{str(path)!r} is not a readable aflqueue checkpoint ({reason}); "
                                            "delete it to start fresh, or use another --output") from None
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise ValidationError("resume", f"{str(path)!r} is not an aflqueue checkpoint of format "
                                            f"{CHECKPOINT_FORMAT}; delete it to start fresh, or use another --output")
        if blob.get("config_hash") != self.config_hash():
            raise ValidationError("resume", f"{str(path)!r} belongs to a different configuration; "
                                            "use another --output or delete the checkpoint")
        alg = fresh.alg
        try:
            alg.load_state_dict(blob["alg"])
            state = TrainerState(alg=alg, k=int(blob["k"]), time=float(blob["time"]), snapshots=blob["snapshots"],
                                 refs=blob["refs"], start_version=blob["start_version"], pending=blob["pending"],
                                 log=blob["log"], curves=blob["curves"], wall=float(blob["wall"]),
                                 diverged_at=blob.get("diverged_at"))
            self._check_resumed(state)
            return state
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as e:
            detail = (str(e).strip().splitlines() or [""])[0]
            raise ValidationError("resume", f"{str(path)!r} is incomplete or damaged ({type(e).__name__}: {detail}); "
                                            "delete it to start fresh, or use another --output") from None

    def _check_resumed(self, state: TrainerState) -> None:
        """A checkpoint is a file (hostile input): its state must be the trace's at its arrival ``k``
        (the configuration hash covers the trace): ``0 <= k <= U``, the time and the arrival log of
        the first ``k`` arrivals, and evaluation curves of one length with accuracies in [0, 1]."""
        k, U = state.k, self.U
        require(0 <= k <= U, "k", f"must be in [0, {U}] (got {k})")
        t_k = float(self.trace.completion_time[self.order[k - 1]]) if k else 0.0
        require(state.time == t_k, "time", f"must be {t_k!r}, the trace's time of arrival {k} (got {state.time!r})")
        log = state.log
        require(isinstance(log, list) and len(log) == k, "log", f"must hold {k} rows (one per arrival)")
        for j, row in enumerate(log, 1):
            ok = isinstance(row, (tuple, list)) and len(row) == len(UPDATES_COLUMNS) and row[0] == j
            require(ok and float(row[1]) == float(self.trace.completion_time[self.order[j - 1]]), f"log[{j - 1}]",
                    "does not match the trace's arrival")
        c = state.curves
        require(isinstance(c, dict) and set(c) == {"time", "updates", "model_version", "test_accuracy", "test_loss"},
                "curves", "must hold time, updates, model_version, test_accuracy and test_loss")
        n = len(c["time"])
        require(all(isinstance(v, list) and len(v) == n for v in c.values()), "curves", "must be lists of one length")
        check_values(c["time"], "curves.time", "the checkpoint", lo=0.0, hi=t_k, increasing=True)
        check_values(c["updates"], "curves.updates", "the checkpoint", lo=0.0, hi=k, integer=True, increasing=True)
        for name, hi in (("test_accuracy", 1.0), ("test_loss", None)):  # NaN: a diverged model's evaluation
            values = [None if isinstance(x, float) and math.isnan(x) else x for x in c[name]]
            check_values(values, f"curves.{name}", "the checkpoint", lo=0.0, hi=hi, nullable=True)
