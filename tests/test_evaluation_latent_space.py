"""The evaluation report shows each latent model's aggregate posterior against the prior and its prior samples' health."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from shortrun.checkpoint import TrainedModel
from shortrun.config import EvaluateConfig, LangevinConfig, ModelConfig
from shortrun.data.prepared import FEATURES
from shortrun.data.vocab import Vocab
from shortrun.evaluation.report import comparison_table
from shortrun.evaluation.samples import is_loop, loop_share
from shortrun.evaluation.suite import evaluate_model
from shortrun.model import build_model

MODEL = ModelConfig(latent_dim=3, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16)
LANGEVIN = LangevinConfig(steps=3)
VOCAB = Vocab(f"w{i}" for i in range(16))
EVALUATE = EvaluateConfig(num_sentences=12, importance_samples=4, jacobian_sentences=2, jacobian_samples=2,
                          proposal_chains=2, k_values=[2], k_sentences=4, batch_size=4, health_samples=30,
                          ais_steps=3, ais_chains=2, bdmc_sentences=2)
MAX_LEN = 6


def sentences() -> Dataset:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(4, 20, size=rng.integers(1, 6)).tolist() for _ in range(12)]
    texts = [" ".join(VOCAB.decode(s)) for s in seqs]
    return Dataset.from_dict({"id": list(range(12)), "text": texts, "ids": seqs, "label": [-1] * 12}, features=FEATURES)


@pytest.fixture(scope="module")
def evaluations() -> list:
    results = []
    for kind in ("sri", "vae", "lm"):
        torch.manual_seed(0)
        model = build_model(kind, len(VOCAB), MODEL).eval()
        trained = TrainedModel(kind, model, VOCAB, MODEL, LANGEVIN)
        results.append(evaluate_model(trained, sentences(), EVALUATE, LANGEVIN, torch.device("cpu"), MAX_LEN))
    return results


def test_latent_models_report_the_prior_distance_and_sample_health(evaluations: list) -> None:
    sri, vae, lm = evaluations
    for ev in (sri, vae):
        assert ev.metrics["agg_kl"] >= 0 and ev.metrics["agg_sq_norm"] > 0
        assert 0 <= ev.metrics["prior_at_max_len"] <= 1 and 0 <= ev.metrics["prior_mean_len"] <= MAX_LEN
        assert 0 < ev.metrics["prior_distinct_2"] <= 1
    assert not any(key.startswith(("agg_", "prior_")) for key in lm.metrics)
    table = comparison_table(evaluations)
    section = table[table.index("## The latent space against the prior"):]
    rows = [line for line in section.splitlines() if line.startswith("| sri ") or line.startswith("| vae ")]
    assert len(rows) == 2 and "| lm " not in section
    assert f"| {sri.metrics['agg_sq_norm']:.2f} | {sri.metrics['agg_kl']:.2f} |" in rows[0]


def test_a_prior_sample_is_a_loop_only_when_it_runs_to_the_limit_repeating_itself() -> None:
    limit = 8
    assert is_loop("the the food the food the food the", limit)  # no end, two words over its second half
    assert not is_loop("the food was great", limit)  # ended before the limit
    assert not is_loop("the food was great and the staff friendly", limit)  # at the limit, but varied
    assert not is_loop("good good", limit)  # repeats, yet it ended
    assert loop_share(["a b a b a b a b", "a b c", "x y x y x y x y", "the food was great"], limit) == 0.5
    assert loop_share([], limit) == 0.0
