"""Bad input, fuzzed: every command line and every configuration or system file either works or
ends with exit status 2 and one line on stderr naming the field -- never a traceback, never an
internal failure (status 1), never a silent success on nonsense.

Heavy commands (train, run, validate) are stopped right after their arguments are validated, so
the fuzz exercises validation without training anything.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aflqueue import ValidationError, load_system
from aflqueue.cli import main
from aflqueue.config import TrainConfig, load_config

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


class Reached(BaseException):
    """Raised by the stubs below: the command got past validation (not an Exception, so the
    CLI's own catch-all cannot swallow it)."""


@pytest.fixture
def stop_heavy_work(monkeypatch):
    """Stop train/run/validate/figures/sweep at the point where real work would start."""

    def stop(*a, **k):
        raise Reached()

    monkeypatch.setattr("aflqueue.pipeline.train", stop)
    monkeypatch.setattr("aflqueue.comparison.validate", stop)
    monkeypatch.setattr("aflqueue.figures.make_all", stop)
    monkeypatch.setattr("aflqueue.sweep.sweep", stop)
    monkeypatch.setattr("aflqueue.pilot.calibrate_pilot", stop)
    monkeypatch.setattr("aflqueue.pipeline.build_data_and_model", stop)


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except Reached:
        code = 0
    err = capsys.readouterr().err
    return code, err


def assert_clean(code, err, argv):
    assert code in (0, 2), f"status {code} for {argv}: {err}"
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"{argv}: {err!r}"
        assert "Traceback" not in err


# ------------------------------------------------------------------ command lines
NUMBERS = ["0", "1", "-1", "2", "0.5", "-0.5", "1e9", "1e-9", "nan", "inf", "-inf", "1e308", "100000000", "3.7",
           "abc", "", "true", "null", "[1,2]", "1,2", "-1,1", "0,0", "1,1,0.1", "0.3,0.3,0.4", "1:3", "3:1", "1:2:3",
           "x=1", "Delta=2", "Delta=abc", "/nonexistent/file.toml", "lognormal", "lognormal:cv=2", "gamma:cv=-1",
           "pareto:shape=0.5", "weibull:shape=0.7", "fifo", "delay", "exotic", "approx", "product-form"]
FLAGS = {
    "analyze": ["--rates", "--routing", "--concurrency", "-m", "--service", "--analysis", "--downlink-rates", "--uplink-rates",
                "--downlink-discipline", "--uplink-discipline", "--server-rate", "--method", "--gradient", "--stations",
                "--json"],
    "simulate": ["--rates", "--routing", "--concurrency", "--service", "--updates", "--seed", "--engine", "--warmup",
                 "--batches", "--replications", "--confidence", "--backend", "--workers", "--address", "--json",
                 "--uplink-rates", "--uplink-discipline", "--max-memory"],
    "optimize": ["--rates", "--routing", "--concurrency", "--service", "--analysis", "--objective", "--concurrency-range", "--p-min",
                 "--p-max", "--updates", "--time-budget", "--epsilon", "--weight", "--constants", "--eta", "--eta-max",
                 "--kappa", "--idle-power", "--dispersion", "--starts", "--seed", "--json"],
    "train": ["--output", "-o", "--algorithm", "--routing", "--objective", "--dataset", "--clients", "--rates",
              "--concurrency", "--updates", "--time-budget", "--device", "--seed", "--serial", "--batched", "--set",
              "--json", "--quiet", "--tensorboard"],
    "run": ["--output", "--seed", "--seeds", "--budget-updates", "--updates", "--backend", "--workers", "--address",
            "--quiet"],
    "validate": ["--preset"],
    "figures": ["--output"],
    "sweep": ["--rates", "--routing", "--concurrency", "--service", "--concurrency-range", "--objective", "--output",
              "--pareto-points", "--p-min", "--p-max", "--updates", "--time-budget", "--epsilon", "--constants",
              "--eta", "--kappa", "--idle-power", "--dispersion", "--starts", "--seed", "--json", "--quiet"],
    "plot": ["--output", "--target", "--title"],
    "compare": ["--target", "--time", "--reference", "--json"],
    "schedule": ["--output", "--window", "--clients", "--no-exact"],
    "calibrate": ["--pilot", "--initial", "--output", "-o", "--routings", "--lrs", "--pilot-seed", "--budget-fraction",
                  "--bootstrap", "--bootstrap-method", "--runs", "--dataset", "--clients", "--rates", "--concurrency",
                  "--updates", "--time-budget", "--set", "--backend", "--workers", "--json", "--quiet"],
    "predict": ["--constants", "--objective", "--concurrency-range", "--p-min", "--target-fraction", "--confidence",
                "--starts", "--dataset", "--clients", "--rates", "--concurrency", "--updates", "--time-budget", "--set",
                "--json"],
}
SWITCHES = {"--gradient", "--stations", "--json", "--serial", "--batched", "--quiet", "--report-only", "--no-exact",
            "--pilot", "--initial"}
SET_VALUES = ["local.lr=abc", "local.lr=[1,2]", "local.lr=", "output=null", "device=3", 'model.options="x"',
              "algorithm.params=[1]", 'routing.values="abc"', "run.updates=true", "run.threads=100000",
              "local.lr=1e300", "run.time_budget=5000", "nonsense", "local.steps=0", "seed=-1",
              'data.partition="iid"', "data.alpha=0.1", 'system.profile="warp"', "run.eval_times=-3"]


def small_value(flag: str, draw) -> str:
    # keep the commands that really run (analyze, simulate, optimize) small
    if flag in ("--rates", "--routing"):
        return draw(st.sampled_from(["1,1,0.1", "1,0.5", "-1,1", "0,1", "abc", "1,nan", "0.3,0.3,0.4", "1e308,1"]))
    if flag in ("--updates", "--budget-updates"):
        return draw(st.sampled_from(["-1", "0", "10", "2000", "3000", "abc", "1e9", "nan", "1.5"]))
    if flag in ("--concurrency", "-m"):
        return draw(st.sampled_from(["0", "-3", "3", "100000000", "abc", "2.5"]))
    if flag == "--concurrency-range":
        return draw(st.sampled_from(["1:3", "3:1", "0:2", "1:100000000", "x", "2"]))
    if flag == "--replications":
        return draw(st.sampled_from(["0", "1", "2", "-1"]))
    if flag == "--starts":
        return draw(st.sampled_from(["0", "1", "2", "-5", "99999"]))
    if flag == "--set":
        return draw(st.sampled_from(SET_VALUES))
    if flag in ("--output", "-o"):
        return draw(st.sampled_from(["", "/proc/forbidden/x", "out"]))
    return draw(st.sampled_from(NUMBERS))


@st.composite
def command_lines(draw, command):
    argv = [command]
    for flag in draw(st.lists(st.sampled_from(FLAGS[command]), max_size=4)):
        argv.append(flag)
        if flag not in SWITCHES:
            argv.append(small_value(flag, draw))
    return argv


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_fuzzed_command_lines_end_cleanly(command, capsys, stop_heavy_work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    @FUZZ
    @given(command_lines(command))
    def check(argv):
        code, err = run_cli(argv, capsys)
        assert_clean(code, err, argv)

    check()


@pytest.mark.parametrize("argv, field", [
    (["run", "--updates", "-1"], "updates"),
    (["analyze", "--rates", "-1,1"], "rates[0]"),
    (["optimize", "--rates", "1,1", "--constants", "/missing.toml"], "no such file"),
    (["optimize", "--rates", "1,1", "--starts", "0"], "starts"),
    (["optimize", "--time-budget", "1e308"], "time_budget"),  # found by the fuzz: a/K underflowed to 0
    (["sweep", "--rates", "1,0.1", "--updates", "1e300"], "updates"),
    (["optimize", "--time-budget", "1e-300"], "time_budget"),
    (["optimize", "--objective", "time-to-accuracy", "--epsilon", "1e308"], "epsilon"),
    (["optimize", "--dispersion", "1e308"], "dispersion"),
    (["optimize", "--constants", "L=1e308"], "L"),
    (["optimize", "--objective", "energy", "--kappa", "1e308"], "kappa"),
    (["optimize", "--rates", "1e308,1"], "rates"),  # found by the fuzz: kappa * rate^3 overflowed (with warnings)
    (["optimize", "--rates", "1,1", "--routing", "0.5,0.5"], "routing"),
    (["optimize", "--rates", "1,1", "--service", "lognormal:cv=2"], "service"),
    (["simulate", "--rates", "1,1", "--seed", "-1"], "seed"),
    (["simulate", "--rates", "1,1", "--warmup", "inf"], "warmup"),
    (["simulate", "--rates", "1,1", "--updates", "10"], "updates"),
    (["simulate", "--rates", "1,1", "--updates", "30000000"], "max-memory"),
    (["simulate", "--rates", "1,1", "--uplink-discipline", "delay"], "uplink-discipline"),
    (["simulate", "--rates", "1,1", "--address", "127.0.0.1:1"], "address"),
    (["analyze", "--rates", "1,1", "-m", "100000000"], "concurrency"),
    (["optimize", "--rates", "1,1", "--concurrency-range", "1:100000000"], "concurrency-range"),
    (["optimize", "--rates", "1,1", "--time-budget", "nan"], "time-budget"),
    (["train", "--set", "run.threads=100000"], "run.threads"),
    (["train", "-o", ""], "output"),
])
def test_each_class_names_its_field(argv, field, capsys, stop_heavy_work):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on a user's terminal
        code, err = run_cli(argv, capsys)
    assert code == 2 and field in err and err.count("\n") == 1, err


def test_output_that_is_a_file_is_refused(capsys, tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    code, err = run_cli(["train", "-o", str(f), "--updates", "50", "--quiet", "--set", 'data.dataset="synthetic"',
                         "--set", "data.clients=3", "--set",
                         'data.options={"num_samples": 100, "num_features": 4, "num_classes": 2}'], capsys)
    assert code == 2 and "not a folder" in err and err.count("\n") == 1


# ------------------------------------------------------------------ configuration trees
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
SECTIONS = {k: list(v) for k, v in TrainConfig().to_dict().items() if isinstance(v, dict)}
TOP = [k for k, v in TrainConfig().to_dict().items() if not isinstance(v, dict)]


@st.composite
def config_trees(draw):
    tree = {}
    for key in draw(st.lists(st.sampled_from(TOP + list(SECTIONS) + ["bogus"]), max_size=4, unique=True)):
        if key in SECTIONS and draw(st.booleans()):
            tree[key] = {k: draw(LEAVES) for k in draw(st.lists(st.sampled_from(SECTIONS[key] + ["extra"]),
                                                                max_size=3, unique=True))}
        else:
            tree[key] = draw(LEAVES)
    return tree


def _load_fuzzed(load, path, tree):
    """``load(path)`` of ``tree`` written as JSON; None when the tree is not JSON or the loader
    refused it -- which must be one line naming a field."""
    try:
        path.write_text(json.dumps(tree, allow_nan=True))
    except (TypeError, ValueError):
        return None
    try:
        return load(path)
    except ValidationError as e:
        assert "\n" not in str(e) and e.field
        return None


@FUZZ
@given(tree=config_trees())
def test_fuzzed_config_files(tree, tmp_path_factory):
    cfg = _load_fuzzed(load_config, tmp_path_factory.mktemp("cfg") / "c.json", tree)
    if cfg is None:
        return
    # accepted: every number is finite and every field has its type
    assert isinstance(cfg.local.lr, float) and math.isfinite(cfg.local.lr) and cfg.local.lr > 0
    assert isinstance(cfg.run.threads, int) and 1 <= cfg.run.threads <= (os.cpu_count() or 1)
    assert cfg.run.updates is not None or cfg.run.time_budget is not None or cfg.run.trace is not None


SYSTEM_KEYS = ["rates", "routing", "concurrency", "service", "downlink_rates", "uplink_rates", "uplink_discipline",
               "server_rate", "names", "clients", "server", "bogus"]
CLIENT_KEYS = ["rate", "service", "downlink", "uplink", "name", "availability", "bogus"]


@st.composite
def system_trees(draw):
    tree = {}
    for key in draw(st.lists(st.sampled_from(SYSTEM_KEYS), max_size=4, unique=True)):
        if key == "clients" and draw(st.booleans()):
            tree[key] = [{k: draw(LEAVES) for k in draw(st.lists(st.sampled_from(CLIENT_KEYS), max_size=3, unique=True))}
                         for _ in range(draw(st.integers(0, 3)))]
        elif key == "rates" and draw(st.booleans()):
            tree[key] = draw(st.lists(st.one_of(st.floats(-1, 5), st.text(max_size=2), st.booleans()), max_size=4))
        else:
            tree[key] = draw(LEAVES)
    return tree


@FUZZ
@given(tree=system_trees())
def test_fuzzed_system_files(tree, tmp_path_factory):
    s = _load_fuzzed(load_system, tmp_path_factory.mktemp("sys") / "s.json", tree)
    if s is None:
        return
    assert s.n >= 1 and abs(float(s.routing.sum()) - 1) < 1e-9 and s.concurrency >= 1
    assert all(math.isfinite(c.rate) and c.rate > 0 for c in s.clients)


@pytest.mark.parametrize("content", [b"- 1\n- 2\n", b"hello", b"3", b"\xff\xfe\x00\x01binary", b"",
                                     b"!!python/object/apply:os.system ['true']\n"])
@pytest.mark.parametrize("command", ["analyze", "train"])
def test_bad_files_end_cleanly(content, command, tmp_path, capsys, stop_heavy_work):
    f = tmp_path / "f.yaml"
    f.write_bytes(content)
    code, err = run_cli([command, str(f)], capsys)
    assert_clean(code, err, [command, str(f)])
    if content:
        assert code == 2
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    code, err = run_cli([command, str(folder)], capsys)
    assert code == 2 and "not a file" in err


# ------------------------------------------------------------------ validation scripts
@pytest.mark.parametrize("script, argv, field", [
    ("approx/run.py", ["--no-such-flag"], "arguments"),
    ("approx/oracle.py", ["--workers", "x"], "arguments"),
    ("closed_forms/run.py", ["--seed", "-1"], "--seed"),
    ("closed_forms/run.py", ["--seed", "x"], "arguments"),
    ("grid/run.py", ["--preset", "huge", "--report-only"], "preset"),
    ("grid/run.py", ["--seeds", "x"], "arguments"),
    ("fedbuff_family/stale_algorithms.py", ["--budget", "x"], "arguments"),
    ("fedbuff_family/run.py", ["--no-such-flag"], "arguments"),
    ("fedbuff_family/checks.py", ["--seeds", "x"], "arguments"),
    ("paper/run.py", ["--preset", "nope", "--report-only"], "preset"),
    ("regimes/run.py", ["--stage", "nope"], "arguments"),
])
def test_validation_scripts_refuse_bad_flags_in_one_line(script, argv, field, capsys):
    import runpy
    from pathlib import Path

    main_ = runpy.run_path(str(Path(__file__).resolve().parent.parent / "validation" / script),
                           run_name="validation_script")["main"]
    code = main_(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and field in err, err


def test_a_data_root_for_an_offline_data_set_is_refused_not_ignored(capsys):
    from aflqueue.cli import main
    from aflqueue.config import OFFLINE_DATASET_NAMES

    for name in OFFLINE_DATASET_NAMES:
        assert main(["train", "--dataset", name, "--data-root", "/data", "--updates", "10"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "data.data_root" in err[0] and name in err[0]


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    rates = ",".join(["1", "0.5", "0.1"] * 1000)  # a JSON larger than a pipe's buffer
    p = subprocess.run(f"{sys.executable} -c 'import sys; from aflqueue.cli import main; sys.exit(main())' "
                       f"analyze --rates {rates} --json | head -1", shell=True, capture_output=True, text=True)
    assert p.stdout.strip() == "{" and p.stderr == ""


@pytest.mark.parametrize("toml, expect", [
    ('algorithm = { name = "generalized-asyncsgd", params = { bogus = 1 } }\n[data]\ndataset = "synthetic"\n',
     "bogus"),
    ('[data]\ndataset = "synthetic"\noptions = { num_samples = 1000000000000 }\n', "data.num_samples"),
])
def test_a_config_field_error_found_deep_in_the_library_names_the_config_file(tmp_path, capsys, toml, expect):
    from aflqueue.cli import main

    c = tmp_path / "c.toml"
    c.write_text(toml + "clients = 3\n[run]\nupdates = 20\n")
    assert main(["train", str(c), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.toml" in err[0] and expect in err[0], err
