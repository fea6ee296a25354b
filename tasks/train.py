"""The train stage: train one model kind on the prepared data and write its model folder.

Writes models/<kind>/ (checkpoint.pt, model_config.json, vocab.txt), metrics/train/<kind>.json
(final-epoch metrics, best valid NLL, epochs, seconds) and plots/train/<kind>.csv (one row per
epoch), and logs params, per-epoch metrics and the model folder to MLflow.

Without --resume training starts from scratch (an old checkpoint is removed first); with it, the run
continues from models/<kind>/checkpoint.pt, which is written every epoch and on Ctrl-C.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import mlflow

from shortrun.checkpoint import CHECKPOINT, write_model_files
from shortrun.config import PipelineConfig
from shortrun.data.prepared import load_split, load_vocab
from shortrun.errors import ConfigError
from shortrun.io import write_json, write_text
from shortrun.model import MODEL_CLASSES
from shortrun.paths import METRICS, PLOTS, model_dir
from shortrun.tracking import stage_run
from shortrun.training import TrainOutcome, resolve_device, train_model

PER_DIMENSION = "z_var_d"


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


def run(cfg: PipelineConfig, kind: str, resume: bool = False) -> None:
    """Train `kind` (sri, vae or lm) and write its outputs."""
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"train --model {kind}: unknown model; expected one of {', '.join(MODEL_CLASSES)}")
    vocab = load_vocab()
    train_set, valid_set = load_split("train"), load_split("valid")
    folder = model_dir(kind)
    checkpoint = folder / CHECKPOINT
    if not resume:
        checkpoint.unlink(missing_ok=True)
    write_model_files(folder, kind, vocab, cfg.model, cfg.langevin)
    started = time.perf_counter()
    with stage_run(f"train-{kind}", cfg, ("model", "langevin", "train")):
        mlflow.set_tags({"model_kind": kind, "device": str(resolve_device(cfg.train.device)), "resumed": str(resume)})
        outcome = train_model(
            kind, len(vocab), train_set, valid_set, cfg.model, cfg.langevin, cfg.train,
            checkpoint_path=checkpoint, resume=resume,
            on_epoch=lambda metrics: mlflow.log_metrics(metrics, step=int(metrics["epoch"])),
        )
        result = summary(outcome, time.perf_counter() - started)
        write_json(metrics_path(kind), result)
        write_text(plots_path(kind), epoch_csv(outcome.history))
        mlflow.log_metrics({"best_valid_nll": result["best_valid_nll"], "seconds": result["seconds"]})
        mlflow.log_artifacts(str(folder), artifact_path="model")
