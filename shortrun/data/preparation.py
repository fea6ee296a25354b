"""From corpus files (or a hub dataset) to the prepared splits: the prepare stage's algorithm.

Reads train/valid/test and the label-budget files, filters by length, keeps the first
max_train/max_valid/max_test sentences and builds or loads the vocabulary. `prepare_corpus` also writes
the result as data/prepared (shortrun.data.prepared); the stage adds its metrics, plots and MLflow run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shortrun.config import DataConfig
from shortrun.data.corpus import CorpusSplit, load_hub_split, read_corpus_file
from shortrun.data.prepared import SPLITS, to_dataset, write_prepared
from shortrun.data.stats import sha256_file, split_stats
from shortrun.data.vocab import Vocab, build_vocab, read_vocab_file
from shortrun.errors import ConfigError, DataError
from shortrun.params import corpus_file
from shortrun.paths import PREPARED


@dataclass
class Corpus:
    """The kept sentences of each split and label budget, what was left out of each, and the vocabulary."""

    splits: dict[str, CorpusSplit]
    budgets: dict[int, CorpusSplit]
    left_out: dict[str, tuple[int, int]]  # name -> (dropped by length, cut by the max_* limit)
    vocab: Vocab

    def dataset(self, split: str) -> Any:
        return to_dataset(self.splits[split], self.vocab)


def build_corpus(data: DataConfig, root: Path) -> Corpus:
    """Read, filter and cut every split and budget, and make the vocabulary; nothing is written."""
    if data.label_budget_files and not data.labeled:
        raise ConfigError("data.label_budget_files: set for an unlabeled corpus; expected data.labeled: true or no budgets")
    labels = data.labels if data.labeled else []
    limits = {"train": data.max_train, "valid": data.max_valid, "test": data.max_test}
    splits, left_out = {}, {}
    for name in SPLITS:
        kept, dropped = _read_split(data, root, name).filter_length(data.min_len, data.max_len)
        splits[name], truncated = kept.head(limits[name])
        _require_sentences(splits[name], data)
        left_out[name] = (dropped, truncated)
    budgets = {}
    for budget, rel in sorted(data.label_budget_files.items()):
        key = f"data.label_budget_files.{budget}"
        raw = read_corpus_file(corpus_file(data, rel, root, key), labels, data.on_malformed, key)
        budgets[budget], dropped = raw.filter_length(data.min_len, data.max_len)
        left_out[f"labeled_{budget}"] = (dropped, 0)
    return Corpus(splits, budgets, left_out, _vocabulary(data, root, splits["train"]))


def prepare_corpus(data: DataConfig, root: Path, folder: Path = PREPARED) -> Corpus:
    """build_corpus, then write it as a prepared folder (atomically, shortrun.data.prepared)."""
    corpus = build_corpus(data, root)
    write_prepared(folder, corpus.vocab, {name: corpus.dataset(name) for name in corpus.splits},
                   {budget: to_dataset(split, corpus.vocab) for budget, split in corpus.budgets.items()})
    return corpus


def corpus_metrics(corpus: Corpus, data: DataConfig, root: Path) -> dict:
    """Per split and budget statistics, the vocabulary size and the sha256 of every input file."""
    labels = data.labels if data.labeled else []
    everything = {**corpus.splits, **{f"labeled_{b}": s for b, s in corpus.budgets.items()}}
    return {
        "corpus": data.corpus,
        "vocab_size": len(corpus.vocab),
        "splits": {name: split_stats(split, corpus.vocab, labels, *corpus.left_out[name]) for name, split in everything.items()},
        "sha256": _sources(data, root),
    }


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
