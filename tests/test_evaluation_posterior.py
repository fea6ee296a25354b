"""KL, mutual information and active units on synthetic posteriors with known answers; the SRI Gaussian fit."""
from __future__ import annotations

import math

import pytest
import torch

from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.evaluation.posterior import chain_gaussian, mutual_information, reconstruction_nll
from shortrun.measures import active_units, gaussian_kl
from shortrun.model import Generator


def test_kl_is_zero_at_the_prior_and_matches_torch_elsewhere() -> None:
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3, 4))
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p), atol=1e-5)
    # a known value: mean 1 in one dimension, prior elsewhere -> KL = 1/2
    assert gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2)).sum().item() == pytest.approx(0.5)


def test_active_units_count_the_dimensions_whose_mean_varies() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.zeros(200, 6)
    mu[:, [0, 3, 4]] = torch.randn(200, 3, generator=gen)  # unit variance across sentences
    mu[:, 5] = 0.03 * torch.randn(200, generator=gen)  # variance ~0.001: below the 0.01 threshold
    count, variance = active_units(mu)
    assert count == 3
    assert variance.shape == (6,) and (variance[[0, 3, 4]] > 0.5).all() and variance[5] < 0.01


def test_active_units_discount_the_noise_of_estimated_means() -> None:
    gen = torch.Generator().manual_seed(0)
    num, chains = 400, 4
    true_mu = torch.zeros(num, 3)
    true_mu[:, 0] = torch.randn(num, generator=gen)  # only dimension 0 is active
    draws = true_mu + 0.5 * torch.randn(chains, num, 3, generator=gen)  # chain end points, posterior sd 0.5
    mu, var = draws.mean(0), draws.var(0)
    assert active_units(mu)[0] == 3  # the means of 4 draws vary by 0.25 / 4 = 0.06 > 0.01 everywhere
    count, variance = active_units(mu, mean_noise=var.mean(0) / chains)
    assert count == 1 and variance[1:].max() < 0.01 and variance[0] > 0.5


def test_mutual_information_is_zero_for_identical_posteriors_and_log_n_for_separated_ones() -> None:
    gen = torch.Generator().manual_seed(0)
    num, dim = 64, 4
    same = mutual_information(torch.ones(num, dim), torch.zeros(num, dim), gen)
    assert same == pytest.approx(0.0, abs=1e-6)
    far_apart = 100.0 * torch.arange(num, dtype=torch.float32).unsqueeze(1).expand(num, dim)
    separated = mutual_information(far_apart, torch.full((num, dim), -2.0), gen, chunk=10)
    assert separated == pytest.approx(math.log(num), abs=1e-4)  # z identifies x: I = H(x) = log N
    partial = mutual_information(torch.randn(num, dim, generator=gen), torch.zeros(num, dim), gen)
    assert 0.0 < partial < math.log(num)


def test_chain_gaussian_fits_the_end_points_of_independent_chains() -> None:
    torch.manual_seed(0)
    gen = Generator(10, ModelConfig(latent_dim=3, emb_dim=8, hidden_dim=16)).eval()
    toks = collate([[4, 5, 6], [7], [8, 9]]).tokens
    langevin = LangevinConfig(steps=4)
    mu, logvar = chain_gaussian(gen, toks, langevin, chains=50, rng=torch.Generator().manual_seed(1))
    assert mu.shape == logvar.shape == (3, 3)
    # with weak weights the chains barely move from N(0, I): the fit is near the prior, and spread out
    assert mu.abs().max() < 0.6 and (logvar.exp() > 0.3).all()
    with pytest.raises(ValueError, match="at least 2 chains"):
        chain_gaussian(gen, toks, langevin, chains=1)
    rec = reconstruction_nll(gen, toks, mu, logvar, torch.Generator().manual_seed(2))
    assert rec.shape == (3,) and (rec > 0).all()
