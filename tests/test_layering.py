"""Layering of the package, checked on its source: every module sits on a floor and imports only
from its own floor or below (the table below is the one place the floors are declared; see
/docs in the README's Layout section); no import circle, at module level or through deferred
imports; deferred imports only where they keep a heavy dependency lazy, each saying so; no
module reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import aflqueue

PKG = Path(aflqueue.__file__).resolve().parent

#: Floor of every module (by its first name below ``aflqueue``): a module may import only from
#: its own floor or below.
FLOORS = {
    # 0: foundations
    "errors": 0, "io": 0, "stats": 0, "_results": 0, "parallel": 0, "jit": 0,
    # 1: the system and the bounds (one home per formula)
    "laws": 1, "system": 1, "bounds": 1,
    # 2: queueing analysis, simulation, run configurations
    "queueing": 2, "sim": 2, "config": 2,
    # 3: optimisation, calibration of constants, the pilot fit, protocol formulas
    "optimization": 3, "calibration": 3, "pilot_fit": 3, "protocol": 3,
    # 4: training (torch only)
    "fl": 4,
    # 5: config -> system -> operating point -> trace -> trained result; resumable jobs; outcomes
    "pipeline": 5, "jobs": 5, "replicated": 5, "outcomes": 5,
    # 6: what runs many trainings: pilots, tuning, the recommendation, the paired comparison
    "pilot": 6, "tuning": 6, "recommendation": 6, "comparison": 6,
    # 7: figures, the aq.* functions, the researcher's tools
    "style": 7, "plots": 7, "figures": 7, "api": 7, "sweep": 7, "schedule": 7, "runs": 7, "console": 7,
    # 8: the command line and the package itself
    "options": 8, "commands": 8, "cli": 8, "__init__": 8, "__main__": 8,
}
#: Third-party modules whose import is heavy or optional: the only reason to defer an import.
HEAVY = {"torch", "torchvision", "numba", "ray", "matplotlib", "scipy", "pandas", "rich", "sklearn", "simpy",
         "cvxpy", "tensorboard", "mnist1d", "tqdm", "threadpoolctl", "yaml", "psutil", "PIL", "line_solver"}
#: Package modules heavy in themselves: the training side (torch) and the kernels compiled at import.
HEAVY_MODULES = ("aflqueue.fl", "aflqueue.queueing._kernels")


def modules():
    for p in sorted(PKG.rglob("*.py")):
        yield p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(mod: str) -> int | None:
    parts = mod.split(".")
    if parts[0] != "aflqueue":
        return None
    return FLOORS["__init__"] if len(parts) == 1 else FLOORS.get(parts[1])


def imported(node: ast.AST, path: Path) -> list[str]:
    """Absolute modules an import statement names (relative imports resolved; ``from . import x``
    names the submodule ``x``)."""
    pkg_parts = list(path.relative_to(PKG.parent).with_suffix("").parts)[:-1]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = pkg_parts[: len(pkg_parts) - node.level + 1] if node.level else []
    mod = ".".join(base + ([node.module] if node.module else []))
    return [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]


def imports_of(tree: ast.AST, path: Path, deferred: bool | None = None):
    """``(node, module, is_deferred)`` for every import; ``deferred``: only those (not) inside a function."""
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            d = id(node) in inner
            if deferred is None or d == deferred:
                for mod in imported(node, path):
                    yield node, mod, d


def test_every_module_has_a_floor():
    missing = sorted({module_name(p) for p, _ in modules() if floor(module_name(p)) is None})
    assert not missing, f"add these to FLOORS: {missing}"


def test_no_upward_import():
    bad = []
    for path, tree in modules():
        me = floor(module_name(path))
        for _, mod, _d in imports_of(tree, path):
            f = floor(mod)
            if f is not None and f > me:
                bad.append(f"{module_name(path)} (floor {me}) imports {mod} (floor {f})")
    assert not bad, bad


def test_no_import_circle():
    """No cycle among the modules, counting deferred imports (a cycle hidden in a function is still one)."""
    graph: dict[str, set[str]] = {}
    names = {module_name(p) for p, _ in modules()}
    for path, tree in modules():
        me = module_name(path)
        targets = set()
        for _, mod, _d in imports_of(tree, path):
            while mod and mod not in names:  # aflqueue.x.y where y is a name: the module aflqueue.x
                mod = mod.rpartition(".")[0]
            if mod and mod != me and not me.startswith(mod + ".") and mod != "aflqueue":
                targets.add(mod)
        graph[me] = targets
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            visit(t)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, cycles[:5]


def test_deferred_imports_keep_something_heavy_lazy_and_say_so():
    """An import inside a function is allowed only where it keeps a heavy or optional dependency
    (or the torch-only training side, ``aflqueue.fl``) out of a light path such as
    ``import aflqueue``, with its reason on its line or the line above (``# lazy: torch``: what it
    keeps lazy); anything else belongs at the top of its module."""
    tops: dict[str, list[str]] = {}
    for path, tree in modules():
        tops[module_name(path)] = [m for _, m, _d in imports_of(tree, path, deferred=False)]

    def loads_heavy_directly(mod: str) -> bool:
        return mod.split(".")[0] in HEAVY or mod.startswith(HEAVY_MODULES)

    def package_of(mod: str) -> str | None:  # importing a submodule runs its package's __init__ first
        parent = mod.rpartition(".")[0]
        return parent if parent.count(".") >= 1 and parent in tops else None

    # heavy: every module from which a chain of top-level imports (or package __init__s) reaches a
    # heavy dependency; a fixed point, so cycles through packages need no special care
    heavy_modules: set[str] = set()
    grew = True
    while grew:
        grew = False
        for mod, targets in tops.items():
            if mod not in heavy_modules and (package_of(mod) in heavy_modules or any(
                    loads_heavy_directly(t) or t in heavy_modules for t in targets if t != mod)):
                heavy_modules.add(mod)
                grew = True

    def heavy(mod: str) -> bool:
        return loads_heavy_directly(mod) or mod in heavy_modules or package_of(mod) in heavy_modules

    habit, silent = [], []
    for path, tree in modules():
        src = path.read_text(encoding="utf-8").splitlines()
        for node, mod, _d in imports_of(tree, path, deferred=True):
            where = f"{path.relative_to(PKG)}:{node.lineno} {mod}"
            if not heavy(mod):
                habit.append(where)
            elif "# lazy:" not in src[node.lineno - 1] and "# lazy:" not in src[node.lineno - 2]:
                silent.append(where)
    assert not habit, f"imports to move to the top of their module: {habit}"
    assert not silent, f"deferred imports without a '# lazy: <what it keeps lazy>' reason: {silent}"


def test_no_cross_module_private_imports():
    bad = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and imported(node, path)[0].startswith("aflqueue"):
                bad += [f"{path.relative_to(PKG)}: {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_every_module_states_its_purpose():
    missing = [str(p.relative_to(PKG)) for p, tree in modules() if p.name != "__init__.py" and not ast.get_docstring(tree)]
    assert not missing, missing
