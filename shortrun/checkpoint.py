"""Checkpoints and self-contained model folders.

A model folder (models/<kind>/) holds checkpoint.pt (tensors and plain Python values only, so it is
read with `torch.load(weights_only=True)` and never runs code from the file), model_config.json
(kind, vocab_size, model and langevin config: the chain the model was trained with, including the step
sizes learned under langevin.learn_steps) and vocab.txt, so it can be used without the data. A trainer's
checkpoint also holds the step-size learner's state, so a resumed run continues learning them.
Files are written to a temporary sibling and renamed: a crash mid-write keeps the last good one.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.vocab import Vocab
from shortrun.errors import TrainingError
from shortrun.io import atomic_file, write_json
from shortrun.model import build_model

CHECKPOINT = "checkpoint.pt"
MODEL_CONFIG = "model_config.json"
VOCAB = "vocab.txt"


@dataclass
class TrainedModel:
    """A trained model in eval mode, with what it needs to be used."""

    kind: str
    model: nn.Module
    vocab: Vocab
    model_cfg: ModelConfig
    langevin: LangevinConfig


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors and plain values) atomically."""
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without running code from it; a missing, truncated or corrupt file is a TrainingError."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found; train the model first (shortrun stage train)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise TrainingError(f"{path}: checkpoint is truncated or corrupt ({reason}); retrain without --resume") from None
    if not isinstance(state, dict) or "model" not in state:
        raise TrainingError(f"{path}: not a shortrun checkpoint (expected a dict with model weights)")
    return state


def write_model_files(model_dir: str | Path, kind: str, vocab: Vocab, model_cfg: ModelConfig, langevin: LangevinConfig) -> None:
    """Write model_config.json and vocab.txt, the parts of a model folder besides the checkpoint."""
    model_dir = Path(model_dir)
    write_json(
        model_dir / MODEL_CONFIG,
        {"kind": kind, "vocab_size": len(vocab), "model": model_cfg.model_dump(), "langevin": langevin.model_dump()},
    )
    vocab.save(model_dir / VOCAB)


def save_model_dir(
    model_dir: str | Path, kind: str, model: nn.Module, vocab: Vocab, model_cfg: ModelConfig, langevin: LangevinConfig
) -> None:
    """A complete model folder holding only the weights (for models not made by the trainer)."""
    write_model_files(model_dir, kind, vocab, model_cfg, langevin)
    save_checkpoint(Path(model_dir) / CHECKPOINT, {"kind": kind, "model": model.state_dict()})


def load_trained(model_dir: str | Path, map_location: str | torch.device = "cpu") -> TrainedModel:
    """The model of a model folder, in eval mode on `map_location`."""
    model_dir = Path(model_dir)
    config_path = model_dir / MODEL_CONFIG
    if not config_path.is_file():
        raise TrainingError(f"{config_path}: model config not found; train the model first (shortrun stage train)")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        kind, vocab_size = meta["kind"], int(meta["vocab_size"])
        model_cfg, langevin = ModelConfig(**meta["model"]), LangevinConfig(**meta["langevin"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as err:
        raise TrainingError(f"{config_path}: malformed model config ({err.__class__.__name__}: {err})".splitlines()[0]) from None
    vocab = Vocab.load(model_dir / VOCAB)
    if len(vocab) != vocab_size:
        raise TrainingError(f"{model_dir / VOCAB}: {len(vocab)} tokens, but {MODEL_CONFIG} says vocab_size {vocab_size}")
    state = load_checkpoint(model_dir / CHECKPOINT, map_location)
    model = build_model(kind, vocab_size, model_cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise TrainingError(f"{model_dir / CHECKPOINT}: weights do not fit {MODEL_CONFIG} ({str(err).splitlines()[0]})") from None
    return TrainedModel(kind=kind, model=model.to(map_location).eval(), vocab=vocab, model_cfg=model_cfg, langevin=langevin)
