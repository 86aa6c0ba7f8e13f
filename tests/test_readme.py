"""The README's code blocks run as written.

Every ```bash block runs through ``bash -e -o pipefail`` and every ```python block through the
interpreter, each in a fresh temporary folder holding a copy of the repository's user-facing
files (``examples/``, ``analysis/``, ``validation/``), with ``aflqueue``, ``python`` and
``python3`` on PATH running this checkout under this interpreter. A block is skipped only when
the line before it (blank lines aside) is a marker with a reason:

    <!-- readme-test: skip (needs a Ray cluster) -->

and the reason is printed with the skip. A block that would take more than a minute must carry
such a marker: the test measures the CPU time a block uses (its processes' user + system time,
which, unlike wall time, does not grow when the machine is shared) and fails above 60 s.
```toml blocks that describe a system (``rates`` or ``[[clients]]``) must load with
:func:`aflqueue.load_system`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip\s*\((.+)\)\s*$")
COPIED = ("examples", "analysis", "validation")
CPU_LIMIT = 60.0  # seconds of CPU per block (the "more than a minute" rule, independent of load)
TIMEOUT = 600  # seconds of wall time: only a guard against a block that hangs


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the reason, if marked

    @property
    def id(self) -> str:
        return f"{self.lang}-line{self.line}"


def parse(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Code blocks and the markers that are not attached to a block (line, text)."""
    lines = text.splitlines()
    blocks, attached = [], set()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        assert j < len(lines), f"README line {i + 1}: unclosed code block"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skip = None
        if k >= 0 and MARKER.match(lines[k]):
            attached.add(k)
            s = SKIP.match(MARKER.match(lines[k]).group(1))
            skip = s.group(1).strip() if s else ""
        blocks.append(Block(m.group(1), i + 1, "\n".join(lines[i + 1:j]), skip))
        i = j + 1
    loose = [(n + 1, ln) for n, ln in enumerate(lines) if "readme-test" in ln and n not in attached]
    return blocks, loose


BLOCKS, LOOSE = parse(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.lang in ("bash", "python")]


def test_parser_reads_blocks_and_markers():
    """Known input: a marked block, an unmarked one, a marker without reason, a loose marker."""
    text = textwrap.dedent("""\
        intro
        <!-- readme-test: skip (needs a Ray cluster) -->

        ```bash
        ray start --head
        ```
        ```python
        print(1)
        ```
        <!-- readme-test: skip () -->
        ```toml
        a = 1
        ```
        <!-- readme-test: skip (dangling) -->
        text
        """)
    blocks, loose = parse(text)
    assert [(b.lang, b.line, b.code, b.skip) for b in blocks] == [
        ("bash", 4, "ray start --head", "needs a Ray cluster"), ("python", 7, "print(1)", None),
        ("toml", 11, "a = 1", "")]
    assert loose == [(14, "<!-- readme-test: skip (dangling) -->")]


def test_every_marker_gives_a_reason_and_belongs_to_a_block():
    assert RUNNABLE, "the README has no bash or python block"
    assert not LOOSE, f"readme-test markers not directly above a code block: {LOOSE}"
    for b in BLOCKS:
        assert b.skip is None or b.skip, f"README line {b.line}: a skip marker needs a reason: skip (why)"


def test_system_file_blocks_load(tmp_path: Path):
    import aflqueue as aq
    from aflqueue.system import read_mapping

    systems = [b for b in BLOCKS if b.lang == "toml" and ("rates" in b.code or "[[clients]]" in b.code)]
    assert systems, "the README shows no system file"
    for b in systems:
        path = tmp_path / f"line{b.line}.toml"
        path.write_text(b.code + "\n")
        system = aq.load_system(path)
        assert system.n == len(read_mapping(path).get("rates") or read_mapping(path)["clients"])
        assert aq.analyze(system).throughput > 0


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder with copies of the user-facing files and PATH/PYTHONPATH set to this checkout."""
    work = tmp_path / "work"
    work.mkdir()
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(sys.executable)
    shim = bin_dir / "aflqueue"  # the console script of *this* checkout, whatever is installed
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from aflqueue.cli import main; "
                    f"sys.exit(main())' \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    return work, env


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_readme_block_runs(block: Block, sandbox: tuple[Path, dict[str, str]]):
    if block.skip:
        pytest.skip(f"README line {block.line}: {block.skip}")
    work, env = sandbox
    if block.lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:
        script = work / "readme_block.py"
        script.write_text(block.code + "\n")
        cmd = [sys.executable, str(script)]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README line {block.line}: still running after {TIMEOUT} s; shorten the block or mark it "
                    "<!-- readme-test: skip (reason) -->")
    took, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    assert proc.returncode == 0, (f"README line {block.line} failed (exit {proc.returncode}, {took:.0f} s):\n"
                                  f"{block.code}\n--- stdout ---\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert cpu <= CPU_LIMIT, (f"README line {block.line} used {cpu:.0f} s of CPU (> {CPU_LIMIT:.0f} s): shorten it "
                              "or mark it <!-- readme-test: skip (reason) -->")


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished (waited-for) child processes."""
    try:
        import resource
    except ImportError:  # not on Windows: no limit there
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def test_theory_sections_cited_anywhere_exist():
    """docs/theory.md keeps the numbering that docstrings, scripts and the README cite."""
    theory = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    numbers = [int(m) for m in re.findall(r"^## (\d+) ", theory, flags=re.M)]
    assert numbers == list(range(1, 13))
    cite = re.compile(r"docs/theory\.md,? sections? (\d+)(?:\s*(?:-|and)\s*(\d+))?")
    files = [README] + [p for d in ("aflqueue", "validation", "examples", "tests", "analysis")
                        for p in (ROOT / d).rglob("*.py")]
    cited = set()
    for f in files:
        for a, b in cite.findall(f.read_text(encoding="utf-8")):
            cited |= set(range(int(a), int(b or a) + 1))
    assert cited and cited <= set(numbers), sorted(cited - set(numbers))
    assert "docs/theory.md" in README.read_text(encoding="utf-8")
