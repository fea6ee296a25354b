"""Where each stage writes, relative to the workspace root; dvc.yaml names the same paths."""
from __future__ import annotations

from pathlib import Path

STAGES = ("prepare", "train", "export", "classify", "evaluate", "headline")  # dvc.yaml's stages, in DAG order
PREPARED = Path("data/prepared")
PREPARED_PARTS = ("vocab.txt", "train", "valid", "test", "labeled")  # each a DVC output of prepare
VOCAB = PREPARED / "vocab.txt"
MODELS = Path("models")
LATENTS = Path("latents")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")


def model_dir(kind: str) -> Path:
    """Checkpoint and model config of one trained model."""
    return MODELS / kind


def latents_dir(kind: str) -> Path:
    """Exported latents of one latent model, one Parquet file per split."""
    return LATENTS / kind
