"""The classify stage: few-label classifiers and GMM clustering on the exported latents of every latent model.

Reads latents/<kind>/ (shortrun.latents format). Writes classifiers/<kind>/<budget>.joblib (the seed-0
classifier) and classifiers/summary.json, metrics/classify.json, plots/classify/accuracy.{csv,png} and
reports/classify.md and logs them to MLflow (the registration step, tasks/register.py, registers the SRI
classifier together with its generator). An unlabeled corpus is skipped: the same files are written, saying why.
"""
from __future__ import annotations

import logging
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd

from shortrun.classify import Labeled, evaluate_budget, gmm_accuracy
from shortrun.classify_report import CSV_COLUMNS, ModelResult, accuracy_figure, curve_of, metrics_of, report_of
from shortrun.config import PipelineConfig
from shortrun.errors import DataError
from shortrun.io import atomic_dir, atomic_file, write_json, write_text
from shortrun.latents import read_latents
from shortrun.ops.tracking import log_json_metrics, stage_run
from shortrun.paths import METRICS, PLOTS, REPORTS, latents_dir

log = logging.getLogger(__name__)

CLASSIFIERS = Path("classifiers")
METRICS_FILE = METRICS / "classify.json"
PLOT_CSV = PLOTS / "classify" / "accuracy.csv"
PLOT_PNG = PLOTS / "classify" / "accuracy.png"
REPORT = REPORTS / "classify.md"
GMM_SEED = 0


def skip_reason(cfg: PipelineConfig) -> str | None:
    """Why there is nothing to classify, or None."""
    if not cfg.data.labeled:
        return f"corpus {cfg.data.corpus} is unlabeled (data.labeled is false): no classifier to fit"
    if not cfg.classify.budgets:
        return "classify.budgets is empty: no label budget to fit"
    if not cfg.export.models:
        return "export.models is empty: no latents to classify"
    return None


def _read(path: Path) -> Labeled:
    """A latents file as classifier input; its path names it in errors."""
    table = read_latents(path)
    return Labeled(str(path), table.z, table.labels)


def labeled_files(folder: Path) -> dict[int, Path]:
    """labeled_<budget>.parquet files of a latents folder by budget; at least one must exist."""
    files = {int(p.stem.split("_", 1)[1]): p for p in folder.glob("labeled_*.parquet") if p.stem.split("_", 1)[1].isdigit()}
    if not files:
        raise DataError(f"{folder}: no labeled_<budget>.parquet files; export needs the labeled subsets (data.label_budget_files)")
    return files


def classify_model(cfg: PipelineConfig, kind: str) -> ModelResult:
    """Fit every budget of one model's latents and cluster them."""
    folder = latents_dir(kind)
    files = labeled_files(folder)
    pool = _read(files[max(files)])
    valid, test = _read(folder / "valid.parquet"), _read(folder / "test.parquet")
    budgets = []
    for budget in sorted(cfg.classify.budgets):
        official = _read(files[budget]) if budget in files else None
        budgets.append(
            evaluate_budget(budget, official, pool, valid, test, cfg.classify.classifier, cfg.classify.c_grid, cfg.classify.seeds)
        )
    components = cfg.classify.gmm_components or len(np.unique(test.labels))
    train_z = read_latents(folder / "train.parquet").z
    return ModelResult(kind, budgets, gmm_accuracy(train_z, test, components, GMM_SEED), components)


def write_classifiers(results: list[ModelResult], cfg: PipelineConfig) -> None:
    """Seed-0 classifier of every model and budget, with a summary of how each was chosen."""
    summary: dict = {"classifier": cfg.classify.classifier, "models": {}}
    with atomic_dir(CLASSIFIERS) as out:
        for r in results:
            (out / r.kind).mkdir()
            entries = summary["models"][r.kind] = {}
            for b in r.budgets:
                joblib.dump(b.fits[0].model, out / r.kind / f"{b.budget}.joblib")
                entries[str(b.budget)] = {
                    "file": f"{r.kind}/{b.budget}.joblib",
                    "seeds": [{"c": f.c, "valid_accuracy": f.valid_accuracy, "test_accuracy": f.test_accuracy} for f in b.fits],
                }
        write_json(out / "summary.json", summary)


def write_plot(curve: pd.DataFrame, note: str | None = None) -> None:
    with atomic_file(PLOT_PNG) as tmp:
        accuracy_figure(curve, note).savefig(tmp, format="png", dpi=100)


def write_skipped(reason: str) -> None:
    """The stage's outputs for a corpus without labels: valid files that say why."""
    with atomic_dir(CLASSIFIERS) as out:
        write_json(out / "summary.json", {"skipped": reason})
    write_json(METRICS_FILE, {"skipped": reason})
    write_text(PLOT_CSV, ",".join(CSV_COLUMNS) + "\n")
    write_plot(pd.DataFrame(columns=CSV_COLUMNS), note=f"skipped: {reason}")
    write_text(REPORT, f"# Classification on latent features\n\nSkipped: {reason}.\n")


def log_outputs() -> None:
    """The plot, table and summary as MLflow artifacts of the stage run."""
    for path in (PLOT_CSV, PLOT_PNG, REPORT, CLASSIFIERS / "summary.json"):
        mlflow.log_artifact(str(path), artifact_path="classify")


def run(cfg: PipelineConfig) -> None:
    """Classify the latents of every exported model, or record why there is nothing to classify.

    Everything is fitted before the MLflow run opens, so bad input fails fast and leaves no empty run.
    """
    reason = skip_reason(cfg)
    results = [] if reason else [classify_model(cfg, kind) for kind in cfg.export.models]
    with stage_run("classify", cfg, ("classify",)):
        if reason:
            log.warning("classify skipped: %s", reason)
            mlflow.set_tag("skipped", reason)
            write_skipped(reason)
            log_outputs()
            return
        write_classifiers(results, cfg)
        write_json(METRICS_FILE, metrics_of(results, cfg.classify.classifier))
        curve = curve_of(results)
        with atomic_file(PLOT_CSV) as tmp:
            curve.to_csv(tmp, index=False)
        write_plot(curve)
        write_text(REPORT, report_of(results, cfg.data.corpus, cfg.classify.classifier))
        log_json_metrics(METRICS_FILE)
        log_outputs()
