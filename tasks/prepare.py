"""Stage `prepare`: corpus files (or a hub dataset) -> data/prepared, metrics/prepare.json and length plots.

Reads train/valid/test and the label-budget files, filters by length, keeps the first
max_train/max_valid/max_test sentences, builds or loads the vocabulary, and writes everything
atomically; then logs the params, statistics and plot to an MLflow run.
"""
from __future__ import annotations

from pathlib import Path

import mlflow

from shortrun.config import DataConfig, PipelineConfig
from shortrun.data.corpus import CorpusSplit, load_hub_split, read_corpus_file
from shortrun.data.prepared import SPLITS, to_dataset, write_prepared
from shortrun.data.stats import length_rows, plot_lengths, sha256_file, split_stats, write_length_csv
from shortrun.data.vocab import Vocab, build_vocab, read_vocab_file
from shortrun.errors import ConfigError, DataError
from shortrun.io import write_json
from shortrun.params import corpus_file, corpus_root
from shortrun.paths import METRICS, PLOTS, PREPARED
from shortrun.tracking import log_json_metrics, stage_run

METRICS_FILE = METRICS / "prepare.json"
LENGTHS_CSV = PLOTS / "prepare" / "lengths.csv"
LENGTHS_PNG = PLOTS / "prepare" / "lengths.png"


def run(cfg: PipelineConfig) -> None:
    """Run the stage in the current workspace (what `shortrun stage prepare` and dvc.yaml call)."""
    root = corpus_root(cfg.data)
    with stage_run("prepare", cfg, ("data",)):
        prepare(cfg.data, root)
        log_json_metrics(METRICS_FILE)
        for path in (METRICS_FILE, LENGTHS_CSV, LENGTHS_PNG):
            mlflow.log_artifact(str(path), "prepare")


def prepare(data: DataConfig, root: Path) -> dict:
    """Write data/prepared, the metrics and the length plots into the workspace; return the metrics."""
    if data.label_budget_files and not data.labeled:
        raise ConfigError("data.label_budget_files: set for an unlabeled corpus; expected data.labeled: true or no budgets")
    labels = data.labels if data.labeled else []
    limits = {"train": data.max_train, "valid": data.max_valid, "test": data.max_test}
    splits, left_out = {}, {}
    for name in SPLITS:
        raw = _read_split(data, root, name)
        kept, dropped = raw.filter_length(data.min_len, data.max_len)
        splits[name], truncated = kept.head(limits[name])
        _require_sentences(splits[name], data)
        left_out[name] = (dropped, truncated)
    budgets = {}
    for budget, rel in sorted(data.label_budget_files.items()):
        key = f"data.label_budget_files.{budget}"
        raw = read_corpus_file(corpus_file(data, rel, root, key), labels, data.on_malformed, key)
        budgets[budget], dropped = raw.filter_length(data.min_len, data.max_len)
        left_out[f"labeled_{budget}"] = (dropped, 0)
    vocab = _vocabulary(data, root, splits["train"])
    everything = {**splits, **{f"labeled_{b}": s for b, s in budgets.items()}}

    write_prepared(
        PREPARED,
        vocab,
        {name: to_dataset(split, vocab) for name, split in splits.items()},
        {budget: to_dataset(split, vocab) for budget, split in budgets.items()},
    )
    metrics = {
        "corpus": data.corpus,
        "vocab_size": len(vocab),
        "splits": {
            name: split_stats(split, vocab, labels, *left_out[name]) for name, split in everything.items()
        },
        "sha256": _sources(data, root),
    }
    write_json(METRICS_FILE, metrics)
    rows = length_rows(splits)
    write_length_csv(LENGTHS_CSV, rows)
    plot_lengths(LENGTHS_PNG, rows)
    return metrics


def _read_split(data: DataConfig, root: Path, split: str) -> CorpusSplit:
    labels = data.labels if data.labeled else None
    if data.hub_id:
        return load_hub_split(data.hub_id, split, labels, data.on_malformed)
    key = f"{split}_file"
    return read_corpus_file(corpus_file(data, getattr(data, key), root, f"data.{key}"), labels, data.on_malformed, f"data.{key}")


def _require_sentences(split: CorpusSplit, data: DataConfig) -> None:
    """Length filtering must leave something to train or evaluate on."""
    if not len(split):
        raise DataError(
            f"{split.source}: no sentence has {data.min_len}..{data.max_len} tokens; "
            "expected data.min_len/data.max_len to keep some"
        )


def _vocabulary(data: DataConfig, root: Path, train: CorpusSplit) -> Vocab:
    """The corpus's vocabulary file when configured (min_freq does not apply), else built from train."""
    if data.vocab_file:
        return read_vocab_file(corpus_file(data, data.vocab_file, root, "data.vocab_file"), data.max_vocab)
    return build_vocab(train.tokens, data.max_vocab, data.min_freq)


def _sources(data: DataConfig, root: Path) -> dict[str, str]:
    """sha256 of every input file, so the metrics say exactly which corpus they describe."""
    files = {} if data.hub_id else {name: getattr(data, f"{name}_file") for name in SPLITS}
    files.update({f"labeled_{b}": rel for b, rel in data.label_budget_files.items()})
    if data.vocab_file:
        files["vocab"] = data.vocab_file
    return {name: sha256_file(corpus_file(data, rel, root, name)) for name, rel in files.items()}
