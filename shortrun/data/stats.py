"""Statistics of prepared splits (DVC metrics) and their sentence-length distribution (DVC plots)."""
from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from shortrun.data.corpus import CorpusSplit
from shortrun.data.vocab import SPECIALS, Vocab
from shortrun.io import atomic_file

UNK_TOKEN = SPECIALS[1]


def split_stats(split: CorpusSplit, vocab: Vocab, labels: Sequence[str], dropped_by_length: int, truncated: int) -> dict:
    """Sentences, tokens, OOV and <unk> rates, lengths, label balance and what was left out.

    oov_rate: share of tokens missing from the vocabulary; unk_rate: share that the models see as
    <unk> (the OOV tokens plus tokens that already were <unk> in the corpus).
    """
    lengths = [len(tokens) for tokens in split.tokens]
    total = sum(lengths)
    oov = sum(token not in vocab for tokens in split.tokens for token in tokens)
    unk = oov + sum(tokens.count(UNK_TOKEN) for tokens in split.tokens)
    stats = {
        "sentences": len(lengths),
        "tokens": total,
        "oov_rate": oov / total if total else 0.0,
        "unk_rate": unk / total if total else 0.0,
        "mean_length": total / len(lengths) if lengths else 0.0,
        "max_length": max(lengths, default=0),
        "skipped_malformed": split.malformed,
        "dropped_by_length": dropped_by_length,
        "truncated": truncated,
    }
    if labels:
        counts = Counter(split.labels)
        stats["labels"] = {
            name: {"count": counts[i], "share": counts[i] / len(lengths) if lengths else 0.0}
            for i, name in enumerate(labels)
        }
    return stats


def length_rows(splits: Mapping[str, CorpusSplit]) -> list[dict]:
    """Rows split, length, sentences: every length from 1 to the split's longest, zeros included."""
    rows = []
    for name, split in splits.items():
        counts = Counter(len(tokens) for tokens in split.tokens)
        rows += [{"split": name, "length": n, "sentences": counts[n]} for n in range(1, max(counts, default=0) + 1)]
    return rows


def write_length_csv(path: Path, rows: list[dict]) -> None:
    """The length distribution as a CSV that `dvc plots` reads (x: length, y: sentences)."""
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "length", "sentences"])
        writer.writeheader()
        writer.writerows(rows)


def plot_lengths(path: Path, rows: list[dict]) -> None:
    """Histogram of sentence lengths per split, as shares so splits of different sizes compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict.fromkeys(row["split"] for row in rows):
        mine = [row for row in rows if row["split"] == name]
        total = sum(row["sentences"] for row in mine) or 1
        ax.step([r["length"] for r in mine], [r["sentences"] / total for r in mine], where="mid", label=name)
    ax.set_xlabel("sentence length (tokens)")
    ax.set_ylabel("share of sentences")
    ax.set_title("Sentence lengths per split")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def sha256_file(path: Path) -> str:
    """Hex digest of a source file, recorded so a metrics file says exactly which corpus it describes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
