"""Layering of the package, checked on its source: the training side depends on nothing above it,
and no module reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import aflqueue

PKG = Path(aflqueue.__file__).resolve().parent
#: What aflqueue/fl may not import: the layers above it (the pipeline joins the two sides).
ABOVE_FL = ("optimize", "bounds", "calibrate", "config", "pipeline", "experiments", "cli", "mainjob", "api")


def modules():
    for p in sorted(PKG.rglob("*.py")):
        yield p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))


def imported(tree: ast.AST, path: Path) -> list[tuple[str, list[str]]]:
    """``(absolute module, names)`` for every import in a module (relative imports resolved)."""
    pkg_parts = list(path.relative_to(PKG.parent).with_suffix("").parts)[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg_parts[: len(pkg_parts) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.append((mod, [a.name for a in node.names]))
    return out


def test_fl_depends_only_on_torch_the_trace_and_itself():
    bad = []
    for path, tree in modules():
        if "fl" not in path.relative_to(PKG).parts[:1]:
            continue
        for mod, _ in imported(tree, path):
            parts = mod.split(".")
            if parts[0] == "aflqueue" and len(parts) > 1 and parts[1] in ABOVE_FL:
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not bad, bad


def test_no_cross_module_private_imports():
    bad = []
    for path, tree in modules():
        for mod, names in imported(tree, path):
            if not mod.startswith("aflqueue"):
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    bad.append(f"{path.relative_to(PKG)}: from {mod} import {name}")
    assert not bad, bad


def test_every_module_states_its_purpose():
    missing = [str(p.relative_to(PKG)) for p, tree in modules() if p.name != "__init__.py" and not ast.get_docstring(tree)]
    assert not missing, missing
