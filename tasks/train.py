"""The train stage: train one model kind on the prepared data and write its model folder.

Writes models/<kind>/ (checkpoint.pt, model_config.json, vocab.txt; with langevin.learn_steps the model
config's chain holds the learned step sizes, which export, evaluate and serving use), metrics/train/<kind>.json
(final-epoch metrics, best valid NLL, epochs, seconds) and plots/train/<kind>.csv (one row per
epoch), and logs params, per-epoch metrics and the model folder to MLflow.

A run trains in .shortrun/train/<kind>/ (checkpoint written every epoch and on Ctrl-C) and replaces
models/<kind>/ whole only when it completes, so a failed or interrupted run leaves the previous model
in place (dvc.yaml persists the folder instead of deleting it first). Without --resume training starts
from scratch; with it, the run continues the interrupted run's checkpoint, or else the finished model's
(e.g. for more epochs).
"""
from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow

from shortrun.checkpoint import CHECKPOINT, write_model_files
from shortrun.config import LangevinConfig, PipelineConfig
from shortrun.data.prepared import load_split, load_vocab
from shortrun.errors import ConfigError, TrainingError
from shortrun.io import replace_dir, write_json, write_text
from shortrun.model import MODEL_CLASSES
from shortrun.numerics import numeric_path
from shortrun.ops.tracking import stage_run
from shortrun.paths import METRICS, PLOTS, model_dir
from shortrun.training import TrainOutcome, train_model

PER_DIMENSION = "z_var_d"
WORK = Path(".shortrun") / "train"  # runs in progress; models/<kind> changes only when one completes


def metrics_path(kind: str) -> Path:
    return METRICS / "train" / f"{kind}.json"


def plots_path(kind: str) -> Path:
    return PLOTS / "train" / f"{kind}.csv"


def epoch_csv(rows: list[dict[str, float]]) -> str:
    """Per-epoch rows as CSV; columns in first-seen order (epoch, train_nll, ..., valid_nll, ...)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary(outcome: TrainOutcome, seconds: float) -> dict[str, Any]:
    """Final-epoch metrics (without the per-dimension variances, kept in the plot CSV) and run totals."""
    final = {k: v for k, v in outcome.history[-1].items() if not k.startswith(PER_DIMENSION)}
    return {**final, "best_valid_nll": outcome.best_valid_nll, "epochs": len(outcome.history), "seconds": seconds}


def work_dir(kind: str, resume: bool) -> Path:
    """The folder this run trains in: a fresh one, or to resume, the interrupted run's or a copy of the finished model.

    Resuming with no checkpoint anywhere fails here, before anything is written.
    """
    work, finished = WORK / kind, model_dir(kind)
    if resume and (work / CHECKPOINT).is_file():
        return work
    if resume and not (finished / CHECKPOINT).is_file():
        raise TrainingError(f"train --model {kind} --resume: no checkpoint to resume from (neither {work / CHECKPOINT} "
                            f"nor {finished / CHECKPOINT}); train without --resume")
    shutil.rmtree(work, ignore_errors=True)
    if resume:
        shutil.copytree(finished, work)
    else:
        work.mkdir(parents=True)
    return work


def run(cfg: PipelineConfig, kind: str, resume: bool = False) -> None:
    """Train `kind` (sri, vae or lm) and write its outputs."""
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"train --model {kind}: unknown model; expected one of {', '.join(MODEL_CLASSES)}")
    vocab = load_vocab()
    train_set, valid_set = load_split("train"), load_split("valid")
    folder = model_dir(kind)
    work = work_dir(kind, resume)
    checkpoint = work / CHECKPOINT
    started = time.perf_counter()
    # Only the SRI trains through the chain: the LM and the VAE get the default one, so that nothing they
    # write depends on the langevin params (in dvc.yaml only train@sri depends on them).
    chain, sections = (cfg.langevin, ("model", "langevin", "train")) if kind == "sri" else (LangevinConfig(), ("model", "train"))
    with stage_run(f"train-{kind}", cfg, sections):
        numerics = numeric_path(cfg.train.device, cfg.train.precision)
        mlflow.set_tags({"model_kind": kind, "device": str(numerics.device), "precision": numerics.precision,
                         "resumed": str(resume)})
        outcome = train_model(
            kind, len(vocab), train_set, valid_set, cfg.model, chain, cfg.train,
            checkpoint_path=checkpoint, resume=resume, max_len=cfg.data.max_len,
            on_epoch=lambda metrics: mlflow.log_metrics(metrics, step=int(metrics["epoch"])),
        )
        write_model_files(work, kind, vocab, cfg.model, outcome.langevin)  # the learned step sizes, if any
        replace_dir(work, folder)
        result = summary(outcome, time.perf_counter() - started)
        write_json(metrics_path(kind), result)
        write_text(plots_path(kind), epoch_csv(outcome.history))
        mlflow.log_metrics({"best_valid_nll": result["best_valid_nll"], "seconds": result["seconds"]})
        mlflow.log_artifacts(str(folder), artifact_path="model")
