"""FedRevive against the reference implementation's behaviour (NVFlare research/fedrevive): teacher
buffer, class proportions, warm-up schedule and hybrid update, per-teacher KD sampling, best-batch
pool entry, outer Adam meta-update; synthesis on every input shape; end-to-end training and exact
resume. The loss terms themselves are checked by hand in test_distill.py."""

import json
import math

import numpy as np
import pytest
import torch

from aflqueue import System, ValidationError
from aflqueue.fl.algorithms import AlgorithmContext, Arrival, make_algorithm
from aflqueue.fl.algorithms import fedrevive as fr
from aflqueue.fl.algorithms.fedrevive import FedRevive
from aflqueue.fl.data import make_federated
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig, ParamSpec, activation_statistics
from aflqueue.fl.models import build_model
from aflqueue.sim import simulate
from .crash import crash_once

#: small sizes for unit tests (the defaults are exercised end to end)
TINY = dict(probe_samples=16, synth_batch=8, latent_dim=8, gen_hidden=16, kd_per_teacher=4, k_kd=2)


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
    assert alg.cost["probes"] == 3
    # class proportions are client state: client 0's three buffered models all use its final estimate
    assert alg.teachers.clients() == [0, 0, 0, 1]
    torch.testing.assert_close(alg.teacher_proportions(), torch.tensor([[0.5, 0.5, 0, 0]] * 3 + [[0.25] * 4]),
                               atol=1e-7, rtol=0)


def test_teacher_buffer_holds_the_c_most_recent_returns():
    ctx, spec = linear_ctx(n=4)
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, teachers=3, **TINY)
    script = [0, 1, 0, 0, 2, 3, 3]
    for k, c in enumerate(script, start=1):
        alg.on_arrival(arrival(k, c, torch.full((spec.numel,), float(k)), w0, 0))
        # exactly the last 3 returns, oldest first, a client possibly several times
        assert alg.teachers.clients() == script[max(0, k - 3):k]
        assert [float(e["params"][0]) for e in alg.teachers.entries] == [float(j) for j in range(max(1, k - 2), k + 1)]
    # the old behaviour, one slot per client, stays selectable
    d = make_algorithm("fedrevive", w0, ctx, teachers=3, distinct_teachers=True, **TINY)
    for k, c in enumerate(script, start=1):
        d.on_arrival(arrival(k, c, torch.full((spec.numel,), float(k)), w0, 0))
    assert d.teachers.clients() == [0, 2, 3] and [float(e["params"][0]) for e in d.teachers.entries] == [4.0, 5.0, 7.0]


def _phases(alg, spec, arrivals, kd_value=2.0):
    """Replay stale arrivals (start version 0) and record which steps ran at which version."""
    seen = {"synth": [], "kd": [], "adv": []}
    real_adv = fr.masked_adversarial_loss

    def synth():
        seen["synth"].append(alg.version)
        FedRevive.synthesize(alg)

    def kd():
        seen["kd"].append(alg.version)
        return torch.full((spec.numel,), kd_value)

    def adv(*a):
        seen["adv"].append(alg.version)
        return real_adv(*a)

    alg.synthesize, alg.delta_kd = synth, kd
    fr.masked_adversarial_loss = adv
    try:
        for a in arrivals:
            alg.on_arrival(a)
    finally:
        fr.masked_adversarial_loss = real_adv
    return seen


def test_warmup_schedule_and_blend_by_hand():
    # warm-up 3 (reference 50), KD start 6 (reference 100), T_gen 2, s_max 5; buffer 1, eta_g 0.5:
    # the server is at version k - 1 when arrival k (start version 0, tau = k - 1) comes in
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, warmup_versions=3, kd_start_version=6, t_gen=2, s_max=5, eta_g=0.5,
                         **TINY)
    d = torch.linspace(-1, 1, spec.numel)
    rng_before = torch.random.get_rng_state()
    params, arrivals = [alg.params.clone()], []
    for k in range(1, 11):
        arrivals.append(arrival(k, k % 4, d, w0, 0, ctx))
    seen = {"synth": [], "kd": [], "adv": []}
    for a in arrivals:
        part = _phases(alg, spec, [a])
        for key in seen:
            seen[key] += part[key]
        params.append(alg.params.clone())
    assert alg.version == 10
    assert seen["synth"] == [4, 6, 8]  # v >= 3, v % 2 == 0, beta > 0 (v = 0 is skipped: warm-up)
    assert sorted(set(seen["adv"])) == [6, 8]  # the adversarial term from version 6 on
    assert seen["kd"] == [7, 8, 9]  # KD strictly after version 6
    assert alg.pool_len == 3 * 8 and alg.cost["syntheses"] == 3
    kd = torch.full((spec.numel,), 2.0)
    for v in range(10):  # arrival v + 1 is applied at version v with tau = v
        beta = (1 - math.cos(math.pi * v / 10)) / 2
        if v < 3:
            expect = d  # no DFKD before the warm-up version
        elif v <= 6:
            expect = (1 - beta) * d  # blend with delta_KD = 0 while only synthesising
        else:
            expect = (1 - beta) * d + beta * kd
        torch.testing.assert_close(params[v + 1], params[v] + 0.5 * expect, rtol=0, atol=1e-6)
    assert alg.cost["hybrid_arrivals"] == 7 and alg.cost["kd_skipped_warmup"] == 3 + 4
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # seeded generators only


