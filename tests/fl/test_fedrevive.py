"""FedRevive: class proportions, hybrid update, warm-up schedule, KD cache and pool by hand; synthesis on
every input shape; end-to-end training and exact resume."""

import json
import math

import numpy as np
import pytest
import torch

from aflqueue import System, ValidationError
from aflqueue.fl.algorithms import AlgorithmContext, Arrival, make_algorithm
from aflqueue.fl.algorithms.fedrevive import FedRevive
from aflqueue.fl.data import make_federated
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig, ParamSpec, activation_statistics
from aflqueue.fl.models import build_model
from aflqueue.sim import simulate
from .crash import crash_once

#: small sizes for unit tests (the defaults are exercised end to end)
TINY = dict(probe_samples=16, synth_batch=8, noise_dim=8, gen_hidden=16, kd_batch=8, k_kd=2)


def make_ctx(model, input_shape, classes, n=4, m=4):
    spec = ParamSpec(model)
    return AlgorithmContext(n_clients=n, routing=np.full(n, 1.0 / n), concurrency=m, model=model, spec=spec,
                            num_classes=classes, input_shape=tuple(input_shape), seed=3), spec


def linear_ctx(classes=4, d=6, n=4):
    return make_ctx(build_model("mlp", (d,), classes, seed=0, hidden=()), (d,), classes, n)


def bias_params(spec, bias):
    w = torch.zeros(spec.numel)
    w[-len(bias):] = torch.tensor(bias, dtype=torch.float32)
    return w


def arrival(k, client, delta, start, v0, ctx=None, stats=True):
    extras = {}
    if stats and ctx is not None:
        x = torch.randn(8, *ctx.input_shape, generator=torch.Generator().manual_seed(k))
        extras["activation_stats"] = activation_statistics(ctx.model, ctx.spec, start + delta, x)
    return Arrival(index=k, task=k, client=client, delta=delta, start=start, start_version=v0, relative_delay=0,
                   time=float(k), extras=extras)


# ---------------------------------------------------------------------------------------------- unit tests
def test_class_proportions_average_first_two_uploads_then_freeze():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, **TINY)
    torch.testing.assert_close(alg.proportions(0), torch.full((4,), 0.25, dtype=torch.float64))  # not seen yet
    alg.on_arrival(arrival(1, 0, bias_params(spec, [30.0, 0, 0, 0]), w0, 0))  # predicts class 0 on any input
    torch.testing.assert_close(alg.proportions(0).float(), torch.tensor([1.0, 0, 0, 0]), atol=1e-9, rtol=0)
    alg.on_arrival(arrival(2, 0, bias_params(spec, [0, 30.0, 0, 0]), w0, 0))  # then class 1
    torch.testing.assert_close(alg.proportions(0).float(), torch.tensor([0.5, 0.5, 0, 0]), atol=1e-9, rtol=0)
    alg.on_arrival(arrival(3, 0, bias_params(spec, [0, 0, 30.0, 0]), w0, 0))  # third upload: frozen
    torch.testing.assert_close(alg.proportions(0).float(), torch.tensor([0.5, 0.5, 0, 0]), atol=1e-9, rtol=0)
    alg.on_arrival(arrival(4, 1, torch.zeros(spec.numel), w0, 0))  # uniform model -> uniform proportions
    torch.testing.assert_close(alg.proportions(1).float(), torch.full((4,), 0.25))
    assert alg.cost["probes"] == 3 and alg.teachers.clients() == [0, 1]


