"""What the evaluate stage shows people: the markdown comparison table, plots and their CSV data."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from shortrun.evaluation.suite import ModelEvaluation
from shortrun.io import atomic_file, write_text
from shortrun.measures import AU_THRESHOLD

def _fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def comparison_table(evaluations: Sequence[ModelEvaluation]) -> str:
    """Markdown: every model's reported (tightest) estimate on the same sentences, then every estimator beside it."""
    lines = [
        "# Model comparison",
        "",
        "NLL: mean over sentences of -log p(x) in nats (+- its Monte-Carlo standard error); PPL per predicted token"
        " (words and </s>). Latent models report annealed importance sampling (AIS) with T intermediate"
        " distributions; BDMC gap: how far apart AIS's lower and upper bounds are on sentences simulated from the"
        " model (nats per sentence; small means AIS is tight there). Recon, KL, MI, AU: see docs/evaluation.md.",
        "",
        "| model | estimator | sentences | NLL | +- SE | PPL | AIS T | BDMC gap | recon | KL | MI | AU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ev in evaluations:
        m = ev.metrics
        lines.append(
            f"| {ev.kind} | {ev.labels[ev.reported]} | {m['sentences']} | {_fmt(m['nll'])} | {_fmt(m['nll_se'], 3)} |"
            f" {_fmt(m['ppl'])} | {_fmt(m.get('ais_steps'))} | {_bdmc(m.get(ev.reported, {}).get('bdmc'))} |"
            f" {_fmt(m.get('recon'))} | {_fmt(m.get('kl'))} | {_fmt(m.get('mi'))} | {_fmt(m.get('au'))} |"
        )
    lines += [
        "",
        "## Every estimator beside the reported one",
        "",
        "Minus reported: the estimator's mean NLL minus the reported estimator's on the sentences both cover"
        " (positive: looser).",
        "",
        "| model | estimator | sentences | NLL | +- SE | minus reported | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for ev in evaluations:
        for name, label in ev.labels.items():
            block = ev.metrics[name]
            distance = block.get(f"nll_minus_{ev.reported}")
            lines.append(f"| {ev.kind} | {label} | {block['sentences']} | {_fmt(block['nll'])} | {_fmt(block['nll_se'], 3)} |"
                         f" {_fmt(distance) if name != ev.reported else 'reported'} | {_fmt(block['seconds'], 1)} |")
    lines += latent_space_lines(evaluations)
    return "\n".join(lines) + "\n"


def _bdmc(block: dict | None) -> str:
    """'gap +- error (n simulated)', or '-' where BDMC did not run or found no sentence that ended."""
    if not block or not block.get("sentences"):
        return "-"
    return f"{block['gap']:.2f} +- {block['gap_se']:.2f} ({block['sentences']} simulated)"


def latent_space_lines(evaluations: Sequence[ModelEvaluation]) -> list[str]:
    """Markdown lines: each latent model's aggregate posterior against the prior and its prior samples' health."""
    latent = [ev for ev in evaluations if "agg_kl" in ev.metrics]
    if not latent:
        return []
    lines = [
        "",
        "## The latent space against the prior",
        "",
        "Mean squared norm and KL: the aggregate posterior (the mixture of the test sentences' q(z|x)) against"
        " N(0, I), whose values are d and 0; the KL is that of the Gaussian with the mixture's mean and covariance."
        " Prior samples: greedy decodings of z ~ N(0, I) (evaluate.health_samples); at max length: the share with"
        " no </s> (a degenerate loop's mark).",
        "",
        "| model | mean squared norm | KL (nats) | at max length | mean length | distinct-1 | distinct-2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for ev in latent:
        m = ev.metrics
        lines.append(f"| {ev.kind} | {_fmt(m['agg_sq_norm'])} | {_fmt(m['agg_kl'])} | {_fmt(m['prior_at_max_len'])} |"
                     f" {_fmt(m['prior_mean_len'], 1)} | {_fmt(m['prior_distinct_1'])} | {_fmt(m['prior_distinct_2'])} |")
    return lines


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
