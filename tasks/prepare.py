"""Stage `prepare`: corpus files (or a hub dataset) -> data/prepared, metrics/prepare.json and length plots.

The algorithm is shortrun.data.preparation's; this writes its outputs atomically, then logs the params,
statistics and plot to an MLflow run.
"""
from __future__ import annotations

import mlflow

from shortrun.config import PipelineConfig
from shortrun.data.preparation import corpus_metrics, prepare_corpus
from shortrun.data.stats import length_rows, plot_lengths, write_length_csv
from shortrun.io import write_json
from shortrun.ops.tracking import log_json_metrics, stage_run
from shortrun.params import corpus_root
from shortrun.paths import METRICS, PLOTS

METRICS_FILE = METRICS / "prepare.json"
LENGTHS_CSV = PLOTS / "prepare" / "lengths.csv"
LENGTHS_PNG = PLOTS / "prepare" / "lengths.png"


def run(cfg: PipelineConfig) -> None:
    """Run the stage in the current workspace (what `shortrun stage prepare` and dvc.yaml call)."""
    root = corpus_root(cfg.data)
    with stage_run("prepare", cfg, ("data",)):
        corpus = prepare_corpus(cfg.data, root)
        write_json(METRICS_FILE, corpus_metrics(corpus, cfg.data, root))
        rows = length_rows(corpus.splits)
        write_length_csv(LENGTHS_CSV, rows)
        plot_lengths(LENGTHS_PNG, rows)
        log_json_metrics(METRICS_FILE)
        for path in (METRICS_FILE, LENGTHS_CSV, LENGTHS_PNG):
            mlflow.log_artifact(str(path), "prepare")
