"""Optional TensorBoard logging of a training run (``aflqueue train --tensorboard DIR``).

Off by default, and only a view: ``results.json`` and ``updates.csv`` stay the source of truth.
The logger is a trainer callback (:class:`~aflqueue.fl.engine.TraceTrainer` ``callbacks``) that
writes, through torch's own :class:`torch.utils.tensorboard.SummaryWriter`:

* at every evaluation, step = updates applied: ``eval/test_accuracy``, ``eval/test_loss`` and
  ``eval/simulated_time``, and a histogram ``arrival/staleness_histogram`` of the staleness of
  the arrivals since the previous evaluation;
* at every arrival, step = its index (1, 2, ...): ``arrival/staleness`` (server versions created
  while the task was out), ``arrival/relative_delay`` (updates applied meanwhile) and
  ``arrival/client``.

Every event's wall time is the *simulated* time of the arrival or evaluation, so TensorBoard's
"Relative" horizontal axis shows the curves against simulated time (time units) and "Step"
against updates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValidationError

__all__ = ["TensorBoardLogger", "TENSORBOARD_MESSAGE"]

TENSORBOARD_MESSAGE = "needs the tensorboard package: pip install 'aflqueue[tensorboard]'"


class TensorBoardLogger:
    """Trainer callback writing TensorBoard event files under ``log_dir`` (module docstring)."""

    def __init__(self, log_dir: str | Path):
        p = Path(log_dir)
        if p.exists() and not p.is_dir():
            raise ValidationError("tensorboard", f"{str(p)!r} exists and is not a folder")
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: torch
        except ImportError:
            raise ValidationError("tensorboard", TENSORBOARD_MESSAGE) from None
        self.log_dir = p
        self.writer = SummaryWriter(log_dir=str(p))
        self._staleness: list[int] = []

    def on_arrival(self, arrival: int, time: float, client: int, relative_delay: int, staleness: int,
                   model_version: int) -> None:
        w = self.writer
        w.add_scalar("arrival/staleness", staleness, arrival, walltime=time)
        w.add_scalar("arrival/relative_delay", relative_delay, arrival, walltime=time)
        w.add_scalar("arrival/client", client, arrival, walltime=time)
        self._staleness.append(int(staleness))

    def on_evaluate(self, time: float, updates: int, test_accuracy: float, test_loss: float) -> None:
        w = self.writer
        w.add_scalar("eval/test_accuracy", test_accuracy, updates, walltime=time)
        w.add_scalar("eval/test_loss", test_loss, updates, walltime=time)
        w.add_scalar("eval/simulated_time", time, updates, walltime=time)
        if self._staleness:
            w.add_histogram("arrival/staleness_histogram", np.asarray(self._staleness), updates, walltime=time)
            self._staleness = []

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
