"""Posterior health, computed the same way for every latent model.

Each sentence x gets a diagonal Gaussian posterior approximation q(z|x) = N(mu_x, diag(exp(logvar_x))):
- VAE: the encoder's output;
- SRI: a Gaussian fitted to the end points of M independent short-run chains for x (their mean and
  per-dimension variance), i.e. the short-run posterior summarised by its first two moments.
Every metric below then uses only (mu, logvar) (and the decoder for the reconstruction term), so SRI
and VAE numbers mean the same thing:
- reconstruction NLL: E_{q(z|x)}[-log p(x|z)], one sample of z per sentence;
- KL: KL(q(z|x) || N(0, I)) in closed form, averaged over sentences;
- mutual information I(x; z) under the joint q(z|x) p_data(x) (as in He et al., 2019):
  E_{x, z~q(z|x)}[log q(z|x) - log q(z)], with the aggregate posterior q(z) = mean_x' q(z|x') over
  the evaluated sentences themselves (so it is at most log N);
- active units: dimensions whose posterior mean varies across sentences, Var_x(mu_x[i]) > 0.01 (for SRI,
  whose mu_x is a mean of M chain end points, less the Monte-Carlo part of that variance,
  mean_x sigma_x[i]^2 / M).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from shortrun.config import LangevinConfig
from shortrun.evaluation.importance import diagonal_normal_log_density
from shortrun.inference import short_run
from shortrun.model import VAE, Generator

MIN_LOGVAR = math.log(1e-6)  # keeps the fit of nearly identical chain end points a proper density


def chain_gaussian(generator: Generator, tokens: Tensor, langevin: LangevinConfig, chains: int,
                   rng: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(mu, logvar) [B, d]: a Gaussian fitted to `chains` (>= 2) short-run end points per sentence."""
    if chains < 2:
        raise ValueError(f"fitting a variance needs at least 2 chains per sentence, got {chains}")
    batch = tokens.size(0)
    ends = short_run(generator, tokens.repeat(chains, 1), langevin, rng=rng).z
    ends = ends.reshape(chains, batch, -1)
    return ends.mean(dim=0), ends.var(dim=0, unbiased=True).log().clamp(min=MIN_LOGVAR)


@torch.no_grad()
def encoder_gaussian(vae: VAE, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """(mu, logvar) [B, d] of the VAE's encoder."""
    return vae.encode(tokens, lengths)


@torch.no_grad()
def reconstruction_nll(generator: Generator, tokens: Tensor, mu: Tensor, logvar: Tensor,
                       rng: torch.Generator | None = None) -> Tensor:
    """-log p(x|z) [B] at one sample z ~ q(z|x) per sentence."""
    eps = torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
    return generator.sentence_nll(tokens, mu + torch.exp(0.5 * logvar) * eps)


def mutual_information(mu: Tensor, logvar: Tensor, rng: torch.Generator | None = None, chunk: int = 1024) -> float:
    """I(x; z) in nats for the N posteriors given by (mu, logvar) [N, d], one z_i ~ q(z|x_i) per sentence.

    I = mean_i [log q(z_i|x_i) - log q(z_i)] with the aggregate log q(z) = logsumexp_j log q(z|x_j) - log N;
    using the same z_i in both terms makes identical posteriors give exactly 0 and perfectly separated
    ones exactly log N. Computed in chunks of z so memory stays O(chunk * N * d).
    """
    num = mu.shape[0]
    eps = torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_conditional = diagonal_normal_log_density(z, mu, logvar)
    log_aggregate = torch.cat([
        torch.logsumexp(diagonal_normal_log_density(z[i:i + chunk, None], mu[None], logvar[None]), dim=1)
        for i in range(0, num, chunk)
    ]) - math.log(num)
    return float((log_conditional - log_aggregate).mean())

