"""Per-sentence log-likelihood estimates log p(x) (nats) with Monte-Carlo standard errors.

- LM: exact, -sentence_nll.
- VAE: importance sampling with the encoder's q(z|x) as proposal (the IWAE bound's estimate).
- SRI (a), `change_of_variables`: the paper's estimator. The proposal is the short-run chain itself:
  with the chain's noise held fixed, z_K = f(z_0) is a deterministic map of z_0 ~ N(0, I), so
  log q(z_K) = log N(z_0; 0, I) - log |det dz_K/dz_0| (`jacobian.batched_log_det`). Exact for the
  chain, but each sample costs a d-fold batched backward pass through all K steps, and the chain's
  end points (T < 1, few steps) are narrower than the posterior, so few samples give a loose bound.
- SRI (b), `laplace`: a Laplace approximation centred on the short-run posterior mean. The mean of M
  short-run end points (`posterior.chain_gaussian`) is the centre; the covariance is the inverse of the
  posterior's curvature there, I + Hessian_z NLL(x|z), from one batched Hessian (d cotangents through a
  single decoder pass, not K). Precision eigenvalues are floored at 1 (the prior's), so no direction is
  wider than the prior, and the result is widened by `LAPLACE_WIDTH`. Any full-support proposal gives an
  unbiased estimate of p(x); the chains and the curvature only make it a good one.
All of them go through `importance.importance_sample`, which needs only log p(x, z) and the proposal.
Each has an entry point of the suite's one estimator shape, (model, batch, settings) -> Estimate
(`estimators.Estimator`): `exact`, `encoder_proposal`, `laplace_at_chain_mean`, `chain_proposal`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from shortrun.config import LangevinConfig
from shortrun.data.batching import Batch
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.importance import (
    Estimate,
    diagonal_normal_log_density,
    importance_sample,
    standard_normal_log_density,
)
from shortrun.evaluation.jacobian import LogDet, batched_jacobian, batched_log_det, double_backward_ready
from shortrun.evaluation.posterior import chain_gaussian, encoder_gaussian
from shortrun.inference import short_run
from shortrun.model import VAE, Generator, LanguageModel

DECODER_ROWS = 512
"""Sentence x sample rows per decoder pass of importance sampling (bounds the [rows, T, V] logits)."""

LAPLACE_WIDTH = 1.15
"""SRI (b): standard deviations of the Laplace proposal are multiplied by this: the centre is a chain
average, not the exact mode, and a slightly too wide proposal costs far less than a too narrow one."""
MIN_PRECISION = 1.0
"""SRI (b): floor for the eigenvalues of I + Hessian (the centre need not be a mode, so the Hessian
may have negative eigenvalues there); 1 is the prior's precision."""


def log_joint_fn(generator: Generator, tokens: Tensor) -> Callable[[Tensor], Tensor]:
    """z [s, B, d] -> log p(x_b, z) = -NLL(x_b | z) + log N(z; 0, I), shape [s, B]."""

    @torch.no_grad()
    def log_joint(z: Tensor) -> Tensor:
        num, batch, dim = z.shape
        nll = generator.sentence_nll(tokens.repeat(num, 1), z.reshape(num * batch, dim)).reshape(num, batch)
        return standard_normal_log_density(z) - nll

    return log_joint


@torch.no_grad()
def lm_log_likelihood(lm: LanguageModel, tokens: Tensor) -> Estimate:
    """The LM's exact log p(x)."""
    return Estimate.exact(-lm.sentence_nll(tokens).double())


def gaussian_importance(generator: Generator, tokens: Tensor, mu: Tensor, logvar: Tensor, samples: int,
                        rng: torch.Generator | None = None, chunk: int | None = None) -> Estimate:
    """Importance sampling with the diagonal Gaussian proposal N(mu, diag(exp(logvar))) [B, d]."""
    eps = torch.randn((samples, *mu.shape), generator=rng, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    return importance_sample(log_joint_fn(generator, tokens), z, diagonal_normal_log_density(z, mu, logvar), chunk)


def nll_hessian(generator: Generator, tokens: Tensor, z: Tensor, rows: int = 32) -> Tensor:
    """Hessian of NLL(x_b | z) w.r.t. z at z[b] [B, d, d], `rows` sentences per batched pass."""

    def gradient(start: Tensor, index: Tensor) -> Tensor:
        nll = generator.sentence_nll(tokens[index], start)
        return torch.autograd.grad(nll.sum(), start, create_graph=True)[0]

    out = []
    with double_backward_ready(tokens.device):
        for lo in range(0, z.size(0), rows):
            index = torch.arange(lo, min(lo + rows, z.size(0)), device=z.device)
            out.append(batched_jacobian(lambda start, sub: gradient(start, index[sub]), z[index])[1])
    return torch.cat(out)


def laplace(generator: Generator, tokens: Tensor, center: Tensor, samples: int,
            rng: torch.Generator | None = None, chunk: int | None = None, rows: int = 32) -> Estimate:
    """SRI (b): importance sampling with the floored, widened Laplace approximation at `center` [B, d]."""
    hessian = nll_hessian(generator, tokens, center, rows).double()
    precision = torch.eye(center.size(1), dtype=torch.float64, device=center.device) + hessian
    eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (precision + precision.transpose(1, 2)))
    scales = LAPLACE_WIDTH / eigenvalues.clamp(min=MIN_PRECISION).sqrt()  # standard deviations along eigenvectors
    transform = (eigenvectors * scales.unsqueeze(1)).to(center.dtype)  # z = center + transform @ eps
    eps = torch.randn((samples, *center.shape), generator=rng, device=center.device, dtype=center.dtype)
    z = center + torch.einsum("bij,sbj->sbi", transform, eps)
    log_q = standard_normal_log_density(eps) - scales.log().sum(dim=1).to(center.dtype)
    return importance_sample(log_joint_fn(generator, tokens), z, log_q, chunk)


