"""`aflqueue analyze`: table, JSON keys and values, files, one-line errors with exit status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from aflqueue import System
from aflqueue.cli import main
from aflqueue.queueing import analyze

KEYS = {"throughput", "mean_queue_lengths", "utilization", "mean_response_times", "relative_delay",
        "mean_relative_delay", "log_normalizing_constant"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_matches_library(capsys):
    code, out, _ = run(capsys, "analyze", "--rates", "1,1,0.1", "--routing", "0.3,0.3,0.4", "--concurrency", "5", "--json")
    assert code == 0
    d = json.loads(out)
    assert KEYS <= set(d)
    ref = analyze(System.from_rates([1, 1, 0.1], [0.3, 0.3, 0.4], 5))
    assert d["throughput"] == pytest.approx(ref.throughput, rel=1e-14)
    np.testing.assert_allclose(d["relative_delay"], ref.relative_delay, rtol=1e-14)
    assert d["mean_relative_delay"] == pytest.approx(4.0)


def test_table_and_default_example(capsys):
    code, out, _ = run(capsys, "analyze")
    assert code == 0 and "throughput" in out and "slow4" in out


@pytest.mark.parametrize("ext, text", [
    ("toml", "rates = [1.0, 1.0, 0.1]\nrouting = [0.3, 0.3, 0.4]\nconcurrency = 5\n"),
    ("yaml", "rates: [1.0, 1.0, 0.1]\nrouting: [0.3, 0.3, 0.4]\nconcurrency: 5\n"),
    ("json", '{"rates": [1.0, 1.0, 0.1], "routing": [0.3, 0.3, 0.4], "concurrency": 5}'),
])
def test_file_input(capsys, tmp_path, ext, text):
    f = tmp_path / f"sys.{ext}"
    f.write_text(text)
    code, out, _ = run(capsys, "analyze", str(f), "--json")
    assert code == 0
    d = json.loads(out)
    ref = analyze(System.from_rates([1, 1, 0.1], [0.3, 0.3, 0.4], 5))
    assert d["throughput"] == pytest.approx(ref.throughput, rel=1e-14)
    # flags override file fields
    code, out, _ = run(capsys, "analyze", str(f), "--concurrency", "2", "--json")
    assert json.loads(out)["concurrency"] == 2


def test_routing_defaults_to_uniform_in_file(capsys, tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("rates = [1.0, 2.0]\nconcurrency = 3\n")
    code, out, _ = run(capsys, "analyze", str(f), "--json")
    assert json.loads(out)["routing"] == [0.5, 0.5]


def test_multistage_flags_and_nulls(capsys):
    code, out, _ = run(capsys, "analyze", "--rates", "1,2,0.5", "--routing", "0.5,0.5,0", "-m", "3",
                       "--downlink-rates", "4", "--uplink-rates", "2,2,2", "--uplink-discipline", "delay",
                       "--server-rate", "10", "--json")
    d = json.loads(out)
    assert d["relative_delay"][2] is None and "server" in d and len(d["stations"]) == 7
    assert d["mean_relative_delay"] == pytest.approx(2.0)


@pytest.mark.parametrize("argv, needle", [
    (["--rates", "1,-1"], "rates[1]"),
    (["--rates", "1,1", "--routing", "0.5,0.6"], "routing"),
    (["--rates", "1,1", "--concurrency", "0"], "concurrency"),
    (["--rates", "1,x"], "--rates"),
    (["missing.toml"], "missing.toml"),
    (["--rates", "1,1", "--routing", "1,0,0"], "routing"),
    (["--routing", "0.5,0.5", "--server-rate", "3"], "rates"),
])
def test_bad_input_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "analyze", *argv)
    assert code == 2
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_console_script_does_not_import_torch():
    code = ("import sys; from aflqueue.cli import main; rc = main(['analyze', '--json']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_exit_status_of_real_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aflqueue.cli", "analyze", "--rates", "1,0"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0


def test_an_unusable_output_path_is_bad_input(tmp_path, capsys):
    from aflqueue.cli import main

    f = tmp_path / "a_file"
    f.write_text("x")
    assert main(["figures", "-o", str(f)]) == 2  # a file where a folder is needed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file" in err[0] and "Not a directory" in err[0]


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path):
    """A terminated command unwinds like an interrupted one: the atomic write of the trace removes
    its temporary file (the trace file itself is never half-written)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from aflqueue.cli import main; sys.exit(main())",
                             "simulate", "--rates", "1,0.5,0.1", "--updates", "20000000", "--trace", "big.npz"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".big.npz.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob(".big.npz.*.tmp")), "the trace was never being written"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130 and b"interrupted" in proc.stderr.read()
    assert not list(tmp_path.glob(".big.npz.*")) and not (tmp_path / "big.npz").exists()
