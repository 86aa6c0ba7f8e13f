"""The FedBuff-family claims experiment (validation/fedbuff_family/claims.py) on the claims-tiny preset
(synthetic data, seconds): stages end to end, the selection frozen before evaluation, tuning's
argmax against a hand computation, resume, verdict rules, and the report's numbers against an
independent recomputation from the records."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from aflqueue import ValidationError
from aflqueue.fl.algorithms import AlgorithmContext, make_algorithm
from aflqueue.outcomes import time_to_target
from validation.fedbuff_family.claims import (CLAIMS_PRESETS, Claim, ClaimScenario, ClaimsPreset, claim_verdicts,
                                              evaluation_jobs, load_claims, posthoc_summary, run_claims, select,
                                              summarize_claims, tuning_jobs)
from validation.fedbuff_family.report import write_claims_report

TINY = CLAIMS_PRESETS["claims-tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims")
    data = run_claims(TINY, out, progress=None)
    return out, data


def test_stages_run_end_to_end(tiny):
    out, data = tiny
    assert len(data["tuning"]) == len(tuning_jobs(TINY, out / "runs")) == 12  # 2 algs x (2 + 2 x 2) x 1 seed
    assert {r["settings"]["stage"] for r in data["tuning"]} == {"tune"}
    assert all(r["evaluated_on"] == "validation" and r["seed"] in TINY.pilot_seeds for r in data["tuning"])
    ev = data["evaluation"]
    assert sorted(r["id"] for r in ev) == sorted(f"tiny__{a}__{ro}__s{s}" for a in ("fedbuff", "fedecho")
                                                 for ro in ("uniform", "p2") for s in (0, 1))
    sel = json.loads((out / "tiny" / "selection.json").read_text())
    for r in ev:
        assert r["evaluated_on"] == "test" and r["code_version"]["source"]
        c = sel["scenarios"]["tiny"]["chosen"][f"{r['settings']['algorithm']}/{r['settings']['routing']}"]
        assert r["settings"]["params"]["eta_g"] == c["eta_g"] and r["settings"]["params"]["weighting"] == c["weighting"]
        assert r["target"] == sel["scenarios"]["tiny"]["target"]
    # paired by seed: the same schedule for both algorithms under one routing
    by = {r["id"]: r for r in ev}
    for s in (0, 1):
        assert by[f"tiny__fedbuff__uniform__s{s}"]["arrivals"] == by[f"tiny__fedecho__uniform__s{s}"]["arrivals"]


def test_resume_skips_finished_jobs(tiny):
    out, data = tiny
    lines: list[str] = []
    again = run_claims(TINY, out, progress=lines.append)
    assert lines == ["0 job(s) to run (serial), 12 already done", "0 job(s) to run (serial), 8 already done"]
    assert again["selection"] == data["selection"]


def test_selection_is_frozen_before_evaluation(tiny, tmp_path):
    out, data = tiny
    frozen = (out / "tiny" / "selection.json").read_bytes()
    # doctor a tuning record so that another candidate would now win: the saved choice must not move
    rec_path = out / "tiny" / "tuning" / "cells" / "tiny__fedbuff__uniform__uniform__eta1__s1000.json"
    original = rec_path.read_bytes()
    rec = json.loads(original)
    rec["curve"]["test_accuracy"] = [1.0] * len(rec["curve"]["test_accuracy"])
    rec_path.write_text(json.dumps(rec))
    try:
        assert select(TINY, load_claims(TINY, out)["tuning"])["scenarios"]["tiny"]["chosen"]["fedbuff/uniform"]["eta_g"] == 1.0
        after = run_claims(TINY, out, progress=None, stage="eval")
        assert (out / "tiny" / "selection.json").read_bytes() == frozen and after["selection"] == data["selection"]
        assert {r["settings"]["params"]["eta_g"] for r in after["evaluation"] if r["id"].startswith("tiny__fedbuff__u")} \
            == {data["selection"]["scenarios"]["tiny"]["chosen"]["fedbuff/uniform"]["eta_g"]}
    finally:
        rec_path.write_bytes(original)
    # another tuning plan cannot reuse this selection; evaluation needs a selection
    other = replace(TINY, eta_grids={**TINY.eta_grids, "fedbuff": (1.0, 2.0)})
    with pytest.raises(ValidationError, match="selection.json"):
        run_claims(other, out, progress=None, stage="eval")
    with pytest.raises(ValidationError, match="no selection yet"):
        run_claims(TINY, tmp_path, progress=None, stage="eval")


# --------------------------------------------------------------------------- selection by hand
def _rec(alg, routing, w, eta, seed, accs, horizon=10.0):
    """A tuning record whose validation curve is ``accs`` at times 0, H/2 and H."""
    return {"id": f"x__{alg}__{routing}__{w}__eta{eta:g}__s{seed}", "seed": seed, "final_accuracy": accs[-1],
            "time_budget": horizon, "diverged": False,
            "curve": {"time": [0.0, horizon / 2, horizon], "test_accuracy": list(accs)},
            "settings": {"scenario": "x", "algorithm": alg, "routing": routing, "params": {"eta_g": eta, "weighting": w}}}


def _hand_score(accs):
    # 50 times H (k+1)/50: k+1 < 25 read the first value, 25..49 the middle one, 50 the last
    return (24 * accs[0] + 25 * accs[1] + accs[2]) / 50


def test_tuning_picks_the_argmax_of_the_validation_score():
    preset = ClaimsPreset("hand", (ClaimScenario("x", "tiny", {}, ("fedbuff",)),),
                          eta_grids={"fedbuff": (1.0, 3.0)}, pilot_seeds=(1000, 1001), target_fraction=0.9)
    curves = {  # (routing, weighting, eta) -> per seed
        ("uniform", "uniform", 1.0): [(0.1, 0.5, 0.9), (0.1, 0.5, 0.9)],  # best final accuracy, slow
        ("uniform", "uniform", 3.0): [(0.1, 0.7, 0.8), (0.1, 0.7, 0.8)],  # best score
        ("p2", "uniform", 1.0): [(0.2, 0.6, 0.6), (0.2, 0.6, 0.6)],
        ("p2", "uniform", 3.0): [(0.1, 0.6, 0.7), (0.1, 0.6, 0.7)],
        ("p2", "importance", 1.0): [(0.2, 0.6, 0.6), (0.2, 0.6, 0.6)],  # ties p2/uniform/1: uniform wins
        ("p2", "importance", 3.0): [(0.1, 0.5, 0.5), (0.1, 0.6, 0.5)],
    }
    recs = [_rec("fedbuff", ro, w, eta, s, c) for (ro, w, eta), cs in curves.items()
            for s, c in zip((1000, 1001), cs)]
    sel = select(preset, recs)["scenarios"]["x"]
    scores = {k: np.mean([_hand_score(c) for c in cs]) for k, cs in curves.items()}
    for routing in ("uniform", "p2"):
        cands = {k: v for k, v in scores.items() if k[0] == routing}
        top = max(cands.values())
        # ties: smaller eta, then uniform weighting (the first in key order)
        best = min((k for k, v in cands.items() if abs(v - top) < 1e-12), key=lambda k: (k[2], k[1] != "uniform"))
        got = sel["chosen"][f"fedbuff/{routing}"]
        assert (got["weighting"], got["eta_g"]) == (best[1], best[2])
        assert got["score"] == pytest.approx(top)
    assert sel["chosen"]["fedbuff/uniform"]["eta_g"] == 3.0  # the score, not the final accuracy, decides
    assert sel["target"] == math.floor(100 * 0.9 * 0.8) / 100  # tuned FedBuff-uniform pilots' final accuracy
    assert sel["defaults"]["fedbuff"]["pilot_final_accuracy"] == pytest.approx(0.9)
    with pytest.raises(ValidationError, match="tuning"):
        select(preset, recs[:-1])  # selection needs every tuning run


# --------------------------------------------------------------------------- verdicts
def _row(key, diff_ci, ratio_ci, censored=0):
    alg, routing = key.split("/")
    cmp = {"accuracy_difference": {"mean": sum(diff_ci) / 2, "ci": list(diff_ci), "n": 5},
           "accuracy_difference_t": {"mean": sum(diff_ci) / 2, "ci": list(diff_ci), "n": 5},
           "time_ratio": {"mean": math.sqrt(ratio_ci[0] * ratio_ci[1]), "ci": list(ratio_ci), "n": 5},
           "censored": censored, "censored_reference": 0}
    return {"key": key, "algorithm": alg, "routing": routing, "vs_reference": cmp, "vs_same_routing": None}


@pytest.mark.parametrize("diff, ratio, censored, acc_verdict, time_verdict", [
    ((0.01, 0.05), (0.5, 0.9), 0, "reproduced", "reproduced"),
    ((-0.01, 0.05), (0.5, 1.1), 0, "not reproduced", "not reproduced"),
    ((-0.05, -0.01), (0.5, 0.9), 1, "not reproduced", "not reproduced"),  # censored runs: no speed claim
])
def test_verdict_rules(diff, ratio, censored, acc_verdict, time_verdict):
    summary = {"scenarios": [{"scenario": "s", "rows": [_row("a/uniform", diff, ratio, censored)]}]}
    claims = (Claim("acc", "P", "t", "s", "a", "accuracy", magnitude=0.03),
              Claim("time", "P", "t", "s", "a", "time", magnitude=0.62), Claim("gone", "P", "t", "other", "a"),
              Claim("never", "P", "t", None, why="no GPU"))
    v = {x["claim"].id: x for x in claim_verdicts(summary, claims)}
    assert v["acc"]["verdict"] == acc_verdict and v["time"]["verdict"] == time_verdict
    assert v["gone"]["verdict"] == v["never"]["verdict"] == "not testable here" and v["never"]["why"] == "no GPU"
    assert v["acc"]["magnitude_inside"] == (diff[0] <= 0.03 <= diff[1])
    assert v["time"]["magnitude_inside"] == (ratio[0] <= 0.62 <= ratio[1])


# --------------------------------------------------------------------------- the report
def _cells(md: str, key: str) -> list[str]:
    """The cells of ``key``'s row in the results table (its second cell reads "eta_g, weighting")."""
    for ln in md.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if cells[0] == key and re.fullmatch(r"[\d.e+-]+, (uniform|importance)", cells[1]):
            return cells
    raise AssertionError(f"no results row for {key}")


