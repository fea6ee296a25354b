"""The classify stage: few-label classifiers and GMM clustering on the exported latents of every latent model.

Reads latents/<kind>/ (shortrun.latents format). Writes classifiers/<kind>/<budget>.joblib (the seed-0
classifier) and classifiers/summary.json, metrics/classify.json, plots/classify/accuracy.{csv,png} and
reports/classify.md and logs them to MLflow (the registration step, tasks/register.py, registers the SRI
classifier together with its generator). An unlabeled corpus is skipped: the same files are written, saying why.
"""
from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shortrun.classify import BudgetResult, Labeled, evaluate_budget, gmm_accuracy
from shortrun.config import PipelineConfig
from shortrun.errors import DataError
from shortrun.io import atomic_dir, atomic_file, write_json, write_text
from shortrun.latents import read_latents
from shortrun.paths import METRICS, PLOTS, REPORTS, latents_dir
from shortrun.tracking import log_json_metrics, stage_run

log = logging.getLogger(__name__)

CLASSIFIERS = Path("classifiers")
METRICS_FILE = METRICS / "classify.json"
PLOT_CSV = PLOTS / "classify" / "accuracy.csv"
PLOT_PNG = PLOTS / "classify" / "accuracy.png"
REPORT = REPORTS / "classify.md"
CSV_COLUMNS = ["model", "labels", "accuracy", "accuracy_std"]
GMM_SEED = 0


@dataclass
class ModelResult:
    """Everything the classify stage learned about one latent model."""

    kind: str
    budgets: list[BudgetResult]
    gmm_accuracy: float
    gmm_components: int


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


def metrics_of(results: list[ModelResult], classifier: str) -> dict:
    """metrics/classify.json: per model, per budget accuracy mean/std, seeds and C; GMM accuracy."""
    return {
        "classifier": classifier,
        "models": {
            r.kind: {
                "budgets": {str(b.budget): b.summary() for b in r.budgets},
                "gmm": {"accuracy": r.gmm_accuracy, "components": r.gmm_components},
            }
            for r in results
        },
    }


def curve_of(results: list[ModelResult]) -> pd.DataFrame:
    """plots/classify/accuracy.csv: one row per model and budget."""
    rows = [(r.kind, b.budget, *(b.summary()[k] for k in ("acc_mean", "acc_std"))) for r in results for b in r.budgets]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_plot(curve: pd.DataFrame, note: str | None = None) -> None:
    """Accuracy against the number of labels (log x), one line with error bars per model; or a note."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for model, rows in curve.groupby("model", sort=True):
        ax.errorbar(rows["labels"], rows["accuracy"], yerr=rows["accuracy_std"], marker="o", capsize=3, label=model)
    if note:
        ax.text(0.5, 0.5, textwrap.fill(note, 50), ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log")
        ax.minorticks_off()
        budgets = sorted(curve["labels"].unique())
        ax.set_xticks(budgets, labels=[str(b) for b in budgets])
        ax.legend()
    ax.set_xlabel("number of labels")
    ax.set_ylabel("test accuracy")
    ax.set_title("Classification on latent features")
    fig.tight_layout()
    with atomic_file(PLOT_PNG) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def report_of(results: list[ModelResult], cfg: PipelineConfig) -> str:
    """reports/classify.md: the accuracy table and the clustering table."""
    lines = [
        f"# Classification on latent features ({cfg.data.corpus}, {cfg.classify.classifier})",
        "",
        "Test accuracy: mean ± std over the training sets of a budget (the corpus subset, then seeded resamples).",
        "C: the regularisation chosen on the validation split for the corpus subset.",
        "",
        "| model | labels | accuracy | seeds | C |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for b in r.budgets:
            s = b.summary()
            lines.append(f"| {r.kind} | {b.budget} | {s['acc_mean']:.4f} ± {s['acc_std']:.4f} | {s['n_seeds']} | {s['c']:g} |")
    lines += ["", "Unsupervised: Gaussian mixture on the latents, clusters matched one-to-one to labels.", ""]
    lines += ["| model | components | test accuracy |", "|---|---:|---:|"]
    lines += [f"| {r.kind} | {r.gmm_components} | {r.gmm_accuracy:.4f} |" for r in results]
    return "\n".join(lines) + "\n"


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
        write_text(REPORT, report_of(results, cfg))
        log_json_metrics(METRICS_FILE)
        log_outputs()
