"""The evaluate stage: every trained model on the same test sentences, side by side.

Reads models/<kind>/ for every kind in train.models and the first evaluate.num_sentences sentences of
data/prepared/test. Writes metrics/evaluate.json (one nested file: per model the reported, tightest
likelihood estimate nll, ppl, nll_se (latent models: AIS, with ais_steps and its BDMC gap) and one block
per estimator that ran; for latent models recon, kl, mi, au), plots/evaluate/ (NLL vs K for SRI,
per-dimension posterior-mean variance for the active units; PNG + CSV) and reports/evaluate/
(comparison.md, samples_<kind>.txt), and logs all of it to MLflow. See docs/evaluation.md.
"""
from __future__ import annotations

import mlflow

from shortrun.checkpoint import load_trained
from shortrun.config import PipelineConfig
from shortrun.data.prepared import load_split, load_vocab
from shortrun.errors import ConfigError, DataError, TrainingError
from shortrun.evaluation.report import comparison_table, write_plots
from shortrun.evaluation.suite import evaluate_model
from shortrun.io import atomic_dir, write_json, write_text
from shortrun.numerics import resolve_device
from shortrun.ops.tracking import log_json_metrics, stage_run
from shortrun.paths import METRICS, PLOTS, REPORTS, VOCAB, model_dir

METRICS_FILE = METRICS / "evaluate.json"
PLOTS_DIR = PLOTS / "evaluate"
REPORTS_DIR = REPORTS / "evaluate"


def run(cfg: PipelineConfig) -> None:
    """Evaluate models/<kind>/ for every kind in train.models and write the stage's outputs."""
    if not cfg.train.models:
        raise ConfigError("train.models: empty; the evaluate stage needs at least one trained model")
    dataset = load_split("test")
    if len(dataset) == 0:
        raise DataError("data/prepared/test: no test sentences to evaluate on")
    if cfg.evaluate.num_sentences:
        dataset = dataset.select(range(min(cfg.evaluate.num_sentences, len(dataset))))
    vocab = load_vocab()
    device = resolve_device(cfg.train.device)
    with stage_run("evaluate", cfg, ("evaluate", "langevin")):
        # likelihoods need float32 (log-determinants, importance weights): evaluation never autocasts
        mlflow.set_tags({"device": str(device), "precision": "float32", "models": ",".join(cfg.train.models)})
        evaluations = []
        for kind in cfg.train.models:
            trained = load_trained(model_dir(kind), device)
            if trained.vocab != vocab:
                raise TrainingError(f"{model_dir(kind)}/vocab.txt: differs from {VOCAB}; retrain {kind} on the prepared data")
            chain = cfg.langevin.inherit_sizes(trained.langevin)  # the model's learned step sizes, if any
            evaluations.append(evaluate_model(trained, dataset, cfg.evaluate, chain, device, cfg.data.max_len))
        write_json(METRICS_FILE, {"sentences": len(dataset), **{ev.kind: ev.metrics for ev in evaluations}})
        with atomic_dir(PLOTS_DIR) as plots:
            write_plots(plots, evaluations)
        with atomic_dir(REPORTS_DIR) as reports:
            write_text(reports / "comparison.md", comparison_table(evaluations))
            for ev in evaluations:
                write_text(reports / f"samples_{ev.kind}.txt", ev.samples.render())
        log_json_metrics(METRICS_FILE)
        mlflow.log_artifact(str(METRICS_FILE))
        mlflow.log_artifacts(str(PLOTS_DIR), artifact_path="plots")
        mlflow.log_artifacts(str(REPORTS_DIR), artifact_path="reports")
