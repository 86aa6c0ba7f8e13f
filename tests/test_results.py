"""One result shape: every result type is a frozen dataclass on the one base, with a strict-JSON
``to_dict()``, a ``to_frame()`` with one row per client (or per evaluation, per concurrency), and a
readable repr."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import aflqueue as aq
from aflqueue._results import Result

pd = pytest.importorskip("pandas")

SYSTEM = aq.System.from_rates([2.0, 1.0, 0.2], routing=[0.5, 0.3, 0.2], concurrency=4)


def results():
    trace = aq.simulate(SYSTEM, 3000, seed=1)
    from aflqueue.recommendation import Candidate
    from aflqueue.sweep import sweep

    yield "analysis", aq.analyze(SYSTEM, gradient=True), SYSTEM.n
    yield "estimates", aq.estimate(trace, batches=10), SYSTEM.n
    yield "optimum", aq.optimize(SYSTEM, "wallclock", p_min=1e-3), SYSTEM.n
    yield "trace summary", trace.summary(), None
    yield "candidate", Candidate("p2", np.array([0.6, 0.3, 0.1]), 4, 4.0, 1.2, 1.9), SYSTEM.n
    sw = sweep(SYSTEM, (1, 5), ["wall-clock"], pareto_points=0, routing_points=5, p_min=1e-3)
    yield "sweep", sw, len(sw.rows)


@pytest.mark.parametrize("name,res,rows", list(results()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_result_has_the_one_shape(name, res, rows):
    assert isinstance(res, Result) and dataclasses.is_dataclass(res)
    field = dataclasses.fields(res)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(res, field, getattr(res, field))
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON: NaN and inf became null
    df = res.to_frame()
    assert isinstance(df, pd.DataFrame)
    if rows is not None:
        assert len(df) == rows
    json.dumps(df.attrs, allow_nan=False, default=str)
    text = repr(res)
    lines = text.splitlines()
    assert lines[0].startswith(type(res).__name__) and len(lines) >= 2
    assert all(": " in line for line in lines[1:])


def test_per_client_fields_of_analysis_and_simulation_line_up():
    a, e = aq.analyze(SYSTEM), aq.estimate(aq.simulate(SYSTEM, 20_000, seed=3), batches=10)
    for name in ("mean_queue_lengths", "utilization", "mean_response_times", "relative_delay"):
        assert isinstance(getattr(a, name), np.ndarray) and getattr(e, name).mean.shape == getattr(a, name).shape
    fa, fe = a.to_frame(), e.to_frame()
    assert list(fa.index) == list(fe.index) and set(["relative_delay", "utilization"]) <= set(fa.columns) & set(fe.columns)
    assert e.relative_delay[1].lo <= e.relative_delay.mean[1] <= e.relative_delay[1].hi
