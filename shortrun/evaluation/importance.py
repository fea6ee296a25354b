"""Importance sampling, independent of any model.

An importance-sampling estimate of p(x) averages the weights w_s = p(x, z_s) / q(z_s) over samples
z_s ~ q. We work in log space: log p(x) ~ logsumexp_s log w_s - log S. This is an unbiased estimate
of p(x) (and, by Jensen, a stochastic lower bound of log p(x)) for any proposal q whose support
covers the posterior's.

The Monte-Carlo standard error of the log estimate comes from the delta method:
SE[log p_hat] ~ SE[p_hat] / p_hat = sd(w) / (sqrt(S) * mean(w)), computed on weights rescaled by
their maximum so nothing overflows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Estimate:
    """Per-sentence log-likelihood estimates (nats) and their Monte-Carlo standard errors, both [B]."""

    log_likelihood: Tensor
    std_error: Tensor

    @staticmethod
    def cat(parts: list["Estimate"]) -> "Estimate":
        """Join estimates of consecutive batches."""
        return Estimate(
            torch.cat([p.log_likelihood for p in parts]), torch.cat([p.std_error for p in parts])
        )

    @staticmethod
    def exact(log_likelihood: Tensor) -> "Estimate":
        """An exact value: its standard error is zero."""
        return Estimate(log_likelihood, torch.zeros_like(log_likelihood))


def estimate_from_log_weights(log_weights: Tensor) -> Estimate:
    """Estimate log p(x) per column of `log_weights` [S, B] (S >= 2 samples per sentence)."""
    num = log_weights.shape[0]
    if num < 2:
        raise ValueError(f"importance sampling needs at least 2 samples for a standard error, got {num}")
    log_weights = log_weights.double()
    top = log_weights.max(dim=0).values
    scaled = torch.exp(log_weights - top)  # in (0, 1], the largest is exactly 1
    mean = scaled.mean(dim=0)
    std = scaled.std(dim=0, unbiased=True)
    log_likelihood = top + torch.log(mean)
    return Estimate(log_likelihood, std / (math.sqrt(num) * mean))


def importance_sample(log_joint: Callable[[Tensor], Tensor], samples: Tensor, log_proposal: Tensor,
                      chunk: int | None = None) -> Estimate:
    """Importance-sampling estimate of log p(x) per sentence.

    log_joint: maps latents [s, B, d] to log p(x_b, z) [s, B] for the B sentences;
    samples: [S, B, d] draws from the proposal; log_proposal: [S, B] their log-densities under it;
    chunk: evaluate at most this many samples per call of `log_joint` (bounds memory).
    """
    step = chunk or samples.shape[0]
    log_p = torch.cat([log_joint(samples[i:i + step]) for i in range(0, samples.shape[0], step)])
    return estimate_from_log_weights(log_p - log_proposal)


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=-1)


def diagonal_normal_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)
