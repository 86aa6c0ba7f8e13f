"""Replica-batched training: each replica equals the same run done alone with the engine.

The reference is :class:`~aflqueue.fl.engine.TraceTrainer` (serial mode), run on the same inputs.
Schedules, evaluation grids, budgets and divergence are compared exactly; models and losses
within the tolerances of :mod:`validation.agreement` (in the source repository) (float64: 1e-9, float32 on the smooth MLP
case: 1e-4), because the batched local gradients come from other matrix-product kernels. The
replicas of one batch differ in everything a study varies: data split, initial model, schedule
(routing, concurrency), learning rate, batch size, algorithm, budget and evaluation grid.
"""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aflqueue import System, ValidationError
from aflqueue.config import TrainConfig
from validation.agreement import compare, violations
from aflqueue.fl.algorithms import algorithm_class
from aflqueue.fl.algorithms.asyncsgd import GeneralizedAsyncSGD
from aflqueue.fl.data import make_federated
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import (ClientData, LocalConfig, ParamSpec, linear_weights, task_batches, to_layout, train_rows,
                               train_serial)
from aflqueue.fl.models import build_model
from aflqueue.fl.replicas import Replica, ReplicaTrainer
from aflqueue.pipeline import train
from aflqueue.replicated import train_replicas
from aflqueue.sim import simulate

FEATURES, CLASSES = 12, 4


def in_dtype(data, dtype):
    """``data`` with float inputs in ``dtype`` (the Dataset type itself insists on float32)."""
    conv = lambda d: SimpleNamespace(x=d.x.to(dtype), y=d.y)  # noqa: E731
    return SimpleNamespace(clients=[conv(c) for c in data.clients], test=conv(data.test), unlabeled=None,
                           num_classes=data.num_classes, input_shape=data.input_shape)


@pytest.fixture(scope="module")
def world():
    """Two data splits (Dirichlet: some clients hold fewer samples than a minibatch), two systems
    (skewed routing with m = 5, uniform with m = 4) and their traces."""
    datas = [make_federated("synthetic", 6, "dirichlet", alpha=0.5, seed=s, num_samples=480, num_features=FEATURES,
                            num_classes=CLASSES) for s in (0, 1)]
    systems = [System.from_rates([2.0, 1.0, 1.0, 0.5, 0.2, 0.1], [0.25, 0.2, 0.2, 0.15, 0.1, 0.1], 5),
               System.from_rates([2.0, 1.0, 1.0, 0.5, 0.2, 0.1], concurrency=4)]
    traces = [simulate(s, 320, seed=3 + j) for j, s in enumerate(systems)]
    return datas, systems, traces


def model(seed, dtype=torch.float32):
    return build_model("mlp", (FEATURES,), CLASSES, seed=seed, hidden=(16,)).to(dtype)


def replicas(world, dtype=torch.float32):
    """Five replays that differ in everything a study varies."""
    datas, systems, traces = world
    d = [datas[0], datas[1]] if dtype == torch.float32 else [in_dtype(x, dtype) for x in datas]
    horizon = float(traces[0].completion_time[traces[0].update_order[249]])
    spec = [  # data, system, seed, algorithm, params, local, settings
        (0, 0, 0, "generalized-asyncsgd", {}, LocalConfig(lr=0.05, batch_size=16),
         EngineSettings(updates=200, eval_every=25, seed=0)),
        (1, 1, 1, "asyncsgd", {"eta_g": 0.5}, LocalConfig(lr=0.1, batch_size=16),
         EngineSettings(time_budget=40.0, eval_times=6, eval_every=0, seed=1)),
        (0, 0, 2, "fedbuff", {"buffer": 3, "staleness_weighting": True, "weighting": "importance"},
         LocalConfig(lr=0.08, batch_size=16), EngineSettings(updates=300, time_budget=horizon, eval_every=40,
                                                              eval_times=4, seed=2)),
        (1, 1, 3, "generalized-asyncsgd", {"weight_cap": 1.2}, LocalConfig(lr=0.03, batch_size=8),
         EngineSettings(updates=150, eval_every=30, seed=3)),
        (0, 0, 4, "fedbuff", {"buffer": 2, "eta_g": 0.7}, LocalConfig(lr=0.05, batch_size=24),
         EngineSettings(time_budget=30.0, eval_times=5, eval_every=0, seed=4)),
    ]
    return [Replica(model=model(seed, dtype), data=d[di], trace=traces[si],
                    algorithm=alg, algorithm_params=params, local=local, settings=settings, meta={"case": j})
            for j, (di, si, seed, alg, params, local, settings) in enumerate(spec)]


def serial(rep: Replica):
    """The same run alone with the engine, and its final server model."""
    holder = {}
    base = algorithm_class(rep.algorithm)

    class Keep(base):  # a handle on the engine's algorithm instance (its final model)
        name = base.name

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            holder["alg"] = self

    dtype = next(rep.model.parameters()).dtype
    tt = TraceTrainer(model=model(rep.meta["case"], dtype), data=rep.data, trace=rep.trace,
                      algorithm=Keep, algorithm_params=dict(rep.algorithm_params), local=rep.local,
                      settings=rep.settings, device="cpu")
    return tt.run(), holder["alg"].params


