"""Recompute one fedecho-like record of the claims' results (made by an earlier code version,
before the FedRevive scenario moved to digits) with the current code and say whether every
deterministic field is identical (``results/claims/REPRODUCTION.md`` reports the first such check).

Usage (from anywhere): ``OMP_NUM_THREADS=1 nice -n 10 python validation/fedbuff_family/reproduce.py``
(one run, ~10 s of CPU).
"""

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent.parent))

from aflqueue.io import read_json  # noqa: E402
from aflqueue.jobs import code_version  # noqa: E402
from validation.fedbuff_family.claims import CLAIMS_PRESETS, evaluation_jobs  # noqa: E402
from validation.fedbuff_family.comparison import CODE, comparison_run  # noqa: E402

if __name__ == "__main__":
    p = CLAIMS_PRESETS["claims"]
    out = HERE / "results" / "claims" / "fedecho-like"
    sel = read_json(out / "selection.json")
    one = replace(p, scenarios=(p.scenario("fedecho-like"),))
    jobs = dict(evaluation_jobs(one, sel, tempfile.mkdtemp()))
    jid = "fedecho-like__fedecho__uniform__s0"
    r = comparison_run(jobs[jid])
    old = read_json(out / "cells" / "cells" / f"{jid}.json")
    keys = ["final_accuracy", "final_loss", "arrivals", "versions", "staleness_mean", "curve", "time_to_target",
            "costs"]
    same = {k: r[k] == old[k] for k in keys}
    print(f"{jid}: recorded by {old['code_version']}, recomputed by {code_version(CODE)}; identical fields: {same}")