def test_report_numbers_equal_an_independent_recomputation(tiny, tmp_path):
    out, _ = tiny
    data = load_claims(TINY, out)
    md, html = write_claims_report(TINY, data, tmp_path / "report.md", tmp_path / "figs")
    text = md.read_text()
    sel = data["selection"]["scenarios"]["tiny"]
    target = sel["target"]
    runs: dict[str, dict[int, dict]] = {}
    for r in data["evaluation"]:
        runs.setdefault(f"{r['settings']['algorithm']}/{r['settings']['routing']}", {})[r["seed"]] = r

    def t(r):
        v = time_to_target(r["curve"], target, diverged_at_time=r.get("diverged_at_time"))
        return (r["time_budget"], False) if v is None else (v, True)

    ref = runs["fedbuff/uniform"]
    for key, rr in runs.items():
        cells = _cells(text, key)
        acc = np.mean([r["final_accuracy"] for r in rr.values()])
        assert cells[2].startswith(f"{100 * acc:.1f} ")
        lo, hi = (float(x) for x in re.search(r"\[([-\d.]+), ([-\d.]+)\]", cells[2]).groups())
        assert 0 <= lo <= 100 * acc + 0.05 and 100 * acc - 0.05 <= hi <= 100  # bounded interval
        reached = sum(t(r)[1] for r in rr.values())
        assert cells[4].startswith(f"{reached}/{len(rr)}")
        if key == "fedbuff/uniform":
            assert cells[3] == "-" and cells[6] == "-"
            continue
        diff = np.mean([rr[s]["final_accuracy"] - ref[s]["final_accuracy"] for s in rr])
        assert cells[3].startswith(f"{100 * diff:+.1f}")
        ratio = math.exp(np.mean([math.log(t(rr[s])[0] / t(ref[s])[0]) for s in rr]))
        assert cells[6].startswith(f"{ratio:.2f}")
        censored = sum(not t(rr[s])[1] for s in rr)
        assert f"({censored}/{sum(not t(ref[s])[1] for s in rr)})" in cells[6]
        mem = np.mean([r["memory_bytes"] for r in rr.values()]) / 2**20
        assert cells[8].startswith(f"{mem:.2f} (")
    assert "one code version" in text and "selection.json" in text and html.is_file()
    summary = summarize_claims(TINY, data["selection"], data["evaluation"])
    assert {r["key"] for s in summary["scenarios"] for r in s["rows"]} == set(runs)