def test_hybrid_update_by_hand():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, warmup_versions=0, kd_start_version=0, t_gen=1000, s_max=2,
                         eta_g=0.5, **TINY)
    d = torch.linspace(-1, 1, spec.numel)
    kd = torch.full((spec.numel,), 2.0)
    calls = []

    def fake_kd():
        calls.append(alg.version)
        return kd

    alg.delta_kd = fake_kd
    alg.on_arrival(arrival(1, 0, d, w0, 0))  # empty pool: raw update, no KD
    torch.testing.assert_close(alg.params, 0.5 * d)
    assert alg.version == 1 and calls == []
    alg._pool_append(torch.zeros(3, 6), torch.tensor([0, 1, 2]))
    w = alg.params.clone()
    alg.on_arrival(arrival(2, 1, d, w0, 0))  # tau = 1, beta = (1 - cos(pi/4)) / 2 = 0.146447
    beta = (1 - math.cos(math.pi / 4)) / 2
    torch.testing.assert_close(alg.params, w + 0.5 * ((1 - beta) * d + beta * kd))
    assert calls == [1]
    w = alg.params.clone()
    alg.on_arrival(arrival(3, 2, d, alg.params.clone(), 2))  # tau = 0: beta = 0, delta_KD not computed
    torch.testing.assert_close(alg.params, w + 0.5 * d)
    assert calls == [1] and alg.cost["kd_skipped_beta0"] == 1
    w = alg.params.clone()
    alg.on_arrival(arrival(4, 3, d, w0, 0))  # tau = 3 < 2 s_max = 4
    b3 = 1 - (1 + math.cos(math.pi * 3 / 4)) / 2  # 0.853553
    assert b3 == pytest.approx(0.853553, abs=1e-6)
    torch.testing.assert_close(alg.params, w + 0.5 * ((1 - b3) * d + b3 * kd))
    w = alg.params.clone()
    alg.on_arrival(arrival(5, 3, d, w0, 0))  # tau = 4 = 2 s_max: beta = 1, the raw delta is dropped
    torch.testing.assert_close(alg.params, w + 0.5 * kd)


def test_warmup_schedule():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    global_rng = torch.random.get_rng_state()
    alg = make_algorithm("fedrevive", w0, ctx, warmup_versions=3, kd_start_version=6, t_gen=2, s_max=5, **TINY)
    kd_at, synth_at = [], []
    real_kd, real_synth = alg.delta_kd, alg.synthesize

    def kd():
        kd_at.append(alg.version)
        return real_kd()

    def synth():
        synth_at.append(alg.version)
        return real_synth()

    alg.delta_kd, alg.synthesize = kd, synth
    g = torch.Generator().manual_seed(0)
    for k in range(1, 11):
        alg.on_arrival(arrival(k, k % 4, 0.1 * torch.randn(spec.numel, generator=g), w0, 0, ctx))  # tau = version
    assert alg.version == 10
    assert synth_at == [4, 6, 8, 10]  # multiples of t_gen from warmup_versions on (after the version step)
    assert kd_at == [6, 7, 8, 9]  # hybrid updates only from kd_start_version on
    assert alg.pool_len == 4 * 8 and alg.cost["syntheses"] == 4 and alg.cost["distillations"] == 4
    assert alg.cost["kd_skipped_warmup"] == 6
    # seeded from ctx.seed only: torch's global RNG untouched, a second instance starts identical
    assert torch.equal(torch.random.get_rng_state(), global_rng)
    again = make_algorithm("fedrevive", w0, ctx, warmup_versions=3, kd_start_version=6, t_gen=2, s_max=5, **TINY)
    assert all(torch.equal(a, b) for a, b in zip(again.generator.state_dict().values(),
                                                 make_algorithm("fedrevive", w0, ctx, **TINY).generator.state_dict().values()))


def test_delta_kd_is_cached_per_version():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, buffer=2, warmup_versions=0, kd_start_version=0, t_gen=1, **TINY)
    g = torch.Generator().manual_seed(0)
    for k in range(1, 9):
        alg.on_arrival(arrival(k, k % 4, 0.1 * torch.randn(spec.numel, generator=g), w0, 0, ctx))
    # versions 1..4; synthesis after each version step; KD from version 1 on (pool filled), once per
    # version although two arrivals (both stale: start version 0) use it
    assert alg.version == 4 and alg.cost["syntheses"] == 4
    assert alg.cost["distillations"] == 3 and alg.cost["kd_cache_hits"] == 3
    assert alg.kd_cache[0] == 3 and torch.isfinite(alg.kd_cache[1]).all() and float(alg.kd_cache[1].abs().sum()) > 0


def test_pool_is_fifo_with_cap():
    ctx, spec = linear_ctx()
    alg = make_algorithm("fedrevive", torch.zeros(spec.numel), ctx, pool_size=10, **TINY)
    for b in range(4):  # 4 batches of 4 samples, value = creation number
        v = torch.arange(4 * b, 4 * b + 4, dtype=torch.float32)
        alg._pool_append(v[:, None].expand(4, 6).clone(), (v % 4).long())
    assert alg.pool_len == 10 and alg.pool_total == 16
    assert sorted(alg.pool_x[:, 0].tolist()) == list(range(6, 16))  # the 10 newest
    torch.testing.assert_close(alg.pool_y, (alg.pool_x[:, 0] % 4).long())
    big = make_algorithm("fedrevive", torch.zeros(spec.numel), ctx, pool_size=3, **TINY)
    big._pool_append(torch.arange(5.0)[:, None].expand(5, 6).clone(), torch.zeros(5, dtype=torch.long))
    assert sorted(big.pool_x[:, 0].tolist()) == [2.0, 3.0, 4.0] and big.pool_total == 5


