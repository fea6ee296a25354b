"""The classify stage in a scratch workspace with synthetic latents: outputs, the ptb skip and bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from shortrun.errors import DataError
from shortrun.latents import LatentTable, write_latents
from shortrun.params import build_config
from tasks import classify

DIM = 6
SIZES = {"train": 300, "valid": 200, "test": 300, "labeled_30": 30, "labeled_90": 90}


def latents(n: int, seed: int, separable: bool) -> LatentTable:
    """sri-like latents whose label is the side of a hyperplane (separable) or pure noise (not)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, DIM)).astype(np.float32)
    labels = (z[:, 0] > 0).astype(np.int64) if separable else rng.integers(0, 2, n)
    z[:, 0] += np.where(z[:, 0] > 0, 2.0, -2.0).astype(np.float32)
    return LatentTable(np.arange(n), labels, z)


def write_model_latents(kind: str, separable: bool, sizes: dict[str, int] = SIZES) -> None:
    folder = Path("latents", kind)
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, n) in enumerate(sizes.items()):
        write_latents(latents(n, seed, separable), folder / f"{name}.parquet")


def config(**classify_cfg):
    return build_config("tiny", {"classify": {"budgets": [30, 90], "seeds": 3, "c_grid": [0.1, 1.0], **classify_cfg}})


@pytest.fixture
def workspace(stage_workspace: Path) -> Path:
    return stage_workspace


def test_classify_writes_metrics_plot_report_and_classifiers(workspace: Path) -> None:
    write_model_latents("sri", separable=True)
    write_model_latents("vae", separable=False)
    classify.run(config())

    metrics = json.loads(Path("metrics/classify.json").read_text())
    sri, vae = metrics["models"]["sri"], metrics["models"]["vae"]
    assert sri["budgets"]["30"]["n_seeds"] == 3  # 30 of 90 labels: resampled
    assert sri["budgets"]["90"]["n_seeds"] == 1  # all of the largest set: nothing to resample
    assert sri["budgets"]["30"]["acc_mean"] > 0.95 and sri["budgets"]["90"]["acc_std"] == 0.0
    assert sri["budgets"]["30"]["c"] in (0.1, 1.0)
    assert abs(vae["budgets"]["90"]["acc_mean"] - 0.5) < 0.15
    assert sri["gmm"]["components"] == 2 and sri["gmm"]["accuracy"] > 0.95  # two clusters 4 apart on z_0
    assert abs(vae["gmm"]["accuracy"] - 0.5) < 0.15  # clusters unrelated to the labels

    curve = pd.read_csv("plots/classify/accuracy.csv")
    assert list(curve.columns) == ["model", "labels", "accuracy", "accuracy_std"]
    assert curve[["model", "labels"]].values.tolist() == [["sri", 30], ["sri", 90], ["vae", 30], ["vae", 90]]
    assert Path("plots/classify/accuracy.png").read_bytes()[:4] == b"\x89PNG"
    report = Path("reports/classify.md").read_text()
    assert "| sri | 30 |" in report and "| vae | 2 |" in report

    model = joblib.load("classifiers/sri/90.joblib")
    assert model.predict(np.array([[3.0] + [0.0] * (DIM - 1), [-3.0] + [0.0] * (DIM - 1)])).tolist() == [1, 0]
    summary = json.loads(Path("classifiers/summary.json").read_text())
    assert len(summary["models"]["sri"]["30"]["seeds"]) == 3

    assert summary["models"]["sri"]["90"]["file"] == "sri/90.joblib"  # what the registration step reads
    assert MlflowClient().search_registered_models() == []  # registering is the registration step's job


def test_unlabeled_corpus_is_skipped_with_valid_outputs(workspace: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.classify"):
        classify.run(build_config("ptb"))
    assert "classify skipped: corpus ptb is unlabeled" in caplog.text
    assert "unlabeled" in json.loads(Path("metrics/classify.json").read_text())["skipped"]
    assert pd.read_csv("plots/classify/accuracy.csv").empty
    assert list(pd.read_csv("plots/classify/accuracy.csv").columns) == ["model", "labels", "accuracy", "accuracy_std"]
    assert Path("plots/classify/accuracy.png").is_file()
    assert "Skipped: corpus ptb is unlabeled" in Path("reports/classify.md").read_text()
    assert "skipped" in json.loads(Path("classifiers/summary.json").read_text())


def test_budget_larger_than_the_labeled_data_names_budget_and_file(workspace: Path) -> None:
    write_model_latents("sri", separable=True)
    with pytest.raises(DataError, match=r"^classify.budgets: budget 500 is larger than the labeled data, latents/sri/labeled_90.parquet has 90 sentences$"):
        classify.run(config(budgets=[30, 500]))


def test_single_class_split_is_named(workspace: Path) -> None:
    write_model_latents("sri", separable=True)
    table = latents(SIZES["valid"], 1, True)
    write_latents(LatentTable(table.ids, np.ones_like(table.labels), table.z), "latents/sri/valid.parquet")
    with pytest.raises(DataError, match=r"^latents/sri/valid.parquet: needs at least two classes to classify, found only label 1$"):
        classify.run(config())


def test_nan_latents_name_the_file(workspace: Path) -> None:
    write_model_latents("sri", separable=True)
    table = latents(SIZES["test"], 2, True)
    table.z[7, 3] = np.nan
    write_latents(table, "latents/sri/test.parquet")
    with pytest.raises(DataError, match=r"^latents/sri/test.parquet: latents contain NaN/Inf"):
        classify.run(config())
    assert not Path("metrics/classify.json").exists()