def change_of_variables(generator: Generator, tokens: Tensor, langevin: LangevinConfig, samples: int,
                        rng: torch.Generator | None = None, jacobian_rows: int = 4,
                        log_det: LogDet = batched_log_det) -> Estimate:
    """SRI (a): importance sampling with the short-run chain as proposal, its density by change of variables.

    `samples` chains per sentence; `jacobian_rows` chains (sentence x sample pairs) go through one
    `log_det` call (the batched Jacobian; `jacobian.reference_log_det` for the slow reference).
    """
    batch, dim, steps = tokens.size(0), generator.latent_dim, langevin.steps
    like = {"device": tokens.device, "dtype": generator.out.weight.dtype}
    pairs = tokens.repeat(samples, 1)  # row s * batch + b: sample s of sentence b
    ends, log_q = [], []
    for lo in range(0, pairs.size(0), jacobian_rows):
        chunk = pairs[lo:lo + jacobian_rows]
        z0 = torch.randn(chunk.size(0), dim, generator=rng, **like)
        noise = torch.randn(steps, chunk.size(0), dim, generator=rng, **like)

        def chain(start: Tensor, rows: Tensor, chunk: Tensor = chunk, noise: Tensor = noise) -> Tensor:
            return short_run(generator, chunk[rows], langevin, z0=start, noise=noise[:, rows], create_graph=True).z

        with double_backward_ready(tokens.device):
            z_end, log_abs_det = log_det(chain, z0)
        ends.append(z_end)
        log_q.append(standard_normal_log_density(z0) - log_abs_det)
    z = torch.cat(ends).reshape(samples, batch, dim)
    return importance_sample(log_joint_fn(generator, tokens), z, torch.cat(log_q).reshape(samples, batch))


def exact(lm: LanguageModel, batch: Batch, settings: Settings) -> Estimate:
    """Estimator entry point, LM: its exact log p(x)."""
    return lm_log_likelihood(lm, batch.tokens)


def encoder_proposal(vae: VAE, batch: Batch, settings: Settings) -> Estimate:
    """Estimator entry point, VAE: importance sampling with the encoder's q(z|x) (the IWAE estimate)."""
    mu, logvar = encoder_gaussian(vae, batch.tokens, batch.lengths)
    return gaussian_importance(vae.generator, batch.tokens, mu, logvar, settings.evaluate.importance_samples,
                               settings.rng, rows_per_pass(batch))


def laplace_at_chain_mean(generator: Generator, batch: Batch, settings: Settings) -> Estimate:
    """Estimator entry point, SRI (b): the Laplace proposal centred on the mean of evaluate.proposal_chains
    short-run end points at the `langevin` settings."""
    center = chain_gaussian(generator, batch.tokens, settings.langevin, settings.evaluate.proposal_chains, settings.rng)[0]
    return laplace(generator, batch.tokens, center, settings.evaluate.importance_samples, settings.rng,
                   rows_per_pass(batch))


def chain_proposal(generator: Generator, batch: Batch, settings: Settings) -> Estimate:
    """Estimator entry point, SRI (a): the short-run chain as proposal, its density by change of variables."""
    cfg = settings.evaluate
    return change_of_variables(generator, batch.tokens, settings.langevin, cfg.jacobian_samples, settings.rng,
                               cfg.jacobian_batch_size)


def rows_per_pass(batch: Batch) -> int:
    """Samples per decoder pass so that a pass scores at most DECODER_ROWS sentence x sample rows."""
    return max(1, DECODER_ROWS // len(batch))
