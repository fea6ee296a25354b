"""A sweep's report: one markdown row per trial, and a plot of the metric against each searched setting.

Test numbers appear for the chosen trial only, below the table: they were not used to choose it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

from shortrun.io import atomic_file
from shortrun.sweep import SweepConfig, TrialResult


def _number(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.4g}"


def report_markdown(cfg: SweepConfig, results: list[TrialResult], chosen: Optional[TrialResult],
                    test_metrics: Mapping[str, float], parent_run_id: str) -> str:
    """The sweep's table (settings, metric, status, MLflow run) and the chosen trial with its test numbers."""
    keys = cfg.searched_keys()
    lines = [f"# Sweep `{cfg.name}`: {cfg.method}, {len(results)} trials, {cfg.direction} `{cfg.metric}`", "",
             f"MLflow parent run `sweep-{cfg.name}` ({parent_run_id})"
             + (f"; every trial also sets {', '.join(f'`{o}`' for o in cfg.fixed)}" if cfg.fixed else "")
             + (f"; preset `{cfg.preset}`" if cfg.preset else ""), "",
             "| trial | " + " | ".join(f"`{k}`" for k in keys) + f" | {cfg.metric} | status | MLflow run |",
             "|---|" + "---|" * len(keys) + "---|---|---|"]
    for result in results:
        settings = dict(result.trial.settings)
        mark = " **(chosen)**" if chosen is result else ""
        status = result.status + (f": {result.error}" if result.error else "")
        lines.append(f"| {result.trial.key}{mark} | " + " | ".join(str(settings.get(k, "")) for k in keys)
                     + f" | {_number(result.metric)} | {status.replace('|', '/')} | {result.run_id or '–'} |")
    lines.append("")
    failed = [r for r in results if r.status != "finished"]
    if failed:
        lines += [f"{len(failed)} of {len(results)} trials did not finish; running the sweep again retries them "
                  "and skips the finished ones.", ""]
    if chosen is None:
        lines.append("No trial finished with the metric: nothing chosen.")
        return "\n".join(lines) + "\n"
    lines += [f"Chosen: trial {chosen.trial.key} ({chosen.trial.label()}), {cfg.metric} = {_number(chosen.metric)}.", ""]
    if test_metrics:
        lines += ["Test numbers of the chosen trial only (not used to choose):", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_number(value)} |" for name, value in sorted(test_metrics.items())]
    return "\n".join(lines) + "\n"


def write_plot(cfg: SweepConfig, results: list[TrialResult], path: Path) -> Path:
    """One panel per searched setting: the metric of each finished trial against that setting's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = cfg.searched_keys()
    log_keys = {key for key, dist in cfg.distributions().items() if dist.log_scale}
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    done = [r for r in results if r.metric is not None and math.isfinite(r.metric)]
    for ax, key in zip(axes[0], keys):
        values = [dict(r.trial.settings)[key] for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs = values if numeric else [str(v) for v in values]
        ax.scatter(xs, [r.metric for r in done])
        if key in log_keys:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(cfg.metric)
    fig.suptitle(f"sweep {cfg.name}: {cfg.metric} ({cfg.direction})")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
