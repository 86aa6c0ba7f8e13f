"""FedEcho: hand-checked teacher, distillation step and buffer; end-to-end training and exact resume."""

import json
import math

import numpy as np
import pytest
import torch

from aflqueue import System, ValidationError
from aflqueue.fl.algorithms import AlgorithmContext, Arrival, make_algorithm
from aflqueue.fl.algorithms.fedecho import FedEcho
from aflqueue.fl.data import make_federated
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import LocalConfig, ParamSpec
from aflqueue.fl.models import build_model
from aflqueue.sim import simulate
from .crash import crash_once

LN3 = math.log(3.0)


# ---------------------------------------------------------------------------------------------- unit tests
def linear_ctx(classes=3, d=4, unlabeled=None, n=3, **kw):
    """A linear model (``hidden=()``): with zero weights its logits are its bias for every input."""
    model = build_model("mlp", (d,), classes, seed=0, hidden=())
    spec = ParamSpec(model)
    u = torch.zeros(6, d) if unlabeled is None else unlabeled
    ctx = AlgorithmContext(n_clients=n, routing=np.full(n, 1.0 / n), concurrency=4, model=model, spec=spec,
                           num_classes=classes, input_shape=(d,), unlabeled=u, **kw)
    return ctx, spec


def bias_params(spec, bias):
    w = torch.zeros(spec.numel)
    w[-len(bias):] = torch.tensor(bias, dtype=torch.float32)
    return w


def arrival(k, client, delta, start, v0=0):
    return Arrival(index=k, task=k, client=client, delta=delta, start=start, start_version=v0, relative_delay=0,
                   time=float(k))


def test_teacher_is_mean_of_latest_client_logits():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedecho", w0, ctx, buffer=100)  # no flush: only the stored logits change
    alg.on_arrival(arrival(1, 0, bias_params(spec, [1.0, 0.0, 0.0]), w0))
    alg.on_arrival(arrival(2, 1, bias_params(spec, [0.0, 2.0, 0.0]), w0))
    torch.testing.assert_close(alg.teacher(), torch.tensor([[0.5, 1.0, 0.0]]).expand(6, 3))
    # client 0 reports again from another start model: its old logits are replaced (x_0 = start + delta)
    start = bias_params(spec, [0.0, 0.0, 1.0])
    alg.on_arrival(arrival(3, 0, bias_params(spec, [0.0, 0.0, 3.0]), start))
    torch.testing.assert_close(alg.teacher(), torch.tensor([[0.0, 1.0, 2.0]]).expand(6, 3))
    assert alg.version == 0 and torch.equal(alg.params, w0)
    c = alg.costs()
    assert c["clients_reported"] == 2 and c["memory_logits_bytes"] == 2 * 6 * 3 * 4
    assert c["memory_checkpoints_bytes"] == 4 * spec.numel * 4 and c["arrivals"] == 3


def test_one_distillation_step_by_hand():
    # student bias 0 (q = (1/2, 1/2)), teacher bias (ln 3, 0) (p = (3/4, 1/4)), inputs 0, T = 1:
    # alpha = 0.686767, d loss / d bias = alpha (q - p) + (1 - alpha) (q - e_0) = (-0.328308, +0.328308)
    ctx, spec = linear_ctx(classes=2)
    w0 = torch.zeros(spec.numel)
    alg = make_algorithm("fedecho", w0, ctx, buffer=100, distill_steps=1, eta_d=0.1, temperature=1.0)
    alg.on_arrival(arrival(1, 0, bias_params(spec, [LN3, 0.0]), w0))
    g = 0.686767 * np.array([-0.25, 0.25]) + (1 - 0.686767) * np.array([-0.5, 0.5])
    assert g[1] == pytest.approx(0.328308, abs=1e-6)
    w1 = alg.distill(w0)
    torch.testing.assert_close(w1, bias_params(spec, list(-0.1 * g)), atol=1e-6, rtol=0)
    # clipped at nu = 0.1: the step is eta_d * nu * g / |g|
    alg2 = make_algorithm("fedecho", w0, ctx, buffer=100, distill_steps=1, eta_d=0.1, temperature=1.0, nu=0.1)
    alg2.on_arrival(arrival(1, 0, bias_params(spec, [LN3, 0.0]), w0))
    w2 = alg2.distill(w0)
    assert float(torch.linalg.vector_norm(w2)) == pytest.approx(0.1 * 0.1, abs=1e-7)
    torch.testing.assert_close(w2 / w2.norm(), w1 / w1.norm())


