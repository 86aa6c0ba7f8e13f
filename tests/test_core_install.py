"""The torch-free core install (``pip install aflqueue``): analysis, simulation, optimisation and
the researcher tools run without the ``fl`` extra, and training says in one line what to install.

The test does not uninstall torch: a subprocess blocks the ``fl`` extra's modules with an import
hook (so ``import torch`` fails exactly as in an environment without it) and runs the commands
there. (A ``sys.modules['torch'] = None`` shim also makes ``import torch`` fail, but scipy's
array-API helpers read ``sys.modules['torch']`` and trip over the ``None``, which a real
torch-free install never shows; the hook reproduces the real situation.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


from aflqueue.errors import FL_EXTRA_MESSAGE

ROOT = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"torch", "torchvision", "sklearn", "mnist1d", "tensorboard"}

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Blocker())
""")


def run_without_fl(code: str, cwd: Path) -> dict:
    """Run ``code`` (which sets ``out``, a JSON-able dict) with the fl extra blocked."""
    script = BLOCK + textwrap.dedent(code) + "\nimport json\nprint('RESULT=' + json.dumps(out))\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    return json.loads(line[len("RESULT="):])


def test_training_without_the_fl_extra_names_the_extra(tmp_path):
    out = run_without_fl("""
        import contextlib, io
        from aflqueue.cli import main
        out = {}
        try:
            import aflqueue.fl.engine  # noqa: F401
            out["import"] = "imported"
        except ImportError as e:
            out["import"] = str(e)
        for cmd in (["train"], ["run"], ["tune"], ["validate"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(cmd)
            out[cmd[0]] = [code, err.getvalue()]
        import aflqueue as aq
        try:
            aq.train(output="x", run={"updates": 10})
            out["api"] = "trained"
        except ImportError as e:
            out["api"] = str(e)
    """, tmp_path)
    assert out["import"] == FL_EXTRA_MESSAGE
    assert out["api"] == FL_EXTRA_MESSAGE
    for cmd in ("train", "run", "tune", "validate"):
        code, err = out[cmd]
        assert code == 2 and err.count("\n") == 1, (cmd, err)
        assert FL_EXTRA_MESSAGE in err and f"aflqueue {cmd}:" in err and "torch" in err


def test_core_commands_run_without_the_fl_extra(tmp_path):
    out = run_without_fl(f"""
        import contextlib, io, sys
        from aflqueue.cli import main
        out = {{}}
        flat = {str(ROOT / "examples" / "flat.toml")!r}
        for name, argv in [
            ("analyze", ["analyze", "--rates", "1,1,0.1", "--concurrency", "4", "--json"]),
            ("simulate", ["simulate", "--rates", "1,1,0.1", "--updates", "5000", "--json", "--trace", "t.npz"]),
            ("optimize", ["optimize", "--rates", "1,1,0.1", "--concurrency-range", "1:6", "--json"]),
        ]:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                out[name] = main(argv)
        out["torch_loaded"] = sorted(m for m in ("torch", "torchvision", "sklearn") if m in sys.modules)
    """, tmp_path)
    assert {k: v for k, v in out.items() if k != "torch_loaded"} == {"analyze": 0, "simulate": 0, "optimize": 0}
    assert out["torch_loaded"] == []
    assert (tmp_path / "t.npz").is_file()


def test_the_readme_installs_match_the_extras():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = " ".join(project["project"]["dependencies"])
    for heavy in ("torch", "torchvision", "scikit-learn", "mnist1d"):
        assert heavy not in deps
    extras = project["project"]["optional-dependencies"]
    assert {r.split(">")[0] for r in extras["fl"]} == {"torch", "torchvision", "scikit-learn", "mnist1d"}
    assert "aflqueue[fl]" in extras["test"]  # CI runs the whole suite, training included
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme and '".[test]"' in ci  # .ci/run is exactly the README's test command
    assert 'pip install -e ".[fl]" && .venv/bin/aflqueue run' in readme  # the main job installs training