def test_fresh_update_is_never_blended():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, warmup_versions=0, kd_start_version=0, t_gen=1, eta_g=1.0, **TINY)
    d = torch.linspace(-1, 1, spec.numel)
    seen = _phases(alg, spec, [arrival(1, 0, d, w0, 0, ctx), arrival(2, 1, d, alg.params.clone() + d, 1, ctx)])
    # both arrivals have tau = 0: beta = 0, no synthesis, no KD, raw deltas
    assert seen == {"synth": [], "kd": [], "adv": []} and alg.cost["kd_skipped_beta0"] == 2
    torch.testing.assert_close(alg.params, 2 * d)


def test_kd_draws_a_fixed_number_of_samples_per_teacher_by_its_proportions():
    ctx, spec = linear_ctx(classes=4, n=4)
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, teachers=3, **{**TINY, "k_kd": 3, "kd_per_teacher": 5})
    # teachers: client 0 knows class 0 only, client 1 class 2 only (bias models), client 0 again
    for k, (c, b) in enumerate([(0, [30.0, 0, 0, 0]), (1, [0, 0, 30.0, 0]), (0, [30.0, 0, 0, 0])], start=1):
        alg.on_arrival(arrival(k, c, bias_params(spec, b), w0, 0))
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    alg._pool_append(x, torch.arange(40) % 4)  # 10 samples of each class
    calls = []
    real = fr.sample_by_class

    def spy(labels, probs, n, gen):
        idx = real(labels, probs, n, gen)
        calls.append((probs.clone(), n, labels[idx]))
        return idx

    fr.sample_by_class = spy
    try:
        d = alg.delta_kd()
    finally:
        fr.sample_by_class = real
    assert len(calls) == 3  # one draw per teacher (buffer slot), for all k_kd = 3 steps at once
    assert [n for _, n, _ in calls] == [3 * 5] * 3
    assert [set(lab.tolist()) for _, _, lab in calls] == [{0}, {2}, {0}]  # by each teacher's proportions
    torch.testing.assert_close(calls[1][0], torch.tensor([0.0, 0, 1, 0]), atol=1e-6, rtol=0)
    assert torch.isfinite(d).all() and float(d.abs().max()) > 0 and alg.cost["distillations"] == 1
    # an empty pool: no step, delta_KD = 0 (the reference's revive() with no images)
    empty = make_algorithm("fedrevive", w0, ctx, **TINY)
    empty.on_arrival(arrival(1, 0, bias_params(spec, [1.0, 0, 0, 0]), w0, 0))
    assert torch.equal(empty.delta_kd(), torch.zeros(spec.numel))


def test_synthesis_keeps_the_best_batch_and_meta_updates_with_adam():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedrevive", w0, ctx, k_synth=3, w_bn=0.0, w_adv=0.0, **TINY)
    g = torch.Generator().manual_seed(0)
    for k in range(1, 4):
        alg.on_arrival(arrival(k, k % 4, 0.3 * torch.randn(spec.numel, generator=g), w0, 0, ctx))
    theta0 = [p.detach().clone() for p in alg.generator.parameters()]
    batches, offsets = [], iter([5.0, 0.0, 7.0])  # the second inner batch gets the lowest loss
    real_forward, real_onehot = fr.ClassConditionalGenerator.forward, fr.onehot_loss

    def forward(self, *a):
        x = real_forward(self, *a)
        batches.append(x.detach().clone())
        return x

    fr.ClassConditionalGenerator.forward = forward
    fr.onehot_loss = lambda *a: real_onehot(*a) + next(offsets)
    try:
        alg.synthesize()
    finally:
        fr.ClassConditionalGenerator.forward, fr.onehot_loss = real_forward, real_onehot
    assert len(batches) == 3 and alg.pool_len == 8
    torch.testing.assert_close(alg.pool_x[:8], batches[1], rtol=0, atol=0)  # the best, not the last
    assert not torch.equal(batches[1], batches[2])
    # first step of Adam(eps = 0) on theta - theta_fast: every coordinate moves by exactly meta_lr
    moves = torch.cat([(p.detach() - q).abs().flatten() for p, q in zip(alg.generator.parameters(), theta0)])
    torch.testing.assert_close(moves, torch.full_like(moves, 3e-3), rtol=1e-3, atol=0)
    assert alg.meta_opt.state_dict()["param_groups"][0]["betas"] == (0.5, 0.999)


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
    # versions 0, 1, 2 each synthesise (tau > 0 from the second arrival: the first has tau = 0)
    assert alg.version == 3 and alg.cost["syntheses"] == 2 and alg.cost["distillations"] == 2
    assert alg.pool_x.shape[1:] == shape and alg.pool_len == 2 * 8 and torch.isfinite(alg.pool_x[:alg.pool_len]).all()
    assert torch.isfinite(alg.params).all()
    l_feat, l_ce, l_adv = alg.cost["synthesis_loss_last"]
    assert l_feat > 0 and l_ce > 0 and l_adv <= 0  # feature statistics matched against uploaded ones
    assert any(not torch.equal(a, b) for a, b in zip(gen0, alg.generator.parameters()))  # meta-update moved it


