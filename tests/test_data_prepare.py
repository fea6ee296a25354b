"""The `prepare` stage on the tiny preset: prepared layout, metrics, plots, MLflow run, errors, and `dvc repro`."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from shortrun.cli import main
from shortrun.data.prepared import labeled_budgets, load_labeled, load_split, load_vocab
from shortrun.data.vocab import SPECIALS
from shortrun.errors import ConfigError, DataError
from shortrun.params import build_config, data_root
from tasks.prepare import run
from tests.workspace import copy_project, entered

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace as cwd, the corpora found through $SHORTRUN_DATA, MLflow in the workspace."""
    monkeypatch.setenv("SHORTRUN_DATA", str(data_root(REPO)))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHORTRUN_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_prepare_tiny_writes_the_data_contract(workspace):
    run(build_config("tiny"))

    vocab = load_vocab()
    assert vocab.tokens[:4] == SPECIALS and len(vocab) == 300
    sizes = {split: len(load_split(split)) for split in ("train", "valid", "test")}
    assert sizes == {"train": 300, "valid": 100, "test": 100}
    train = load_split("train")
    assert train.column_names == ["id", "text", "ids", "label"]
    assert train["id"][:3] == [0, 1, 2]
    for row in train.select(range(20)):
        assert row["ids"] == vocab.encode(row["text"].split())
        assert row["label"] in (0, 1)
    assert labeled_budgets() == [100, 500]
    assert len(load_labeled(100)) == 100 and len(load_labeled(500)) == 500
    assert not [p for p in (workspace / "data").iterdir() if p.name != "prepared"]  # no temp folders left

    metrics = json.loads((workspace / "metrics/prepare.json").read_text())
    assert metrics["vocab_size"] == 300
    train_stats = metrics["splits"]["train"]
    assert train_stats["sentences"] == 300 and train_stats["truncated"] == 9700
    assert 0 < train_stats["oov_rate"] <= train_stats["unk_rate"] < 0.5
    assert train_stats["max_length"] <= 15 and 5 < train_stats["mean_length"] < 12
    labels = train_stats["labels"]
    assert labels["0"]["count"] + labels["1"]["count"] == 300
    assert metrics["splits"]["labeled_100"]["labels"]["0"]["count"] == 45  # README: balance of train.100 prefix
    assert metrics["sha256"]["train"].startswith("db61555383")

    with open(workspace / "plots/prepare/lengths.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"split", "length", "sentences"}
    for split, size in sizes.items():
        assert sum(int(r["sentences"]) for r in rows if r["split"] == split) == size
    assert (workspace / "plots/prepare/lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    (logged,) = mlflow.search_runs(experiment_names=["shortrun"], output_format="list")
    assert logged.data.tags["stage"] == "prepare"
    assert logged.data.params["data.max_train"] == "300"
    assert logged.data.metrics["splits.train.sentences"] == 300


def test_failed_prepare_keeps_the_previous_output_and_reports_one_line(workspace, capsys):
    (workspace / "params.yaml").write_text("preset: tiny\n")
    assert main(["stage", "prepare"]) == 0
    before = (workspace / "data/prepared/vocab.txt").read_text()

    (workspace / "params.yaml").write_text("preset: tiny\ndata:\n  test_file: short_yelp/missing.txt\n")
    capsys.readouterr()
    assert main(["stage", "prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("short_yelp/missing.txt: file not found (from data.test_file)") and "\n" not in err
    assert (workspace / "data/prepared/vocab.txt").read_text() == before
    assert sorted(p.name for p in (workspace / "data").iterdir()) == ["prepared"]


def test_malformed_policy_skip_counts_lines_in_metrics(workspace, tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("corpora")
    corpus = root / "mine"
    corpus.mkdir()
    (corpus / "train.txt").write_bytes(b"1\tgood food\nno label here\n0\tbad \xff service\n0\tslow service\n")
    (corpus / "eval.txt").write_text("1\tnice\n0\trude staff\n")
    monkeypatch.delenv("SHORTRUN_DATA")
    sections = {"data": {"root": str(root), "corpus": "mine", "train_file": "mine/train.txt", "valid_file": "mine/eval.txt",
                         "test_file": "mine/eval.txt", "label_budget_files": {100: "mine/eval.txt", 500: "mine/eval.txt"},
                         "on_malformed": "skip"}}
    run(build_config("tiny", sections))
    stats = json.loads((workspace / "metrics/prepare.json").read_text())["splits"]["train"]
    assert stats["skipped_malformed"] == 2 and stats["sentences"] == 2
    assert load_split("train")["id"] == [0, 3]


def test_length_filter_leaving_nothing_is_an_error(workspace):
    with pytest.raises(DataError, match=r"short_yelp\.train\.10000\.txt: no sentence has 16\.\.40 tokens"):
        run(build_config("tiny", {"data": {"min_len": 16}}))
    assert not (workspace / "data/prepared").exists()


def test_label_budgets_need_a_labeled_corpus(workspace):
    with pytest.raises(ConfigError, match=r"^data\.label_budget_files: set for an unlabeled corpus"):
        run(build_config("ptb", {"data": {"label_budget_files": {100: "ptb/ptb.valid.txt"}}}))


@pytest.mark.slow
def test_dvc_repro_prepare_runs_once_then_is_up_to_date(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHORTRUN_PARENT_RUN_ID", raising=False)
    with entered(copy_project(tmp_path, preset="tiny")):
        first = dvc("repro", "prepare")
        second = dvc("repro", "prepare")
        status = dvc("status", "prepare")

    assert "Running stage 'prepare'" in first
    for path in ("data/prepared/vocab.txt", "data/prepared/train", "metrics/prepare.json", "plots/prepare/lengths.csv",
                 "plots/prepare/lengths.png", "dvc.lock"):
        assert (tmp_path / path).exists(), path
    assert "didn't change" in second and "Running stage" not in second
    assert "up to date" in status


def dvc(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
