"""Rebuild every committed report and figure of the studies from their committed records, and diff.

Each study's results are copied to a scratch tree laid out like the repository (so that figure
links come out as in the committed reports), every report, JSON summary and figure is rebuilt
there by the study's own report code, and each file is compared with the committed one:

* by default with the file committed at the same path (the working tree);
* with ``--against REV``, with the file as committed at git revision ``REV`` under its path there
  (:data:`MOVES` maps the paths that have moved since: this is how the move of the studies out of
  the package was shown not to change any result).

Before comparing text, three things are normalised, each only where it occurs, and reported:
*stamps* (a generation date and the platform, written when a summary is assembled), *figure
links* (the folder part of a Markdown image link or an HTML image source: figures moved, and a
link is relative to the report) and, with ``--against``, *moved paths* (:data:`MOVES`: a path
named in a report that has moved). Anything else is a difference: the script prints it and exits
with status 1.

Usage (from anywhere)::

    python validation/regenerate.py                       # every study, against the working tree
    python validation/regenerate.py --against 831af09     # against the layout before the move
    python validation/regenerate.py paper regimes --keep /tmp/regen   # some studies; keep the scratch tree

Reports that cannot be rebuilt are listed with the reason (their records are not committed).
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

#: ``(old, new)``: paths (files, folders, modules named in reports) that moved when the studies left
#: the package (commits after 831af09); the longer of two overlapping entries is applied first.
MOVES: tuple[tuple[str, str], ...] = (
    ("validation/report.md", "validation/paper/results/report.md"),
    ("validation/PROTOCOL.md", "validation/paper/PROTOCOL.md"),
    ("validation/results/paper", "validation/paper/results"),
    ("figures/paper_", "validation/paper/figures/paper_"),
    ("aflqueue/experiments/paper.py", "validation/paper/experiment.py"),
    ("validation/REGIMES_PROTOCOL.md", "validation/regimes/PROTOCOL.md"),
    ("validation/REGIMES_CONFIRM_PROTOCOL.md", "validation/regimes/CONFIRM_PROTOCOL.md"),
    ("validation/results/regimes-confirm/figures/", "validation/regimes/figures/regimes-confirm/"),
    ("validation/results/regimes-confirm", "validation/regimes/results/regimes-confirm"),
    ("validation/results/regimes", "validation/regimes/results/regimes"),
    ("figures/regimes_", "validation/regimes/figures/regimes/regimes_"),
    ("aflqueue/experiments/regimes.py", "validation/regimes/experiment.py"),
    ("validation/regimes_pooled.py", "validation/regimes/pooled.py"),
    ("validation/results/approx/figures/", "validation/approx/figures/"),
    ("validation/results/approx", "validation/approx/results"),
    ("validation/approx_analysis.py", "validation/approx/run.py"),
    ("validation/approx_delay_oracle.py", "validation/approx/oracle.py"),
    ("aflqueue.experiments.delay_oracle", "validation.approx.delay_oracle"),
    ("validation/results/closed_forms", "validation/closed_forms/results"),
    ("figures/closed_forms_", "validation/closed_forms/figures/closed_forms_"),
    ("validation/closed_forms.py", "validation/closed_forms/run.py"),
    ("validation/results/fedbuff_claims/figures/", "validation/fedbuff_family/figures/"),
    ("validation/results/fedbuff_claims", "validation/fedbuff_family/results/claims"),
    ("validation/results/fedbuff_family", "validation/fedbuff_family/results/checks"),
    ("validation/results/stale_algorithms", "validation/fedbuff_family/results/stale_algorithms"),
    ("validation/fedbuff_family_claims.py", "validation/fedbuff_family/run.py"),
    ("validation/fedbuff_family_checks.py", "validation/fedbuff_family/checks.py"),
    ("validation/stale_algorithms.py", "validation/fedbuff_family/stale_algorithms.py"),
    ("aflqueue/experiments/claims.py", "validation/fedbuff_family/claims.py"),
    ("validation/results/grid_default", "validation/grid/results/default"),
    ("figures/grid_accuracy_", "validation/grid/figures/grid_accuracy_"),
)

#: Generation stamps written when a summary is assembled: ``(pattern, replacement)``.
STAMPS = ((re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00"), "<date>"),
          (re.compile(r'"platform": "[^"]*"'), '"platform": "<platform>"'))

#: A figure link (Markdown image or HTML image source that is not embedded): its folder part.
FIGURE_LINKS = (re.compile(r"(!\[[^\]]*\]\()[^)]*/([^/)]+\))"), re.compile(r'(<img [^>]*src=")(?!data:)[^"]*/([^/"]+")'))

#: Known differences from the files at a revision before the move (``--against``): ``path: (committed
#: line, rebuilt line, why)``. Each predates the move: the code at 831af09 writes the rebuilt line too.
KNOWN = {
    "validation/closed_forms/results/closed_forms.md": (
        "## THEORY section 4: the multi-stage delay formula", "## docs/theory.md section 4: the multi-stage delay formula",
        "the committed report predates 359079e, which renamed the heading in the report code"),
}

#: Committed reports that cannot be rebuilt, and why.
NOT_REBUILT = {
    "validation/fedbuff_family/results/stale_algorithms/": "its run records were never committed (only results.json "
                                                           "and report.md, written by an earlier script)",
    "validation/fedbuff_family/results/checks/results.json": "its runs (runs/*.json) were never committed; report.md "
                                                             "is rebuilt from this file",
    "validation/fedbuff_family/results/claims/REPRODUCTION.md": "written by hand",
    "reading.md": "written by hand (every reading.md)",
    "validation/recommend/results/STATUS.md": "written by hand",
    "validation/recommend/results-v2/STATUS.md": "written by hand",
}


# --------------------------------------------------------------------------- rebuilding, study by study
def _copy(tree: Path, *rel: str) -> None:
    for r in rel:
        src = REPO / r
        if src.is_dir():
            shutil.copytree(src, tree / r, dirs_exist_ok=True)
        elif src.is_file():
            (tree / r).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / r)


def paper(tree: Path) -> list[str]:
    from validation.paper.experiment import PAPER_PRESETS, load_paper
    from validation.paper.report import write_paper_report

    _copy(tree, "validation/paper/results")
    out = tree / "validation/paper/results"
    write_paper_report(PAPER_PRESETS["paper"], load_paper(out), out / "report.md", tree / "validation/paper/figures")
    return ["validation/paper/results/report.md", "validation/paper/figures"]


def regimes(tree: Path) -> list[str]:
    from validation.regimes.experiment import REGIME_PRESETS, load_regimes
    from validation.regimes.report import write_regimes_pooled_report, write_regimes_report

    _copy(tree, "validation/regimes/results")
    res, figs = tree / "validation/regimes/results", tree / "validation/regimes/figures"
    data = {name: load_regimes(res / name) for name in ("regimes", "regimes-confirm")}
    for name, d in data.items():
        write_regimes_report(REGIME_PRESETS[name], d, res / name / "report.md", figs / name)
    write_regimes_pooled_report([(REGIME_PRESETS[n], d) for n, d in data.items()], res / "regimes-confirm" / "pooled.md")
    return ["validation/regimes/results/regimes/report.md", "validation/regimes/results/regimes-confirm/report.md",
            "validation/regimes/results/regimes-confirm/pooled.md", "validation/regimes/figures"]


def approx(tree: Path) -> list[str]:
    from aflqueue.io import atomic_write_json
    from validation.approx.delay_oracle import run_delay_oracle
    from validation.approx.experiment import assemble, keep_stamps, load_records, save_summary
    from validation.approx.figures import approx_error_figure
    from validation.approx.report import write_approx_report, write_delay_oracle_report

    _copy(tree, "validation/approx/results")
    out = tree / "validation/approx/results"
    records = load_records(out)
    results = keep_stamps(assemble(records), out)  # what run.py --report-only does
    save_summary(results, out)
    figs = approx_error_figure(results, tree / "validation/approx/figures")
    write_approx_report(results, out / "approx.md", figs, (out / "reading.md").read_text(encoding="utf-8").strip())
    summary = run_delay_oracle(out / "oracle", [r for r in records if r.get("kind") == "point"], progress=None, only=[])
    atomic_write_json(out / "oracle" / "oracle.json", summary)
    write_delay_oracle_report(summary, out / "oracle" / "oracle.md", (out / "oracle" / "reading.md").read_text())
    return ["validation/approx/results/approx.json", "validation/approx/results/approx.md",
            "validation/approx/results/approx.html", "validation/approx/results/oracle/oracle.json",
            "validation/approx/results/oracle/oracle.md", "validation/approx/figures"]


def closed_forms(tree: Path) -> list[str]:
    from validation.closed_forms.experiment import load_results
    from validation.closed_forms.figures import closed_forms_figures
    from validation.closed_forms.report import write_closed_forms_report

    _copy(tree, "validation/closed_forms/results")
    out = tree / "validation/closed_forms/results"
    results = load_results(out / "closed_forms.json")
    write_closed_forms_report(results, out / "closed_forms.md")
    closed_forms_figures(results, tree / "validation/closed_forms/figures")
    return ["validation/closed_forms/results/closed_forms.md", "validation/closed_forms/figures"]


def fedbuff_family(tree: Path) -> list[str]:
    from aflqueue.io import atomic_write_text, read_json
    from validation.fedbuff_family.checks import report
    from validation.fedbuff_family.claims import CLAIMS_PRESETS, POSTHOC, extend_grid, load_claims
    from validation.fedbuff_family.report import write_claims_report

    _copy(tree, "validation/fedbuff_family/results/claims", "validation/fedbuff_family/results/checks")
    out = tree / "validation/fedbuff_family/results/claims"
    preset = CLAIMS_PRESETS["claims"]
    checks = [extend_grid(preset, out, tree / "runs", c["scenario"], c["algorithm"], c["routing"], c["etas"],
                          progress=None, limit=0) for c in POSTHOC]
    write_claims_report(preset, load_claims(preset, out), out / "report.md", tree / "validation/fedbuff_family/figures",
                        command="python validation/fedbuff_family/run.py --posthoc", posthoc=checks)
    res = tree / "validation/fedbuff_family/results/checks"
    atomic_write_text(res / "report.md", report(read_json(res / "results.json")))
    return ["validation/fedbuff_family/results/claims/report.md", "validation/fedbuff_family/results/claims/report.html",
            "validation/fedbuff_family/results/checks/report.md", "validation/fedbuff_family/figures"]


def grid(tree: Path) -> list[str]:
    from validation.grid.experiment import load_cells
    from validation.grid.figures import grid_accuracy_figures

    _copy(tree, "validation/grid/results/default")
    grid_accuracy_figures(load_cells(tree / "validation/grid/results/default"), tree / "validation/grid/figures")
    return ["validation/grid/figures"]


def recommend(tree: Path) -> list[str]:
    from validation.recommend.report import write_report

    out = []
    for folder in ("results", "results-v2"):  # the first execution, and the second (AMENDMENT.md)
        _copy(tree, f"validation/recommend/{folder}")
        # figures for the second execution only: the first could not complete (results/STATUS.md)
        figs = tree / "validation/recommend/figures" if folder == "results-v2" else None
        write_report(tree / "validation/recommend" / folder, figures=figs)
        out += [f"validation/recommend/{folder}/report.md", f"validation/recommend/{folder}/calibration.json"]
    return out + ["validation/recommend/figures"]


def figures(tree: Path) -> list[str]:
    """The analytic figures of the repository's figures/ folder (``aflqueue figures``)."""
    from aflqueue.figures import make_all

    make_all(tree / "figures")
    return ["figures"]


