"""Distillation building blocks (aflqueue.fl.distill) against values computed by hand."""

import math

import pytest
import torch

from aflqueue.fl.distill import (ClassConditionalGenerator, TeacherBuffer, clip_by_norm, entropy_alpha,
                                 feature_matching_loss, feature_statistics, hybrid_delta, normalized_entropy,
                                 probe_class_proportions, reptile_step, sample_by_class, seeded_generator,
                                 staleness_beta, teacher_class_weights, temperature_kl, uncertainty_weighted_loss)
from aflqueue.fl.local import ParamSpec, activation_statistics
from aflqueue.fl.models import build_model

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_normalized_entropy_and_alpha_by_hand():
    # uniform teacher: H = 1 -> alpha_max
    h = float(normalized_entropy(torch.zeros(5, 4)))
    assert h == pytest.approx(1.0, abs=1e-6)
    assert entropy_alpha(h, 0.2, 0.8) == pytest.approx(0.8, abs=1e-6)
    # one-hot teacher: H = 0 -> alpha_min
    onehot = torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 100.0]])
    assert float(normalized_entropy(onehot)) == pytest.approx(0.0, abs=1e-6)
    assert entropy_alpha(float(normalized_entropy(onehot)), 0.2, 0.8) == pytest.approx(0.2, abs=1e-6)
    # two classes, p = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25) / ln 2 = 0.811278
    t = torch.tensor([[LN3, 0.0]])
    assert float(normalized_entropy(t)) == pytest.approx(0.811278, abs=1e-6)
    assert entropy_alpha(0.811278, 0.2, 0.8) == pytest.approx(0.686767, abs=1e-6)
    # the mean over a batch: one uniform row (1) and one one-hot row (0) -> 1/2
    assert float(normalized_entropy(torch.tensor([[0.0, 0.0], [100.0, 0.0]]))) == pytest.approx(0.5, abs=1e-6)


