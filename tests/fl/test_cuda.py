"""The trainer on CUDA: no host synchronisation in the hot path.

Tests marked ``cuda`` skip without a CUDA device (CI has none); ``validation/gpu_check.sh``
runs them on a lent GPU.
"""

import warnings

import pytest
import torch

from aflqueue.fl.agreement import CASES, build
from aflqueue.fl.engine import EngineSettings, TraceTrainer
from aflqueue.fl.local import ClientData, LocalConfig, ParamSpec, task_batches, train_batched, train_serial
from aflqueue.fl.models import build_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cnn():
    case = CASES["cnn28"]
    return case, build(case)


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
        tr = TraceTrainer(model=_model(case, "cpu"), data=data, trace=trace, routing=system.routing,
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
