"""The flow's summary: metrics files grouped by model, key metrics only, in markdown."""
from __future__ import annotations

from flows.summary import by_model, collect_metrics, summary_markdown
from shortrun.io import write_json
from shortrun.ops.registry import Registration


def _metrics(tmp_path):
    write_json(tmp_path / "train" / "sri.json", {"valid_nll": 40.5, "epoch": 2, "z_var_mean": 0.1})
    write_json(tmp_path / "train" / "lm.json", {"valid_nll": 41.25})
    write_json(tmp_path / "classify.json", {"classifier": "logreg",
                                            "models": {"sri": {"budgets": {"100": {"acc_mean": 0.7, "acc_std": 0.01}}}}})
    write_json(tmp_path / "prepare.json", {"vocab_size": 300, "flag": True})
    return collect_metrics(tmp_path)


def test_collect_flattens_numbers_by_file_and_key(tmp_path):
    metrics = _metrics(tmp_path)
    assert metrics["train.sri.valid_nll"] == 40.5
    assert metrics["classify.models.sri.budgets.100.acc_mean"] == 0.7
    assert metrics["prepare.vocab_size"] == 300
    assert "prepare.flag" not in metrics and "classify.classifier" not in metrics


def test_by_model_puts_each_kind_in_its_column(tmp_path):
    table, other = by_model(_metrics(tmp_path))
    assert table["train.valid_nll"] == {"sri": 40.5, "lm": 41.25}
    assert table["classify.budgets.100.acc_mean"] == {"sri": 0.7}
    assert other == {"prepare.vocab_size": 300.0}


def test_markdown_shows_key_metrics_stages_registry_and_run(tmp_path):
    metrics = _metrics(tmp_path)
    text = summary_markdown("tiny", {"prepare": "ran", "train@sri": "skipped"}, metrics,
                            Registration("shortrun-generator", "3", False, "valid_nll 40.5 does not beat champion v2"),
                            "run123", "http://mlflow/#/experiments/1/runs/run123")
    assert "| train.valid_nll | 40.5 | 41.25 |" in text
    assert "| classify.budgets.100.acc_mean | 0.7 | – |" in text
    assert "z_var_mean" not in text and "acc_std" not in text
    assert "| train@sri | skipped |" in text
    assert "v3 is **candidate**: valid_nll 40.5 does not beat champion v2" in text
    assert "run123" in text and f"All {len(metrics)} metrics" in text
