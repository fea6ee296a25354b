"""What the evaluate stage shows people: the markdown comparison table, plots and their CSV data."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from shortrun.evaluation.posterior import AU_THRESHOLD
from shortrun.evaluation.suite import ModelEvaluation
from shortrun.io import atomic_file, write_text

ESTIMATORS = {
    "lm": "exact",
    "vae": "importance sampling, encoder proposal",
    "sri": "importance sampling, Laplace proposal at the short-run posterior mean (b)",
}


def _fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def comparison_table(evaluations: Sequence[ModelEvaluation]) -> str:
    """Markdown: every model on the same sentences, then the change-of-variables subset side by side."""
    lines = [
        "# Model comparison",
        "",
        "NLL: mean over sentences of -log p(x) in nats (+- its Monte-Carlo standard error); PPL per predicted token"
        " (words and </s>). Recon, KL, MI, AU: see docs/evaluation.md.",
        "",
        "| model | estimator | sentences | NLL | +- SE | PPL | recon | KL | MI | AU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ev in evaluations:
        m = ev.metrics
        lines.append(
            f"| {ev.kind} | {ESTIMATORS[ev.kind]} | {m['sentences']} | {_fmt(m['nll'])} | {_fmt(m['nll_se'], 3)} |"
            f" {_fmt(m['ppl'])} | {_fmt(m.get('recon'))} | {_fmt(m.get('kl'))} | {_fmt(m.get('mi'))} | {_fmt(m.get('au'))} |"
        )
    sri = next((ev for ev in evaluations if "change_of_variables" in ev.metrics), None)
    if sri is not None:
        cov = sri.metrics["change_of_variables"]
        count = cov["sentences"]
        lines += [
            "",
            f"## The first {count} sentences: SRI change-of-variables estimator (a) beside the others",
            "",
            "| model | estimator | NLL | +- SE |",
            "|---|---|---|---|",
        ]
        for ev in evaluations:
            nll = float(-ev.estimate.log_likelihood[:count].mean())
            se = float(ev.estimate.std_error[:count].pow(2).sum().sqrt() / count)
            lines.append(f"| {ev.kind} | {ESTIMATORS[ev.kind]} | {_fmt(nll)} | {_fmt(se, 3)} |")
        lines.append(f"| sri | importance sampling, chain proposal by change of variables (a) | {_fmt(cov['nll'])} |"
                     f" {_fmt(cov['nll_se'], 3)} |")
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _save(fig: Figure, target: Path) -> None:
    with atomic_file(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def write_plots(out_dir: Path, evaluations: Sequence[ModelEvaluation]) -> None:
    """nll_vs_k.{csv,png} (SRI) and au_<kind>.csv + au_variance.png (latent models) under `out_dir`."""
    for ev in evaluations:
        if ev.nll_vs_k:
            rows = [(r["k"], r["nll_se"], r["ppl"], r["nll"]) for r in ev.nll_vs_k]
            write_text(out_dir / "nll_vs_k.csv", _csv(("k", "nll_se", "ppl", "nll"), rows))
            fig = Figure(figsize=(5, 3.5))
            ax = fig.subplots()
            ax.errorbar([r[0] for r in rows], [r[3] for r in rows], yerr=[r[1] for r in rows], marker="o")
            ax.set(xlabel="K (Langevin steps)", ylabel="test NLL (nats / sentence)",
                   title=f"SRI, Laplace estimator (b): NLL vs K on {ev.nll_vs_k[0]['sentences']} sentences")
            _save(fig, out_dir / "nll_vs_k.png")
    latent = [ev for ev in evaluations if ev.au_variance is not None]
    for ev in latent:
        rows = [(i, float(v)) for i, v in enumerate(ev.au_variance)]
        write_text(out_dir / f"au_{ev.kind}.csv", _csv(("dim", "variance"), rows))
    if latent:
        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        width = 0.8 / len(latent)
        for j, ev in enumerate(latent):
            dims = range(len(ev.au_variance))
            ax.bar([d + j * width for d in dims], ev.au_variance.tolist(), width=width, label=ev.kind)
        ax.axhline(AU_THRESHOLD, color="black", linestyle="--", linewidth=1, label=f"AU threshold {AU_THRESHOLD}")
        ax.set(xlabel="latent dimension", ylabel="Var_x E[z | x]", yscale="log", title="Active units")
        ax.legend()
        _save(fig, out_dir / "au_variance.png")
