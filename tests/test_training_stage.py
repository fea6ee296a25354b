"""The train stage in a scratch workspace: model folder, metrics, per-epoch plot rows, MLflow run, --resume."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import pytest

from shortrun.checkpoint import load_checkpoint, load_trained
from shortrun.data.preparation import prepare_corpus
from shortrun.errors import ConfigError
from shortrun.numerics import numeric_path
from shortrun.params import build_config, data_root
from tasks import train
from tests.workspace import ROOT


@pytest.fixture
def workspace(stage_workspace: Path) -> Path:
    """The tiny preset's prepared data in the stage workspace."""
    prepare_corpus(build_config("tiny").data, data_root(ROOT))
    return stage_workspace


def test_train_stage_writes_dvc_outputs_and_logs_each_epoch(workspace: Path) -> None:
    cfg = build_config("tiny", {"train": {"epochs": 2, "max_batches_per_epoch": 3, "precision": "auto"}})
    train.run(cfg, "sri")
    trained = load_trained(Path("models/sri"))
    assert trained.kind == "sri" and trained.model_cfg == cfg.model and trained.langevin == cfg.langevin
    metrics = json.loads(Path("metrics/train/sri.json").read_text())
    assert metrics["epochs"] == 2 and metrics["seconds"] > 0
    assert not any(key.startswith("z_var_d") for key in metrics)
    rows = list(csv.DictReader(Path("plots/train/sri.csv").open()))
    assert metrics["best_valid_nll"] == pytest.approx(min(float(row["valid_nll"]) for row in rows))
    assert metrics["valid_nll"] == pytest.approx(float(rows[-1]["valid_nll"]))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert {"train_nll", "valid_nll", "active_units", "z_var_d00"} <= rows[0].keys()
    run = mlflow.search_runs(experiment_names=["shortrun"], output_format="list")[0]
    assert run.data.tags["stage"] == "train-sri" and run.data.params["train.epochs"] == "2"
    assert run.data.tags["precision"] == numeric_path("auto", "auto").precision  # what auto chose on this machine
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "valid_nll")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "model")}
    assert "model/checkpoint.pt" in artifacts and "model/model_config.json" in artifacts


def test_resume_continues_the_checkpoint_and_a_fresh_run_starts_over(workspace: Path) -> None:
    short = build_config("tiny", {"train": {"epochs": 1, "max_batches_per_epoch": 2}})
    train.run(short, "lm")
    longer = build_config("tiny", {"train": {"epochs": 2, "max_batches_per_epoch": 2}})
    train.run(longer, "lm", resume=True)
    assert load_checkpoint(Path("models/lm/checkpoint.pt"))["progress"]["epoch"] == 2
    assert json.loads(Path("metrics/train/lm.json").read_text())["epochs"] == 2
    train.run(short, "lm")
    assert json.loads(Path("metrics/train/lm.json").read_text())["epochs"] == 1


def test_unknown_model_kind_is_refused(workspace: Path) -> None:
    with pytest.raises(ConfigError, match=r"^train --model gpt: unknown model"):
        train.run(build_config("tiny"), "gpt")