def test_buffer_step_then_distillation_one_version():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    d1, d2 = bias_params(spec, [1.0, 0.0, 0.0]), bias_params(spec, [0.0, 3.0, 0.0])
    alg = make_algorithm("fedecho", w0, ctx, buffer=2, eta_g=0.5, distill_steps=0)
    alg.on_arrival(arrival(1, 0, d1, w0))
    assert alg.version == 0 and torch.equal(alg.params, w0)
    alg.on_arrival(arrival(2, 1, d2, w0))
    assert alg.version == 1
    torch.testing.assert_close(alg.params, 0.5 * (d1 + d2) / 2)  # w + eta_g mean(deltas)
    # with distillation: the same parameter step, then Q steps, still one version
    alg = make_algorithm("fedecho", w0, ctx, buffer=2, eta_g=0.5, distill_steps=3)
    alg.on_arrival(arrival(1, 0, d1, w0))
    alg.on_arrival(arrival(2, 1, d2, w0))
    assert alg.version == 1 and alg.cost["distillation_steps"] == 3 and alg.cost["distillation_rounds"] == 1
    # reproduce: Q steps from the parameter step, same minibatch stream
    ref = make_algorithm("fedecho", w0, ctx, buffer=100, distill_steps=3)
    ref.on_arrival(arrival(1, 0, d1, w0))
    ref.on_arrival(arrival(2, 1, d2, w0))
    torch.testing.assert_close(alg.params, ref.distill(0.5 * (d1 + d2) / 2))


def test_unlabeled_sources_and_errors():
    ctx, spec = linear_ctx()
    w0 = torch.zeros(spec.numel)
    ctx.unlabeled = None
    with pytest.raises(ValidationError, match="unlabeled_fraction") as e:
        make_algorithm("fedecho", w0, ctx)
    assert e.value.field == "algorithm.unlabeled"
    g = make_algorithm("fedecho", w0, ctx, unlabeled="gaussian", gaussian_samples=50)
    assert g.U.shape == (50, 4)
    torch.testing.assert_close(g.U, make_algorithm("fedecho", w0, ctx, unlabeled="gaussian", gaussian_samples=50).U,
                               rtol=0, atol=0)  # seeded
    with pytest.raises(ValidationError, match="extras"):
        make_algorithm("fedecho", w0, ctx, unlabeled="extras")
    ctx.extras["unlabeled"] = torch.ones(7, 4)
    assert make_algorithm("fedecho", w0, ctx, unlabeled="extras").U.shape == (7, 4)
    ctx.extras["unlabeled"] = torch.ones(7, 5)
    with pytest.raises(ValidationError, match="shape"):
        make_algorithm("fedecho", w0, ctx, unlabeled="extras")
    for bad, field in [({"unlabeled": "web"}, "algorithm.unlabeled"), ({"nu": 0}, "algorithm.nu"),
                       ({"alpha_min": 0.9}, "algorithm.alpha_min"), ({"alpha_max": 1.5}, "algorithm.alpha_max"),
                       ({"distill_steps": -1}, "algorithm.distill_steps"), ({"eta_d": -0.1}, "algorithm.eta_d"),
                       ({"buffer": 0}, "algorithm.buffer"), ({"temprature": 2}, "algorithm.fedecho")]:
        with pytest.raises(ValidationError) as e:
            make_algorithm("fedecho", w0, ctx, **{"unlabeled": "gaussian", **bad})
        assert e.value.field == field


def test_defaults_follow_the_spec():
    d = FedEcho.defaults
    assert (d["buffer"], d["distill_steps"], d["alpha_min"], d["alpha_max"], d["nu"]) == (10, 5, 0.2, 0.8, 5.0)
    assert d["unlabeled"] == "heldout" and d["hard_label_max_entropy"] == 0.9


def test_uninformative_teacher_no_longer_sharpens_the_student():
    # the collapse mechanism: the clients' models barely differ from the server's, so the teacher is
    # the student itself, near uniform (H = 0.99998) with a slight preference for class 0; the hard
    # label CE(student, argmax teacher) then pushes every input towards class 0, round after round
    ctx, spec = linear_ctx()
    w = bias_params(spec, [0.01, 0.0, 0.0])
    before = make_algorithm("fedecho", w, ctx, buffer=100, hard_label_max_entropy=1.0)  # the code before the fix
    before.on_arrival(arrival(1, 0, torch.zeros(spec.numel), w))
    w1 = before.distill(w)
    margin = lambda v: float(v[-3] - v[-2])  # noqa: E731  (bias of class 0 minus class 1)
    # alpha = 0.2 + 0.6 H ~ 0.79999: 5 steps of 0.2 (softmax - e_0) = (-0.133, 0.067, 0.067) per step
    assert margin(w1) == pytest.approx(0.01 + 5 * 0.01 * (1 - 0.79999) * 1.0, abs=2e-4)  # 0.02: doubled
    # with the fix the hard label of a teacher above H = 0.9 is dropped; the soft term's gradient
    # vanishes where student == teacher, so the student does not move (but for float rounding)
    after = make_algorithm("fedecho", w, ctx, buffer=100)
    after.on_arrival(arrival(1, 0, torch.zeros(spec.numel), w))
    torch.testing.assert_close(after.distill(w), w, rtol=0, atol=1e-7)
    assert after.cost["alpha_sum"] == 5.0  # alpha = 1 on each of the 5 steps