def as_replay(result, params, initial):
    return SimpleNamespace(params=params.double(), initial=initial.double(), test_loss=result.curves["test_loss"],
                           test_accuracy=result.curves["test_accuracy"], log=result.log)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_each_replica_equals_its_run_alone(world, dtype):
    reps = replicas(world, getattr(torch, dtype))
    rt = ReplicaTrainer(reps, device="cpu")
    results = rt.run()
    for j, (rep, res) in enumerate(zip(reps, results)):
        ref, ref_params = serial(rep)
        # the schedule, budget and evaluation grid: identical
        assert res.log == ref.log
        for key in ("time", "updates", "model_version"):
            assert res.curves[key] == ref.curves[key], (j, key)
        assert (res.arrivals, res.simulated_time, res.stopped_by, res.diverged) == \
               (ref.arrivals, ref.simulated_time, ref.stopped_by, ref.diverged)
        assert res.costs["arrivals"] == ref.costs["arrivals"] and set(res.costs) == set(ref.costs)
        assert {k: v for k, v in res.meta.items() if k != "execution"} == {"case": j}
        assert (res.algorithm, res.algorithm_params, res.concurrency) == (ref.algorithm, ref.algorithm_params,
                                                                           ref.concurrency)
        assert res.routing.tobytes() == ref.routing.tobytes()
        assert res.meta["execution"] == "replica-batched(R=5)"
        # the numbers: within the project's tolerances for the dtype
        initial = ParamSpec(rep.model).flatten(model(j, getattr(torch, dtype)))
        diff = compare(as_replay(res, rt.params(j), initial), as_replay(ref, ref_params, initial))
        assert violations(diff, dtype) == [], (j, diff)
        assert diff["displacement_rel_l2"] > 0 or dtype == "float32"  # float64: other kernels, not a copy
    # the cases cover what they claim: padded minibatches, every stopping rule, both grids
    assert {r.stopped_by for r in results} == {"updates", "time_budget"}
    assert min(len(c.x) for c in world[0][0].clients) < 16


def test_deterministic_and_independent_of_the_batch(world):
    reps = replicas(world)
    a = ReplicaTrainer(reps, device="cpu")
    ra = a.run()
    b = ReplicaTrainer(reps, device="cpu")
    rb = b.run()
    for j in range(len(reps)):
        assert torch.equal(a.params(j), b.params(j)) and ra[j].curves == rb[j].curves
    # a replica alone (minibatches padded to its own size) and in the batch (padded to the
    # largest batch size, 24): the same bits on the CPU
    for j in (0, 3):
        alone = ReplicaTrainer([reps[j]], device="cpu")
        r1 = alone.run()[0]
        assert torch.equal(alone.params(0), a.params(j)) and r1.curves == ra[j].curves
        assert r1.meta["execution"] == "replica-batched(R=1)"
    assert b.B == 24 and ReplicaTrainer([reps[3]], device="cpu").B == 8


def test_divergence_stops_only_that_replica(world):
    reps = replicas(world, torch.float64)
    wild = dataclasses.replace(reps[0], local=LocalConfig(lr=1e30, batch_size=16))
    rt = ReplicaTrainer([wild, reps[1]], device="cpu")
    bad, good = rt.run()
    ref, _ = serial(wild)
    assert ref.diverged and bad.diverged and bad.diverged_at == ref.diverged_at and bad.stopped_by == "diverged"
    assert bad.log == ref.log and bad.curves["updates"] == ref.curves["updates"]
    assert np.isnan(bad.final_loss) and bad.arrivals == bad.diverged_at
    # the companion is untouched: the same bits as when it runs alone
    alone = ReplicaTrainer([reps[1]], device="cpu")
    assert alone.run()[0].curves == good.curves and torch.equal(alone.params(0), rt.params(1))
    assert "NaN" not in json.dumps(bad.to_dict())


def test_what_cannot_be_batched_is_refused(world):
    reps = replicas(world)
    with pytest.raises(ValidationError, match=r"replicas\[1\].algorithm"):
        ReplicaTrainer([reps[0], dataclasses.replace(reps[1], algorithm="fedasync")], device="cpu")

    class Tweaked(GeneralizedAsyncSGD):  # a subclass may change the update rule
        pass

    with pytest.raises(ValidationError, match=r"replicas\[1\].algorithm"):
        ReplicaTrainer([reps[0], dataclasses.replace(reps[1], algorithm=Tweaked)], device="cpu")
    other = build_model("mlp", (FEATURES,), CLASSES, seed=0, hidden=(8,))
    with pytest.raises(ValidationError, match=r"replicas\[1\]"):
        ReplicaTrainer([reps[0], dataclasses.replace(reps[1], model=other)], device="cpu")
    with pytest.raises(ValidationError, match=r"replicas\[1\]"):
        ReplicaTrainer([reps[0], dataclasses.replace(reps[1], local=LocalConfig(steps=2))], device="cpu")
    with pytest.raises(ValidationError, match="max_memory_gb"):
        ReplicaTrainer(reps, device="cpu", max_memory_gb=1e-4)