#: The studies this script rebuilds: name -> function(scratch tree) -> the files and folders it wrote
#: (relative to the repository root).
STUDIES: dict[str, Callable[[Path], list[str]]] = {
    "paper": paper, "regimes": regimes, "approx": approx, "closed_forms": closed_forms, "fedbuff_family": fedbuff_family,
    "grid": grid, "recommend": recommend, "figures": figures}


# --------------------------------------------------------------------------- comparing
def old_path(new: str) -> str:
    """Where the file at ``new`` was before the moves of :data:`MOVES` (itself if it did not move)."""
    for old, nw in sorted(MOVES, key=lambda m: -len(m[1])):
        if new.startswith(nw) and (Path(old).suffix == Path(nw).suffix or nw.endswith(("/", "_"))
                                   or new == nw or new[len(nw)] == "/"):
            return old + new[len(nw):]
    return new


def committed(rel: str, against: str | None) -> bytes | None:
    """The committed bytes of ``rel`` (working tree, or git revision ``against`` at its old path)."""
    if against is None:
        p = REPO / rel
        return p.read_bytes() if p.is_file() else None
    r = subprocess.run(["git", "-C", str(REPO), "show", f"{against}:{old_path(rel)}"], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def normalise(text: str, moved: bool) -> tuple[str, dict[str, list[str]]]:
    """``text`` with stamps, figure links (and, if ``moved``, old paths) replaced; per kind, what
    was replaced."""
    found: dict[str, list[str]] = {}
    for pattern, repl in STAMPS:
        found.setdefault("stamps", []).extend(m.group(0) for m in pattern.finditer(text))
        text = pattern.sub(repl, text)
    for pattern in FIGURE_LINKS:
        found.setdefault("figure links", []).extend(m.group(0) for m in pattern.finditer(text))
        text = pattern.sub(r"\1<figures>/\2", text)
    if moved:
        for old, new in sorted(MOVES, key=lambda m: -len(m[0])):
            if old in text:
                # a placeholder first, so that a new path is never rewritten by a shorter old one
                text = text.replace(old, f"\0{MOVES.index((old, new))}\0")
                found[f"moved path {old}"] = [old]
        text = re.sub("\0(\\d+)\0", lambda m: MOVES[int(m.group(1))][1], text)
    return text, {k: v for k, v in found.items() if v}


def _kinds(old: dict[str, list[str]], new: dict[str, list[str]]) -> str:
    """The normalisations that mattered: those whose replaced text differs between the two files."""
    return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))


