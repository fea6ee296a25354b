"""Likelihood estimates on small models: the LM's equals a direct computation, the VAE's agrees with brute force,
latent models report AIS with BDMC and every cheaper estimator's distance from it, and the suite runs the list it is given."""
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
from shortrun.evaluation.estimators import Estimator, Settings
from shortrun.evaluation.importance import Estimate, importance_sample, standard_normal_log_density
from shortrun.evaluation.likelihood import gaussian_importance, lm_log_likelihood, log_joint_fn
from shortrun.evaluation.posterior import encoder_gaussian
from shortrun.evaluation.suite import ESTIMATORS, evaluate_model
from shortrun.model import Generator, build_model

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


def test_latent_models_report_ais_with_its_bdmc_gap_and_every_cheaper_estimator_beside_it() -> None:
    data = dataset(12)
    cfg = EvaluateConfig(batch_size=5, importance_samples=6, jacobian_sentences=3, jacobian_samples=2,
                         proposal_chains=3, k_values=[2, 4], k_sentences=5, num_prior_samples=2,
                         num_reconstructions=2, num_interpolations=1, interpolation_steps=4,
                         ais_sentences=8, ais_steps=5, ais_chains=2, ais_leapfrog=1, bdmc_sentences=2)
    langevin = LangevinConfig(steps=3)
    for kind, cheaper in (("vae", {"iwae": 12}), ("sri", {"laplace": 12, "change_of_variables": 3})):
        net = model(kind)
        result = evaluate_model(TrainedModel(kind, net, VOCAB, CFG, langevin), data, cfg, langevin, torch.device("cpu"), 8)
        m = result.metrics
        assert {"nll", "ppl", "nll_se", "recon", "kl", "mi", "au", "sentences", "seconds"} <= set(m)
        assert m["nll_se"] > 0 and m["kl"] > 0 and 0 <= m["au"] <= CFG.latent_dim
        assert result.au_variance.shape == (CFG.latent_dim,)
        assert len(result.samples.reconstructions) == 2 and len(result.samples.interpolations[0][2]) == 4
        # the reported estimate: AIS on the first ais_sentences, with its step count and BDMC gap on top
        assert result.reported == "ais" and list(result.estimates) == ["ais", *cheaper]
        ais = m["ais"]
        assert (ais["sentences"], ais["steps"], ais["chains"], ais["leapfrog"]) == (8, 5, 2, 1)
        assert m["sentences"] == 8 and m["nll"] == ais["nll"] and m["ais_steps"] == 5
        assert ais["bdmc"]["sentences"] == 2 and m["bdmc_gap"] == ais["bdmc"]["gap"]
        assert ais["bdmc"]["forward_nll"] - ais["bdmc"]["reverse_nll"] == pytest.approx(m["bdmc_gap"])
        for name, count in cheaper.items():
            block = m[name]
            assert block["sentences"] == count and block["nll_se"] > 0 and block["seconds"] > 0
            shared = min(count, 8)
            distance = float((result.estimate.log_likelihood[:shared] - result.estimates[name].log_likelihood[:shared]).mean())
            assert block["nll_minus_ais"] == pytest.approx(distance) and abs(distance) < 3.0
        assert [row["k"] for row in result.nll_vs_k] == ([2, 4] if kind == "sri" else [])


def test_the_suite_runs_the_list_of_estimators_it_is_given() -> None:
    """A new estimator is one function of the one shape plus one list entry; the first one listed is reported."""

    def prior_sampling(net: torch.nn.Module, batch, settings: Settings) -> Estimate:
        z = torch.randn(200, len(batch), CFG.latent_dim, generator=settings.rng)
        return importance_sample(log_joint_fn(net, batch.tokens), z, standard_normal_log_density(z))

    estimators = [
        Estimator("prior", "importance sampling from the prior", prior_sampling, lambda net: isinstance(net, Generator),
                  sentences=lambda cfg: 5, describe=lambda cfg: {"samples": 200}),
        next(est for est in ESTIMATORS if est.name == "laplace"),
        next(est for est in ESTIMATORS if est.name == "exact"),  # does not apply to SRI: skipped
    ]
    data, langevin = dataset(9), LangevinConfig(steps=3)
    cfg = EvaluateConfig(batch_size=4, importance_samples=6, proposal_chains=2, k_values=[2], num_prior_samples=1)
    result = evaluate_model(TrainedModel("sri", model("sri"), VOCAB, CFG, langevin), data, cfg, langevin,
                            torch.device("cpu"), 8, estimators=estimators)
    m = result.metrics
    assert list(result.estimates) == ["prior", "laplace"] and "exact" not in m and "ais" not in m
    assert m["prior"]["samples"] == 200 and m["prior"]["sentences"] == 5 and m["sentences"] == 5
    assert m["nll"] == m["prior"]["nll"] and m["laplace"]["sentences"] == 9 and "nll_minus_prior" in m["laplace"]
    assert abs(m["laplace"]["nll_minus_prior"]) < 1.0  # two valid estimates of the same small model
    with pytest.raises(ValueError, match="no likelihood estimator in the list applies to the sri model"):
        evaluate_model(TrainedModel("sri", model("sri"), VOCAB, CFG, langevin), data, cfg, langevin,
                       torch.device("cpu"), 8, estimators=estimators[2:])
