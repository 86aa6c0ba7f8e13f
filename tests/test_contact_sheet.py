"""The contact sheet (validation/contact_sheet.py) renders every figure of the toolkit and the
studies, and every one of them passes the publishing checks of tests/figure_checks.py: series
named in a legend, text inside the canvas and on at most two lines, legends within the figure and
within a third of it, no empty panel, no band from fewer than three seeds, few points marked."""

from __future__ import annotations

from pathlib import Path

from tests.figure_checks import captured

#: Every figure family the toolkit and the studies draw (file names without the study's prefix).
FAMILIES = {
    "analytic": {"delay_vs_routing", "concurrency_sweep", "routing_vs_speed", "energy_pareto"},
    "sweep": {"sweep_concurrency", "sweep_routing_vs_speed", "sweep_pareto", "sweep_delay_vs_routing"},
    "runs": {"runs_curves"},
    "schedule": {"schedule_timeline", "schedule_delays", "schedule_arrival_share"},
    "examples": {"delay_vs_routing", "concurrency_sweep", "routing_vs_speed", "energy_pareto"},
    "closed_forms": {"closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law"},
    "grid": {"grid_accuracy_mnist1d_generalized-asyncsgd", "grid_accuracy_mnist1d_generalized-asyncsgd_other_proxies",
             "grid_accuracy_synthetic_generalized-asyncsgd", "grid_accuracy_synthetic_generalized-asyncsgd_other_proxies"},
    "paper": {"paper_accuracy", "paper_time_ratios", "paper_predicted_vs_measured"},
    "regimes": {"regimes_predicted_vs_measured_p2", "regimes_map_p2"},
    "approx": {"approx_errors"},
    "fedbuff_family": {"comparison_accuracy_claims_fedrevive-schedule"},
}


def test_every_figure_is_rendered_and_passes_the_checks(tmp_path, monkeypatch):
    from PIL import Image

    from validation import contact_sheet

    with captured(monkeypatch, pdf=False) as figs:  # checked where the PDF would be written
        entries = contact_sheet.render(tmp_path)
    monkeypatch.undo()
    # every figure of every family was drawn, and every drawn figure was checked
    drawn = {(e.group, e.png.stem) for e in entries}
    assert drawn == {(g, stem) for g, stems in FAMILIES.items() for stem in stems}
    assert sorted(str(f["png"]) for f in figs.values()) == sorted(str(e.png) for e in entries)
    by_path = {str(f["png"]): f for f in figs.values()}
    fig = {(e.group, e.png.stem): by_path[str(e.png)] for e in entries}
    # the analysis a sweep figure rests on is named: exact for the bundled systems, not for flat.toml
    assert fig[("analytic", "concurrency_sweep")]["suptitle"].startswith("Exact analysis")
    assert fig[("sweep", "sweep_concurrency")]["suptitle"].startswith("Approximate analysis")
    assert fig[("sweep", "sweep_delay_vs_routing")]["suptitle"].startswith("Approximate analysis")
    # runs: a band for the group of three seeds only, in each of the four panels; the legend says so
    runs = fig[("runs", "runs_curves")]
    assert list(runs["bands"].values()) == [1, 1, 1, 1]
    assert "3 seeds" in runs["legend_titles"][0] and "each seed" in runs["legend_titles"][0]
    # one seed (the small validation run): no band anywhere, and the legend does not promise one
    one = fig[("grid", "grid_accuracy_synthetic_generalized-asyncsgd")]
    assert set(one["bands"].values()) == {0} and "one seed" in one["legend_titles"][0]
    assert "95%" not in one["legend_titles"][0]
    # three seeds: bands, named with their seed count
    three = fig[("grid", "grid_accuracy_mnist1d_generalized-asyncsgd")]
    assert min(three["bands"].values()) >= 2 and "over 3 seeds" in three["legend_titles"][0]
    # every figure is one or two columns wide
    assert {round(f["size"][0], 2) for f in figs.values()} <= {3.3, 4.8, 7.0}
    # the page shows every figure, and the montage holds them all
    index = contact_sheet.write_index(tmp_path, entries).read_text()
    for e in entries:
        assert f"src='{e.png.relative_to(tmp_path).as_posix()}'" in index
    with Image.open(contact_sheet.write_montage(tmp_path, entries)) as im:
        assert im.width == 2400 and im.height > 300
