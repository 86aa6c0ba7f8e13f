"""Smoke test of validation/closed_forms.py in --quick mode (a real statistical check).

With exponential service the product-form closed forms are exact, so every simulated metric
(throughput, E[X_i], utilisation, response times, E[D_i], central-server queue, delay tails)
must lie within 4 standard errors of its closed form. The run is seeded, hence deterministic.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "validation" / "closed_forms.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("closed_forms_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve the module by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    script = _load_script()
    out = tmp_path_factory.mktemp("closed_forms")
    figs = out / "figures"
    assert script.main(["--quick", "--out", str(out), "--figures", str(figs), "--seed", "0"]) == 0
    return script, out, figs


def test_outputs_exist(quick_run):
    _, out, figs = quick_run
    results = json.loads((out / "closed_forms.json").read_text())
    md = (out / "closed_forms.md").read_text()
    assert "| scenario | law |" in md and "THEORY section 4" in md
    assert {"example", "five_types", "five_types_sqrt", "ms_fifo", "ms_delay_links", "ms_delay_server"} <= set(
        results["scenarios"])
    for stem in ("closed_forms_delay_scatter", "closed_forms_cv_deviation", "closed_forms_delay_law"):
        for ext in ("png", "pdf"):
            f = figs / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f


def test_exponential_closed_forms_within_4_standard_errors(quick_run):
    _, out, _ = quick_run
    results = json.loads((out / "closed_forms.json").read_text())
    checked = 0
    for name, sc in results["scenarios"].items():
        for run in sc["runs"]:
            if run["law"]["family"] != "exponential":
                continue
            for row in run["comparisons"] + run["group_comparisons"]:
                assert row["z"] is not None and abs(row["z"]) <= 4, (name, row)
                checked += 1
            if sc["multistage"]:  # the section-4 formula itself, as evaluated by the script
                assert run["delay_formulas"]["theory"]["max_abs_z"] <= 4
    for name, rec in results["delay_distribution"].items():
        for c in rec["clients"]:
            for t in c["tails"]:
                assert t["z"] is not None and abs(t["z"]) <= 4, (name, c["name"], t)
                checked += 1
            assert c["exact_mean"] == pytest.approx(c["closed_form_mean"], rel=1e-8)
    assert checked > 300


def test_non_exponential_deviation_is_detected(quick_run):
    # deterministic service is far from exponential: the closed-form throughput is off by
    # several standard errors (otherwise the comparison would have no power)
    _, out, _ = quick_run
    results = json.loads((out / "closed_forms.json").read_text())
    run = next(r for r in results["scenarios"]["example"]["runs"] if r["law"]["family"] == "deterministic")
    assert abs(run["summary"]["z_throughput"]) > 4


def test_restart_skips_saved_scenarios_and_figures_only(quick_run, capsys):
    script, out, figs = quick_run
    capsys.readouterr()
    script.run(out, quick=True, seed=0)
    log = capsys.readouterr().out
    assert log.count("[skip]") == 8, log  # 6 scenarios + 2 delay-law systems
    assert script.main(["--out", str(out), "--figures", str(figs / "again"), "--figures-only"]) == 0
    assert (figs / "again" / "closed_forms_delay_scatter.pdf").is_file()