@pytest.mark.parametrize("cfg", [LocalConfig(steps=1), LocalConfig(steps=3, weight_decay=0.01),
                                 LocalConfig(steps=2, optimizer="adam", lr=0.01)], ids=["sgd", "sgd-K3-wd", "adam"])
def test_train_rows_equals_train_serial_task_by_task(world, cfg):
    """Per task, no trajectory: the batched path computes train_serial's update (float64), with
    each task's own learning rate and minibatch size, in either parameter layout."""
    data = in_dtype(world[0][0], torch.float64)
    net = model(0, torch.float64)
    spec = ParamSpec(net)
    cd = ClientData(data.clients, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    T = 6
    starts = ParamSpec(net).flatten(net) + 0.1 * torch.randn(T, spec.numel, generator=g, dtype=torch.float64)
    lrs = torch.tensor([0.05, 0.1, 0.2, 0.01, 0.3, 0.07], dtype=torch.float64)
    sizes = [6, 16, 16, 9, 16, 16]
    batches = [task_batches(cd, t, 10 + t, 0, dataclasses.replace(cfg, batch_size=sizes[t])) for t in range(T)]
    B, K = max(b.shape[1] for b in batches), cfg.steps
    idx = torch.stack([torch.cat((b, b[:, :1].expand(K, B - b.shape[1])), 1) for b in batches])
    counts = torch.tensor([b.shape[1] for b in batches])
    assert counts.min() < B  # padding is exercised
    scale = torch.rand(T, dtype=torch.float64, generator=g)
    ref = torch.stack([scale[t] * train_serial(net, spec, starts[t], cd, batches[t],
                                               dataclasses.replace(cfg, lr=float(lrs[t]))) for t in range(T)])
    for transposed in ((), linear_weights(net)):
        out = train_rows(net, spec, to_layout(spec, starts, transposed), cd, idx, counts, lrs, cfg,
                         transposed=transposed, scale=scale)
        out = to_layout(spec, out, transposed, inverse=True)
        rel = ((out - ref).norm(dim=1) / ref.norm(dim=1)).max()
        assert rel < 1e-12, (transposed, float(rel))
        store = torch.zeros(T + 3, spec.numel, dtype=torch.float64)
        rows = torch.tensor([4, 0, 7, 2, 8, 1])
        train_rows(net, spec, to_layout(spec, starts, transposed), cd, idx, counts, lrs, cfg, transposed=transposed,
                   scale=scale, into=(store, rows))
        assert torch.equal(store[rows], to_layout(spec, out, transposed))  # the same numbers, written in place


def test_train_replicas_from_configurations(tmp_path):
    def cfg(name, **sections):
        d = {"output": str(tmp_path / name), "seed": sections.pop("seed", 0), "device": "cpu",
             "data": {"dataset": "synthetic", "clients": 5,
                      "options": {"num_samples": 400, "num_features": 8, "num_classes": 3}},
             "run": {"updates": 150, "eval_every": 40, "checkpoint_every": 0}}
        for k, v in sections.items():
            d.setdefault(k, {}).update(v)
        return TrainConfig.from_dict(d)

    cfgs = [cfg("a"), cfg("b", local={"lr": 0.1}),
            cfg("c", seed=1, routing={"kind": "explicit", "values": [0.4, 0.3, 0.1, 0.1, 0.1]}),
            cfg("d", algorithm={"name": "fedasync"}),
            cfg("e", algorithm={"name": "fedbuff", "params": {"buffer": 4}},
                run={"time_budget": 20.0, "updates": None, "eval_times": 5})]
    seen = []
    results = train_replicas(cfgs, on_result=lambda j, r: seen.append(j))
    assert sorted(seen) == list(range(len(cfgs)))
    for c, res in zip(cfgs, results):
        ref = train(dataclasses.replace(c, output=str(tmp_path / f"ref_{c.output[-1]}")))
        assert res.meta.pop("execution") == ("serial" if c.algorithm.name == "fedasync" else "replica-batched(R=4)")
        assert json.dumps(res.meta, sort_keys=True) == json.dumps(ref.meta, sort_keys=True)
        assert res.log == ref.log and res.curves["updates"] == ref.curves["updates"]
        la, lb = np.array(res.curves["test_loss"]), np.array(ref.curves["test_loss"])
        assert np.all(np.abs(la - lb) <= 1e-4 * np.abs(lb))
        out = tmp_path / c.output[-1]
        on_disk = json.loads((out / "results.json").read_text())
        assert on_disk["execution"] == ("serial" if c.algorithm.name == "fedasync" else "replica-batched(R=4)")
        assert (out / "updates.csv").read_text() == (tmp_path / f"ref_{c.output[-1]}" / "updates.csv").read_text()
        assert (out / "config.json").is_file() and (out / "trace.npz").is_file()
    with pytest.raises(ValidationError, match=r"configs\[0\]"):
        train_replicas([{"output": "x"}])
