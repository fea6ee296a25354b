"""Latent-space diagnostics give the known answer on synthetic latents and hand-made samples."""
from __future__ import annotations

import math

import pytest
import torch

from shortrun.config import ModelConfig
from shortrun.model import Generator
from shortrun.monitor import aggregate_posterior, distinct_ngrams, prior_health, sample_health

N, D = 40_000, 4


def normal(mean: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    return mean + std * torch.randn(N, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_samples_from_the_prior_are_at_distance_zero() -> None:
    metrics = aggregate_posterior(normal(torch.zeros(D), 1.0))
    assert metrics["agg_kl"] == pytest.approx(0.0, abs=2e-3)
    assert metrics["agg_sq_norm"] == pytest.approx(D, rel=0.02)


@pytest.mark.parametrize(("shift", "std"), [(0.0, 0.3), (1.5, 1.0), (-0.5, 2.0)])
def test_a_shifted_scaled_gaussian_gives_the_analytic_kl(shift: float, std: float) -> None:
    mean = torch.full((D,), shift, dtype=torch.float64)
    metrics = aggregate_posterior(normal(mean, std))
    analytic = 0.5 * (D * std**2 + D * shift**2 - D - 2 * D * math.log(std))
    assert metrics["agg_kl"] == pytest.approx(analytic, rel=0.02, abs=3e-3)
    assert metrics["agg_sq_norm"] == pytest.approx(D * (std**2 + shift**2), rel=0.02)


def test_per_sentence_gaussians_use_their_mixtures_moments() -> None:
    """Posteriors N(mu_x, 0.36 I) with mu_x ~ N(0, 0.64 I): their mixture has the prior's moments."""
    means = normal(torch.zeros(D), 0.8)
    metrics = aggregate_posterior(means, torch.full((N, D), 0.36, dtype=torch.float64))
    assert metrics["agg_kl"] == pytest.approx(0.0, abs=3e-3)
    assert metrics["agg_sq_norm"] == pytest.approx(D, rel=0.02)
    tight = aggregate_posterior(means)  # the means alone are too concentrated: KL of N(0, 0.64 I)
    assert tight["agg_kl"] == pytest.approx(0.5 * D * (0.64 - 1 - math.log(0.64)), rel=0.03)


def test_fewer_sentences_than_dimensions_give_nan_not_a_number_that_looks_valid() -> None:
    assert math.isnan(aggregate_posterior(torch.randn(3, D, generator=torch.Generator().manual_seed(0)))["agg_kl"])


def test_sample_health_counts_loops_and_repeats() -> None:
    rows = [[4, 5, 6], [4, 5, 6], [7, 7, 7, 7, 7], []]
    health = sample_health(rows, max_len=5)
    assert health["prior_at_max_len"] == 0.25
    assert health["prior_mean_len"] == 11 / 4
    assert health["prior_distinct_1"] == 4 / 11  # {4, 5, 6, 7} of 11 tokens
    assert health["prior_distinct_2"] == 3 / 8  # {(4,5), (5,6), (7,7)} of 2 + 2 + 4 bigrams
    assert distinct_ngrams([[1], []], 2) == 0.0
    with pytest.raises(ValueError, match="at least one sentence"):
        sample_health([], max_len=5)


def test_prior_health_of_a_generator_is_reproducible_and_in_range() -> None:
    torch.manual_seed(0)
    generator = Generator(20, ModelConfig(latent_dim=3, emb_dim=6, hidden_dim=8, encoder_hidden_dim=8)).eval()
    first = prior_health(generator, 16, 7, torch.Generator().manual_seed(1))
    assert first == prior_health(generator, 16, 7, torch.Generator().manual_seed(1))
    assert 0.0 <= first["prior_at_max_len"] <= 1.0 and 0.0 <= first["prior_mean_len"] <= 7
    assert 0.0 < first["prior_distinct_1"] <= 1.0
