"""The flow's report: the key numbers of metrics/**/*.json, one column per model, as markdown.

Every number goes to the MLflow parent run; the summary shows those that compare the models.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from shortrun.ops.registry import Registration
from shortrun.ops.tracking import flatten
from shortrun.paths import METRICS

MODEL_KINDS = ("sri", "vae", "lm")
# Metric names (the model kind taken out) shown in the summary.
KEY_METRICS = re.compile(r"""^(
      train\.(valid_nll|valid_ppl|best_valid_nll|valid_kl|active_units|seconds)
    | classify\.(budgets\.\d+\.acc_mean|gmm\.accuracy)
    | evaluate\..*
    | prepare\.(vocab_size|splits\.\w+\.sentences)
)$""", re.VERBOSE)


def _metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits and _ - . / and spaces only."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def collect_metrics(metrics_dir: Path = METRICS) -> dict[str, float]:
    """All numbers of metrics/**/*.json as {'train.sri.valid_nll': 4.2, 'classify.models.sri...': ...}."""
    found: dict[str, float] = {}
    for path in sorted(metrics_dir.rglob("*.json")):
        prefix = ".".join(path.relative_to(metrics_dir).with_suffix("").parts)
        for key, value in flatten(json.loads(path.read_text(encoding="utf-8"))).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[_metric_name(f"{prefix}.{key}")] = float(value)
    return found


def by_model(metrics: Mapping[str, float]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Split metric names into {metric: {model: value}} (names that mention a model kind) and the rest."""
    table: dict[str, dict[str, float]] = {}
    other: dict[str, float] = {}
    for name, value in metrics.items():
        parts = name.split(".")
        kinds = [p for p in parts if p in MODEL_KINDS]
        if not kinds:
            other[name] = value
            continue
        metric = ".".join(p for p in parts if p not in (kinds[0], "models"))
        table.setdefault(metric, {})[kinds[0]] = value
    return table, other


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def summary_markdown(preset: str, outcomes: Mapping[str, str], metrics: Mapping[str, float],
                     registration: Registration | None, run_id: str, run_link: str) -> str:
    """Stages, registry decision, a metric × model table and the MLflow run, as markdown."""
    table, other = by_model(metrics)
    table = {name: row for name, row in table.items() if KEY_METRICS.match(name)}
    other = {name: value for name, value in other.items() if KEY_METRICS.match(name)}
    models = [k for k in MODEL_KINDS if any(k in row for row in table.values())]
    lines = [f"# shortrun pipeline — preset `{preset}`", "", f"MLflow parent run `{run_id}`: {run_link}", "",
             "## Stages", "", "| stage | result |", "|---|---|"]
    lines += [f"| {target} | {outcome} |" for target, outcome in outcomes.items()]
    lines += ["", "## Registry", ""]
    if registration is None:
        lines.append("No SRI generator in this run; nothing registered.")
    elif registration.new:
        role = "champion" if registration.promoted else "candidate"
        lines.append(f"New version `{registration.name}` v{registration.version} is **{role}**: {registration.reason}. "
                     f"Load it with `mlflow.pyfunc.load_model(\"models:/{registration.name}@{role}\")`.")
    else:
        lines.append(f"Nothing new to register: `{registration.name}` v{registration.version} holds these model files "
                     f"({registration.reason}).")
    if table:
        lines += ["", "## Metrics by model", "", "| metric | " + " | ".join(models) + " |",
                  "|---|" + "---|" * len(models)]
        lines += [f"| {metric} | " + " | ".join(_cell(row.get(m)) for m in models) + " |"
                  for metric, row in sorted(table.items())]
    if other:
        lines += ["", "## Data", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_cell(value)} |" for name, value in sorted(other.items())]
    lines += ["", f"All {len(metrics)} metrics are on the MLflow parent run."]
    return "\n".join(lines) + "\n"
