"""The trainer on CUDA: the same results as on the CPU, and no host synchronisation in the hot path.

Tests marked ``cuda`` skip without a CUDA device (CI has none); ``validation/gpu_check.sh``
runs them on a lent GPU. Each CUDA comparison replays the same trace from the same initial
model with the same minibatches as a CPU run and holds the difference to the tolerances of
:mod:`validation.agreement` (in the source repository) (float64: 1e-9, the same computation; float32: 1e-4, rounding of
other kernels; the module says why). The tests without the mark run the same comparison
machinery on the CPU (serial vs batched, float32 vs a float64 reference, a run with other
minibatches) so that CI checks it.
"""

import dataclasses
import math
import warnings

import pytest
import torch

from validation.agreement import (CASES, TOLERANCES, build, compare, compare_deltas, replay, strict_float32,
                                   task_deltas, violations)
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import ClientData, LocalConfig, ParamSpec, task_batches, train_batched, train_serial
from aflqueue.fl.models import build_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cnn():
    case = CASES["cnn28"]
    return case, build(case)


@pytest.fixture(scope="module")
def cases():
    return {name: (case, build(case)) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def cpu_replays(cases):
    """CPU replays, computed once per (case, dtype, batched)."""
    cache = {}

    def get(name, dtype="float32", batched=False):
        key = (name, dtype, batched)
        if key not in cache:
            case, b = cases[name]
            cache[key] = replay(case, b, "cpu", dtype=dtype, batched=batched)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def cpu_deltas(cases):
    cache = {}

    def get(name, dtype="float64"):
        if (name, dtype) not in cache:
            case, b = cases[name]
            cache[name, dtype] = task_deltas(case, b, "cpu", dtype=dtype)
        return cache[name, dtype]

    return get


# --------------------------------------------------------------------------- on CUDA
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_replay_matches_cpu_in_float64(cases, cpu_replays, name, batched):
    """A few hundred arrivals on CUDA, same trace and minibatches as on the CPU: in float64 the
    two runs are the same computation, so they agree to 1e-9 and their accuracies are equal."""
    case, b = cases[name]
    run = replay(case, b, "cuda", batched=batched, dtype="float64")
    assert run.device.startswith("cuda") and run.batched == batched
    diff = compare(run, cpu_replays(name, "float64"))
    assert not violations(diff, "float64"), diff


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_cuda_replay_matches_cpu_in_float32(cases, cpu_replays, batched):
    """float32 (TF32 off), the smooth case: within 1e-4 of the CPU's float32 run and of the
    float64 reference (the CPU's own float32 run is 1e-6 from it)."""
    case, b = cases["mlp"]
    run = replay(case, b, "cuda", batched=batched, dtype="float32")
    for ref in (cpu_replays("mlp", "float32"), cpu_replays("mlp", "float64")):
        diff = compare(run, ref)
        assert not violations(diff, "float32"), (ref.dtype, diff)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_task_updates_match_cpu_in_float32(cases, cpu_deltas, name, batched):
    """Single tasks from the same start model (no trajectory to part): float32 on CUDA within
    1e-4 of float64 on the CPU, for the CNN too."""
    case, b = cases[name]
    d = compare_deltas(task_deltas(case, b, "cuda", batched=batched, dtype="float32"), cpu_deltas(name, "float64"))
    assert d["finite"] and d["max_rel_l2"] <= TOLERANCES["float32"], d


def _model(case, device):
    return build_model(case.model, case.input_shape, case.num_classes, seed=case.seed,
                       **case.model_options).to(device)


@pytest.mark.cuda
@needs_cuda
def test_task_training_does_not_synchronise_with_the_host(cnn):
    """A task's minibatch indices reach the GPU without a stream synchronisation (a copy from
    pageable memory would block the host until the GPU is idle, once per task), and training
    queues kernels only; the indices are the ones the CPU draws."""
    case, (data, _, trace) = cnn
    dev = torch.device("cuda")
    model = _model(case, dev)
    spec, cdata = ParamSpec(model), ClientData(data.clients, dev)
    w0, cfg = spec.flatten(model), LocalConfig(steps=2, lr=case.lr, batch_size=case.batch_size)

    def work():
        b = [task_batches(cdata, int(trace.client[t]), t, case.seed, cfg) for t in range(8)]
        train_serial(model, spec, w0, cdata, b[0], cfg)
        train_batched(model, spec, w0.expand(8, -1).contiguous(), cdata, torch.stack(b), cfg)
        return b

    work()  # warm-up: libraries' handles, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = work()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    cpu = ClientData(data.clients, torch.device("cpu"))
    for t, b in enumerate(batches):
        assert b.device.type == "cuda"
        assert torch.equal(b.cpu(), task_batches(cpu, int(trace.client[t]), t, case.seed, cfg))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("batched", [False, True])
def test_replay_synchronises_a_fixed_number_of_times(cnn, batched):
    """Synchronisations in a whole replay do not grow with the number of arrivals: only the
    final evaluation reads results back."""
    case, (data, system, trace) = cnn

    def count(updates):
        tr = TraceTrainer(model=_model(case, "cpu"), data=data, trace=trace,
                          algorithm="generalized-asyncsgd",
                          local=LocalConfig(steps=case.steps, lr=case.lr, batch_size=case.batch_size),
                          settings=EngineSettings(updates=updates, eval_every=0, checkpoint_every=0, batched=batched,
                                                  seed=case.seed), device="cuda")
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tr.run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    few, many = count(60), count(case.arrivals)
    assert many == few <= 4, (few, many)


# --------------------------------------------------------------------------- the same machinery on the CPU
@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_replay_matches_serial_on_cpu_in_float64(cpu_replays, name):
    """The CUDA float64 assertion, between the CPU's two code paths (autograd vs vmap)."""
    serial, batched = cpu_replays(name, "float64"), cpu_replays(name, "float64", batched=True)
    assert batched.batched and not serial.batched
    diff = compare(batched, serial)
    assert not violations(diff, "float64"), diff


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_float32_replay_of_the_smooth_case_is_within_tolerance_of_float64(cpu_replays, batched):
    """Where the float32 tolerance comes from: the CPU's float32 replay against float64."""
    diff = compare(cpu_replays("mlp", "float32", batched), cpu_replays("mlp", "float64"))
    assert not violations(diff, "float32"), diff
    assert diff["displacement_rel_l2"] > 0  # float32 does round: the comparison is not vacuous


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_task_updates_are_within_tolerance_of_float64(cases, cpu_deltas, name, batched):
    case, b = cases[name]
    d = compare_deltas(task_deltas(case, b, "cpu", batched=batched), cpu_deltas(name, "float64"))
    assert d["tasks"] == 64 and d["finite"] and 0 < d["max_rel_l2"] <= TOLERANCES["float32"], d


def test_comparison_flags_a_run_with_other_minibatches(cases, cpu_replays):
    """A real difference (the same trace and start model, other minibatches) breaks both
    tolerances by orders of magnitude; a run compared with itself shows none."""
    case, b = cases["mlp"]
    ref = cpu_replays("mlp", "float32")
    other = replay(case, b, "cpu", minibatch_seed=case.seed + 1)
    diff = compare(other, ref)
    assert diff["same_schedule"] and diff["displacement_rel_l2"] > 100 * TOLERANCES["float32"]
    assert any(v.startswith("displacement_rel_l2") for v in violations(diff, "float32"))
    same = compare(ref, ref)
    assert same["displacement_rel_l2"] == same["params_max_abs"] == same["loss_max_rel"] == 0
    assert not violations(same, "float64")


def test_comparison_flags_another_schedule_and_non_finite_values(cpu_replays):
    ref = cpu_replays("mlp", "float32")
    moved = dataclasses.replace(ref, log={**ref.log, "staleness": list(reversed(ref.log["staleness"]))})
    assert "different schedules (per-arrival logs differ)" in violations(compare(moved, ref), "float32")
    bad = dataclasses.replace(ref, params=ref.params.clone().fill_(math.nan))
    v = violations(compare(bad, ref), "float32")
    assert "non-finite parameters or loss" in v and any(x.startswith("displacement_rel_l2") for x in v)
    d = compare_deltas(torch.full((3, 4), math.nan, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64))
    assert not d["finite"]


def test_strict_float32_turns_tf32_off_and_restores_the_settings():
    def read():
        if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    before = read()
    with strict_float32():
        inside = read()
    assert read() == before
    assert inside in (("ieee", "ieee"), (False, False))
    with strict_float32(False):
        assert read() == before
