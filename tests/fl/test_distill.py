"""Distillation building blocks (aflqueue.fl.distill) against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from aflqueue.fl.distill import (ClassConditionalGenerator, LossSpikeGuard, TeacherBuffer, clip_by_norm,
                                 entropy_alpha, feature_matching_loss, hybrid_delta,
                                 masked_adversarial_loss, normalized_entropy, onehot_loss, outer_adam_step,
                                 probe_class_proportions, sample_by_class, seeded_generator, staleness_beta,
                                 teacher_class_weights, temperature_kl, uncertainty_weighted_loss,
                                 weighted_feature_loss)
from aflqueue.fl.local import ParamSpec, activation_statistics, feature_statistics
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


def test_uncertainty_loss_gate_drops_hard_labels_of_uninformative_teachers():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])  # teacher H = 0.811278 (see above)
    kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    loss, al = uncertainty_weighted_loss(s, t, 1.0, 0.2, 0.8, hard_label_max_entropy=0.8)  # H > 0.8: soft only
    assert al == 1.0 and float(loss) == pytest.approx(kl1, abs=1e-6)
    loss, al = uncertainty_weighted_loss(s, t, 1.0, 0.2, 0.8, hard_label_max_entropy=0.82)  # H <= 0.82: as before
    assert al == pytest.approx(0.686767, abs=1e-6)
    assert float(loss) == pytest.approx(0.686767 * kl1 + (1 - 0.686767) * LN2, abs=1e-5)
    # the gradient with the gate on is that of the soft term alone: (q - p) = (-0.25, 0.25)
    sg = s.clone().requires_grad_(True)
    uncertainty_weighted_loss(sg, t, 1.0, 0.2, 0.8, hard_label_max_entropy=0.5)[0].backward()
    torch.testing.assert_close(sg.grad, torch.tensor([[-0.25, 0.25]]))


def test_onehot_loss_is_per_teacher_cross_entropy_by_hand():
    # 2 teachers, 3 samples, 2 classes; targets (0, 1, 0); logits (ln 3, 0) give p = (3/4, 1/4)
    t0 = torch.tensor([[LN3, 0.0], [LN3, 0.0], [0.0, 0.0]])  # CE: ln(4/3), ln 4, ln 2
    t1 = torch.tensor([[0.0, 0.0], [0.0, LN3], [LN3, 0.0]])  # CE: ln 2, ln(4/3), ln(4/3)
    y = torch.tensor([0, 1, 0])
    props = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    w = teacher_class_weights(props, y)  # class 0: (3/4, 1/4); class 1: (1/4, 3/4)
    torch.testing.assert_close(w, torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.75, 0.25]]))
    L43 = math.log(4 / 3)
    by_hand = (0.75 * L43 + 0.25 * LN2 + 0.25 * 2 * LN2 + 0.75 * L43 + 0.75 * LN2 + 0.25 * L43) / 3
    assert by_hand == pytest.approx(0.514388, abs=1e-6)
    got = float(onehot_loss(torch.stack([t0, t1]), y, w))
    assert got == pytest.approx(by_hand, abs=1e-6)
    # not the cross-entropy of the weighted ensemble (the loss used before)
    ens = (torch.stack([t0, t1], 1) * w.unsqueeze(-1)).sum(1)
    assert abs(float(torch.nn.functional.cross_entropy(ens, y)) - by_hand) > 0.05


def test_masked_adversarial_loss_by_hand():
    # student: sample 0 predicts class 0 with q = (3/4, 1/4), sample 1 class 1 with (1/4, 3/4)
    s = torch.tensor([[LN3, 0.0], [0.0, LN3]])
    # teacher 0 agrees on sample 0 (p = (9/10, 1/10)) and disagrees on sample 1 (masked out);
    # teacher 1 disagrees on sample 0 and agrees on sample 1 (p = (1/10, 9/10))
    t = torch.tensor([[[2 * LN3, 0.0], [LN3, 0.0]], [[0.0, LN3], [0.0, 2 * LN3]]])
    w = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
    kl = 0.9 * math.log(0.9 / 0.75) + 0.1 * math.log(0.1 / 0.25)  # KL(teacher || student) = 0.072460
    assert kl == pytest.approx(0.072460, abs=1e-6)
    sg = s.clone().requires_grad_(True)
    loss = masked_adversarial_loss(sg, t, w)
    assert float(loss.detach()) == pytest.approx(-(0.6 * kl + 0.7 * kl) / 2, abs=1e-6)  # -0.047099
    loss.backward()
    # gradient only through the agreeing pairs: d/ds of -(w KL)/B = -(w/B) (q - p)
    torch.testing.assert_close(sg.grad, torch.tensor([[-0.3 * (0.75 - 0.9), -0.3 * (0.25 - 0.1)],
                                                      [-0.35 * (0.25 - 0.1), -0.35 * (0.75 - 0.9)]]))


def test_weighted_feature_loss_by_hand():
    w = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])  # (B = 2, J = 3)
    got = weighted_feature_loss([torch.tensor(2.0), None, torch.tensor(3.0)], w)  # teacher 1: no statistics
    assert float(got) == pytest.approx((0.6 * 2.0 + 1.05 * 3.0) / 2)  # 2.175


def test_loss_spike_guard():
    g = LossSpikeGuard()
    for _ in range(9):
        assert float(g(torch.tensor(1.0), "a")) == 1.0
    assert float(g(torch.tensor(5.0), "a")) == 5.0  # only 9 values so far: no judgement yet
    # window (1 x 9, 5): mean 1.4; 4.3 > 3 x 1.4 = 4.2 is zeroed (gradient 0) and not recorded
    x = torch.tensor(4.3, requires_grad=True)
    out = g(x, "a")
    out.backward()
    assert float(out.detach()) == 0.0 and float(x.grad) == 0.0 and g.spikes == {"a": 1} and len(g.windows["a"]) == 10
    assert float(g(torch.tensor(4.1), "a")) == pytest.approx(4.1)  # below 4.2: kept
    assert float(g(torch.tensor(float("nan")), "b")) == 0.0 and g.spikes["b"] == 1
    for _ in range(30):
        g(torch.tensor(-1.0), "c")
    assert float(g(torch.tensor(-100.0), "c")) == -100.0  # a negative mean never zeroes
    assert len(g.windows["c"]) == 20  # the last 20 values
    h = LossSpikeGuard()
    h.load_state_dict(g.state_dict())
    assert h.windows == g.windows and h.spikes == g.spikes


def test_outer_adam_step_by_hand():
    # Adam(lr, betas (0.5, 0.999), eps 0) on g = theta - theta_fast, written out by hand
    lr = 3e-3
    theta = [torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True), torch.tensor([[2.0]], dtype=torch.float64,
                                                                                               requires_grad=True)]
    opt = torch.optim.Adam(theta, lr=lr, betas=(0.5, 0.999), eps=0.0)
    g1, g2 = np.array([-0.5, 0.25]), np.array([0.1, 0.3])
    outer_adam_step(theta, [theta[0].detach() - torch.tensor(g1), torch.tensor([[1.0]], dtype=torch.float64)], opt)
    # first step: m_hat / sqrt(v_hat) = g / |g|, every coordinate moves by exactly lr against sign(g)
    np.testing.assert_allclose(theta[0].detach().numpy(), [1.0 + lr, 0.5 - lr], rtol=0, atol=1e-15)
    assert float(theta[1].detach()) == pytest.approx(2.0 - lr, abs=1e-15)  # theta_fast below theta: moves towards it
    outer_adam_step(theta, [theta[0].detach() - torch.tensor(g2), theta[1].detach()], opt)
    m = 0.5 * (0.5 * g1) + 0.5 * g2
    v = 0.999 * (0.001 * g1**2) + 0.001 * g2**2
    expect = np.array([1.0, 0.5]) + lr * np.sign(-g1) - lr * (m / (1 - 0.5**2)) / np.sqrt(v / (1 - 0.999**2))
    np.testing.assert_allclose(theta[0].detach().numpy(), expect, rtol=0, atol=1e-15)
    # theta[1] had pseudo-gradient 0 on step 2: only the momentum of step 1 moves it
    m1, v1 = 0.5 * 0.5 * 1.0, 0.999 * 0.001 * 1.0
    assert float(theta[1].detach()) == pytest.approx(2.0 - lr - lr * (m1 / 0.75) / math.sqrt(v1 / (1 - 0.999**2)), abs=1e-15)
    assert all(p.grad is None for p in theta)


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
    b = TeacherBuffer(3)  # the reference's semantics by default: the last 3 returns, duplicates allowed
    assert not b.distinct
    for c in range(5):
        b.add(c, torch.full((2,), float(c)))
    assert b.clients() == [2, 3, 4]
    assert [float(e["params"][0]) for e in b.entries] == [2.0, 3.0, 4.0]
    b.add(3, torch.zeros(2))
    assert b.clients() == [3, 4, 3]
    d = TeacherBuffer(3, distinct=True)
    for c in [0, 1, 2, 1]:
        d.add(c, torch.full((2,), float(c)))
    assert d.clients() == [0, 2, 1]  # client 1 moved to the newest slot, one entry per client
    d.add(3, torch.zeros(2))
    assert d.clients() == [2, 1, 3]  # client 0, the oldest, evicted
    e = TeacherBuffer(1)
    e.load_state_dict(d.state_dict())
    assert e.clients() == [2, 1, 3] and e.capacity == 3 and e.distinct
    assert d.nbytes() == 3 * 2 * 4


def test_feature_statistics_match_a_hand_computed_forward_pass():
    # the MLP by hand: Linear, ReLU, Linear, ReLU, Linear; statistics of the two hidden Linear outputs
    m = build_model("mlp", (12,), 5, seed=0, hidden=(7, 6))
    s = ParamSpec(m)
    w = s.flatten(m)
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    logits, stats = feature_statistics(m, s, w, x)
    linears = [(name, mod) for name, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]
    h, ref = x, {}
    for j, (name, mod) in enumerate(linears):
        h = torch.nn.functional.linear(h, mod.weight, mod.bias)
        if j < len(linears) - 1:
            ref[name] = (h.mean(0), ((h - h.mean(0)) ** 2).mean(0))
            h = torch.relu(h)
    torch.testing.assert_close(logits, h)
    assert set(stats) == set(ref) and len(ref) == 2
    for k in ref:
        torch.testing.assert_close(stats[k][0], ref[k][0])
        torch.testing.assert_close(stats[k][1], ref[k][1])
    client = activation_statistics(m, s, w, x)  # the client-side upload: the same, without gradients
    assert all(not v[0].requires_grad for v in client.values())
    assert float(feature_matching_loss(stats, client)) == pytest.approx(0.0, abs=1e-6)
    m = build_model("cnn1d", (1, 40), 10, seed=0, channels=4)
    s = ParamSpec(m)
    w = s.flatten(m)
    x = torch.randn(16, 1, 40, generator=torch.Generator().manual_seed(0))
    ref = activation_statistics(m, s, w, x)
    assert len(ref) == 3
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
    # class 3 is not in the pool: the reference falls back to a uniform draw over the whole pool
    idx = sample_by_class(labels, torch.tensor([0.0, 0.0, 0.0, 1.0]), 6000, g)
    counts = torch.bincount(idx, minlength=6).double() / 6000
    assert set(idx.tolist()) == set(range(6)) and float((counts - 1 / 6).abs().max()) < 0.02
    idx = sample_by_class(labels, torch.tensor([0.5, 0.5, 0.0, 0.0]), 4000, g)
    frac0 = float((labels[idx] == 0).float().mean())
    assert abs(frac0 - 0.5) < 0.05 and set(labels[idx].tolist()) == {0, 1}
    # unnormalised proportions are normalised; half of the missing class-3 mass lands anywhere
    idx = sample_by_class(labels, torch.tensor([0.0, 2.0, 0.0, 2.0]), 6000, g)
    assert float((idx == 2).double().mean()) == pytest.approx(0.5 + 0.5 / 6, abs=0.03)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (12,), (1, 40)])
def test_generator_output_shapes(shape):
    torch.manual_seed(0)
    g = ClassConditionalGenerator(shape, latent_dim=8, hidden=16)
    z = torch.randn(5, 8, requires_grad=True)
    emb = torch.randn(10, 8, requires_grad=True)
    y = torch.tensor([0, 3, 3, 9, 1])
    x = g(z, y, emb, 0.2)
    assert x.shape == (5, *shape)
    x.sum().backward()
    assert float(emb.grad[[0, 1, 3, 9]].abs().sum()) > 0 and float(emb.grad[[2, 4, 5, 6, 7, 8]].abs().sum()) == 0
    assert z.grad is not None and not list(g.buffers())
    # the class enters as z + 0.2 e_y: the same input gives the same sample
    with torch.no_grad():
        torch.testing.assert_close(g(z, y, emb, 0.2), g(z + 0.2 * emb[y], torch.zeros(5, dtype=torch.long),
                                                          torch.zeros(10, 8), 0.2))


def test_seeded_generators_are_independent_and_reproducible():
    a = torch.rand(3, generator=seeded_generator(7, "x"))
    assert torch.equal(a, torch.rand(3, generator=seeded_generator(7, "x")))
    assert not torch.equal(a, torch.rand(3, generator=seeded_generator(7, "y")))
    assert not torch.equal(a, torch.rand(3, generator=seeded_generator(8, "x")))