def test_kl_and_uncertainty_loss_by_hand():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])  # q = (1/2, 1/2), p = (3/4, 1/4)
    kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812
    assert float(temperature_kl(s, t, 1.0)) == pytest.approx(kl1, abs=1e-6)
    # T = 2: p_T = (sqrt3, 1) / (sqrt3 + 1) = (0.633975, 0.366025)
    a, b = math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)
    kl2 = a * math.log(a / 0.5) + b * math.log(b / 0.5)  # 0.036341
    assert float(temperature_kl(s, t, 2.0)) == pytest.approx(kl2, abs=1e-6)
    assert kl1 == pytest.approx(0.130812, abs=1e-6) and kl2 == pytest.approx(0.036341, abs=1e-6)
    # loss = alpha T^2 KL + (1 - alpha) CE(student, argmax teacher = 0), CE = ln 2
    alpha = 0.686767
    loss, al = uncertainty_weighted_loss(s, t, 1.0, 0.2, 0.8)
    assert al == pytest.approx(alpha, abs=1e-6)
    assert float(loss) == pytest.approx(alpha * kl1 + (1 - alpha) * LN2, abs=1e-5)  # 0.306954
    loss2, _ = uncertainty_weighted_loss(s, t, 2.0, 0.2, 0.8)
    assert float(loss2) == pytest.approx(alpha * 4 * kl2 + (1 - alpha) * LN2, abs=1e-5)  # 0.316947
    assert float(loss2) == pytest.approx(0.316947, abs=1e-5)
    # KL of identical distributions is 0
    assert float(temperature_kl(t, t, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_staleness_beta_by_hand():
    assert staleness_beta(0, 75) == 0.0
    assert staleness_beta(75, 75) == pytest.approx(0.5, abs=1e-12)
    assert staleness_beta(150, 75) == pytest.approx(1.0, abs=1e-12)
    assert staleness_beta(1000, 75) == pytest.approx(1.0, abs=1e-12)  # capped at 2 s_max
    assert staleness_beta(37.5, 75) == pytest.approx((1 - math.cos(math.pi / 4)) / 2, abs=1e-12)  # 0.146447
    d, k = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    assert torch.equal(hybrid_delta(d, k, 0.0), d) and torch.equal(hybrid_delta(d, None, 0.7), d)
    torch.testing.assert_close(hybrid_delta(d, k, 0.25), torch.tensor([0.5, 1.5]))


def test_clip_by_norm():
    g = torch.tensor([3.0, 4.0])  # norm 5
    c, n = clip_by_norm(g, 1.0)
    assert n == pytest.approx(5.0)
    torch.testing.assert_close(c, torch.tensor([0.6, 0.8]))
    assert float(torch.linalg.vector_norm(c)) == pytest.approx(1.0, abs=1e-6)
    c, n = clip_by_norm(g, 10.0)
    assert torch.equal(c, g) and n == pytest.approx(5.0)
    c, _ = clip_by_norm(g, 5.0)  # exactly at the threshold: unchanged
    assert torch.equal(c, g)


def test_reptile_step_by_hand():
    theta = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    fast = [torch.tensor([3.0, -2.0]), torch.tensor([[4.0]])]
    reptile_step(theta, fast, 0.25)
    torch.testing.assert_close(theta[0], torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(theta[1], torch.tensor([[1.0]]))
    reptile_step(theta, fast, 1.0)  # lambda = 1: jump to the fast weights
    torch.testing.assert_close(theta[0], fast[0])


def _linear(bias, d=12):
    m = build_model("mlp", (d,), len(bias), seed=0, hidden=())
    spec = ParamSpec(m)
    w = torch.zeros(spec.numel)
    w[-len(bias):] = torch.tensor(bias)
    return m, spec, w


def test_probe_class_proportions_known_bias():
    m, spec, w = _linear([0.0, 20.0, 0.0, 0.0])  # zero weights: logits = bias for every input
    p = probe_class_proportions(m, spec, w, (12,), 64, 0.8, seeded_generator(0, "t"))
    # softmax(b / 0.8) = (1, e^25, 1, 1) / (e^25 + 3)
    torch.testing.assert_close(p, torch.tensor([0.0, 1.0, 0.0, 0.0]), atol=1e-9, rtol=0)
    m, spec, w = _linear([0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(probe_class_proportions(m, spec, w, (12,), 64, 0.8, seeded_generator(0, "t")),
                               torch.full((4,), 0.25))
    m, spec, w = _linear([0.8 * LN3, 0.0])  # temperature 0.8 undone: (3/4, 1/4)
    torch.testing.assert_close(probe_class_proportions(m, spec, w, (12,), 8, 0.8, seeded_generator(0, "t")),
                               torch.tensor([0.75, 0.25]))
    # a real (random) model: proportions are a distribution
    m = build_model("mlp", (1, 8, 8), 10, seed=1, hidden=(8,))
    s = ParamSpec(m)
    p = probe_class_proportions(m, s, s.flatten(m), (1, 8, 8), 32, 0.8, seeded_generator(0, "t"))
    assert p.shape == (10,) and float(p.sum()) == pytest.approx(1.0, abs=1e-6) and bool((p > 0).all())


def test_teacher_buffer_keeps_the_c_most_recent():
    b = TeacherBuffer(3, distinct=False)
    for c in range(5):
        b.add(c, torch.full((2,), float(c)))
    assert b.clients() == [2, 3, 4]
    assert [float(e["params"][0]) for e in b.entries] == [2.0, 3.0, 4.0]
    b.add(3, torch.zeros(2))  # duplicates allowed: exactly the last 3 arrivals
    assert b.clients() == [3, 4, 3]
    d = TeacherBuffer(3, distinct=True)
    for c in [0, 1, 2, 1]:
        d.add(c, torch.full((2,), float(c)))
    assert d.clients() == [0, 2, 1]  # client 1 moved to the newest slot, one entry per client
    d.add(3, torch.zeros(2))
    assert d.clients() == [2, 1, 3]  # client 0, the oldest, evicted
    e = TeacherBuffer(1)
    e.load_state_dict(d.state_dict())
    assert e.clients() == [2, 1, 3] and e.capacity == 3
    assert d.nbytes() == 3 * 2 * 4


def test_feature_statistics_match_client_side_statistics():
    m = build_model("cnn1d", (1, 40), 10, seed=0, channels=4)
    s = ParamSpec(m)
    w = s.flatten(m)
    x = torch.randn(16, 1, 40, generator=torch.Generator().manual_seed(0))
    logits, stats = feature_statistics(m, s, w, x)
    ref = activation_statistics(m, s, w.detach(), x)
    assert set(stats) == set(ref) and len(ref) == 3 and logits.shape == (16, 10)
    for k in ref:
        torch.testing.assert_close(stats[k][0], ref[k][0])
        torch.testing.assert_close(stats[k][1], ref[k][1])
    assert float(feature_matching_loss(stats, ref)) == pytest.approx(0.0, abs=1e-6)
    # differentiable with respect to the inputs' generator path
    xg = x.clone().requires_grad_(True)
    _, st = feature_statistics(m, s, w.detach(), xg)
    feature_matching_loss(st, {k: (v[0] + 1, v[1]) for k, v in ref.items()}).backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0


def test_feature_matching_loss_by_hand():
    stats = {"a": (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])), "b": (torch.zeros(1), torch.zeros(1))}
    ref = {"a": (torch.tensor([1.0, 0.0]), torch.tensor([1.0, 4.0]))}
    assert float(feature_matching_loss(stats, ref)) == pytest.approx(2.0 + 3.0)  # ||(0,2)|| + ||(0,-3)||; b absent


def test_teacher_class_weights_by_hand():
    props = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    w = teacher_class_weights(props, torch.tensor([0, 2]))
    torch.testing.assert_close(w, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0]]))
    w = teacher_class_weights(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([1]))  # nobody knows class 1
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5]]))


def test_sample_by_class():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    g = torch.Generator().manual_seed(0)
    idx = sample_by_class(labels, torch.tensor([0.0, 0.0, 1.0, 0.0]), 200, g)
    assert set(idx.tolist()) == {3, 4, 5}  # every sample of class 2, only those
    idx = sample_by_class(labels, torch.tensor([0.0, 0.0, 0.0, 1.0]), 300, g)  # class 3 absent: uniform on present
    assert set(labels[idx].tolist()) == {0, 1, 2}
    idx = sample_by_class(labels, torch.tensor([0.5, 0.5, 0.0, 0.0]), 4000, g)
    frac0 = float((labels[idx] == 0).float().mean())
    assert abs(frac0 - 0.5) < 0.05


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (12,), (1, 40)])
def test_generator_output_shapes(shape):
    torch.manual_seed(0)
    g = ClassConditionalGenerator(shape, 10, noise_dim=8, hidden=16)
    z, y = g.sample_inputs(5, seeded_generator(0, "g"))
    x = g(z, y)
    assert x.shape == (5, *shape) and y.shape == (5,) and int(y.max()) < 10
    x.sum().backward()
    assert g.embed.weight.grad is not None and not list(g.buffers())


def test_seeded_generators_are_independent_and_reproducible():
    a = torch.rand(3, generator=seeded_generator(7, "x"))
    assert torch.equal(a, torch.rand(3, generator=seeded_generator(7, "x")))
    assert not torch.equal(a, torch.rand(3, generator=seeded_generator(7, "y")))
    assert not torch.equal(a, torch.rand(3, generator=seeded_generator(8, "x")))