SHAPES = [((1, 28, 28), "cnn28", {"channels": (2, 3), "hidden": 8}),
          ((3, 32, 32), "cnn32", {"channels": (2, 3), "hidden": 8}),
          ((1, 8, 8), "mlp", {"hidden": (8,)}),
          ((12,), "mlp", {"hidden": (8, 8)}),
          ((1, 40), "cnn1d", {"channels": 4})]


@pytest.mark.parametrize("shape,name,opts", SHAPES, ids=[s[1] + "x".join(map(str, s[0])) for s in SHAPES])
def test_synthesis_and_distillation_on_every_input_shape(shape, name, opts):
    model = build_model(name, shape, 10, seed=0, **opts)
    ctx, spec = make_ctx(model, shape, 10)
    w0 = spec.flatten(model)
    alg = make_algorithm("fedrevive", w0, ctx, warmup_versions=0, kd_start_version=0, t_gen=1, s_max=1, **TINY)
    gen0 = [p.detach().clone() for p in alg.generator.parameters()]
    g = torch.Generator().manual_seed(1)
    for k in range(1, 4):
        alg.on_arrival(arrival(k, k % 4, 0.05 * torch.randn(spec.numel, generator=g), w0, 0, ctx))
    assert alg.version == 3 and alg.cost["syntheses"] == 3 and alg.cost["distillations"] == 2
    assert alg.pool_x.shape[1:] == shape and alg.pool_len == 3 * 8 and torch.isfinite(alg.pool_x[:alg.pool_len]).all()
    assert torch.isfinite(alg.params).all() and torch.isfinite(alg.kd_cache[1]).all()
    l_bn, l_ce, l_adv = alg.cost["synthesis_loss_last"]
    assert l_bn > 0 and l_ce > 0 and l_adv <= 0  # feature statistics matched against uploaded ones
    assert any(not torch.equal(a, b) for a, b in zip(gen0, alg.generator.parameters()))  # Reptile moved it


def test_validation_errors():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    for bad, field in [({"teachers": 0}, "algorithm.teachers"), ({"reptile_lr": 1.5}, "algorithm.reptile_lr"),
                       ({"s_max": 0}, "algorithm.s_max"), ({"t_gen": 0}, "algorithm.t_gen"),
                       ({"kd_lr": -1}, "algorithm.kd_lr"), ({"w_bn": -0.1}, "algorithm.w_bn"),
                       ({"warmup_versions": -1}, "algorithm.warmup_versions"), ({"buffer": 0}, "algorithm.buffer"),
                       ({"pool": 3}, "algorithm.fedrevive")]:
        with pytest.raises(ValidationError) as e:
            make_algorithm("fedrevive", w0, ctx, **bad)
        assert e.value.field == field


def test_defaults_follow_the_spec():
    d = FedRevive.defaults
    assert (d["teachers"], d["probe_temperature"], d["probe_uploads"], d["t_gen"], d["k_synth"]) == (8, 0.8, 2, 10, 2)
    assert (d["w_bn"], d["w_ce"], d["w_adv"], d["k_kd"], d["kd_lr"], d["s_max"]) == (0.003, 1.0, 0.1, 10, 1e-4, 75)
    assert (d["buffer"], d["eta_g"], d["warmup_versions"], d["kd_start_version"]) == (1, 0.1, 50, 100)
    assert FedRevive.client_statistics


# ---------------------------------------------------------------------------------------------- end to end
N = 6
FAST = {"warmup_versions": 10, "kd_start_version": 20, "t_gen": 5, "s_max": 10}


@pytest.fixture(scope="module")
def setup():
    data = make_federated("synthetic", N, "dirichlet", alpha=0.5, seed=0, num_samples=600, num_features=12,
                          num_classes=4)
    system = System.from_rates([2.0, 1.0, 1.0, 0.5, 0.2, 0.1], [0.25, 0.2, 0.2, 0.15, 0.1, 0.1], 5)
    trace = simulate(system, 400, seed=3)
    return data, system, trace