def test_report_flags_mixed_code_versions(tiny, tmp_path):
    out, _ = tiny
    data = load_claims(TINY, out)
    data["evaluation"][0] = {**data["evaluation"][0], "code_version": {"source": "0" * 16, "commit": None}}
    md, _ = write_claims_report(TINY, data, tmp_path / "report.md")
    text = md.read_text()
    assert "Mixed code versions" in text and "provisional" in text
    # before any run: the protocol alone
    md, _ = write_claims_report(TINY, {"tuning": [], "selection": None, "evaluation": []}, tmp_path / "empty.md")
    assert "## Protocol" in md.read_text() and "No evaluation records yet" in md.read_text()


def test_evaluation_jobs_follow_the_selection():
    sel = {"scenarios": {"tiny": {"target": 0.5, "chosen": {
        f"{a}/{r}": {"eta_g": 2.0 if a == "fedbuff" else 3.0, "weighting": "importance" if r == "p2" else "uniform"}
        for a in ("fedbuff", "fedecho") for r in ("uniform", "p2")}}}}
    jobs = evaluation_jobs(TINY, sel, "/tmp/unused")
    assert len(jobs) == 8 and {a[5] for _, a in jobs} == set(TINY.eval_seeds)
    for job_id, a in jobs:
        alg, routing = job_id.split("__")[1:3]
        assert a[4]["eta_g"] == (2.0 if alg == "fedbuff" else 3.0) and a[8] == 0.5
        assert a[4]["weighting"] == ("importance" if routing == "p2" else "uniform")
        assert a[2]["run"]["evaluate_on"] == "test" and a[2]["routing"]["kind"] == (
            "uniform" if routing == "uniform" else "optimal")


