"""The ServerAlgorithm contract, for every registered algorithm: abstract hooks, cost accounting in
the base class, checkpoint types (weights_only) and exact continuation, deterministic costs, and the
aggregation weights of the FedBuff family under non-uniform routing (by hand)."""

import io
import time

import numpy as np
import pytest
import torch

from aflqueue import ValidationError
from aflqueue.fl.algorithms import ALGORITHM_NAMES, AlgorithmContext, Arrival, ServerAlgorithm, make_algorithm
from aflqueue.fl.algorithms.base import client_weights
from aflqueue.fl.local import ParamSpec, activation_statistics
from aflqueue.fl.models import build_model

#: small, fast settings; FedRevive synthesises and distils from the first versions on
SMALL = {"fedecho": {"buffer": 2, "distill_steps": 2},
         "fedrevive": {"probe_samples": 8, "synth_batch": 8, "latent_dim": 8, "gen_hidden": 16, "kd_per_teacher": 4,
                       "k_kd": 2, "warmup_versions": 1, "kd_start_version": 2, "t_gen": 2, "s_max": 2},
         "fedbuff": {"buffer": 2}}


def ctx_for(n=3, p=(0.5, 0.3, 0.2), classes=3, d=5):
    model = build_model("mlp", (d,), classes, seed=0, hidden=(4,))
    spec = ParamSpec(model)
    u = torch.randn(10, d, generator=torch.Generator().manual_seed(1))
    return AlgorithmContext(n_clients=n, routing=np.array(p), concurrency=3, model=model, spec=spec,
                            num_classes=classes, input_shape=(d,), unlabeled=u, seed=5), spec


def arrivals(ctx, spec, count, seed=0):
    """A scripted stream: clients 0, 1, 2, 0, ...; each task started 2 versions back (at least 0)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(1, count + 1):
        start = 0.1 * torch.randn(spec.numel, generator=g)
        delta = 0.05 * torch.randn(spec.numel, generator=g)
        x = torch.randn(6, *ctx.input_shape, generator=g)
        stats = activation_statistics(ctx.model, spec, start + delta, x)
        out.append((k, (k - 1) % 3, delta, start, stats))
    return out


def feed(alg, stream):
    for k, c, delta, start, stats in stream:
        alg.on_arrival(Arrival(index=k, task=k, client=c, delta=delta, start=start,
                               start_version=max(0, alg.version - 2), relative_delay=0, time=float(k),
                               extras={"activation_stats": stats}))


def test_server_algorithm_is_abstract():
    ctx, spec = ctx_for()
    with pytest.raises(TypeError):
        ServerAlgorithm(torch.zeros(spec.numel), ctx)

    class NoRule(ServerAlgorithm):
        name = "no-rule"

    with pytest.raises(TypeError, match="apply"):
        NoRule(torch.zeros(spec.numel), ctx)


def test_base_class_counts_and_times_every_arrival():
    ctx, spec = ctx_for()

    class Slow(ServerAlgorithm):
        name = "slow"
        defaults = {"pause": 0.01}

        def apply(self, a):
            with self.timed("inner_seconds"):
                time.sleep(self.hp["pause"])
            self.params = self.params + a.delta
            self.version += 1

    alg = make_algorithm(Slow, torch.zeros(spec.numel), ctx, pause=0.02)
    feed(alg, arrivals(ctx, spec, 3))
    c = alg.costs()
    assert c["arrivals"] == 3 and alg.version == 3
    assert 0.06 <= c["inner_seconds"] <= c["server_seconds"]  # the whole apply() is timed, sub-timers inside
    assert c["server_seconds_per_arrival"] == pytest.approx(c["server_seconds"] / 3)
    with pytest.raises(ValueError, match="seconds"):
        with alg.timed("inner"):
            pass
    with pytest.raises(ValidationError, match="unknown parameter"):
        make_algorithm(Slow, torch.zeros(spec.numel), ctx, pasue=0.1)


def _walk_types(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield type(k)
            yield from _walk_types(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk_types(v)
    else:
        yield type(obj)


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_checkpoint_is_weights_only_and_continues_exactly(name):
    ctx, spec = ctx_for()
    stream = arrivals(ctx, spec, 12)
    a = make_algorithm(name, torch.zeros(spec.numel), ctx, **SMALL.get(name, {}))
    feed(a, stream[:7])
    sd = a.state_dict()
    assert set(_walk_types(sd)) <= {torch.Tensor, int, float, str, bool, type(None), dict, list, tuple}
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    b = make_algorithm(name, torch.zeros(spec.numel), ctx, **SMALL.get(name, {}))
    b.load_state_dict(loaded)
    feed(a, stream[7:])
    feed(b, stream[7:])
    assert a.version == b.version > 0
    torch.testing.assert_close(a.params, b.params, rtol=0, atol=0)
    if name == "fedrevive":
        assert a.cost["syntheses"] > 0 and a.cost["distillations"] > 0  # the state that matters was exercised


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_costs_are_deterministic_except_seconds(name):
    ctx, spec = ctx_for()
    stream = arrivals(ctx, spec, 8)
    runs = []
    for _ in range(2):
        alg = make_algorithm(name, torch.zeros(spec.numel), ctx, **SMALL.get(name, {}))
        feed(alg, stream)
        runs.append(alg.costs())
    same = lambda c: {k: v for k, v in c.items() if "seconds" not in k}  # noqa: E731
    assert same(runs[0]) == same(runs[1])
    assert all(isinstance(v, float) and v >= 0 for k, v in runs[0].items() if "seconds" in k)


def test_client_weights():
    ctx, _ = ctx_for(p=(0.5, 0.3, 0.2))
    np.testing.assert_allclose(client_weights(ctx, "importance"), [1 / 1.5, 1 / 0.9, 1 / 0.6])
    assert client_weights(ctx, "uniform") == [1.0, 1.0, 1.0]
    with pytest.raises(ValidationError) as e:
        client_weights(ctx, "inverse")
    assert e.value.field == "algorithm.weighting"


@pytest.mark.parametrize("name,extra", [("fedbuff", {}), ("fedecho", {"distill_steps": 0}),
                                        ("fedrevive", {"warmup_versions": 10**6})])
@pytest.mark.parametrize("weighting", ["uniform", "importance"])
def test_fedbuff_family_weights_by_hand(name, extra, weighting):
    # n = 3, p = (0.5, 0.3, 0.2): importance weights 1/(3 p_i) = (2/3, 10/9, 5/3); a buffer of 2
    ctx, spec = ctx_for()
    w0 = torch.zeros(spec.numel)
    d0, d2 = torch.full((spec.numel,), 1.0), torch.linspace(-1, 1, spec.numel)
    alg = make_algorithm(name, w0, ctx, **{**SMALL.get(name, {}), **extra, "buffer": 2, "eta_g": 0.6,
                                           "weighting": weighting})
    for k, (c, d) in enumerate([(0, d0), (2, d2)], start=1):
        alg.on_arrival(Arrival(index=k, task=k, client=c, delta=d, start=w0, start_version=0, relative_delay=0,
                               time=float(k), extras={"activation_stats": None}))
    w = (2 / 3, 5 / 3) if weighting == "importance" else (1.0, 1.0)
    torch.testing.assert_close(alg.params, 0.6 * (w[0] * d0 + w[1] * d2) / 2)
    assert alg.version == 1
