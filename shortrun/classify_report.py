"""What the classify stage reports: its metrics, the accuracy-against-labels curve and plot, and the tables.

Pure functions of the fitted results (shortrun.classify); the stage writes them where DVC expects them.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from shortrun.classify import BudgetResult

CSV_COLUMNS = ["model", "labels", "accuracy", "accuracy_std"]


@dataclass
class ModelResult:
    """Everything the classify stage learned about one latent model."""

    kind: str
    budgets: list[BudgetResult]
    gmm_accuracy: float
    gmm_components: int


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


def accuracy_figure(curve: pd.DataFrame, note: str | None = None) -> Figure:
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
    return fig


def report_of(results: list[ModelResult], corpus: str, classifier: str) -> str:
    """reports/classify.md: the accuracy table and the clustering table."""
    lines = [
        f"# Classification on latent features ({corpus}, {classifier})",
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