# ---------------------------------------------------------------------------------------------- end to end
N = 6


# the `setup` fixture (tiny task, system, trace) is in conftest.py


def run(data, system, trace, algorithm="fedecho", params=None, out=None, resume=False, model=None, **kw):
    settings = kw.pop("settings", EngineSettings(eval_every=100, checkpoint_every=50, seed=1))
    model = model or build_model("mlp", data.input_shape, data.num_classes, seed=0, hidden=(16,))
    tr = TraceTrainer(model=model, data=data, trace=trace, algorithm=algorithm,
                      algorithm_params=params or {}, local=LocalConfig(steps=2, lr=0.1, batch_size=16),
                      settings=settings, device="cpu", output_dir=out, **kw)
    return tr, tr.run(resume=resume)


def test_fedecho_learns_end_to_end_and_reports_costs(setup, tmp_path):
    data, system, trace = setup
    _, res = run(data, system, trace, out=tmp_path)
    acc = res.curves["test_accuracy"]
    assert res.complete and res.arrivals == 400 and math.isfinite(res.final_loss)
    assert acc[-1] > acc[0] + 0.1 or acc[-1] > 0.8
    c = json.loads((tmp_path / "results.json").read_text())["costs"]
    P = sum(p.numel() for p in build_model("mlp", data.input_shape, data.num_classes, hidden=(16,)).parameters())
    assert c["arrivals"] == 400 and c["distillation_rounds"] == 40 and c["distillation_steps"] == 200
    assert c["memory_checkpoints_bytes"] == 5 * P * 4  # m = 5 start checkpoints
    assert c["memory_logits_bytes"] == N * len(data.unlabeled.x) * 4 * 4  # every client reported, C = 4
    assert c["inference_seconds_per_arrival"] > 0 and 0.2 <= c["alpha_mean"] <= 0.8


def test_fedecho_resume_after_crash_is_identical(setup, tmp_path):
    data, system, trace = setup
    params = {"buffer": 4}
    _, full = run(data, system, trace, params=params, out=tmp_path / "full")

    CrashOnce = crash_once(FedEcho, at=173)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, system, trace, algorithm=CrashOnce, params=params, out=tmp_path / "crash")
    partial = json.loads((tmp_path / "crash" / "results.json").read_text())
    assert partial["complete"] is False and partial["arrivals"] == 150
    _, resumed = run(data, system, trace, algorithm=CrashOnce, params=params, out=tmp_path / "crash", resume=True)
    assert resumed.final_accuracy == full.final_accuracy and resumed.final_loss == full.final_loss
    assert resumed.curves["test_loss"] == full.curves["test_loss"] and resumed.log == full.log
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["alg"]
    b = torch.load(tmp_path / "crash" / "checkpoint.pt", weights_only=True)["alg"]
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=0)
    assert sorted(a["teacher_logits"]) == sorted(b["teacher_logits"])
    for k in a["teacher_logits"]:
        torch.testing.assert_close(a["teacher_logits"][k], b["teacher_logits"][k], rtol=0, atol=0)
    assert torch.equal(a["batch_gen"], b["batch_gen"])


def test_fedecho_on_digits_images_with_gaussian_set():
    data = make_federated("digits", 4, "dirichlet", alpha=0.5, seed=0, max_train=400, max_test=200)
    assert data.unlabeled is None and data.input_shape == (1, 8, 8)
    system = System.from_rates([1.0, 1.0, 0.3, 0.3], concurrency=6)
    trace = simulate(system, 120, seed=0)
    _, res = run(data, system, trace, params={"unlabeled": "gaussian", "gaussian_samples": 64},
                 settings=EngineSettings(eval_every=60, seed=0))
    assert res.arrivals == 120 and math.isfinite(res.final_loss) and res.costs["distillation_rounds"] == 12
