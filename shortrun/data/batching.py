"""Mini-batches of prepared sentences, bucketed by length so little compute is spent on padding."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
from datasets import Dataset

from shortrun.data.corpus import NO_LABEL
from shortrun.data.vocab import BOS, EOS, PAD


@dataclass
class Batch:
    """tokens: <s> ids </s> right-padded with <pad> [B, T]; lengths: predicted tokens per sentence
    (len(ids) + 1, i.e. the words and </s>) [B]; ids: source line ids [B]; labels: label ids or -1 [B]."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    ids: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on `device`."""
        return Batch(self.tokens.to(device), self.lengths.to(device), self.ids.to(device), self.labels.to(device))


def collate(seqs: Sequence[Sequence[int]], ids: Sequence[int] | None = None, labels: Sequence[int] | None = None) -> Batch:
    """Pad token-id sequences into a Batch; ids default to positions 0..B-1, labels to -1."""
    if not seqs:
        raise ValueError("collate needs at least one sequence")
    width = max(len(s) for s in seqs) + 2
    tokens = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        tokens[row, 0] = BOS
        tokens[row, 1 : len(seq) + 1] = torch.as_tensor(list(seq), dtype=torch.long)
        tokens[row, len(seq) + 1] = EOS
    return Batch(
        tokens=tokens,
        lengths=torch.tensor([len(s) + 1 for s in seqs], dtype=torch.long),
        ids=torch.tensor(list(range(len(seqs))) if ids is None else list(ids), dtype=torch.long),
        labels=torch.tensor([NO_LABEL] * len(seqs) if labels is None else list(labels), dtype=torch.long),
    )


def bucket_indices(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Row indices per batch: rows sorted by length, cut into batches of `batch_size`.

    With `shuffle`, rows of equal length are visited in a seeded random order and the batch order
    is shuffled too; without it the result depends on the lengths only. Every row is used once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lengths.__getitem__)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def make_batches(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> list[Batch]:
    """All sentences of a prepared split as length-bucketed Batches (see `bucket_indices`)."""
    columns = dataset[:]
    seqs, ids, labels = columns["ids"], columns["id"], columns["label"]
    return [
        collate([seqs[i] for i in rows], [ids[i] for i in rows], [labels[i] for i in rows])
        for rows in bucket_indices([len(s) for s in seqs], batch_size, shuffle, seed)
    ]
