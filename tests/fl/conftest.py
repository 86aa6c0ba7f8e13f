"""Fixtures shared by the trainer tests."""

import pytest

from aflqueue import System
from aflqueue.fl.data import make_federated
from aflqueue.sim import simulate


@pytest.fixture(scope="module")
def setup():
    """A tiny federated task (6 clients, 4 classes, 10% unlabeled), a system and a 400-update trace."""
    data = make_federated("synthetic", 6, "dirichlet", alpha=0.5, seed=0, num_samples=600, num_features=12,
                          num_classes=4, unlabeled_fraction=0.1)
    system = System.from_rates([2.0, 1.0, 1.0, 0.5, 0.2, 0.1], [0.25, 0.2, 0.2, 0.15, 0.1, 0.1], 5)
    trace = simulate(system, 400, seed=3)
    return data, system, trace
