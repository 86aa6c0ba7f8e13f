"""The recommendation study's machinery on two tiny regimes: every stage runs, recommendations are
saved before evaluation and read back, an interrupted study resumes without retraining, records
carry the study's code, and the report states what it can (no interval without held-in regimes)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mnist1d")

from aflqueue.jobs import code_version  # noqa: E402
from validation.recommend import experiment as E  # noqa: E402
from validation.recommend.report import write_report  # noqa: E402

TINY = [E.Regime("Ht", "held-in", 6, "mlp", 10, "dir0.5", "n", u0=120, n_samples=300),
        E.Regime("Ot", "held-out", 6, "mlp", 30, "iid", "n", u0=120, n_samples=300)]


def test_tiny_study_end_to_end(tmp_path):
    res = E.run_study(tmp_path, progress=None, catalogue=TINY)
    assert set(res["tuned"]) == {"Ht", "Ot"} and set(res["recommendations"]) == {"Ht", "Ot"}
    for r in TINY:
        rec = json.loads((tmp_path / "recommendations" / f"{r.id}.json").read_text())
        assert rec["pilot_updates"] <= 0.1 * rec["comparison_updates"]
        cells = [c for c in res["evaluation"] if c["id"].startswith(r.id + "__")]
        arms = {c["id"].split("__")[1] for c in cells}
        assert {"asyncsgd", "recommended"} <= arms and len(cells) == len(arms) * len(r.eval_seeds)
        rec_cells = [c for c in cells if c["id"].split("__")[1] == "recommended"]
        if not rec["keep_asyncsgd"]:  # evaluated at the saved operating point
            assert all(c["routing"] == pytest.approx(rec["routing"]) and c["concurrency"] == rec["concurrency"]
                       for c in rec_cells)
        assert all(c["lr"] == pytest.approx(rec["lr"]) for c in rec_cells)
        stamp = code_version(E.CODE)["source"]
        assert stamp != code_version()["source"] and all(c["code_version"]["source"] == stamp for c in cells)
        assert rec["code_version"]["source"] == stamp
    before = sorted(p.name for p in (tmp_path / "cells" / "cells").glob("*.json"))
    again = E.run_study(tmp_path, progress=None, catalogue=TINY)  # resumes: nothing new
    assert sorted(p.name for p in (tmp_path / "cells" / "cells").glob("*.json")) == before
    assert again["recommendations"] == res["recommendations"]
    text = write_report(tmp_path, TINY).read_text()
    assert "| Ot | 6 | mlp |" in text and "no interval yet" in text and "Primary:" in text
    # one record from other code: the report states every version and gives no verdict
    one = sorted((tmp_path / "tuning" / "cells").glob("*.json"))[0]
    rec = json.loads(one.read_text())
    rec["code_version"] = {**rec["code_version"], "source": "0" * 16}
    one.write_text(json.dumps(rec))
    text = write_report(tmp_path, TINY).read_text()
    assert "Mixed code versions: no verdict" in text and "0" * 16 in text and "Primary:" not in text


@pytest.mark.parametrize("folder", ["results", "results-v2"])
def test_committed_calibration_is_the_held_in_quantile(folder):
    """The calibration file aflqueue recommend --calibration reads is the split-conformal quantile
    of the committed held-in errors: with 10 regimes at 90%, their largest (PROTOCOL.md)."""
    import math
    from pathlib import Path

    from aflqueue.recommendation import Calibration
    from validation.recommend import report as R

    out = Path(E.HERE) / folder
    cal = Calibration.load(out / "calibration.json")
    rows = R.regime_rows(R.load(out), E.HELD_IN)
    errors = [abs(math.log(x["predicted_measured"] / x["predicted"])) / x["sigma"] for x in rows]
    assert len(errors) == cal.regimes == 10 and cal.quantile == max(errors) and cal.confidence == 0.9