def run(data, system, trace, algorithm="fedrevive", params=None, out=None, resume=False, model=None, **kw):
    settings = kw.pop("settings", EngineSettings(updates=200, eval_every=50, checkpoint_every=50, seed=1))
    model = model or build_model("mlp", data.input_shape, data.num_classes, seed=0, hidden=(16,))
    tr = TraceTrainer(model=model, data=data, trace=trace, routing=system.routing, algorithm=algorithm,
                      algorithm_params=params or {}, local=LocalConfig(steps=2, lr=0.1, batch_size=16),
                      settings=settings, device="cpu", output_dir=out, **kw)
    return tr, tr.run(resume=resume)


def test_fedrevive_learns_end_to_end_and_reports_costs(setup, tmp_path):
    data, system, trace = setup
    _, res = run(data, system, trace, params=FAST, out=tmp_path)
    acc = res.curves["test_accuracy"]
    assert res.complete and res.arrivals == 200 and math.isfinite(res.final_loss)
    assert acc[-1] > acc[0] + 0.1 or acc[-1] > 0.8
    c = json.loads((tmp_path / "results.json").read_text())["costs"]
    assert c["arrivals"] == 200 and c["syntheses"] == 200 // 5 - 1  # versions 10, 15, ..., 200
    assert c["distillations"] > 0 and c["pool_samples"] == 39 * 64 and 0 < c["beta_mean"] < 1
    P = sum(p.numel() for p in build_model("mlp", data.input_shape, data.num_classes, hidden=(16,)).parameters())
    assert c["memory_pool_bytes"] >= 39 * 64 * (12 + 2) * 4 and c["memory_teacher_buffer_bytes"] >= N * P * 4
    for k in ("synthesis_seconds_per_round", "distillation_seconds_per_kd", "memory_generator_bytes",
              "memory_total_bytes", "server_seconds_per_arrival"):
        assert c[k] > 0


def test_fedrevive_resume_after_crash_is_identical(setup, tmp_path):
    data, system, trace = setup
    _, full = run(data, system, trace, params=FAST, out=tmp_path / "full")

    CrashOnce = crash_once(FedRevive, at=123)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, system, trace, algorithm=CrashOnce, params=FAST, out=tmp_path / "crash")
    partial = json.loads((tmp_path / "crash" / "results.json").read_text())
    assert partial["complete"] is False and partial["arrivals"] == 100
    _, resumed = run(data, system, trace, algorithm=CrashOnce, params=FAST, out=tmp_path / "crash", resume=True)
    assert resumed.final_accuracy == full.final_accuracy and resumed.final_loss == full.final_loss
    assert resumed.curves["test_loss"] == full.curves["test_loss"] and resumed.log == full.log
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["alg"]
    b = torch.load(tmp_path / "crash" / "checkpoint.pt", weights_only=True)["alg"]
    for key in ("params", "pool_x", "pool_y", "proportion_sum", "probe_count"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    for k in a["generator"]:
        torch.testing.assert_close(a["generator"][k], b["generator"][k], rtol=0, atol=0)
    for k in a["rng"]:
        assert torch.equal(a["rng"][k], b["rng"][k])
    assert [e["client"] for e in a["teachers"]["entries"]] == [e["client"] for e in b["teachers"]["entries"]]
    assert a["kd_cache"][0] == b["kd_cache"][0]
    torch.testing.assert_close(a["kd_cache"][1], b["kd_cache"][1], rtol=0, atol=0)
    assert a["cost"]["distillations"] == b["cost"]["distillations"] > 0


def test_fedrevive_on_digits_images():
    data = make_federated("digits", 4, "dirichlet", alpha=0.5, seed=0, max_train=400, max_test=200)
    system = System.from_rates([1.0, 1.0, 0.3, 0.3], concurrency=6)
    trace = simulate(system, 80, seed=0)
    _, res = run(data, system, trace, params={**FAST, **TINY}, settings=EngineSettings(eval_every=40, seed=0))
    assert res.arrivals == 80 and math.isfinite(res.final_loss) and res.costs["syntheses"] == 80 // 5 - 1
    assert res.costs["distillations"] > 0


def test_fedrevive_on_mnist1d_cnn1d():
    data = make_federated("mnist1d", 4, "dirichlet", alpha=0.5, seed=0, num_samples=400)
    system = System.from_rates([1.0, 1.0, 0.3, 0.3], concurrency=6)
    trace = simulate(system, 60, seed=0)
    model = build_model("cnn1d", data.input_shape, data.num_classes, seed=0, channels=8)
    _, res = run(data, system, trace, params={**FAST, **TINY}, model=model,
                 settings=EngineSettings(eval_every=30, seed=0))
    assert res.arrivals == 60 and math.isfinite(res.final_loss) and res.costs["distillations"] > 0
