"""The few numbers that compare runs at a glance: what `dvc exp show` and `dvc metrics show` display.

The stages' own metrics files hold hundreds of numbers (data statistics, per-budget accuracies, every
estimator); an experiment table of all of them is unreadable. The headline is per model: test NLL and
active units (metrics/evaluate.json) and classifier accuracy at the smallest label budget
(metrics/classify.json).
"""
from __future__ import annotations

from typing import Any, Mapping


def headline(evaluate: Mapping[str, Any], classify: Mapping[str, Any]) -> dict[str, Any]:
    """{"nll": {kind: ...}, "au": {kind: ...}, "accuracy": {"labels": smallest budget, kind: ...}}; a block
    no model reports (e.g. accuracy on an unlabeled corpus) is left out."""
    models = {kind: values for kind, values in evaluate.items() if isinstance(values, Mapping)}
    result: dict[str, Any] = {
        "nll": {kind: values["nll"] for kind, values in models.items() if "nll" in values},
        "au": {kind: values["au"] for kind, values in models.items() if "au" in values},
    }
    budgets = {kind: values.get("budgets", {}) for kind, values in classify.get("models", {}).items()}
    labels = min((int(b) for per_kind in budgets.values() for b in per_kind), default=None)
    if labels is not None:
        result["accuracy"] = {"labels": labels, **{kind: per_kind[str(labels)]["acc_mean"]
                                                   for kind, per_kind in budgets.items() if str(labels) in per_kind}}
    return {name: block for name, block in result.items() if block}
