"""Length-bucketed batching: padding, lengths, coverage, determinism and small per-batch length spread."""
import random

import pytest
import torch
from datasets import Dataset

from shortrun.data.batching import bucket_indices, collate, make_batches
from shortrun.data.prepared import FEATURES
from shortrun.data.vocab import BOS, EOS, PAD


def make_dataset(n=203, seed=0) -> Dataset:
    rng = random.Random(seed)
    seqs = [[rng.randrange(4, 50) for _ in range(rng.randint(1, 30))] for _ in range(n)]
    return Dataset.from_dict(
        {"id": list(range(n)), "text": ["x"] * n, "ids": seqs, "label": [i % 2 for i in range(n)]}, features=FEATURES
    )


def test_collate_pads_and_marks_sentence_boundaries():
    batch = collate([[5, 6, 7], [8]], ids=[10, 11], labels=[1, 0])
    assert batch.tokens.tolist() == [[BOS, 5, 6, 7, EOS], [BOS, 8, EOS, PAD, PAD]]
    assert batch.tokens.dtype == torch.long
    assert batch.lengths.tolist() == [4, 2]
    assert batch.ids.tolist() == [10, 11] and batch.labels.tolist() == [1, 0]
    assert len(batch) == 2


def test_collate_defaults_ids_to_positions_and_labels_to_minus_one():
    batch = collate([[4], [5, 6]])
    assert batch.ids.tolist() == [0, 1] and batch.labels.tolist() == [-1, -1]


def test_batch_to_device_keeps_values():
    batch = collate([[4, 5]]).to("cpu")
    assert batch.tokens.device.type == "cpu" and batch.tokens.tolist() == [[BOS, 4, 5, EOS]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sentence_appears_exactly_once_with_correct_content(shuffle):
    dataset = make_dataset()
    batches = make_batches(dataset, batch_size=16, shuffle=shuffle, seed=3)
    seen = torch.cat([b.ids for b in batches]).tolist()
    assert sorted(seen) == list(range(len(dataset)))
    for batch in batches:
        assert len(batch) <= 16
        for row, sentence_id in enumerate(batch.ids.tolist()):
            ids = dataset[sentence_id]["ids"]
            assert batch.lengths[row] == len(ids) + 1
            assert batch.tokens[row, 1 : len(ids) + 1].tolist() == ids
            assert batch.tokens[row, len(ids) + 1] == EOS
            assert (batch.tokens[row, len(ids) + 2 :] == PAD).all()
            assert batch.labels[row] == sentence_id % 2
        assert batch.tokens.shape[1] == int(batch.lengths.max()) + 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_buckets_keep_lengths_within_a_batch_close(shuffle):
    dataset = make_dataset(n=600)
    batches = make_batches(dataset, batch_size=32, shuffle=shuffle, seed=1)
    spreads = [int(b.lengths.max() - b.lengths.min()) for b in batches]
    # 600 sentences over 30 lengths: sorted buckets of 32 span at most a couple of lengths,
    # whereas random batches would span nearly all 30.
    assert max(spreads) <= 3


def test_shuffle_is_deterministic_per_seed_and_changes_with_seed():
    lengths = [n % 5 + 1 for n in range(100)]
    first = bucket_indices(lengths, 8, shuffle=True, seed=7)
    assert first == bucket_indices(lengths, 8, shuffle=True, seed=7)
    assert first != bucket_indices(lengths, 8, shuffle=True, seed=8)


def test_without_shuffle_batches_are_sorted_by_length():
    lengths = [3, 1, 2, 1, 3, 2]
    assert bucket_indices(lengths, 2, shuffle=False) == [[1, 3], [2, 5], [0, 4]]
    assert bucket_indices(lengths, 2, shuffle=False, seed=9) == bucket_indices(lengths, 2, shuffle=False)
