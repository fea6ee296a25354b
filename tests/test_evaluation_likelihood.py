"""Likelihood estimates on small models: the LM's equals a direct computation, the VAE's and SRI (b)'s agree with brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from shortrun.checkpoint import TrainedModel
from shortrun.config import EvaluateConfig, LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES
from shortrun.data.vocab import PAD, Vocab
from shortrun.evaluation.importance import importance_sample, standard_normal_log_density
from shortrun.evaluation.likelihood import gaussian_importance, lm_log_likelihood, log_joint_fn
from shortrun.evaluation.posterior import encoder_gaussian
from shortrun.evaluation.suite import evaluate_model
from shortrun.model import build_model

V = 14
CFG = ModelConfig(latent_dim=2, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16)
VOCAB = Vocab(f"w{i}" for i in range(V - 4))


def dataset(n: int, seed: int = 0) -> Dataset:
    """Sentences of varied length, ids out of length order, so batching reorders them."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(4, V, size=rng.integers(1, 7)).tolist() for _ in range(n)]
    return Dataset.from_dict({"id": list(range(100, 100 + n)), "text": [f"s{i}" for i in range(n)], "ids": seqs,
                              "label": [-1] * n}, features=FEATURES)


def model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(kind, V, CFG)
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(6.0)  # stronger than the init range, so z matters
    return net.eval()


def direct_nll(lm: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Sum over non-padding targets of -log softmax, from the model's own forward."""
    with torch.no_grad():
        log_probs = lm(tokens)
    targets = tokens[:, 1:]
    picked = log_probs.gather(2, targets.unsqueeze(2)).squeeze(2)
    return -(picked * (targets != PAD)).sum(1)


def test_lm_evaluation_nll_equals_a_direct_computation() -> None:
    lm, data = model("lm"), dataset(23)
    batch = collate(data["ids"])
    est = lm_log_likelihood(lm, batch.tokens)
    direct = direct_nll(lm, batch.tokens).double()
    assert torch.allclose(-est.log_likelihood, direct, atol=1e-4) and (est.std_error == 0).all()
    cfg = EvaluateConfig(batch_size=5, num_prior_samples=2)
    result = evaluate_model(TrainedModel("lm", lm, VOCAB, CFG, LangevinConfig()), data, cfg, LangevinConfig(),
                            torch.device("cpu"), max_len=8)
    assert torch.allclose(-result.estimate.log_likelihood, direct, atol=1e-4)  # back in dataset order after bucketing
    tokens = sum(len(s) + 1 for s in data["ids"])
    assert result.metrics["nll"] == pytest.approx(float(direct.mean()), abs=1e-4)
    assert result.metrics["ppl"] == pytest.approx(math.exp(float(direct.sum()) / tokens), rel=1e-5)
    assert result.metrics["nll_se"] == 0.0 and result.metrics["sentences"] == 23
    assert len(result.samples.prior) == 2


def test_vae_encoder_proposal_agrees_with_brute_force_prior_sampling() -> None:
    vae, data = model("vae"), dataset(6, seed=1)
    batch = collate(data["ids"])
    fit = encoder_gaussian(vae, batch.tokens, batch.lengths)
    est = gaussian_importance(vae.generator, batch.tokens, *fit, samples=400, rng=torch.Generator().manual_seed(0))
    prior = torch.randn(20000, 6, CFG.latent_dim, generator=torch.Generator().manual_seed(1))
    truth = importance_sample(log_joint_fn(vae.generator, batch.tokens), prior, standard_normal_log_density(prior), chunk=4000)
    assert truth.std_error.max() < 0.05
    assert ((est.log_likelihood - truth.log_likelihood).abs() < 4 * est.std_error + 4 * truth.std_error + 0.05).all()


def test_latent_model_metrics_have_every_key_and_sri_reports_both_estimators() -> None:
    data = dataset(12)
    cfg = EvaluateConfig(batch_size=5, importance_samples=6, jacobian_sentences=3, jacobian_samples=2,
                         proposal_chains=3, k_values=[2, 4], k_sentences=5, num_prior_samples=2,
                         num_reconstructions=2, num_interpolations=1, interpolation_steps=4)
    langevin = LangevinConfig(steps=3)
    for kind in ("vae", "sri"):
        net = model(kind)
        result = evaluate_model(TrainedModel(kind, net, VOCAB, CFG, langevin), data, cfg, langevin, torch.device("cpu"), 8)
        m = result.metrics
        assert {"nll", "ppl", "nll_se", "recon", "kl", "mi", "au", "sentences", "seconds"} <= set(m)
        assert m["nll_se"] > 0 and m["kl"] > 0 and 0 <= m["au"] <= CFG.latent_dim
        assert result.au_variance.shape == (CFG.latent_dim,)
        assert len(result.samples.reconstructions) == 2 and len(result.samples.interpolations[0][2]) == 4
        if kind == "sri":
            cov = m["change_of_variables"]
            assert cov["sentences"] == 3 and cov["nll_se"] > 0 and m["laplace"]["nll"] == m["nll"]
            assert abs(cov["nll"] - cov["laplace_nll"]) < 2.0
            assert [row["k"] for row in result.nll_vs_k] == [2, 4] and result.nll_vs_k[0]["sentences"] == 5
        else:
            assert "change_of_variables" not in m and not result.nll_vs_k
