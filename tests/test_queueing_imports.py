"""The modules of ``aflqueue.queueing`` import each other without cycles, at the top of the file:
an import inside a function is there only to keep something heavy (numba, scipy.special) lazy,
and says so in a ``# lazy:`` comment on its line. Checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import aflqueue.queueing

PKG = Path(aflqueue.queueing.__file__).resolve().parent


def sibling(node: ast.ImportFrom) -> str | None:
    """The sibling module a ``from .x import y`` (or ``from . import x``) names, else None."""
    if node.level != 1:
        return None
    return node.module or (node.names[0].name if len(node.names) == 1 else None)


def graph() -> dict[str, set[str]]:
    g = {}
    for p in PKG.glob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        g[p.stem] = {m for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (m := sibling(node))}
    return g


def test_no_import_cycles_between_queueing_modules():
    g = graph()
    assert "gradients" in g["analysis"] and "analysis" not in g["gradients"]  # the circle issue 24 named
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, " -> ".join(path + (mod,))
        if mod in done:
            return
        for dep in sorted(g.get(mod, ())):
            visit(dep, path + (mod,))
        done.add(mod)

    for mod in sorted(g):
        if mod != "__init__":
            visit(mod, ())


def test_imports_inside_functions_only_keep_heavy_modules_lazy():
    bad = []
    for p in sorted(PKG.glob("*.py")):
        lines = p.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and "# lazy:" not in lines[node.lineno - 1]:
                    bad.append(f"{p.name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, bad
