"""The studies' figures follow the publishing rules of aflqueue.style (tests/figure_checks.py):
closed forms and the validation grid from the committed results, the algorithm comparison and the
paper experiment from synthetic records; and the same data give byte-identical files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.figure_checks import captured

VALIDATION = Path(__file__).resolve().parents[2] / "validation"


@pytest.mark.skipif(not (VALIDATION / "closed_forms" / "results" / "closed_forms.json").is_file(),
                    reason="no saved results")
def test_closed_forms_figures(tmp_path, monkeypatch):
    from validation.closed_forms import figures
    from validation.closed_forms.experiment import load_results

    with captured(monkeypatch, figures) as figs:
        figures.closed_forms_figures(load_results(VALIDATION / "closed_forms" / "results" / "closed_forms.json"),
                                     tmp_path)
    assert set(figs) == {"closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law"}


@pytest.mark.skipif(not (VALIDATION / "grid" / "results" / "default" / "cells").is_dir(), reason="no saved grid")
def test_grid_figures_compare_at_most_three_routings_with_asyncsgd(tmp_path, monkeypatch):
    from validation.grid import figures
    from validation.grid.experiment import load_cells

    recs = [r for r in load_cells(VALIDATION / "grid" / "results" / "default") if r["cell"]["dataset"] == "mnist1d"]
    with captured(monkeypatch, figures) as figs:
        made = figures.grid_accuracy_figures(recs, tmp_path)
    assert set(figs) == {"grid_accuracy_mnist1d_generalized-asyncsgd",
                         "grid_accuracy_mnist1d_generalized-asyncsgd_other_proxies"} and len(made) == 2
    for f in figs.values():
        curves = [t for t in f["legend"] if not t.startswith("target")]
        assert len(curves) <= 4 and "AsyncSGD (uniform)" in curves  # AsyncSGD and at most three routings
        assert any(t.startswith("target accuracy (60%)") for t in f["legend"])  # the target line is labelled
        assert all(n <= 4 for n in f["bands"].values())


def _curve(seed: int, shift: float) -> dict:
    t = np.linspace(10, 100, 10)
    return {"time": t.tolist(), "test_accuracy": (1 - np.exp(-(t + shift * seed) / 40)).tolist()}


def test_comparison_figure_and_reproducible_files(tmp_path, monkeypatch):
    from validation.fedbuff_family import figures

    recs = [{"algorithm": a, "seed": s, "curve": _curve(s, k), "target": 0.8}
            for k, a in enumerate(("fedbuff", "fedecho", "fedrevive")) for s in range(3)]
    with captured(monkeypatch, figures) as figs:
        figures.comparison_accuracy_figure(recs, tmp_path / "a", "stale")
    f = figs["comparison_accuracy_stale"]
    assert f["legend"][:3] == ["FedBuff", "FedEcho", "FedRevive"] and "mean over 3 seeds" in f["legend_titles"][0]
    monkeypatch.undo()
    figures.comparison_accuracy_figure(recs, tmp_path / "b", "stale")
    for ext in ("png", "pdf"):  # the same data give the same bytes
        assert (tmp_path / "a" / f"comparison_accuracy_stale.{ext}").read_bytes() == \
            (tmp_path / "b" / f"comparison_accuracy_stale.{ext}").read_bytes()


def test_paper_figures(tmp_path, monkeypatch):
    """Every treatment is in every legend -- a safeguard run in the second scenario only, too -- the
    bands and intervals say over how many seeds, and a band needs three of them."""
    from validation.paper import figures
    from validation.paper.experiment import PaperPreset, summarize_paper

    preset = PaperPreset("hand", ("synthetic",), partitions=("iid", "dir0.2"), clients=6,
                         treatments=("asyncsgd", "p2"), safeguards=("p2-clip4",), safeguard_scenario="synthetic__n6__dir0.2")
    sel = {"targets": {"synthetic": 0.5}}
    recs = []
    for part in preset.partitions:
        arms = (("asyncsgd", 55.0, 10.0), ("p2", 25.0, 5.0)) + ((("p2-clip4", 35.0, 5.0),) if part == "dir0.2" else ())
        for treatment, reach, pred in arms:
            for s in range(4):
                times = list(np.linspace(10, 100, 10))
                recs.append({"scenario": {"dataset": "synthetic", "partition": part, "clients": 6, "spread": 30.0},
                             "treatment": treatment, "seed": s, "lr": 0.1, "concurrency": 6,
                             "max_importance_weight": 1.0, "time_budget": 100.0,
                             "predicted": {"time_to_accuracy": pred},
                             "measured": {"final_accuracy": 0.8, "diverged": False, "diverged_at_time": None,
                                          "curves": {"time": times,
                                                     "test_accuracy": [0.2 if t < reach + s else 0.9 for t in times]}}})
    with captured(monkeypatch, figures) as figs:
        made = figures.paper_figures(preset, sel, recs, summarize_paper(preset, sel, recs), tmp_path)
    assert set(figs) == {"hand_accuracy", "hand_time_ratios", "hand_predicted_vs_measured"} and len(made) == 3
    assert figs["hand_accuracy"]["bands"] == {"synthetic data, IID split": 2, "synthetic data, Dirichlet α = 0.2": 3}
    assert "mean over 4 seeds" in figs["hand_accuracy"]["legend_titles"][0]
    clip = "P2 with weights clipped at 4 (biased)"
    for stem in figs:
        assert clip in figs[stem]["legend"], stem  # the safeguard of the second scenario is named
    assert "over 4 seeds" in figs["hand_time_ratios"]["legend_titles"][0]
    assert any("predicted by the proxy" in t for t in figs["hand_predicted_vs_measured"]["legend"])
    assert any("over 4 seeds" in t for t in figs["hand_predicted_vs_measured"]["legend"])


@pytest.mark.skipif(not (VALIDATION / "recommend" / "results-v2" / "cells").is_dir(), reason="no saved study")
def test_recommend_figures_from_the_committed_records(tmp_path, monkeypatch):
    """Both figures of the recommendation study pass the publishing rules; the forest plot shows
    every held-out regime and counts the passes as the report's verdict does."""
    from validation.recommend import figures
    from validation.recommend.experiment import HELD_IN, HELD_OUT
    from validation.recommend.report import CRITERION, calibration, load, regime_rows

    rows = regime_rows(load(VALIDATION / "recommend" / "results-v2"), HELD_IN + HELD_OUT)
    q, _ = calibration(rows, len(HELD_IN))
    with captured(monkeypatch, figures) as figs:
        made = figures.recommend_figures(rows, q, CRITERION, tmp_path)
    assert set(figs) == {"recommend_predicted_vs_measured", "recommend_held_out"} and len(made) == 2
    held_out = [x for x in rows if x["regime"].tier == "held-out"]
    passed = sum(1 for x in held_out if x["upper"] < CRITERION and x["censored"] == 0)
    assert f"in {passed} of {len(held_out)} regimes" in " ".join(figs["recommend_held_out"]["titles"])
    assert any("prediction interval" in t for t in figs["recommend_predicted_vs_measured"]["legend"])
