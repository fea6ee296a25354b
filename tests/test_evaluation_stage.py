"""The evaluate stage in a scratch workspace: prepared data + random model folders -> metrics, plots, reports, MLflow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from datasets import Dataset

from shortrun.checkpoint import save_model_dir
from shortrun.config import ModelConfig
from shortrun.data.prepared import FEATURES, write_prepared
from shortrun.data.vocab import Vocab
from shortrun.errors import TrainingError
from shortrun.model import build_model
from shortrun.params import build_config
from tasks import evaluate

MODEL_CFG = {"latent_dim": 4, "emb_dim": 8, "hidden_dim": 16, "encoder_hidden_dim": 16}
EVALUATE = {"num_sentences": 10, "importance_samples": 4, "jacobian_sentences": 3, "jacobian_samples": 2,
            "proposal_chains": 2, "k_values": [2, 3], "k_sentences": 4, "batch_size": 4,
            "ais_sentences": 6, "ais_steps": 4, "ais_chains": 2, "ais_leapfrog": 1, "bdmc_sentences": 2}
VOCAB = Vocab(f"w{i}" for i in range(16))


def split(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, 20, size=rng.integers(1, 8)).tolist() for _ in range(n)]
    texts = [" ".join(VOCAB.decode(s)) for s in seqs]
    return Dataset.from_dict({"id": list(range(n)), "text": texts, "ids": seqs, "label": [-1] * n}, features=FEATURES)


@pytest.fixture
def workspace(stage_workspace: Path) -> Path:
    """Prepared data and randomly initialised sri/vae/lm model folders in the stage workspace."""
    write_prepared(Path("data/prepared"), VOCAB, {"train": split(8, 0), "valid": split(4, 1), "test": split(16, 2)}, {})
    for kind in ("sri", "vae", "lm"):
        torch.manual_seed(0)
        model = build_model(kind, len(VOCAB), ModelConfig(**MODEL_CFG))
        save_model_dir(Path("models") / kind, kind, model, VOCAB, ModelConfig(**MODEL_CFG), build_config("tiny").langevin)
    return stage_workspace


def config():
    return build_config("tiny", {"model": MODEL_CFG, "langevin": {"steps": 3}, "evaluate": EVALUATE})


def test_evaluate_writes_metrics_plots_reports_and_logs_to_mlflow(workspace: Path) -> None:
    evaluate.run(config())
    metrics = json.loads(Path("metrics/evaluate.json").read_text())
    assert metrics["sentences"] == 10 and set(metrics) == {"sentences", "sri", "vae", "lm"}
    for kind in ("sri", "vae"):
        assert {"nll", "ppl", "nll_se", "recon", "kl", "mi", "au"} <= set(metrics[kind])
    assert set(metrics["lm"]) >= {"nll", "ppl", "nll_se"}
    assert metrics["sri"]["change_of_variables"]["sentences"] == 3
    for kind in ("sri", "vae"):  # the reported estimate: AIS on the first ais_sentences, its gap and step count
        ais = metrics[kind]["ais"]
        assert metrics[kind]["nll"] == ais["nll"] and metrics[kind]["sentences"] == ais["sentences"] == 6
        assert metrics[kind]["ais_steps"] == ais["steps"] == 4 and metrics[kind]["bdmc_gap"] == ais["bdmc"]["gap"]
    assert {"nll_minus_ais", "sentences"} <= set(metrics["sri"]["laplace"]) and "nll_minus_ais" in metrics["vae"]["iwae"]
    assert metrics["lm"]["sentences"] == 6 and metrics["lm"]["exact"]["sentences"] == 10  # all report on the same 6
    plots = {p.name for p in Path("plots/evaluate").iterdir()}
    assert plots == {"nll_vs_k.csv", "nll_vs_k.png", "au_sri.csv", "au_vae.csv", "au_variance.png"}
    assert Path("plots/evaluate/nll_vs_k.csv").read_text().splitlines()[0] == "k,nll_se,ppl,nll"
    table = Path("reports/evaluate/comparison.md").read_text()
    assert all(f"| {kind} | annealed importance sampling" in table for kind in ("sri", "vae")) and "| lm | exact |" in table
    assert "change of variables (a)" in table and f"{metrics['sri']['bdmc_gap']:.2f} +- " in table
    samples = Path("reports/evaluate/samples_sri.txt").read_text()
    assert "prior" in samples and "input: " in samples and "from: " in samples
    assert {p.name for p in Path("reports/evaluate").iterdir()} == {"comparison.md", "samples_sri.txt",
                                                                    "samples_vae.txt", "samples_lm.txt"}
    run = mlflow.search_runs(experiment_names=["shortrun"], output_format="list")[0]
    assert run.data.metrics["sri.change_of_variables.nll"] == pytest.approx(metrics["sri"]["change_of_variables"]["nll"])
    assert run.data.metrics["sri.ais.bdmc.gap"] == pytest.approx(metrics["sri"]["bdmc_gap"])
    assert run.data.params["evaluate.jacobian_samples"] == "2"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"evaluate.json", "plots", "reports"} <= artifacts


def test_dvc_reads_the_metrics_file(workspace: Path) -> None:
    evaluate.run(build_config("tiny", {"model": MODEL_CFG, "langevin": {"steps": 2}, "train": {"models": ["lm"]},
                                       "evaluate": EVALUATE}))
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([str(dvc), "init", "-q"], check=True)
    shown = subprocess.run([str(dvc), "metrics", "show", "--json", "metrics/evaluate.json"], check=True,
                           capture_output=True, text=True).stdout
    assert "lm" in shown and '"nll"' in shown


def test_a_model_trained_on_another_vocabulary_is_refused(workspace: Path) -> None:
    other = Vocab(f"x{i}" for i in range(16))
    save_model_dir(Path("models/lm"), "lm", build_model("lm", len(other), ModelConfig(**MODEL_CFG)), other,
                   ModelConfig(**MODEL_CFG), build_config("tiny").langevin)
    with pytest.raises(TrainingError, match="models/lm/vocab.txt: differs from data/prepared/vocab.txt"):
        evaluate.run(build_config("tiny", {"model": MODEL_CFG, "train": {"models": ["lm"]}, "evaluate": EVALUATE}))