def compare(tree: Path, rel: str, against: str | None) -> tuple[str, str]:
    """``(verdict, detail)`` for one rebuilt file."""
    new = (tree / rel).read_bytes()
    old = committed(rel, against)
    if old is None:
        return "NEW", "no committed file to compare with"
    if new == old:
        return "identical", ""
    if rel.endswith((".png", ".pdf")):
        return "DIFFERENT", "binary files differ"
    a, ka = normalise(old.decode("utf-8"), against is not None)
    b, kb = normalise(new.decode("utf-8"), False)
    if a == b:
        return "identical after normalising", _kinds(ka, kb)
    if against is not None and rel in KNOWN:
        before, after, why = KNOWN[rel]
        if a.replace(before, after) == b:
            kinds = _kinds(ka, kb)
            return "known difference", f"{before!r} -> {after!r}: {why}" + (f"; {kinds}" if kinds else "")
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), "committed", "rebuilt", lineterm="", n=0)
    return "DIFFERENT", "\n".join(list(diff)[:40])


def files_under(tree: Path, written: Sequence[str]) -> list[str]:
    out = []
    for w in written:
        p = tree / w
        out += [str(f.relative_to(tree)) for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else [w]
    return out


def reports_of(files: Sequence[str]) -> list[str]:
    """The rebuilt reports and figures among ``files`` (records copied along are left out)."""
    keep = (".md", ".html", ".png", ".pdf", ".csv")
    return [f for f in files if f.endswith(keep) or (f.endswith(".json") and "/cells/" not in f
            and "/tuning/" not in f and "/pilots/" not in f and "/timings/" not in f and "/posthoc/" not in f
            and not f.endswith(("selection.json", "design.json", "predictions.json", "grid.json",
                                "selection_digits_only.json")))]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", nargs="*", help=f"studies to rebuild (default all: {', '.join(STUDIES)})")
    ap.add_argument("--against", metavar="REV", help="compare with the files at this git revision (old paths)")
    ap.add_argument("--keep", type=Path, help="scratch tree to write into and keep (default: a temporary one)")
    args = ap.parse_args(argv)
    names = args.studies or list(STUDIES)
    bad = [n for n in names if n not in STUDIES]
    if bad:
        ap.error(f"unknown studies {bad}; known: {', '.join(STUDIES)}")
    tree = args.keep or Path(tempfile.mkdtemp(prefix="regenerate_"))
    failures = 0
    counts: dict[str, int] = {}
    try:
        for name in names:
            written = STUDIES[name](tree)
            for rel in reports_of(files_under(tree, written)):
                verdict, detail = compare(tree, rel, args.against)
                counts[verdict] = counts.get(verdict, 0) + 1
                failures += verdict == "DIFFERENT"
                print(f"{verdict:<28} {rel}" + (f"  ({detail})" if detail and verdict != "DIFFERENT" else ""))
                if verdict == "DIFFERENT":
                    print("    " + detail.replace("\n", "\n    "))
    finally:
        if args.keep is None:
            shutil.rmtree(tree, ignore_errors=True)
    for where, why in NOT_REBUILT.items():
        print(f"{'not rebuilt':<28} {where}: {why}")
    print("summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
