"""Trace-driven trainer: schedule fidelity, start models, resume, batched == serial, algorithms."""

import json
import re
from pathlib import Path
import math

import numpy as np
import pytest
import torch

from aflqueue import System, ValidationError
from aflqueue.config import TrainConfig, load_config
from aflqueue.fl.algorithms import ALGORITHM_NAMES, AlgorithmContext, Arrival, make_algorithm
from aflqueue.fl.algorithms.asyncsgd import GeneralizedAsyncSGD
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl import engine as engine_module
from aflqueue.fl.local import LocalConfig
from aflqueue.fl.models import build_model
from aflqueue.pipeline import simulate_for_budget, train
from aflqueue.sim import simulate
from .crash import crash_once

N = 6


# the `setup` fixture (tiny task, system, trace) is in conftest.py


def model_for(data, seed=0):
    return build_model("mlp", data.input_shape, data.num_classes, seed=seed, hidden=(16,))


class Recorder(GeneralizedAsyncSGD):
    """Records the server model at every version and the start model of every arrival."""

    name = "recorder"

    def __init__(self, params, ctx, **hp):
        super().__init__(params, ctx, **hp)
        self.history = {0: self.params.clone()}
        self.seen = []

    def on_arrival(self, a: Arrival) -> None:
        self.seen.append((a.task, a.start_version, a.start.clone(), a.relative_delay, self.version - a.start_version))
        super().on_arrival(a)
        self.history[self.version] = self.params.clone()


def run(data, system, trace, algorithm="generalized-asyncsgd", out=None, resume=False, **kw):
    settings = kw.pop("settings", EngineSettings(eval_every=100, checkpoint_every=50, seed=1))
    tr = TraceTrainer(model=model_for(data), data=data, trace=trace, algorithm=algorithm,
                      local=kw.pop("local", LocalConfig(steps=2, lr=0.1, batch_size=16)), settings=settings,
                      device="cpu", output_dir=out, **kw)
    return tr, tr.run(resume=resume)


def test_schedule_and_start_models_follow_the_trace(setup):
    data, system, trace = setup
    alg_holder = {}

    class Spy(Recorder):  # keeps a handle on the engine's (internal) algorithm instance
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            alg_holder["alg"] = self

    _, res = run(data, system, trace, algorithm=Spy)
    alg = alg_holder["alg"]
    order = trace.update_order
    assert len(alg.seen) == trace.num_updates == res.arrivals
    for k, (task, v0, start, rd, tau) in enumerate(alg.seen, start=1):
        assert task == order[k - 1]
        assert v0 == trace.dispatch_version[task]  # one update per arrival: versions = trace versions
        assert rd == trace.relative_delay[task] == tau  # staleness seen by the trainer = the trace's
        torch.testing.assert_close(start, alg.history[v0], rtol=0, atol=0)  # exactly the model it was sent
    np.testing.assert_array_equal(res.log["relative_delay"], trace.relative_delay[order])
    np.testing.assert_array_equal(res.log["client"], trace.client[order])


def test_batched_equals_serial(setup):
    data, system, trace = setup
    holders = []
    for batched in (True, False):
        h = {}

        class Spy(GeneralizedAsyncSGD):
            def __init__(self, *a, h=h, **k):
                super().__init__(*a, **k)
                h["alg"] = self

        _, res = run(data, system, trace, algorithm=Spy,
                     settings=EngineSettings(eval_every=100, batched=batched, seed=1))
        holders.append((h["alg"].params, res))
    (pa, ra), (pb, rb) = holders
    torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ra.curves["test_loss"], rb.curves["test_loss"], rtol=1e-4)


