"""Kill-and-resume check: a training run killed at a random moment and resumed with ``--resume``
ends identical to an uninterrupted run, every time.

Each trial starts ``aflqueue train`` in a subprocess, kills it with SIGKILL at a random time
while it trains (after at least one checkpoint), resumes it with the same command plus
``--resume``, and compares ``results.json`` (accuracy and loss curves, final metrics, the
arrival log) with a reference run; it also checks that no temporary file was left behind.

    python validation/kill_resume.py [--trials 10] [--seed 0] [--out runs/kill_resume]

Prints one line per trial and a summary; exit status 0 when every trial matched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMAND = ["train", "--quiet", "--updates", "1500", "--set", "run.checkpoint_every=100", "--set",
           "run.eval_every=150", "--set", 'data.partition="iid"']
COMPARED = ("final_accuracy", "final_loss", "time", "updates", "test_accuracy", "test_loss", "arrivals",
            "simulated_time", "model_version")


def cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aflqueue.cli", *COMMAND, "--output", str(out), *extra]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/kill_resume")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ref = out / "reference"
    subprocess.run(cli(ref), check=True)
    want = json.loads((ref / "results.json").read_text())
    want_log = (ref / "updates.csv").read_text()
    rng = random.Random(args.seed)
    ok = 0
    for k in range(args.trials):
        run = out / f"trial{k}"
        proc = subprocess.Popen(cli(run), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait for the first checkpoint, then kill at a random moment of the rest of the run
        while proc.poll() is None and not (run / "checkpoint.pt").exists():
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        subprocess.run(cli(run, "--resume"), check=True)
        got = json.loads((run / "results.json").read_text())
        same = all(got[key] == want[key] for key in COMPARED) and (run / "updates.csv").read_text() == want_log
        leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        ok += same and not leftovers
        print(f"trial {k}: {'killed' if killed else 'finished before the kill'}, resumed: "
              f"{'identical' if same else 'DIFFERENT'}{', leftovers ' + str(leftovers) if leftovers else ''}",
              flush=True)
    print(f"{ok}/{args.trials} trials identical to the uninterrupted run")
    return 0 if ok == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
