"""Calibration of the proxy constants against closed forms for least squares."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aflqueue import ValidationError
from aflqueue.calibration import calibrate


def least_squares_clients(n_clients=4, d=3, blocks=5, scale=2.0, seed=0):
    """Client i has X_i = sqrt(scale) * [I; I; ...] (blocks copies), so every client's Hessian of
    0.5 * mean ||X w - y||^2 is X^T X / N = (scale / d) I: isotropic, the same L in every direction."""
    rng = np.random.default_rng(seed)
    X = np.sqrt(scale) * np.tile(np.eye(d), (blocks, 1))
    # calibrate() needs only .x and .y; regression targets are floats, unlike Dataset's labels
    clients = [SimpleNamespace(x=torch.tensor(X, dtype=torch.float32),
                               y=torch.tensor(rng.normal(loc=i, size=(blocks * d, 1)), dtype=torch.float32))
               for i in range(n_clients)]
    return clients, X


def linear_model(d, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Linear(d, 1, bias=False)


def test_least_squares_constants_match_closed_forms():
    clients, X = least_squares_clients()
    model = linear_model(3)
    w = model.weight.detach().numpy().ravel().astype(float)
    before = w.copy()
    cal = calibrate(model, clients, loss="mse", batch_size=5, num_batches=400, num_directions=4, seed=1)
    c = cal.constants
    # exact per-client quantities
    N = X.shape[0]
    losses, grads, per_sample_var = [], [], []
    for cl in clients:
        y = cl.y.numpy().ravel().astype(float)
        r = X @ w - y
        losses.append(0.5 * np.mean(r**2))
        g = X.T @ r / N
        grads.append(g)
        gj = X * r[:, None]  # per-sample gradients
        per_sample_var.append(np.mean(np.sum((gj - g) ** 2, axis=1)))
    grads = np.array(grads)
    assert c.Delta == pytest.approx(np.mean(losses), rel=1e-5)
    assert c.M2 == pytest.approx(np.mean(np.sum((grads - grads.mean(0)) ** 2, axis=1)), rel=1e-4)
    L = np.linalg.eigvalsh(X.T @ X / N).max()
    assert c.L == pytest.approx(L, rel=1e-3)
    assert cal.spread["L"]["min"] == pytest.approx(L, rel=1e-3)  # isotropic: every direction gives L
    # minibatch of B out of N without replacement: E||g_B - g||^2 = (N - B)/(N - 1) * var / B
    B = 5
    sigma2 = np.mean([(N - B) / (N - 1) * v / B for v in per_sample_var])
    assert c.sigma2 == pytest.approx(sigma2, rel=0.15)
    assert c.G2 == pytest.approx(np.mean(np.sum(grads**2, axis=1)) + sigma2, rel=0.15)
    np.testing.assert_array_equal(model.weight.detach().numpy().ravel(), before)  # model untouched
    assert set(cal.to_dict()["constants"]) == {"Delta", "L", "sigma2", "M2", "G2"}
    assert len(cal.spread["M2"]["values"]) == 4
    # the result base: a frame of one row per constant, its estimate and spread; a readable repr
    df = cal.to_frame()
    assert list(df.index) == ["Delta", "L", "sigma2", "M2", "G2"] and df.index.name == "constant"
    assert df.loc["M2", "estimate"] == cal.constants.M2 and df.loc["M2", "max"] == max(cal.spread["M2"]["values"])
    assert df.attrs["settings"]["clients"] == 4 and "Calibration at the initial model (4 clients)" in repr(cal)


def test_classifier_calibration_runs_and_is_reproducible():
    from aflqueue.fl.data import make_federated
    from aflqueue.fl.models import build_model

    fd = make_federated("digits", 6, "dirichlet", alpha=0.3, seed=0)
    model = build_model("mlp", fd.input_shape, fd.num_classes, seed=0)
    a = calibrate(model, fd.clients, seed=3, num_batches=4, num_directions=3)
    b = calibrate(model, fd.clients, seed=3, num_batches=4, num_directions=3)
    assert a.to_dict() == b.to_dict()
    c = a.constants
    assert c.Delta == pytest.approx(np.log(10), rel=0.05)  # untrained 10-class model: loss ~ log 10
    for v in (c.L, c.sigma2, c.M2, c.G2):
        assert np.isfinite(v) and v > 0
    assert c.G2 >= c.sigma2  # E||g_B||^2 = ||grad f_i||^2 + E||g_B - grad f_i||^2 >= sigma2 (averaged)


def test_bad_calibration_input():
    clients, _ = least_squares_clients()
    model = linear_model(3)
    with pytest.raises(ValidationError, match="loss"):
        calibrate(model, clients, loss="hinge")
    with pytest.raises(ValidationError, match="lower_bound"):
        calibrate(model, clients, loss="mse", lower_bound=1e6)
    with pytest.raises(ValidationError, match="num_batches"):
        calibrate(model, clients, loss="mse", num_batches=1)


def test_initial_model_constants_do_not_depend_on_the_thread_count():
    """The same inputs give the same bits whatever the process's torch thread count (pilot jobs
    are keyed by routings computed from these constants); the caller's count is restored."""
    import torch

    from aflqueue.calibration import calibrate
    from aflqueue.config import load_config
    from aflqueue.pipeline import build_data_and_model

    data, model = build_data_and_model(load_config(None))
    before = torch.get_num_threads()
    try:
        got = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got.append(calibrate(model, data.clients, seed=0, num_batches=4, num_directions=4).constants)
            assert torch.get_num_threads() == threads
        assert got[0] == got[1]
    finally:
        torch.set_num_threads(before)