def test_validation_errors():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    for bad, field in [({"teachers": 0}, "algorithm.teachers"), ({"meta_lr": 0}, "algorithm.meta_lr"),
                       ({"s_max": 0}, "algorithm.s_max"), ({"t_gen": 0}, "algorithm.t_gen"),
                       ({"kd_lr": -1}, "algorithm.kd_lr"), ({"w_bn": -0.1}, "algorithm.w_bn"),
                       ({"kd_per_teacher": 0}, "algorithm.kd_per_teacher"),
                       ({"warmup_versions": -1}, "algorithm.warmup_versions"), ({"buffer": 0}, "algorithm.buffer"),
                       ({"weighting": "inverse"}, "algorithm.weighting"),
                       ({"reptile_lr": 0.5}, "algorithm.fedrevive")]:
        with pytest.raises(ValidationError) as e:
            make_algorithm("fedrevive", w0, ctx, **bad)
        assert e.value.field == field


def test_defaults_follow_the_reference():
    d = FedRevive.defaults  # NVFlare research/fedrevive, DFKDConfig and FIGURE_2_METHOD_CONFIGS (paper-aligned)
    assert (d["buffer"], d["eta_g"], d["teachers"], d["distinct_teachers"]) == (1, 0.1, 8, False)
    assert (d["probe_temperature"], d["probe_uploads"], d["probe_samples"], d["t_gen"]) == (0.8, 2, 64, 10)
    assert (d["k_synth"], d["synth_batch"], d["w_bn"], d["w_ce"], d["w_adv"]) == (2, 64, 0.003, 1.0, 0.1)
    assert (d["gen_lr"], d["latent_lr"], d["meta_lr"], d["embedding_weight"], d["latent_dim"]) == (3e-3, 1e-3, 3e-3,
                                                                                                     0.2, 256)
    assert (d["pool_size"], d["k_kd"], d["kd_per_teacher"], d["kd_lr"], d["kd_weight_decay"]) == (16000, 10, 32, 1e-4,
                                                                                                  1e-5)
    assert (d["kd_temperature"], d["s_max"], d["warmup_versions"], d["kd_start_version"]) == (1.0, 75, 50, 100)
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
    tr = TraceTrainer(model=model, data=data, trace=trace, algorithm=algorithm,
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
    # buffer 1: arrival k is handled at version k - 1; the schedule from the log
    v = np.array(res.log["model_version"]) - 1
    tau = np.array(res.log["staleness"])
    synth = int(np.sum((v >= 10) & (v % 5 == 0) & (tau > 0)))
    assert c["arrivals"] == 200 and c["syntheses"] == synth > 10
    assert c["distillations"] == int(np.sum((v > 20) & (tau > 0))) > 0
    assert c["hybrid_arrivals"] == int(np.sum((v >= 10) & (tau > 0))) and 0 < c["beta_mean"] < 1
    assert c["pool_samples"] == 64 * synth
    P = sum(p.numel() for p in build_model("mlp", data.input_shape, data.num_classes, hidden=(16,)).parameters())
    assert c["memory_pool_bytes"] >= 64 * synth * (12 * 4 + 8) and c["memory_teacher_buffer_bytes"] >= 8 * P * 4
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
    for k, st in a["meta_opt"]["state"].items():  # the persistent outer Adam continues where it stopped
        for name in st:
            torch.testing.assert_close(st[name], b["meta_opt"]["state"][k][name], rtol=0, atol=0)
    assert a["guard"] == b["guard"] and a["cost"]["distillations"] == b["cost"]["distillations"] > 0


def test_fedrevive_on_digits_images():
    data = make_federated("digits", 4, "dirichlet", alpha=0.5, seed=0, max_train=400, max_test=200)
    system = System.from_rates([1.0, 1.0, 0.3, 0.3], concurrency=6)
    trace = simulate(system, 80, seed=0)
    _, res = run(data, system, trace, params={**FAST, **TINY}, settings=EngineSettings(eval_every=40, seed=0))
    assert res.arrivals == 80 and math.isfinite(res.final_loss) and res.costs["syntheses"] > 0
    assert res.costs["distillations"] > 0 and res.costs["pool_samples"] == 8 * res.costs["syntheses"]


def test_fedrevive_on_mnist1d_cnn1d():
    data = make_federated("mnist1d", 4, "dirichlet", alpha=0.5, seed=0, num_samples=400)
    system = System.from_rates([1.0, 1.0, 0.3, 0.3], concurrency=6)
    trace = simulate(system, 60, seed=0)
    model = build_model("cnn1d", data.input_shape, data.num_classes, seed=0, channels=8)
    _, res = run(data, system, trace, params={**FAST, **TINY}, model=model,
                 settings=EngineSettings(eval_every=30, seed=0))
    assert res.arrivals == 60 and math.isfinite(res.final_loss) and res.costs["distillations"] > 0