def test_resume_after_crash_is_identical(setup, tmp_path):
    data, system, trace = setup
    _, full = run(data, system, trace, out=tmp_path / "full")

    CrashOnce = crash_once(GeneralizedAsyncSGD, at=173)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, system, trace, algorithm=CrashOnce, out=tmp_path / "crash")
    partial = json.loads((tmp_path / "crash" / "results.json").read_text())
    assert partial["complete"] is False and partial["arrivals"] == 150  # last checkpoint kept
    _, resumed = run(data, system, trace, algorithm=CrashOnce, out=tmp_path / "crash", resume=True)
    assert resumed.final_accuracy == full.final_accuracy and resumed.final_loss == full.final_loss
    assert resumed.curves["test_loss"] == full.curves["test_loss"]
    assert resumed.log == full.log
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["alg"]["params"]
    b = torch.load(tmp_path / "crash" / "checkpoint.pt", weights_only=True)["alg"]["params"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_refuses_other_configuration(setup, tmp_path):
    data, system, trace = setup
    run(data, system, trace, out=tmp_path / "r", settings=EngineSettings(updates=100, checkpoint_every=50))
    with pytest.raises(ValidationError, match="different configuration"):
        run(data, system, trace, out=tmp_path / "r", resume=True,
            settings=EngineSettings(updates=120, checkpoint_every=50))


@pytest.mark.parametrize("name", ["generalized-asyncsgd", "asyncsgd", "fedasync", "fedbuff"])
def test_every_algorithm_learns_end_to_end(setup, name, tmp_path):
    data, system, trace = setup
    _, res = run(data, system, trace, algorithm=name, out=tmp_path, settings=EngineSettings(eval_every=50, seed=2),
                 local=LocalConfig(steps=2, lr=0.1, batch_size=16))
    acc = res.curves["test_accuracy"]
    assert res.complete and res.arrivals == 400 and math.isfinite(res.final_loss)
    assert acc[-1] > acc[0] + 0.1 or acc[-1] > 0.8  # it learns (4 classes: chance 0.25)
    for f in ("results.json", "updates.csv", "checkpoint.pt", "trace.npz"):
        assert (tmp_path / f).exists()
    d = json.loads((tmp_path / "results.json").read_text())
    assert {"final_accuracy", "time", "updates", "test_accuracy", "test_loss"} <= set(d)
    rows = (tmp_path / "updates.csv").read_text().splitlines()
    assert rows[0] == "arrival,time,client,relative_delay,staleness,model_version" and len(rows) == 401


def ctx(n=3, p=(0.5, 0.3, 0.2)):
    return AlgorithmContext(n_clients=n, routing=np.array(p), concurrency=3)


def arrival(k, client, delta, start, v0):
    return Arrival(index=k, task=k, client=client, delta=delta, start=start, start_version=v0, relative_delay=0, time=0.0)


def test_algorithm_updates_by_hand():
    w0 = torch.zeros(2)
    d = torch.tensor([1.0, -2.0])
    g = make_algorithm("generalized-asyncsgd", w0, ctx(), eta_g=0.5)
    g.on_arrival(arrival(1, 2, d, w0, 0))
    torch.testing.assert_close(g.params, 0.5 / (3 * 0.2) * d)  # importance weight 1/(n p_i)
    a = make_algorithm("asyncsgd", w0, ctx(), eta_g=0.5)
    a.on_arrival(arrival(1, 2, d, w0, 0))
    torch.testing.assert_close(a.params, 0.5 * d)
    f = make_algorithm("fedasync", torch.ones(2), ctx(), a=0.6, staleness="polynomial", b=0.5)
    f.version = 3  # the arriving task is 3 versions stale
    f.on_arrival(arrival(4, 0, d, w0, 0))
    alpha = 0.6 * (1 + 3) ** -0.5
    torch.testing.assert_close(f.params, (1 - alpha) * torch.ones(2) + alpha * (w0 + d))
    b = make_algorithm("fedbuff", w0, ctx(), buffer=3, eta_g=2.0)
    for k in range(1, 3):
        b.on_arrival(arrival(k, 0, d * k, w0, 0))
        assert b.version == 0 and torch.equal(b.params, w0)  # nothing applied until the buffer is full
    b.on_arrival(arrival(3, 1, d * 3, w0, 0))
    assert b.version == 1
    torch.testing.assert_close(b.params, 2.0 * (d * 6) / 3)


def test_unknown_algorithm_and_parameters():
    with pytest.raises(ValidationError, match="unknown algorithm"):
        make_algorithm("fedmagic", torch.zeros(1), ctx())
    with pytest.raises(ValidationError, match="unknown parameter"):
        make_algorithm("fedbuff", torch.zeros(1), ctx(), bufer=3)
    with pytest.raises(ValidationError, match="buffer"):
        make_algorithm("fedbuff", torch.zeros(1), ctx(), buffer=0)
    assert {"generalized-asyncsgd", "asyncsgd", "fedasync", "fedbuff"} <= set(ALGORITHM_NAMES)


def test_trace_prefix_property_for_time_budgets():
    s = System.from_rates([1.0, 0.3], [0.6, 0.4], 3)
    short, long = simulate(s, 200, seed=5), simulate(s, 900, seed=5)
    order = long.update_order[:200]
    np.testing.assert_array_equal(short.completion_time[short.update_order], long.completion_time[order])
    tr = simulate_for_budget(s, 5, None, 500.0)
    assert tr.horizon >= 500.0


def test_config_file_overrides_and_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('output = "x"\n[data]\ndataset = "synthetic"\nclients = 4\n[local]\nlr = 0.2\n'
                 '[algorithm]\nname = "fedbuff"\nparams = { buffer = 2 }\n')
    cfg = load_config(f, ["local.steps=3", "run.updates=200", 'system.profile="five-types"'])
    assert cfg.data.dataset == "synthetic" and cfg.local.lr == 0.2 and cfg.local.steps == 3
    assert cfg.algorithm.params == {"buffer": 2} and cfg.system.profile == "five-types"
    for bad, field in [({"data": {"colour": 1}}, "data"), ({"system": {"profile": "warp"}}, "system.profile"),
                       ({"run": {"updates": True}}, "run.updates"), ({"seed": -1}, "seed"),
                       ({"local": {"lr": "0.1"}}, "local.lr"), ({"routing": {"values": "abc"}}, "routing.values")]:
        with pytest.raises(ValidationError) as e:
            base = TrainConfig().to_dict()
            for k, v in bad.items():
                base[k] = {**base[k], **v} if isinstance(v, dict) else v
            TrainConfig.from_dict(base)
        assert e.value.field.startswith(field)
    with pytest.raises(ValidationError):
        load_config(None, ["local.nonsense=1"])
    # no default overrides what the user gave: a time budget alone is the budget
    assert load_config(None, ["run.time_budget=5000"]).run.updates is None
    assert load_config(None, []).run.updates == 1500  # the default applies only without any budget
    f.write_text("[run]\ntime_budget = 500\n")
    assert load_config(f).run.updates is None
    # a value its mode would ignore is refused, naming the field
    for sets, field in ((["routing.values=[0.5,0.5]"], "routing.values"), (['data.partition="iid"', "data.alpha=0.3"],
                        "data.alpha"), (["system.rates=[1,2]"], "system.rates")):
        with pytest.raises(ValidationError) as e:
            load_config(None, sets)
        assert e.value.field == field


def test_train_from_config_with_optimal_routing(tmp_path):
    cfg = load_config(None, [f'output="{tmp_path.as_posix()}"', 'data.dataset="synthetic"', "data.clients=6",
                             'routing.kind="optimal"', "run.updates=150", "run.eval_every=50",
                             'data.options={"num_samples": 600, "num_features": 10, "num_classes": 3}'])
    res = train(cfg)
    d = json.loads((tmp_path / "results.json").read_text())
    assert d["optimization"]["objective"] == "wall-clock" and abs(sum(d["routing"]) - 1) < 1e-9
    assert res.arrivals == 150 and d["complete"] and d["stopped_by"] == "updates"
    # the operating point: the learning rate is local.lr times eta*(p*) / eta*(uniform)
    st = d["step_size"]
    assert st["rule"] == "optimal" and st["lr"] == pytest.approx(0.05 * st["eta"] / st["eta_uniform"])
    assert cfg.local.lr == 0.05 and st["lr"] != 0.05


def small_config(out, *sets):
    return load_config(None, [f'output="{Path(out).as_posix()}"', 'data.dataset="synthetic"', "data.clients=4",
                              "run.updates=40", "run.eval_every=20",
                              'data.options={"num_samples": 200, "num_features": 6, "num_classes": 3}', *sets])


def test_a_trace_file_drawn_with_another_routing_is_refused(tmp_path):
    """The trace owns the routing: a configuration whose routing section disagrees with the trace
    it replays is refused before any work (the weights 1/(n p_i) would be biased)."""
    cfg = small_config(tmp_path / "a")
    first = train(cfg)
    trace_file = tmp_path / "a" / "trace.npz"
    again = train(small_config(tmp_path / "b", f'run.trace="{trace_file.as_posix()}"'))
    assert again.routing.tobytes() == first.routing.tobytes() and again.log == first.log
    with pytest.raises(ValidationError, match="run.trace") as e:
        train(small_config(tmp_path / "c", f'run.trace="{trace_file.as_posix()}"', 'routing.kind="explicit"',
                           "routing.values=[0.4, 0.3, 0.2, 0.1]"))
    assert "another routing" in str(e.value) and not (tmp_path / "c").exists()


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_a_finished_run_is_never_overwritten_without_force(tmp_path):
    """A plain run into a folder holding a run is refused and leaves every file as it was; --force
    replaces it; --resume continues it; a refused --resume (other configuration) writes nothing."""
    out = tmp_path / "run"
    first = train(small_config(out))
    before = files_of(out)
    with pytest.raises(ValidationError, match="already holds a run") as e:
        train(small_config(out, "local.lr=0.2"))
    assert "--force" in str(e.value) and "--resume" in str(e.value) and "\n" not in str(e.value)
    assert files_of(out) == before
    with pytest.raises(ValidationError, match="different configuration"):
        train(small_config(out, "local.lr=0.2"), resume=True)
    assert files_of(out) == before  # config.json untouched next to the old results
    assert train(small_config(out), resume=True).log == first.log
    replaced = train(small_config(out, "local.lr=0.2"), force=True)
    assert json.loads((out / "config.json").read_text())["local"]["lr"] == 0.2
    assert json.loads((out / "results.json").read_text())["final_loss"] == pytest.approx(replaced.final_loss)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(small_config(empty)).arrivals == 40  # an empty folder is no run


def test_time_budget_binds_when_given(tmp_path):
    cfg = load_config(None, [f'output="{tmp_path.as_posix()}"', 'data.dataset="synthetic"', "data.clients=4",
                             "run.time_budget=300", "run.eval_every=0", "run.eval_times=3",
                             'data.options={"num_samples": 200, "num_features": 6, "num_classes": 3}'])
    res = train(cfg)
    assert res.stopped_by == "time_budget" and res.curves["time"][-1] == pytest.approx(300.0)
    assert res.arrivals > 1500 or res.simulated_time <= 300.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(setup):
    data, system, trace = setup
    runs = []
    for dev in ("cpu", "cuda"):
        tr = TraceTrainer(model=model_for(data), data=data, trace=trace,
                          algorithm="generalized-asyncsgd", local=LocalConfig(steps=2, lr=0.1, batch_size=16),
                          settings=EngineSettings(eval_every=100, seed=1), device=dev)
        runs.append(tr.run())
    np.testing.assert_allclose(runs[0].curves["test_loss"], runs[1].curves["test_loss"], rtol=1e-3)


class _Payload:
    """Unpickling this object would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_checkpoint_does_not_execute(setup, tmp_path):
    data, system, trace = setup
    out = tmp_path / "run"
    run(data, system, trace, out=out, settings=EngineSettings(updates=100, checkpoint_every=50))
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "config_hash": "x", "evil": _Payload(marker)}, out / "checkpoint.pt")
    with pytest.raises(ValidationError, match="not a readable aflqueue checkpoint"):
        run(data, system, trace, out=out, resume=True, settings=EngineSettings(updates=100, checkpoint_every=50))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "list", "symlink-loop", "dangling-link"])
def test_damaged_checkpoint_gives_one_line_error(setup, tmp_path, damage):
    data, system, trace = setup
    out = tmp_path / "run"
    settings = EngineSettings(updates=100, checkpoint_every=50)
    run(data, system, trace, out=out, settings=settings)
    ck = out / "checkpoint.pt"
    raw = ck.read_bytes()
    if damage == "empty":
        ck.write_bytes(b"")
    elif damage == "truncated":
        ck.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        ck.write_bytes(b"\x00\xff not a checkpoint" * 10)
    elif damage == "list":
        torch.save([1, 2, 3], ck)
    else:  # a link is a checkpoint that cannot be read, not a missing one
        ck.unlink()
        ck.symlink_to(ck.name if damage == "symlink-loop" else tmp_path / "nowhere.pt")
    with pytest.raises(ValidationError) as e:
        run(data, system, trace, out=out, resume=True, settings=settings)
    msg = str(e.value)
    assert "\n" not in msg and str(ck) in msg and ("delete it" in msg)


def test_trace_routing_is_recorded_and_enforced(setup, tmp_path):
    data, system, trace = setup
    np.testing.assert_array_equal(trace.routing, system.routing)  # simulate() records it
    loaded = type(trace).load(trace.save(tmp_path / "t.npz"))
    assert loaded.routing.tobytes() == trace.routing.tobytes() and loaded.digest() == trace.digest()
    tr = TraceTrainer(model=model_for(data), data=data, trace=trace, algorithm="generalized-asyncsgd", device="cpu",
                      settings=EngineSettings(updates=20, eval_every=0))
    res = tr.run()  # the trainer reads routing and concurrency from the trace, the one place that holds them
    assert res.routing.tobytes() == trace.routing.tobytes() and res.concurrency == trace.concurrency
    assert res.to_dict()["routing"] == trace.routing.tolist() and res.to_dict()["concurrency"] == trace.concurrency
    unknown = type(trace)(**{c: getattr(trace, c) for c in ("client", "dispatch_time", "downlink_end",
                                                            "compute_start", "compute_end", "uplink_end",
                                                            "completion_time", "dispatch_version", "applied_version")},
                          n_clients=trace.n_clients, concurrency=trace.concurrency)
    with pytest.raises(ValidationError, match="trace.routing"):
        TraceTrainer(model=model_for(data), data=data, trace=unknown,
                     algorithm="generalized-asyncsgd", device="cpu")


def test_divergence_stops_the_run_and_is_reported(setup, tmp_path):
    data, system, trace = setup
    _, res = run(data, system, trace, out=tmp_path, local=LocalConfig(steps=2, lr=1e30, batch_size=16),
                 settings=EngineSettings(eval_every=50, checkpoint_every=50, seed=1))
    assert res.diverged and res.stopped_by == "diverged" and 1 <= res.diverged_at < 400
    assert res.arrivals == res.diverged_at and res.log["arrival"][-1] == res.diverged_at
    text = (tmp_path / "results.json").read_text()
    d = json.loads(text)  # strict JSON: no bare NaN
    assert "NaN" not in text and d["diverged"] is True and d["final_loss"] is None
    _, again = run(data, system, trace, out=tmp_path, resume=True, local=LocalConfig(steps=2, lr=1e30, batch_size=16),
                   settings=EngineSettings(eval_every=50, checkpoint_every=50, seed=1))
    assert again.diverged_at == res.diverged_at and again.arrivals == res.arrivals  # resume does not train on


@pytest.mark.parametrize("lr", [0.1, 10.0, 1e30], ids=["finite", "diverges-mid-run", "diverges-at-once"])
def test_lazy_divergence_guard_gives_the_eager_result(setup, tmp_path, monkeypatch, lr):
    """On a GPU the engine notices a non-finite model only where it reads results back (before an
    evaluation, a checkpoint, at the end) and winds the run back to the arrival that diverged.
    Forced on the CPU, that mode must give exactly the result of checking after every arrival:
    the same arrival, log, curves, model and costs, with evaluations on both grids in between."""
    data, system, trace = setup
    horizon = float(trace.completion_time[trace.update_order[-1]])
    kw = dict(local=LocalConfig(steps=2, lr=lr, batch_size=16),
              settings=EngineSettings(time_budget=horizon, eval_every=7, eval_times=13, checkpoint_every=11, seed=1))
    _, eager = run(data, system, trace, out=tmp_path / "eager", **kw)
    lazy_init = engine_module.FiniteGuard.__init__
    seen = []

    def lazy(self, device, params, lazy=None):
        lazy_init(self, device, params, lazy=True)
        seen.append(self.lazy)

    stops = []
    stop = engine_module.TraceTrainer._stop_diverged

    def recorded(self, state, alg, k, params, applied):
        stops.append(applied - k)
        return stop(self, state, alg, k, params, applied)

    monkeypatch.setattr(engine_module.FiniteGuard, "__init__", lazy)
    monkeypatch.setattr(engine_module.TraceTrainer, "_stop_diverged", recorded)
    _, late = run(data, system, trace, out=tmp_path / "lazy", **kw)
    assert seen == [True]
    assert stops == ([] if lr == 0.1 else [stops[0]]) and (lr == 0.1 or stops[0] > 0)  # noticed late, wound back
    assert (eager.diverged_at is None) == (lr == 0.1)
    a, b = eager.to_dict(), late.to_dict()
    for d in (a, b):
        for key in ("wall_time", "arrivals_per_second", "costs"):
            d.pop(key)
    assert a == b
    assert {k: v for k, v in eager.costs.items() if "seconds" not in k} == \
           {k: v for k, v in late.costs.items() if "seconds" not in k}
    assert (tmp_path / "eager" / "updates.csv").read_bytes() == (tmp_path / "lazy" / "updates.csv").read_bytes()


def test_stopped_by_names_the_binding_limit(setup):
    data, system, trace = setup
    horizon = float(trace.completion_time[trace.update_order[199]])
    _, a = run(data, system, trace, settings=EngineSettings(updates=100, time_budget=horizon, eval_every=0))
    _, b = run(data, system, trace, settings=EngineSettings(updates=300, time_budget=horizon, eval_every=0))
    _, c = run(data, system, trace, settings=EngineSettings(eval_every=0))
    assert (a.stopped_by, a.arrivals) == ("updates", 100)
    assert (b.stopped_by, b.arrivals) == ("time_budget", 200)
    assert (c.stopped_by, c.arrivals) == ("trace", 400)


def test_weight_cap_clips_importance_weights(setup):
    data, system, trace = setup
    model = model_for(data)
    from aflqueue.fl.local import ParamSpec

    spec = ParamSpec(model)
    ctx = AlgorithmContext(n_clients=6, routing=system.routing, concurrency=5, model=model, spec=spec,
                           num_classes=data.num_classes, input_shape=tuple(data.input_shape))
    w0 = spec.flatten(model)
    free = make_algorithm("generalized-asyncsgd", w0, ctx)
    capped = make_algorithm("generalized-asyncsgd", w0, ctx, weight_cap=1.2)
    n, p = 6, np.asarray(system.routing)
    assert free.weights == pytest.approx(list(1 / (n * p)))
    assert capped.weights == pytest.approx(list(np.minimum(1 / (n * p), 1.2)))
    with pytest.raises(ValidationError, match="weight_cap"):
        make_algorithm("generalized-asyncsgd", w0, ctx, weight_cap=0)


def test_finite_guard_tells_overflowing_sums_from_non_finite_models():
    """The eager check sums the model first: a sum that overflows while every entry is finite must
    not stop a run; a NaN or inf entry must. The lazy one records the first non-finite arrival."""
    huge, bad, inf = torch.full((3,), 3e38), torch.tensor([1.0, float("nan"), 2.0]), torch.full((3,), float("inf"))
    eager = engine_module.FiniteGuard(torch.device("cpu"), torch.zeros(3), lazy=False)
    assert float(huge.sum()) == float("inf") and eager.observe(huge, 1)  # entries finite: goes on
    assert not eager.observe(bad, 2) and not eager.observe(inf, 3)
    lazy = engine_module.FiniteGuard(torch.device("cpu"), torch.zeros(3), lazy=True)
    for k, p in enumerate([huge, bad, inf], start=1):
        assert lazy.observe(p, k)
    assert lazy.first_non_finite() == 2 and torch.equal(lazy.params_at_first_non_finite().isnan(), bad.isnan())


@pytest.mark.parametrize("edit, field", [
    (lambda b: b.update(k=10**12), "k: must be in"), (lambda b: b.update(k=-1), "k: must be in"),
    (lambda b: b.update(time=float("nan")), "time: must be"), (lambda b: b.update(k=20), "time: must be"),
    (lambda b: b["curves"]["test_accuracy"].__setitem__(0, 7.0), "curves.test_accuracy"),
    (lambda b: b.update(log=[(1, 2)] * len(b["log"])), "log[0]"),
])
def test_a_checkpoint_whose_state_is_not_the_traces_is_refused(setup, tmp_path, edit, field):
    """A checkpoint is a file: a resumed state must be the trace's at its arrival (arrivals, time,
    arrival log) with sane curves; an edited one is one line naming the field, not a crash later."""
    data, system, trace = setup
    out = tmp_path / "run"
    CrashOnce = crash_once(GeneralizedAsyncSGD, at=73)
    settings = EngineSettings(updates=100, checkpoint_every=50)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, system, trace, algorithm=CrashOnce, out=out, settings=settings)
    ck = out / "checkpoint.pt"
    blob = torch.load(ck, weights_only=True)
    assert blob["k"] == 50 and blob["curves"]["test_accuracy"]
    edit(blob)
    torch.save(blob, ck)
    with pytest.raises(ValidationError, match=re.escape(field)) as e:
        run(data, system, trace, algorithm=CrashOnce, out=out, resume=True, settings=settings)
    assert "\n" not in str(e.value) and str(ck) in str(e.value)