def test_state_bytes_measures_what_the_algorithm_holds():
    from aflqueue.fl.local import ParamSpec
    from aflqueue.fl.models import build_model

    model = build_model("mlp", (4,), 3, seed=0, hidden=(5,))
    spec = ParamSpec(model)
    ctx = AlgorithmContext(n_clients=2, routing=np.full(2, 0.5), concurrency=2, model=model, spec=spec,
                           num_classes=3, input_shape=(4,), unlabeled=torch.zeros(6, 4))
    fb = make_algorithm("fedbuff", torch.zeros(spec.numel), ctx)
    assert fb.state_bytes() == spec.numel * 4 == fb.costs()["memory_state_bytes"]  # the buffer only
    fe = make_algorithm("fedecho", torch.zeros(spec.numel), ctx)
    assert fe.state_bytes() >= spec.numel * 4


def test_posthoc_summary_swaps_in_the_retuned_reference(tiny):
    out, _ = tiny
    data = load_claims(TINY, out)
    retuned = [{**r, "final_accuracy": 0.0} for r in data["evaluation"] if r["id"].startswith("tiny__fedbuff__uniform")]
    check = {"scenario": "tiny", "algorithm": "fedbuff", "routing": "uniform", "best_eta": 9.0,
             "table": {"at_edge": True}, "evaluation": retuned}
    summary = posthoc_summary(TINY, data["selection"], data["evaluation"], check)
    rows = {r["key"]: r for r in summary["scenarios"][0]["rows"]}
    assert rows["fedbuff/uniform"]["eta_g"] == 9.0 and rows["fedbuff/uniform"]["accuracy"]["mean"] == 0.0
    echo = [r["final_accuracy"] for r in data["evaluation"] if r["id"].startswith("tiny__fedecho__uniform")]
    assert rows["fedecho/uniform"]["vs_reference"]["accuracy_difference"]["mean"] == pytest.approx(np.mean(echo))
    assert posthoc_summary(TINY, data["selection"], data["evaluation"], {**check, "evaluation": []}) is None
    assert data["selection"]["scenarios"]["tiny"]["chosen"]["fedbuff/uniform"]["eta_g"] != 9.0  # not modified
