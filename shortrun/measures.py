"""The measures every part reports in the same units: perplexity, the Gaussian KL to the prior, active units.

Training, validation and evaluation all use these, so a number with the same name means the same thing
in each of them.
"""
from __future__ import annotations

import math

from torch import Tensor

AU_THRESHOLD = 0.01
"""A latent dimension is active when its posterior mean's variance across sentences exceeds this
(Burda et al.'s active units, as in the paper)."""
MAX_LOG_PPL = 700.0  # exp(700) is near float64's largest: an untrained model's perplexity stays finite


def perplexity(nll_sum: float, tokens: float) -> float:
    """exp(NLL per predicted token) for an NLL in nats summed over `tokens` predicted tokens (words and </s>)."""
    return math.exp(min(nll_sum / max(tokens, 1.0), MAX_LOG_PPL))


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per dimension, shaped like mu (sum over the last axis per sentence)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def active_units(posterior_means: Tensor, mean_noise: Tensor | None = None,
                 threshold: float = AU_THRESHOLD) -> tuple[int, Tensor]:
    """(number of active dimensions, per-dimension variance across sentences [d]) of posterior means [N, d].

    mean_noise [d]: the Monte-Carlo variance of each estimated mean, averaged over sentences (for a mean of M
    chain end points, mean_x sigma_x^2 / M). It is subtracted, because noisy estimates of the means vary
    across sentences even where the true posterior means do not; a deterministic estimate (the noise-free
    chain end of validation, the VAE's encoder mean) has none.
    """
    variance = posterior_means.double().var(dim=0, unbiased=True)
    if mean_noise is not None:
        variance = (variance - mean_noise.double()).clamp(min=0.0)
    return int((variance > threshold).sum()), variance
