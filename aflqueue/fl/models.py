"""Small classifiers for federated training, built to run under ``torch.func``.

The trainer keeps many clients' parameters stacked along a leading axis and evaluates them at
once with ``torch.func.vmap(torch.func.functional_call(...))``. Every model here therefore is a
pure function of its parameters and input:

* no buffers, in particular no BatchNorm: its running statistics are mutated in ``forward``
  (which ``functional_call``/``vmap`` cannot batch), and under non-IID clients they average
  incompatible local statistics, a known failure of BatchNorm in federated learning (Hsieh et
  al. 2020). ResNet-18 uses GroupNorm or no normalisation instead;
* no dropout (it would need a per-client RNG stream) and no in-place ops.

All models take ``float32`` input of shape ``(B, *input_shape)`` and return logits of shape
``(B, num_classes)``.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Sequence

import torch
from torch import nn

from aflqueue.errors import ValidationError, check_integer

__all__ = ["MODEL_NAMES", "build_model", "count_parameters"]

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn28", "cnn32", "cnn1d", "resnet18")

# Default options of each model; anything else is rejected.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (200, 200)},
    "cnn28": {"channels": (32, 64), "hidden": 512},
    "cnn32": {"channels": (32, 64), "hidden": 512},
    "cnn1d": {"channels": 25},
    "resnet18": {"norm": "group", "groups": 2},
}


def _int_tuple(value: Any, field: str, length: int | None = None) -> tuple[int, ...]:
    """A positive int or a sequence of them as a tuple (``length`` entries if given)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValidationError(field, f"must be a list of integers >= 1 (got {value!r})")
    out = tuple(check_integer(v, field, 1) for v in value)
    if length is not None and len(out) != length:
        raise ValidationError(field, f"must list exactly {length} integers >= 1 (got {value!r})")
    return out


