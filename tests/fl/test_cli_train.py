"""`aflqueue train`: JSON output, overrides, resume, and one-line errors."""

import json

from aflqueue.cli import main

TINY = ["--set", 'data.dataset="synthetic"', "--set", "data.clients=5",
        "--set", 'data.options={"num_samples": 400, "num_features": 8, "num_classes": 3}',
        "--set", "run.eval_every=40", "--updates", "120", "--quiet"]


def test_train_json(capsys, tmp_path):
    assert main(["train", "--output", str(tmp_path), "--json", *TINY]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("final_accuracy", "time", "updates", "test_accuracy", "test_loss"):
        assert k in d
    assert d["arrivals"] == 120 and d["updates"][-1] == 120 and len(d["time"]) == len(d["test_accuracy"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["final_accuracy"] == d["final_accuracy"]
    # a finished run resumes to the same result without training again
    assert main(["train", "--output", str(tmp_path), "--json", "--resume", *TINY]) == 0
    assert json.loads(capsys.readouterr().out)["final_accuracy"] == d["final_accuracy"]


def test_train_errors(capsys, tmp_path):
    assert main(["train", "--output", str(tmp_path), "--algorithm", "fedmagic", *TINY]) == 2
    err = capsys.readouterr().err
    assert "unknown algorithm" in err and err.count("\n") == 1
    assert main(["train", "--output", str(tmp_path), "--dataset", "mnist", "--data-root", str(tmp_path / "nothing"),
                 "--updates", "10", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "data_root" in err and "MNIST" in err and err.count("\n") == 1
    assert main(["train", "--output", str(tmp_path), "--set", "local.lr=-1", *TINY]) == 2
    assert "local.lr" in capsys.readouterr().err
