"""Workspaces holding exactly what the registration step reads, made from constructed (untrained) models.

Building one takes well under a second, so registry tests can register many versions without training:
models/sri, data/prepared (vocabulary and validation split), dvc.lock's hash of models/sri,
metrics/train/sri.json and, for the classifier, classifiers/ and latents/sri/valid.parquet.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import torch
import yaml
from datasets import Dataset
from sklearn.linear_model import LogisticRegression

from shortrun.checkpoint import save_model_dir
from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES, write_prepared
from shortrun.data.vocab import Vocab
from shortrun.inference import short_run
from shortrun.io import write_json
from shortrun.latents import LatentTable, write_latents
from shortrun.model import Generator
from shortrun.paths import METRICS, PREPARED, latents_dir, model_dir

LATENT_DIM = 4
CHAIN = LangevinConfig(steps=20)
MODEL = ModelConfig(latent_dim=LATENT_DIM, emb_dim=8, hidden_dim=16, encoder_hidden_dim=8, dropout_emb=0.0, dropout_out=0.0)


def corpus(words: list[str], count: int, lengths: tuple[int, int], seed: int) -> list[str]:
    """`count` sentences of `words`, lengths drawn in [lo, hi], reproducibly."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=rng.integers(lengths[0], lengths[1] + 1))) for _ in range(count)]


def generator(vocab: Vocab, seed: int = 0, sharpness: float = 4.0) -> Generator:
    """An untrained generator whose weights are scaled by `sharpness`, so that its sentences depend on z."""
    torch.manual_seed(seed)
    model = Generator(len(vocab), MODEL).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(sharpness)
    return model


def widen_prior(model: Generator, factor: float) -> Generator:
    """The same decoder reading z * factor: in its own coordinates, a prior `factor` times wider.

    Inferred latents fit each sentence better (the prior pulls less), but p(x) spreads over more room:
    better reconstruction NLL, worse likelihood. The model a reconstruction gate would wrongly pick.
    """
    wide = copy.deepcopy(model)
    with torch.no_grad():
        wide.init_hidden.weight.mul_(factor)
        wide.lstm.weight_ih_l0[:, MODEL.emb_dim:].mul_(factor)
    return wide


def reconstruction_nll(model: Generator, vocab: Vocab, sentences: list[str]) -> float:
    """Training's validation number: mean NLL(x | z_K) at the end of one short-run chain per sentence."""
    batch = collate([vocab.encode(s.split()) for s in sentences])
    z = short_run(model, batch.tokens, CHAIN, rng=torch.Generator().manual_seed(0)).z
    with torch.no_grad():
        return float(model.sentence_nll(batch.tokens, z).mean())


def write_workspace(root: Path, model: Generator, vocab: Vocab, sentences: list[str]) -> None:
    """models/sri, data/prepared (vocabulary + validation split), its dvc.lock hash and the training metrics."""
    folder = root / model_dir("sri")
    save_model_dir(folder, "sri", model, vocab, MODEL, CHAIN)
    valid = Dataset.from_dict({"id": list(range(len(sentences))), "text": sentences,
                               "ids": [vocab.encode(s.split()) for s in sentences], "label": [-1] * len(sentences)},
                              features=FEATURES)
    write_prepared(root / PREPARED, vocab, {"valid": valid}, {})
    files = hashlib.md5(b"".join(p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()
    lock = {"schema": "2.0", "stages": {"train@sri": {"outs": [{"path": "models/sri", "md5": f"{files}.dir"}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    write_json(root / METRICS / "train" / "sri.json", {"valid_nll": reconstruction_nll(model, vocab, sentences)})


def write_classifier(root: Path, valid_accuracy: float, seed: int = 0) -> LogisticRegression:
    """classifiers/ as the classify stage leaves it (one SRI budget), and the latents it read."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(40, LATENT_DIM)).astype(np.float32)
    labels = (z[:, 0] > 0).astype(np.int64)
    model = LogisticRegression().fit(z, labels)
    (root / "classifiers" / "sri").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, root / "classifiers" / "sri" / "40.joblib")
    seeds = [{"c": 1.0, "valid_accuracy": valid_accuracy, "test_accuracy": valid_accuracy - 0.01}]
    write_json(root / "classifiers" / "summary.json",
               {"classifier": "logreg", "models": {"sri": {"40": {"file": "sri/40.joblib", "seeds": seeds}}}})
    (root / latents_dir("sri")).mkdir(parents=True, exist_ok=True)
    write_latents(LatentTable(np.arange(40), labels, z), root / latents_dir("sri") / "valid.parquet")
    return model


def metric_tag(tags: dict[str, str], name: str) -> float:
    return float(json.loads(tags[f"metrics.{name}"]))
