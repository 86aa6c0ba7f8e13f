"""Recompute one fedecho-like record of validation/results/fedbuff_claims (made by an earlier code
version, before the FedRevive scenario moved to digits) with the current code and say whether
every deterministic field is identical.

Usage: ``OMP_NUM_THREADS=1 nice -n 10 python validation/fedbuff_claims_reproduce.py`` (one run, ~10 s of CPU).
"""
import tempfile
from dataclasses import replace
from pathlib import Path

from aflqueue.experiments.claims import CLAIMS_PRESETS, evaluation_jobs
from aflqueue.experiments.comparison import comparison_run
from aflqueue.jobs import code_version
from aflqueue.io import read_json

p = CLAIMS_PRESETS["claims"]
out = str(Path(__file__).resolve().parent / "results" / "fedbuff_claims" / "fedecho-like")
sel = read_json(out + "/selection.json")
one = replace(p, scenarios=(p.scenario("fedecho-like"),))
jobs = dict(evaluation_jobs(one, sel, tempfile.mkdtemp()))
jid = "fedecho-like__fedecho__uniform__s0"
r = comparison_run(jobs[jid])
old = read_json(f"{out}/cells/cells/{jid}.json")
keys = ["final_accuracy", "final_loss", "arrivals", "versions", "staleness_mean", "curve", "time_to_target", "costs"]
same = {k: r[k] == old[k] for k in keys}
print(f"{jid}: recorded by {old['code_version']}, recomputed by {code_version()}; identical fields: {same}")
