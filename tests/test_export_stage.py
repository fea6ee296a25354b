"""The export stage in a scratch workspace: prepared data + randomly initialised model folders -> latents/<kind>/."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset

from shortrun.checkpoint import save_model_dir
from shortrun.config import ModelConfig
from shortrun.data.prepared import FEATURES, write_prepared
from shortrun.data.vocab import Vocab
from shortrun.errors import ConfigError
from shortrun.model import build_model
from shortrun.params import build_config
from tasks import export

MODEL_CFG = {"latent_dim": 4, "emb_dim": 8, "hidden_dim": 16, "encoder_hidden_dim": 16}
SIZES = {"train": 24, "valid": 10, "test": 12}
BUDGETS = (6, 12)


def split(n: int, first_id: int, seed: int, labeled: bool = True) -> Dataset:
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, 20, size=rng.integers(1, 8)).tolist() for _ in range(n)]
    ids = list(range(first_id, first_id + n))
    labels = rng.integers(0, 2, n).tolist() if labeled else [-1] * n
    return Dataset.from_dict({"id": ids, "text": ["x"] * n, "ids": seqs, "label": labels}, features=FEATURES)


def make_workspace(labeled: bool) -> None:
    """Prepared data (with labeled subsets when `labeled`) and randomly initialised sri/vae model folders."""
    vocab = Vocab(f"w{i}" for i in range(16))
    splits = {name: split(n, 0, seed, labeled) for seed, (name, n) in enumerate(SIZES.items())}
    budgets = {b: split(b, 0, 10 + b) for b in BUDGETS} if labeled else {}
    write_prepared(Path("data/prepared"), vocab, splits, budgets)
    cfg = build_config("tiny", {"model": MODEL_CFG})
    for kind in ("sri", "vae"):
        torch.manual_seed(0)
        model = build_model(kind, len(vocab), cfg.model)
        save_model_dir(Path("models") / kind, kind, model, vocab, ModelConfig(**MODEL_CFG), cfg.langevin)


@pytest.fixture
def workspace(stage_workspace: Path) -> Path:
    return stage_workspace


def run_export(kind: str, **export_cfg) -> dict[str, pd.DataFrame]:
    cfg = build_config("tiny", {"model": MODEL_CFG, "langevin": {"steps": 3}, "export": {"batch_size": 5, **export_cfg}})
    export.run(cfg, kind)
    return {p.stem: pd.read_parquet(p) for p in sorted(Path("latents", kind).glob("*.parquet"))}


def test_export_writes_every_split_and_budget_deterministically(workspace: Path) -> None:
    make_workspace(labeled=True)
    frames = run_export("sri", chains=2, seed=1)
    assert set(frames) == {"train", "valid", "test", "labeled_6", "labeled_12"}
    for name, frame in frames.items():
        n = SIZES.get(name) or int(name.split("_")[1])
        assert list(frame.columns) == ["id", "label", "z"]
        assert frame["id"].tolist() == list(range(n))
        assert np.stack(frame["z"]).shape == (n, MODEL_CFG["latent_dim"])
    prepared = split(SIZES["valid"], 0, 1)
    assert frames["valid"]["label"].tolist() == prepared["label"]
    again = run_export("sri", chains=2, seed=1)
    other = run_export("sri", chains=2, seed=2)
    np.testing.assert_array_equal(np.stack(again["test"]["z"]), np.stack(frames["test"]["z"]))
    assert not np.array_equal(np.stack(other["test"]["z"]), np.stack(frames["test"]["z"]))


def test_export_of_an_unlabeled_corpus_and_no_latent_for_lm(workspace: Path) -> None:
    make_workspace(labeled=False)
    frames = run_export("vae")
    assert set(frames) == {"train", "valid", "test"}
    assert np.stack(frames["train"]["z"]).shape == (SIZES["train"], MODEL_CFG["latent_dim"])
    assert set(frames["train"]["label"]) == {-1}
    with pytest.raises(ConfigError, match="export --model lm: that model has no latent variable"):
        run_export("lm")


def test_export_runs_its_own_chain_when_export_langevin_is_set(workspace: Path) -> None:
    make_workspace(labeled=False)
    default = np.stack(run_export("sri")["test"]["z"])
    same_chain = np.stack(run_export("sri", langevin={"steps": 3})["test"]["z"])
    longer = np.stack(run_export("sri", langevin={"steps": 6, "noise": False})["test"]["z"])
    np.testing.assert_array_equal(same_chain, default)
    assert not np.allclose(longer, default)
