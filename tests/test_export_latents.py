"""Latent export: shapes, ids and labels, determinism, the SRI chain average, the VAE encoder mean, Parquet I/O."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset

from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES
from shortrun.errors import DataError
from shortrun.inference import short_run
from shortrun.latents import LatentTable, encode_dataset, encode_splits, read_latents, write_latents
from shortrun.model import build_model
from shortrun.numerics import FLOAT32_CPU

VOCAB_SIZE = 20
MODEL_CFG = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16)
LANGEVIN = LangevinConfig(steps=3, temperature=0.5)


def tiny_dataset(n: int, seed: int = 0) -> Dataset:
    """Sentences of varied length whose ids are neither contiguous nor in length order."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, VOCAB_SIZE, size=rng.integers(1, 8)).tolist() for _ in range(n)]
    return Dataset.from_dict(
        {"id": (np.arange(n) * 3 + 7)[::-1].tolist(), "text": ["x"] * n, "ids": seqs, "label": rng.integers(0, 2, n).tolist()},
        features=FEATURES,
    )


def tiny_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(kind, VOCAB_SIZE, MODEL_CFG)


def encode(kind: str, dataset: Dataset, seed: int = 0, chains: int = 2, batch_size: int = 8) -> LatentTable:
    return encode_dataset(tiny_model(kind), dataset, LANGEVIN, chains, batch_size, seed, FLOAT32_CPU)


@pytest.mark.parametrize("kind", ["sri", "vae"])
def test_one_latent_per_sentence_in_id_order(kind: str) -> None:
    dataset = tiny_dataset(21)
    table = encode(kind, dataset)
    assert table.z.shape == (21, MODEL_CFG.latent_dim)
    assert table.z.dtype == np.float32
    by_id = dict(zip(dataset["id"], dataset["label"]))
    np.testing.assert_array_equal(table.ids, sorted(by_id))
    np.testing.assert_array_equal(table.labels, [by_id[i] for i in table.ids])
    assert np.isfinite(table.z).all()


def test_same_seed_same_latents_other_seed_other_latents() -> None:
    dataset = tiny_dataset(21)
    first, again, other = encode("sri", dataset, seed=3), encode("sri", dataset, seed=3), encode("sri", dataset, seed=4)
    np.testing.assert_array_equal(first.z, again.z)
    assert np.abs(first.z - other.z).max() > 1e-3


def test_sri_latent_is_the_mean_of_the_chains() -> None:
    seqs = [[4 + i, 5, 6 + i] for i in range(6)]  # equal lengths: the export's one batch keeps this order
    dataset = Dataset.from_dict({"id": list(range(6)), "text": ["x"] * 6, "ids": seqs, "label": [0, 1] * 3}, features=FEATURES)
    table = encode("sri", dataset, seed=5, chains=3, batch_size=6)
    rng = torch.Generator().manual_seed(5)
    tokens, model = collate(seqs).tokens, tiny_model("sri")
    chains = [short_run(model, tokens, LANGEVIN, LANGEVIN.temperature, rng=rng).z for _ in range(3)]
    expected = torch.stack(chains).mean(0).numpy()
    np.testing.assert_allclose(table.z, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(chains[0].numpy() - expected).max() > 1e-4  # the average is not just one chain


def test_vae_latent_is_the_encoder_mean() -> None:
    dataset = tiny_dataset(9)
    table = encode("vae", dataset, batch_size=4)
    model = tiny_model("vae").eval()
    batch = collate(dataset["ids"], dataset["id"], dataset["label"])
    with torch.no_grad():
        mu = model.encode(batch.tokens, batch.lengths)[0].numpy()
    np.testing.assert_allclose(table.z[np.searchsorted(table.ids, dataset["id"])], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(encode("vae", dataset, seed=1, batch_size=4).z, table.z)  # no randomness


def test_parquet_round_trip_and_pandas(tmp_path) -> None:
    table = encode("vae", tiny_dataset(10))
    path = tmp_path / "test.parquet"
    write_latents(table, path)
    back = read_latents(path)
    np.testing.assert_array_equal(back.z, table.z)
    np.testing.assert_array_equal(back.ids, table.ids)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["id", "label", "z"]
    assert np.stack(frame["z"]).shape == (10, MODEL_CFG.latent_dim)


def test_latents_with_nan_name_the_file(tmp_path) -> None:
    z = np.zeros((3, 2), dtype=np.float32)
    z[1, 0] = np.nan
    path = tmp_path / "valid.parquet"
    write_latents(LatentTable(np.array([0, 1, 2]), np.array([0, 1, 0]), z), path)
    with pytest.raises(DataError, match=rf"^{path}: latents contain NaN/Inf \(1 rows, first at sentence id 1\)$"):
        read_latents(path)


def test_missing_latents_name_the_file(tmp_path) -> None:
    with pytest.raises(DataError, match="train.parquet: latents not found"):
        read_latents(tmp_path / "train.parquet")


def test_encode_splits_gives_a_repeated_sentence_one_latent_in_every_split() -> None:
    base = tiny_dataset(12)
    texts = [f"sentence {i}" for i in range(12)]
    train = Dataset.from_dict({**base[:], "text": texts}, features=FEATURES)
    subset = train.select(range(5))  # a labeled subset repeating training sentences, as on short Yelp
    tables = encode_splits(
        tiny_model("sri"), {"train": train, "labeled_5": subset},
        langevin=LANGEVIN, chains=2, batch_size=4, seed=0, numerics=FLOAT32_CPU,
    )
    assert tables["train"].z.shape == (12, MODEL_CFG.latent_dim)
    np.testing.assert_array_equal(tables["labeled_5"].ids, sorted(subset["id"]))
    train_rows = {int(i): z for i, z in zip(tables["train"].ids, tables["train"].z)}
    for sentence_id, z in zip(tables["labeled_5"].ids, tables["labeled_5"].z):
        np.testing.assert_array_equal(z, train_rows[int(sentence_id)])
    assert len({tuple(z) for z in tables["train"].z}) == 12
