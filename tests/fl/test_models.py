"""Models: shapes, trainability, seeded init, and batched execution with torch.func."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from aflqueue.errors import ValidationError
from aflqueue.fl.models import MODEL_NAMES, build_model, count_parameters

# (model, input shape) pairs covering every model and the data shapes of aflqueue.fl.data.
CASES = [
    ("mlp", (1, 8, 8)),
    ("mlp", (20,)),
    ("mlp", (1, 40)),
    ("cnn28", (1, 28, 28)),
    ("cnn32", (3, 32, 32)),
    ("cnn1d", (1, 40)),
    ("resnet18", (3, 32, 32)),
]


@pytest.fixture(scope="module")
def resnets() -> list[nn.Module]:
    # Built once: ResNet-18 initialisation (11M parameters) is the slow part of this file.
    return [build_model("resnet18", (3, 32, 32), 10, seed=s) for s in range(3)]


def test_model_names_cover_cases() -> None:
    assert set(MODEL_NAMES) == {name for name, _ in CASES}


@pytest.mark.parametrize("name, shape", [c for c in CASES if c[0] != "resnet18"])
def test_output_shape_and_no_buffers(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 7, seed=0)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7) and out.dtype == torch.float32
    assert list(model.buffers()) == []
    assert not any(isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm)) for m in model.modules())


def test_resnet18_shape_norms_and_stem(resnets: list[nn.Module]) -> None:
    model = resnets[0]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert list(model.buffers()) == []
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 2 for m in norms)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_resnet18_without_norm_has_no_norm_parameters() -> None:
    model = build_model("resnet18", (1, 16, 16), 3, norm="none", seed=0)
    assert not any(isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm)) for m in model.modules())
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    # GroupNorm adds exactly 2 * width parameters per norm layer on top of the conv weights.
    gn = build_model("resnet18", (1, 16, 16), 3, seed=0)
    extra = sum(2 * m.num_channels for m in gn.modules() if isinstance(m, nn.GroupNorm))
    assert count_parameters(gn) - count_parameters(model) == extra


def test_count_parameters_hand_computed() -> None:
    # 64 -> 5 -> 3: (64*5 + 5) + (5*3 + 3) = 343.
    mlp = build_model("mlp", (1, 8, 8), 3, hidden=[5])
    assert count_parameters(mlp) == 343
    # Logistic regression: 20*4 + 4.
    assert count_parameters(build_model("mlp", (20,), 4, hidden=())) == 84
    # MNIST-1D ConvBase: (1*25*5+25) + 2*(25*25*3+25) + (25*5*10+10) = 5210.
    assert count_parameters(build_model("cnn1d", (1, 40), 10)) == 5210
    for p in list(mlp.parameters())[:2]:  # freeze the first layer
        p.requires_grad_(False)
    assert count_parameters(mlp, trainable_only=True) == 18


@pytest.mark.parametrize("name, shape", CASES)
def test_vmap_functional_call_matches_separate_models(
    name: str, shape: tuple[int, ...], resnets: list[nn.Module]
) -> None:
    models = resnets if name == "resnet18" else [build_model(name, shape, 10, seed=s) for s in range(3)]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def call(p: dict, b: dict, inp: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (inp,))

    batched = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
    separate = torch.stack([m(x) for m in models])
    assert batched.shape == (3, 2, 10)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)
    # and the copies really differ, so the check is not vacuous
    assert not torch.allclose(separate[0], separate[1])


def test_vmap_grad_over_stacked_parameters() -> None:
    # What the trainer does: per-client gradients in one call.
    models = [build_model("cnn28", (1, 28, 28), 10, seed=s) for s in range(3)]
    params, _ = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.rand(3, 4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (3, 4), generator=torch.Generator().manual_seed(2))

    def loss(p: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(base, p, (xb,)), yb)

    grads = vmap(torch.func.grad(loss))(params, x, y)
    for i, m in enumerate(models):
        m.zero_grad()
        nn.functional.cross_entropy(m(x[i]), y[i]).backward()
        for pname, p in m.named_parameters():
            torch.testing.assert_close(grads[pname][i], p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "name, shape", [("mlp", (1, 8, 8)), ("cnn28", (1, 28, 28)), ("cnn32", (3, 32, 32)), ("cnn1d", (1, 40))]
)
def test_overfits_tiny_batch(name: str, shape: tuple[int, ...]) -> None:
    # 16 random inputs with random labels out of 4: only memorisation can fit them.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, *shape, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    model = build_model(name, shape, 4, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    final = nn.functional.cross_entropy(model(x), y).item()
    assert final < 0.1 * first, (first, final)


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    a = build_model("cnn32", (3, 32, 32), 10, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("cnn32", (3, 32, 32), 10, seed=7)
    c = build_model("cnn32", (3, 32, 32), 10, seed=8)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_unseeded_init_uses_global_rng() -> None:
    torch.manual_seed(3)
    a = build_model("mlp", (4,), 2)
    torch.manual_seed(3)
    b = build_model("mlp", (4,), 2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="vgg", input_shape=(3, 32, 32)), "model"),
        (dict(name="cnn28", input_shape=(3, 32, 32)), "input_shape"),
        (dict(name="cnn32", input_shape=(1, 28, 28)), "input_shape"),
        (dict(name="cnn1d", input_shape=(1, 28, 28)), "input_shape"),
        (dict(name="resnet18", input_shape=(40,)), "input_shape"),
        (dict(name="mlp", input_shape=()), "input_shape"),
        (dict(name="mlp", input_shape=(0, 3)), "input_shape"),
        (dict(name="mlp", input_shape=(4,), num_classes=0), "num_classes"),
        (dict(name="mlp", input_shape=(4,), hidden=[5, -1]), "hidden"),
        (dict(name="mlp", input_shape=(4,), depth=3), "options"),
        (dict(name="cnn28", input_shape=(1, 28, 28), channels=(8,)), "channels"),
        (dict(name="resnet18", input_shape=(3, 32, 32), norm="batch"), "norm"),
        (dict(name="resnet18", input_shape=(3, 32, 32), groups=3), "groups"),
        (dict(name="mlp", input_shape=(4,), seed=-1), "seed"),
    ],
)
def test_bad_input_raises_validation_error(kwargs: dict, field: str) -> None:
    kwargs = {"num_classes": 10, **kwargs}
    with pytest.raises(ValidationError) as info:
        build_model(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("tie", [False, True])
def test_param_spec_call_is_the_model_at_other_parameters_tied_weights_included(tie):
    """ParamSpec.call(model, params, x) equals a copy of the model holding those parameters; a
    model whose layers share a weight (tied) keeps sharing it, untied models skip the search."""
    from aflqueue.fl.local import ParamSpec

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4))
    if tie:
        model[2].weight = model[0].weight
    spec = ParamSpec(model)
    assert spec.tied == tie and spec.numel == (20 + 4 if tie else 40)
    flat = torch.randn(spec.numel)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p, v in zip(other.parameters(), spec.unflatten(flat).values()):
            p.copy_(v)
    x = torch.randn(5, 4)
    assert torch.equal(spec.call(model, spec.unflatten(flat), x), other(x))
