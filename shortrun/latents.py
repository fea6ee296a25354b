"""Latent features of sentences, for downstream use, and their Parquet files.

SRI has no encoder: a sentence's feature is the mean end point of several short-run chains (the
posterior mean estimated by sampling, less noisy than one chain). The VAE's feature is its encoder mean.
Chains draw their randomness from one seeded torch.Generator and batches come in a fixed order, so
a fixed seed gives identical latents.

File format (one file per split): columns `id` (int64, the sentence id of the prepared split), `label`
(int64, -1 when unlabeled) and `z` (list<float32>, all of length latent_dim), rows sorted by id.
`pandas.read_parquet` reads it; `np.stack(df.z)` gives the [N, d] matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Dataset
from torch import nn
from tqdm import tqdm

from shortrun.config import LangevinConfig
from shortrun.data.batching import Batch, make_batches
from shortrun.errors import DataError, TrainingError
from shortrun.inference import MAX_NORM_PER_SQRT_DIM, short_run
from shortrun.model import VAE, Generator
from shortrun.numerics import NumericPath


@dataclass(frozen=True)
class LatentTable:
    """One latent vector per sentence: ids [N], labels [N] and z [N, d], in id order."""

    ids: np.ndarray
    labels: np.ndarray
    z: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def latents_problem(table: LatentTable) -> str | None:
    """Why no downstream step should use these latents, or None: rows with NaN/Inf, or with a runaway |z|.

    The bound is the chain's own (shortrun.inference.MAX_NORM_PER_SQRT_DIM * sqrt(d)): the prior N(0, I)
    has no mass there, so such values come only from a diverged chain or a broken model, never from data.
    """
    z = table.z.astype(np.float64)
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        return f"latents contain NaN/Inf ({int(bad.sum())} rows, first at sentence id {table.ids[bad][0]})"
    norms = np.linalg.norm(z, axis=1)
    bound = MAX_NORM_PER_SQRT_DIM * np.sqrt(z.shape[1])
    bad = norms > bound
    if bad.any():
        return (f"latents have run away ({int(bad.sum())} rows beyond |z| = {bound:.3g}, where the prior N(0, I) has "
                f"no mass; largest {norms.max():.3g}; first at sentence id {table.ids[bad][0]})")
    return None


def _sri_latents(generator: Generator, batch: Batch, langevin: LangevinConfig, chains: int, rng: torch.Generator) -> torch.Tensor:
    """Mean of `chains` independent short-run chains at the configured temperature."""
    ends = [short_run(generator, batch.tokens, langevin, langevin.temperature, rng=rng).z for _ in range(chains)]
    return torch.stack(ends).mean(dim=0)


def _batch_latents(model: nn.Module, batch: Batch, langevin: LangevinConfig, chains: int, rng: torch.Generator,
                   numerics: NumericPath) -> torch.Tensor:
    if isinstance(model, VAE):
        with torch.no_grad():
            return model.encode(batch.tokens, batch.lengths)[0]
    if isinstance(model, Generator):
        with numerics.autocast():
            return _sri_latents(model, batch, langevin, chains, rng)
    raise TypeError(f"{type(model).__name__} has no latent variable to export")


def encode_dataset(
    model: nn.Module,
    dataset: Dataset,
    langevin: LangevinConfig,
    chains: int,
    batch_size: int,
    seed: int,
    numerics: NumericPath,
    desc: str = "export",
) -> LatentTable:
    """Latents of every sentence of a prepared split (SRI: `chains` short-run chains averaged, in the
    numeric path's precision; VAE: mu)."""
    device = numerics.device
    model = model.to(device).eval()
    rng = torch.Generator(device=device).manual_seed(seed)
    batches = make_batches(dataset, batch_size, shuffle=False)
    if not batches:
        raise DataError(f"{desc}: no sentences to encode")
    ids, labels, zs = [], [], []
    for batch in tqdm(batches, desc=desc, unit="batch"):
        batch = batch.to(device)
        zs.append(_batch_latents(model, batch, langevin, chains, rng, numerics).float().cpu())
        ids.append(batch.ids.cpu())
        labels.append(batch.labels.cpu())
    order = torch.argsort(torch.cat(ids), stable=True)
    table = LatentTable(
        ids=torch.cat(ids)[order].numpy(), labels=torch.cat(labels)[order].numpy(), z=torch.cat(zs)[order].numpy()
    )
    problem = latents_problem(table)
    if problem:
        raise TrainingError(f"{desc}: {problem}")
    return table


def encode_splits(model: nn.Module, splits: dict[str, Dataset], **options: Any) -> dict[str, LatentTable]:
    """Latents of several splits, encoding each distinct sentence once.

    Labeled subsets repeat training sentences (short Yelp's train.N files are the training text), so
    encoding the union of distinct texts once saves most of the chains; a sentence gets one latent
    wherever it appears. `options` are `encode_dataset`'s (langevin, chains, batch_size, seed, numerics, desc).
    """
    distinct: dict[str, list[int]] = {}
    for dataset in splits.values():
        for text, token_ids in zip(dataset["text"], dataset["ids"]):
            distinct.setdefault(text, token_ids)
    union = Dataset.from_dict({"id": list(range(len(distinct))), "ids": list(distinct.values()), "label": [-1] * len(distinct)})
    latents = encode_dataset(model, union, **options).z
    row = {text: i for i, text in enumerate(distinct)}
    tables = {}
    for name, dataset in splits.items():
        columns = dataset[:]
        order = np.argsort(np.asarray(columns["id"]), kind="stable")
        rows = np.asarray([row[text] for text in columns["text"]], dtype=np.int64)[order]
        tables[name] = LatentTable(
            ids=np.asarray(columns["id"], dtype=np.int64)[order],
            labels=np.asarray(columns["label"], dtype=np.int64)[order],
            z=latents[rows],
        )
    return tables


def write_latents(table: LatentTable, path: str | Path) -> None:
    """Write a latent table as Parquet (the caller provides atomicity, e.g. shortrun.io.atomic_dir)."""
    n, dim = table.z.shape
    offsets = pa.array(np.arange(0, n * dim + 1, dim), pa.int32())
    z = pa.ListArray.from_arrays(offsets, pa.array(table.z.reshape(-1), pa.float32()))
    ids, labels = pa.array(table.ids, pa.int64()), pa.array(table.labels, pa.int64())
    pq.write_table(pa.table({"id": ids, "label": labels, "z": z}, metadata={"latent_dim": str(dim)}), path)


def read_latents(path: str | Path) -> LatentTable:
    """Read a latent table; a missing file, ragged or null vectors, or NaN/Inf are a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: latents not found; run the export stage first (dvc repro export)")
    try:
        arrow = pq.read_table(path, columns=["id", "label", "z"])
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a latents Parquet file with columns id, label, z ({err})") from None
    column = arrow.column("z").combine_chunks()
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    if column.null_count or len(set(lengths.tolist())) > 1:
        raise DataError(f"{path}: column z holds null vectors or vectors of different lengths")
    dim = int(lengths[0]) if len(lengths) else 0
    z = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(lengths), dim)
    table = LatentTable(ids=arrow.column("id").to_numpy(), labels=arrow.column("label").to_numpy(), z=z)
    problem = latents_problem(table)
    if problem:
        raise DataError(f"{path}: {problem}")
    return table
