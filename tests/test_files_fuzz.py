"""Every file the toolkit reads, as hostile input; and what it writes, read back identically.

Four kinds of file travel between users and machines: run folders (``results.json``,
``config.json``, ``updates.csv``: read by ``aflqueue plot`` and ``compare``), constants files
(``predict``, ``optimize --constants``, ``routing.constants``), system files (``analyze FILE``) and
run configurations (``train CONFIG``). For each, crafted malformed files -- empty, truncated, not
text, deep nesting, 400-digit integers, NaN and inf, wrong types and shapes, lists where tables
belong, decreasing times, values out of range, unknown keys, YAML tags and alias bombs -- must end
in one :class:`~aflqueue.errors.ValidationError` naming the file (never another exception), and
the command reading it in exit status 2 with exactly one line on stderr naming the file. The
round trips are hypothesis properties: a file the toolkit writes (a constants file, a system
file, a run configuration, a run folder's results and log) reads back to the same thing.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aflqueue as aq
from aflqueue import ValidationError
from aflqueue.cli import main
from aflqueue.config import load_config
from aflqueue.io import MAX_DEPTH, atomic_write_data, atomic_write_json
from aflqueue.pilot_fit import (AccuracyMap, ConstantsFile, PilotFit, constants_from_theta, load_constants,
                                write_constants)
from aflqueue.runs import UPDATES_COLUMNS, load_run, read_updates
from aflqueue.system import MAX_FILE_CLIENTS, load_system

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_TOML = "a = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_YAML = "a: " + "[" * 5000 + "]" * 5000 + "\n"
JUST_TOO_DEEP = {"x": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}
HUGE = int("9" * 400)
YAML_BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
YAML_TAG = "!!python/object/apply:os.system ['true']\n"


class Reached(BaseException):
    """Raised by the stubs below: a command got past validation."""


@pytest.fixture
def no_training(monkeypatch):
    def stop(*a, **k):
        raise Reached()

    monkeypatch.setattr("aflqueue.pipeline.train", stop)


def cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except Reached:
        code = 0
    return code, capsys.readouterr().err


def assert_refused(argv, capsys, path: Path) -> None:
    code, err = cli(argv, capsys)
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and "Traceback" not in err and "failed" not in err, (argv, err)
    assert str(path) in err, (argv, err)


def assert_names_file(load, path: Path, name: str) -> ValidationError:
    try:
        load(path)
    except ValidationError as e:
        assert str(path) in str(e), (name, str(e))
        assert "\n" not in str(e) and e.field, (name, str(e))
        return e
    except Exception as e:  # noqa: BLE001 - the point: nothing but a ValidationError
        raise AssertionError(f"{name}: {type(e).__name__}: {e}") from None
    raise AssertionError(f"{name}: accepted")


def write(path: Path, content: str | bytes | dict | list) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content, allow_nan=True))
    return path


def _cut(text: str, sep: str, before: int) -> str:
    """``text`` cut right after the last key separator (outside a comment) before ``before``: a
    key with no value, which no format accepts."""
    at = next(i for i in range(min(before, len(text) - 1), -1, -1)
              if text[i] == sep and "#" not in text[text.rfind("\n", 0, i) + 1:i])
    return text[:at + 1]


def generic_cases(valid_text: str, fmt: str) -> dict[str, str | bytes]:
    """Malformed texts that are no data file of any kind, in format ``fmt``."""
    cases: dict[str, str | bytes] = {
        "empty": "", "blank": "  \n\n", "truncated": _cut(valid_text, "=" if fmt == "toml" else ":", len(valid_text) // 2),
        # cut where no value can end (a cut at a line's end may leave a valid file: that is what
        # atomic writes are for)
        "truncated_end": (valid_text.rstrip()[:-1] if fmt == "json" else valid_text + "late: [1, 2" if fmt == "yaml"
                          else _cut(valid_text, "=", len(valid_text))),
        "binary": b"\xff\xfe\x00\x01\x80 binary",
        "deep": {"json": DEEP_JSON, "toml": DEEP_TOML, "yaml": DEEP_YAML}[fmt],
    }
    if fmt == "json":
        cases.update({"top_list": "[1, 2]", "top_string": '"text"', "top_number": "3", "top_null": "null",
                      "just_too_deep": json.dumps(JUST_TOO_DEEP)})
    if fmt == "yaml":
        cases.update({"python_tag": YAML_TAG, "alias_bomb": YAML_BOMB, "top_list": "- 1\n- 2\n", "top_null": "~\n",
                      "date": "when: 2001-12-14\n", "two_documents": "a: 1\n---\nb: 2\n"})
    if fmt == "toml":
        cases.update({"date": "when = 1979-05-27\n", "nan": "a = nan\n"})
    return cases


# ------------------------------------------------------------------ run folders
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    aq.train(output=str(out), seed=3, data={"dataset": "synthetic", "clients": 4,
                                             "options": {"num_samples": 200, "num_features": 4, "num_classes": 2}},
             system={"profile": "custom", "rates": [1, 1, 0.2, 0.2]}, run={"updates": 40, "eval_every": 10})
    return out


def results_cases(res: dict) -> dict[str, str | dict]:
    def with_(**changes):
        return {**res, **changes}

    n = len(res["time"])
    t = list(res["time"])
    cases: dict[str, str | dict] = {f"generic_{k}": v for k, v in generic_cases(json.dumps(res), "json").items()}
    cases.update({
        "nested_meta_too_deep": with_(meta=JUST_TOO_DEEP),
        "seed_huge": with_(seed=HUGE), "seed_string": with_(seed="1"), "seed_fraction": with_(seed=1.5),
        "seed_negative": with_(seed=-1), "seed_2_40": with_(seed=2**40), "seed_bool": with_(seed=True),
        "seed_nan": json.dumps(with_(seed=0)).replace('"seed": 0', '"seed": NaN'),
        "time_infinity": json.dumps(res).replace(f"{t[2]!r}", "Infinity", 1),
        "time_1e999": json.dumps(res).replace(f"{t[2]!r}", "1e999", 1),
        "time_decreasing": with_(time=t[::-1]), "time_negative": with_(time=[-1.0] + t[1:]),
        "time_list_of_lists": with_(time=[[x] for x in t]), "time_a_table": with_(time={"a": 1}),
        "time_strings": with_(time=[str(x) for x in t]), "time_bools": with_(time=[True] * n),
        "time_null": with_(time=[None] * n), "time_missing": {k: v for k, v in res.items() if k != "time"},
        "curves_empty": with_(time=[], updates=[], test_accuracy=[], test_loss=[]),
        "curve_too_short": with_(test_loss=res["test_loss"][:-1]),
        "updates_strings": with_(updates=["abc"] * n), "updates_fraction": with_(updates=[0.5] * n),
        "updates_decreasing": with_(updates=res["updates"][::-1]),
        "accuracy_5": with_(test_accuracy=[5.0] * n), "accuracy_negative": with_(test_accuracy=[-0.1] * n),
        "loss_negative": with_(test_loss=[-1.0] * n), "final_accuracy_2": with_(final_accuracy=2.0),
        "routing_a_number": with_(routing=3), "routing_over_1": with_(routing=[2.0, 0, 0, 0]),
    })
    return cases


def config_cases(cfg: dict) -> dict[str, str | dict | list]:
    cases: dict[str, str | dict | list] = {f"generic_{k}": v
                                           for k, v in generic_cases(json.dumps(cfg), "json").items()}
    cases.update({
        "a_list": [cfg], "unknown_key": {**cfg, "bogus": 1}, "unknown_section_key": {**cfg, "local": {"speed": 1}},
        "section_a_list": {**cfg, "local": [1, 2]}, "seed_string": {**cfg, "seed": "0"},
        "seed_2_40": {**cfg, "seed": 2**40}, "seed_huge": {**cfg, "seed": HUGE}, "seed_fraction": {**cfg, "seed": 0.5},
    })
    return cases


def updates_cases(text: str) -> dict[str, str | bytes]:
    head, *rows = text.splitlines()
    body = "\n".join(rows)

    def row(i: int, j: int, value: str) -> str:
        cells = [r.split(",") for r in rows]
        cells[i][j] = value
        return "\n".join([head] + [",".join(c) for c in cells]) + "\n"

    return {
        "empty": "", "binary": b"\xff\xfe\x00\x01", "header_wrong": "a,b,c\n" + body,
        "header_only_part": head.rsplit(",", 1)[0] + "\n" + body, "too_few_columns": head + "\n1,0.5,0\n",
        "not_a_number": row(3, 1, "abc"), "time_nan": row(3, 1, "nan"), "time_inf": row(3, 1, "inf"),
        "time_decreasing": row(3, 1, "0.0"), "time_negative": row(0, 1, "-1.0"),
        "arrival_skips": row(5, 0, "99"), "client_out_of_range": row(2, 2, "4"), "client_negative": row(2, 2, "-1"),
        "client_fraction": row(2, 2, "1.5"), "delay_negative": row(2, 3, "-2"), "version_decreasing": row(6, 5, "0"),
        "truncated_row": text[:text.index("\n", len(text) // 2) + 4],
    }


def test_malformed_run_folders_are_refused_naming_the_file(run_dir, tmp_path, capsys):
    res = json.loads((run_dir / "results.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    count = 0
    for kind, cases in (("results.json", results_cases(res)), ("config.json", config_cases(cfg))):
        for name, content in cases.items():
            d = tmp_path / f"{kind}_{name}"
            shutil.copytree(run_dir, d)
            f = write(d / kind, content)
            e = assert_names_file(load_run, d, name)
            assert f.name in str(e) and (e.field.startswith(("results", "config")) or e.field == "run"), (name, e)
            assert_refused(["plot", d, "-o", tmp_path / "plot"], capsys, f)
            assert_refused(["compare", run_dir, d], capsys, f)
            count += 1
    assert count >= 55 and not (tmp_path / "plot").exists()


def test_malformed_updates_logs_are_refused_naming_the_file(run_dir, tmp_path):
    text = (run_dir / "updates.csv").read_text()
    good = load_run(run_dir).updates_log()
    assert list(good) == list(UPDATES_COLUMNS) and good["arrival"].tolist() == list(range(1, 41))
    for name, content in updates_cases(text).items():
        f = write(tmp_path / f"{name}.csv", content)
        e = assert_names_file(lambda p: read_updates(p, n_clients=4), f, name)
        assert e.field.startswith("updates"), (name, e)
    big = write(tmp_path / "big.csv", text)
    with pytest.raises(ValidationError, match="max_memory_gb"):  # refused from its size, before reading
        read_updates(big, max_memory_gb=1e-6)


# ------------------------------------------------------------------ constants files
def a_fit(seed: int = 0, boot: int = 4, amap: bool = True) -> PilotFit:
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.01, 2.0, 4)
    return PilotFit(theta, float(rng.uniform(0.01, 0.5)), rng.uniform(0, 2, (boot, 4)),
                    AccuracyMap(2.0, 1.5, 0.1, (0.2, 2.5)) if amap else None, {"r2": 0.9, "points": 40},
                    {"pilot_runs": 6, "clients": 4})


def constants_cases(good: dict, fmt: str) -> dict[str, str | bytes | dict]:
    from aflqueue.io import dumps_toml

    import yaml

    text = {"json": json.dumps(good), "toml": dumps_toml(good), "yaml": yaml.safe_dump(good)}[fmt]
    cases: dict[str, str | bytes | dict] = {f"generic_{k}": v for k, v in generic_cases(text, fmt).items()}
    if fmt == "yaml":
        return cases
    if fmt == "toml":
        cases.update({"L_huge": "[constants]\nL = " + "9" * 400 + "\n", "L_nan": "[constants]\nL = nan\n",
                      "L_inf": "[constants]\nL = inf\n", "constants_empty": "[constants]\n",
                      "constants_a_list": "constants = [1.0, 2.0]\n", "L_string": '[constants]\nL = "1"\n',
                      "L_bool": "[constants]\nL = true\n"})
        return cases
    p = good["pilot"]

    def with_pilot(**changes):
        return {**good, "pilot": {**p, **changes}}

    cases.update({
        "bootstrap_null_rows": with_pilot(bootstrap={"theta": [[None] * 4] * 3}),
        "bootstrap_nan_rows": json.dumps(with_pilot(bootstrap={"theta": [[1, 2, 3, 4]]})).replace("[1, 2, 3, 4]",
                                                                                                 "[NaN, 1, 1, 1]"),
        "bootstrap_inf_rows": json.dumps(with_pilot(bootstrap={"theta": [[1, 2, 3, 4]]})).replace("[1, 2, 3, 4]",
                                                                                                 "[Infinity, 1, 1, 1]"),
        "bootstrap_rows_of_3": with_pilot(bootstrap={"theta": [[1.0, 2.0, 3.0]]}),
        "bootstrap_a_list": with_pilot(bootstrap=[1, 2]), "theta_a_table": with_pilot(theta={"a": 1}),
        "theta_huge": with_pilot(theta=[HUGE, 1, 1, 1]), "floor_2": with_pilot(accuracy_map={"alpha": 1, "beta": 1,
                                                                                             "floor": 2}),
        "beta_negative": with_pilot(accuracy_map={"alpha": 1, "beta": -1}), "eta_max_zero": with_pilot(eta_max=0),
        "pilot_a_list": {**good, "pilot": [1]}, "constants_empty": {**good, "constants": {}},
        "constants_edited": {**good, "constants": {**good["constants"], "G2": good["constants"]["G2"] + 1}},
        "fitted_on_a_string": {**good, "fitted_on": "ten"}, "fitted_on_zero": {**good, "fitted_on": {"clients": 0}},
        "unknown_table": {**good, "extra": {}}, "top_empty_table": {},
    })
    return cases


def test_malformed_constants_files_are_refused_naming_the_file(tmp_path, capsys):
    good = ConstantsFile(a_fit().constants, "pilot", 4, a_fit()).to_dict()
    count = 0
    for fmt in ("json", "toml", "yaml"):
        for name, content in constants_cases(good, fmt).items():
            f = write(tmp_path / f"{name}.{fmt}", content)
            assert_names_file(load_constants, f, name)
            assert_refused(["predict", "--dataset", "synthetic", "--clients", "4", "--updates", "40", "--constants", f],
                           capsys, f)
            count += 1
    assert count >= 50


@pytest.mark.parametrize("name, content, names_file", [
    ("empty", "", True), ("truncated", "[constants]\nL = 1.\n", True), ("deep", DEEP_TOML, True),
    ("L_huge", "[constants]\nL = 1" + "0" * 400 + "\n", True), ("L_nan", "[constants]\nL = nan\n", True),
    ("top_list", "constants = [1]\n", True), ("date", "[constants]\nL = 1979-05-27\n", True),
    ("unknown", "[constants]\nLL = 1\n", True), ("empty_table", "[constants]\n", True),
    # a value of the wrong type is refused by the constants' own check, which names the constant, not the file
    ("L_string", '[constants]\nL = "1"\n', False),
])
def test_optimize_refuses_malformed_constants_files(name, content, names_file, tmp_path, capsys):
    f = write(tmp_path / "c.toml", content)
    if names_file:
        assert_refused(["optimize", "--rates", "1,1,0.1", "--constants", f], capsys, f)
    else:
        code, err = cli(["optimize", "--rates", "1,1,0.1", "--constants", f], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------ system files
@pytest.mark.parametrize("content, field", [
    ('rates = [1, "a"]\n', "rates[1]"), ("rates = [1, 2]\nconcurrency = 0\n", "concurrency"),
    ("rates = [1, 2]\nrouting = [0.5, 0.6]\n", "routing"), ("rates = [1, -2]\n", "rates[1]"),
])
def test_a_bad_value_in_a_system_file_names_the_file_and_a_bad_flag_does_not(content, field, tmp_path, capsys):
    f = write(tmp_path / "sys.toml", content)
    for command in ("analyze", "optimize", "simulate"):
        assert_refused([command, f], capsys, f)
    code, err = cli(["analyze", f], capsys)
    assert err.startswith(f"aflqueue: error: {field}: "), err
    good = write(tmp_path / "good.toml", "rates = [1, 2]\n")
    code, err = cli(["analyze", good, "--concurrency", "0"], capsys)
    assert code == 2 and "concurrency" in err and str(good) not in err, err


def system_cases(fmt: str) -> dict[str, str | bytes | dict]:
    good = {"rates": [1.0, 0.5, 0.2], "routing": [0.5, 0.3, 0.2], "concurrency": 4}
    text = json.dumps(good) if fmt == "json" else (ROOT / "examples" / "flat.toml").read_text()
    cases: dict[str, str | bytes | dict] = {f"generic_{k}": v for k, v in generic_cases(text, fmt).items()}
    if fmt == "toml":
        cases.update({"rate_huge": "rates = [1, " + "9" * 400 + "]\n", "rate_nan": "rates = [1.0, nan]\n",
                      "rate_inf": "rates = [1.0, inf]\n", "rates_a_table": "[rates]\na = 1\n",
                      "concurrency_huge": "rates = [1, 2]\nconcurrency = " + "9" * 30 + "\n",
                      "clients_dates": "clients = [1979-05-27]\n"})
        return cases
    cases.update({
        "rate_string": {**good, "rates": ["1", 2]}, "rate_bool": {**good, "rates": [True, 1]},
        "rate_negative": {**good, "rates": [-1, 1, 1]}, "rate_huge": {**good, "rates": [HUGE, 1, 1]},
        "rate_nan": json.dumps(good).replace("0.5,", "NaN,", 1), "rates_nested": {**good, "rates": [[1], [2], [3]]},
        "routing_short": {**good, "routing": [1.0]}, "routing_sums_to_2": {**good, "routing": [1.0, 0.5, 0.5]},
        "routing_strings": {**good, "routing": ["0.5", "0.3", "0.2"]}, "routing_nested": {**good, "routing": [[0.5],
                                                                                                     [0.3], [0.2]]},
        "concurrency_1e12": {**good, "concurrency": 10**12}, "concurrency_fraction": {**good, "concurrency": 2.5},
        "concurrency_string": {**good, "concurrency": "4"}, "names_tables": {**good, "names": [{}, {}, {}]},
        "too_many_clients": {"rates": [1.0] * (MAX_FILE_CLIENTS + 1)}, "unknown_key": {**good, "bogus": 1},
        "clients_a_table": {"clients": {"a": 1}}, "clients_lists": {"clients": [[1.0], [2.0]]},
        "client_name_table": {"clients": [{"rate": 1.0, "name": {"x": 1}}]},
        "client_rate_null": {"clients": [{"rate": None}]}, "stage_deep": {"clients": [{"rate": 1, "uplink": JUST_TOO_DEEP}]},
    })
    return cases


def test_malformed_system_files_are_refused_naming_the_file(tmp_path, capsys):
    count = 0
    for fmt in ("json", "toml", "yaml"):
        cases = system_cases(fmt) if fmt != "yaml" else {k: v for k, v in generic_cases("rates: [1, 2]\n", "yaml").items()}
        for name, content in cases.items():
            f = write(tmp_path / f"{name}.{fmt}", content)
            assert_names_file(load_system, f, name)
            if _file_level(f):
                assert_refused(["analyze", f], capsys, f)
            else:  # analyze builds the system from the file and its flags (aflqueue.options.system_from_args),
                code, err = cli(["analyze", f], capsys)  # which names the field, not the file
                assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
            count += 1
    assert count >= 50


def _file_level(path: Path) -> bool:
    """Whether the bounded reader itself refuses ``path`` (rather than the checks of its kind)."""
    from aflqueue.io import read_mapping

    try:
        read_mapping(path)
    except ValidationError:
        return True
    return False


# ------------------------------------------------------------------ run configurations
def run_config_cases(fmt: str) -> dict[str, str | bytes | dict | list]:
    text = (ROOT / "examples" / "run.toml").read_text()
    good = {"seed": 1, "local": {"lr": 0.1}, "run": {"updates": 50}}
    if fmt == "toml":
        cases: dict[str, str | bytes | dict | list] = {f"generic_{k}": v for k, v in generic_cases(text, fmt).items()}
        cases.update({"seed_huge": "seed = " + "9" * 400 + "\n", "lr_nan": "[local]\nlr = nan\n",
                      "lr_inf": "[local]\nlr = -inf\n", "lr_string": '[local]\nlr = "0.1"\n',
                      "section_a_list": "local = [1, 2]\n", "unknown_section": "[bogus]\na = 1\n",
                      "unknown_key": "[local]\nspeed = 1\n", "updates_1e12": "[run]\nupdates = 1000000000000\n",
                      "clients_1e9": "[data]\nclients = 1000000000\n", "date": "seed = 1979-05-27\n",
                      "options_too_deep": "[data.options]\nx = " + "[" * 40 + "]" * 40 + "\n"})
        return cases
    if fmt == "yaml":
        return {f"generic_{k}": v for k, v in generic_cases("seed: 1\n", "yaml").items()}
    cases = {f"generic_{k}": v for k, v in generic_cases(json.dumps(good), "json").items()}
    cases.update({"seed_2_40": {**good, "seed": 2**40}, "seed_fraction": {**good, "seed": 0.5},
                  "lr_1e999": json.dumps(good).replace("0.1", "1e999"), "a_list": [good],
                  "local_a_list": {**good, "local": [0.1]}, "threads_huge": {**good, "run": {"threads": HUGE}}})
    return cases


def test_malformed_run_configurations_are_refused_naming_the_file(tmp_path, capsys, no_training):
    count = 0
    for fmt in ("toml", "json", "yaml"):
        for name, content in run_config_cases(fmt).items():
            f = write(tmp_path / f"{name}.{fmt}", content)
            assert_names_file(load_config, f, name)
            assert_refused(["train", f], capsys, f)
            count += 1
    assert count >= 40
    assert cli(["train", ROOT / "examples" / "run.toml"], capsys)[0] == 0  # the valid one reaches training


# ------------------------------------------------------------------ round trips
finite = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(theta=st.lists(st.floats(0.0, 50.0), min_size=4, max_size=4), eta_max=st.floats(1e-4, 10.0),
       boot=st.integers(0, 6), seed=st.integers(0, 2**31), amap=st.booleans(), clients=st.integers(1, 500),
       fmt=st.sampled_from(["toml", "json", "yaml"]))
def test_constants_files_round_trip(tmp_path, theta, eta_max, boot, seed, amap, clients, fmt):
    rng = np.random.default_rng(seed)
    fit = PilotFit(np.asarray(theta), eta_max, rng.uniform(0, 3, (boot, 4)),
                   AccuracyMap(float(rng.normal()), float(rng.uniform(0, 5)), float(rng.uniform(0, 0.9)),
                               tuple(sorted(rng.uniform(0, 3, 2)))) if amap else None,
                   {"r2": None, "points": 12}, {"pilot_runs": 6, "lrs": [0.03, 0.1]})
    cf = ConstantsFile(fit.constants, "pilot", clients, fit)
    back = load_constants(write_constants(tmp_path / f"c{seed}.{fmt}", cf))
    assert back.constants == cf.constants and back.clients == clients and back.method == "pilot"
    assert np.array_equal(back.fit.theta, fit.theta) and np.array_equal(back.fit.bootstrap, fit.bootstrap)
    assert back.fit.eta_max == eta_max and back.fit.accuracy_map == fit.accuracy_map
    assert back.fit.settings == fit.settings
    # a hand-written table of constants, and an initial-model file
    given_ = constants_from_theta(theta, eta_max)
    assert load_constants(write_constants(tmp_path / f"g{seed}.{fmt}", given_)).constants == given_


@st.composite
def systems(draw):
    n = draw(st.integers(1, 6))
    rates = draw(st.lists(finite, min_size=n, max_size=n))
    w = np.asarray(draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n)))
    kw = {}
    if draw(st.booleans()):
        kw["uplink_rates"] = draw(st.lists(finite, min_size=n, max_size=n))
        kw["uplink_discipline"] = draw(st.sampled_from(["fifo", "delay"]))
    if draw(st.booleans()):
        kw["server_rate"] = draw(finite)
    if draw(st.booleans()):
        kw["service"] = draw(st.sampled_from(["lognormal:cv=1.5", "gamma:cv=0.5", "deterministic"]))
    return aq.System.from_rates(rates, routing=w / w.sum(), concurrency=draw(st.integers(1, 50)), **kw)


@PROPERTY
@given(system=systems(), fmt=st.sampled_from(["toml", "json", "yaml"]), k=st.integers(0, 10**9))
def test_system_files_round_trip(tmp_path, system, fmt, k):
    back = load_system(atomic_write_data(tmp_path / f"s{k}.{fmt}", system.to_dict()))
    a, b = back.to_dict(), system.to_dict()
    # the routing is divided by its sum when read, which moves it by up to an ulp (see
    # aflqueue.system.validate_routing: made idempotent, it would change committed results' bits)
    assert np.allclose(a.pop("routing"), b.pop("routing"), rtol=4 * np.finfo(float).eps, atol=0)
    assert a == b


@PROPERTY
@given(fmt=st.sampled_from(["toml", "json", "yaml"]), k=st.integers(0, 10**9), lr=st.floats(1e-4, 10.0),
       seed=st.integers(0, 2**32 - 1), clients=st.integers(1, 50), kind=st.sampled_from(["uniform", "optimal"]),
       budget=st.one_of(st.none(), st.floats(1.0, 1e6)), options=st.dictionaries(st.sampled_from(["a", "b"]),
                                                                                st.integers(-5, 5), max_size=2))
def test_run_configurations_round_trip(tmp_path, fmt, k, lr, seed, clients, kind, budget, options):
    cfg = load_config(mapping={"seed": seed, "local": {"lr": lr}, "data": {"clients": clients, "options": options},
                               "routing": {"kind": kind}, "run": {"time_budget": budget}})
    back = load_config(atomic_write_data(tmp_path / f"c{k}.{fmt}", cfg.to_dict()))
    assert back.to_dict() == cfg.to_dict()


@PROPERTY
@given(n=st.integers(1, 30), seed=st.integers(0, 2**32 - 1), k=st.integers(0, 10**9), data=st.data())
def test_run_folders_round_trip(tmp_path, n, seed, k, data):
    """What the trainer writes (results.json through the strict JSON writer, updates.csv in its
    row format) reads back to the same curves and log."""
    steps = data.draw(st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n))
    accs = data.draw(st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=n, max_size=n))
    losses = data.draw(st.lists(st.one_of(st.none(), st.floats(0.0, 1e6), st.just(math.nan)), min_size=n, max_size=n))
    res = {"time": np.cumsum(steps).tolist(), "updates": np.cumsum(np.arange(n)).tolist(),
           "test_accuracy": accs, "test_loss": losses, "final_accuracy": accs[-1], "seed": seed,
           "routing": [0.25] * 4, "meta_anything": {"nested": [1, 2, {"x": None}]}}
    d = tmp_path / f"run{k}"
    atomic_write_json(d / "results.json", res)
    run = load_run(d)
    assert run.results == json.loads(json.dumps(res, allow_nan=True).replace("NaN", "null"))
    assert run.seed == seed and run.curves["time"].tolist() == res["time"]
    m = data.draw(st.integers(0, 60))
    dt = np.cumsum(data.draw(st.lists(st.floats(0.0, 10.0), min_size=m, max_size=m)))
    rows = [(i + 1, float(dt[i]), i % 4, i % 3, i % 2, i) for i in range(m)]
    text = ",".join(UPDATES_COLUMNS) + "\n" + "".join(f"{r[0]},{r[1]!r},{r[2]},{r[3]},{r[4]},{r[5]}\n" for r in rows)
    (d / "updates.csv").write_text(text)
    log = run.updates_log()
    assert log["time"].tolist() == [r[1] for r in rows] and log["client"].tolist() == [r[2] for r in rows]
    assert all(log[c].dtype == np.int64 for c in UPDATES_COLUMNS if c != "time")