def _mlp(input_shape: tuple[int, ...], num_classes: int, hidden: Any) -> nn.Module:
    # hidden=() is allowed and gives multinomial logistic regression.
    sizes = _int_tuple(hidden, "hidden")
    width = 1
    for s in input_shape:
        width *= s
    layers: list[nn.Module] = [nn.Flatten()]
    for h in sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn2d(
    input_shape: tuple[int, ...], num_classes: int, side: int, channels: Any, hidden: Any, name: str
) -> nn.Module:
    """Two 5x5 valid convolutions, each followed by ReLU and 2x2 max-pooling, then two linear
    layers: the CNN of McMahan et al. 2017 without padding (28 -> 4, 32 -> 5 pixels)."""
    if len(input_shape) != 3 or input_shape[1:] != (side, side):
        raise ValidationError(
            "input_shape", f"model {name!r} needs images of shape (C, {side}, {side}) (got {input_shape})"
        )
    c1, c2 = _int_tuple(channels, "channels", 2)
    h = check_integer(hidden, "hidden", 1)
    out = ((side - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(input_shape[0], c1, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * out * out, h),
        nn.ReLU(),
        nn.Linear(h, num_classes),
    )


def _cnn1d(input_shape: tuple[int, ...], num_classes: int, channels: Any) -> nn.Module:
    """The ConvBase of the MNIST-1D paper (Greydanus 2020): three strided 1-D convolutions
    (40 -> 19 -> 10 -> 5 steps) and a linear read-out, about 5k parameters."""
    if len(input_shape) != 2:
        raise ValidationError("input_shape", f"model 'cnn1d' needs sequences of shape (C, L) (got {input_shape})")
    ch = check_integer(channels, "channels", 1)
    length = input_shape[1]
    for kernel in (5, 3, 3):
        length = (length + 2 - kernel) // 2 + 1
    if length < 1:
        raise ValidationError("input_shape", f"model 'cnn1d' needs sequences of length >= 3 (got {input_shape[1]})")
    return nn.Sequential(
        nn.Conv1d(input_shape[0], ch, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(ch, ch, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(ch, ch, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(ch * length, num_classes),
    )


def _resnet18(input_shape: tuple[int, ...], num_classes: int, norm: Any, groups: Any) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 images (He et al. 2016, CIFAR variant): a 3x3 stride-1
    stem and no max-pooling, so that the last stage still sees 4x4 feature maps.

    ``norm="group"`` uses GroupNorm with ``groups`` groups; the default of 2 follows Hsieh et al.
    2020 and Reddi et al. 2021, who use it to replace BatchNorm in federated ResNets. Every width
    (64..512) is a multiple of 64, so ``groups`` must divide 64. ``norm="none"`` drops
    normalisation (plain residual network).
    """
    from torchvision.models import resnet18  # lazy: torchvision

    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        raise ValidationError(
            "input_shape", f"model 'resnet18' needs images of shape (C, H, W) with H, W >= 4 (got {input_shape})"
        )
    if norm == "group":
        g = check_integer(groups, "groups", 1)
        if 64 % g:
            raise ValidationError("groups", f"must divide 64, e.g. 1, 2, 4, 8, 16, 32 or 64 (got {g})")
        norm_layer: Callable[[int], nn.Module] = lambda width: nn.GroupNorm(g, width)  # noqa: E731
    elif norm == "none":
        norm_layer = lambda width: nn.Identity()  # noqa: E731
    else:
        raise ValidationError(
            "norm", f"must be 'group' or 'none' (got {norm!r}); BatchNorm is not offered because its running "
            "statistics are wrong under non-IID clients and cannot be batched with torch.func.vmap",
        )
    model = resnet18(weights=None, num_classes=num_classes, norm_layer=norm_layer)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    model.maxpool = nn.Identity()
    # torchvision's ReLUs run in place; out-of-place keeps forward a pure function, which
    # vmap and autograd through stacked parameters rely on.
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    seed: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build a classifier.

    Args:
        name: one of :data:`MODEL_NAMES`:

            * ``"mlp"``: flatten, ``hidden`` linear+ReLU layers (default ``(200, 200)``), linear.
            * ``"cnn28"``: for ``(C, 28, 28)`` images; ``channels=(32, 64)``, ``hidden=512``.
            * ``"cnn32"``: for ``(C, 32, 32)`` images; same options.
            * ``"cnn1d"``: for ``(C, L)`` sequences such as MNIST-1D's ``(1, 40)``;
              ``channels=25``.
            * ``"resnet18"``: for ``(C, H, W)`` images, 32x32 in mind; ``norm="group"`` (or
              ``"none"``), ``groups=2``.
        input_shape: shape of one sample, without the batch axis.
        num_classes: number of output logits.
        seed: if given, parameters are initialised from ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng``, so the result is reproducible and torch's global RNG
            state is left as it was. If None, the global RNG is used.
        **options: the model's options above.

    Returns:
        A module mapping ``float32`` ``(B, *input_shape)`` to logits ``(B, num_classes)``, with
        no buffers and no dropout.
    """
    key = str(name).lower()
    if key not in _DEFAULTS:
        raise ValidationError("model", f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    shape = _int_tuple(input_shape, "input_shape")
    if not shape:
        raise ValidationError("input_shape", "must have at least one dimension, e.g. (1, 28, 28)")
    classes = check_integer(num_classes, "num_classes", 1)
    unknown = sorted(set(options) - set(_DEFAULTS[key]))
    if unknown:
        raise ValidationError(
            "options", f"unknown option(s) {', '.join(unknown)} for model {key!r}; allowed: {', '.join(_DEFAULTS[key])}"
        )
    opts = {**_DEFAULTS[key], **options}
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0):
        raise ValidationError("seed", f"must be an integer >= 0 or None (got {seed!r})")

    def make() -> nn.Module:
        if key == "mlp":
            return _mlp(shape, classes, **opts)
        if key == "cnn28":
            return _cnn2d(shape, classes, 28, name=key, **opts)
        if key == "cnn32":
            return _cnn2d(shape, classes, 32, name=key, **opts)
        if key == "cnn1d":
            return _cnn1d(shape, classes, **opts)
        return _resnet18(shape, classes, **opts)

    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))
