"""Watches over the learned latent space, per epoch in training and in the evaluation report.

- Posterior collapse: a dimension is active when the variance of the posterior mean across sentences
  exceeds 0.01 (shortrun.measures.active_units). A model with no active unit ignores z.
- Prior holes: the aggregate posterior q(z) = mean_x q(z|x) should match the prior N(0, I) that
  generation samples from. Where it does not, prior samples land where no training sentence's posterior
  went, and the decoder, never trained there, may loop (a maximum-length run of one or two words).
  `aggregate_posterior` measures the distance; `sample_health` measures the symptom on prior samples.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import Tensor

from shortrun.measures import AU_THRESHOLD, active_units
from shortrun.model import Generator

SINGULAR = 1e-10  # a covariance whose eigenvalues span more than this ratio is taken as singular (float64)
log = logging.getLogger("shortrun.monitor")


def latent_metrics(posterior_means: Tensor) -> dict[str, float]:
    """Per-dimension variance across sentences (z_var_dNN), its min/mean/max, active units and `collapsed`.

    Logs a loud warning when no unit is active.
    """
    au, var = active_units(posterior_means)
    metrics = {f"z_var_d{i:02d}": float(v) for i, v in enumerate(var)}
    metrics.update(
        z_var_min=float(var.min()), z_var_mean=float(var.mean()), z_var_max=float(var.max()),
        active_units=float(au), collapsed=float(au == 0),
    )
    if au == 0:
        log.warning(
            "WARNING: POSTERIOR COLLAPSE - no active latent unit (variance of the posterior mean across sentences "
            "<= %s in every dimension, max %.3g); the decoder ignores z", AU_THRESHOLD, metrics["z_var_max"],
        )
    return metrics


def aggregate_posterior(means: Tensor, variances: Optional[Tensor] = None) -> dict[str, float]:
    """How far the aggregate posterior is from the prior N(0, I).

    means [N, d]: samples from q(z) (e.g. short-run end points z_K, one per sentence) when `variances` is
    None; else the means of per-sentence diagonal Gaussians q(z|x) with `variances` [N, d], whose mixture
    is q(z) (its moments are exact, no sampling).
    agg_sq_norm: E_q |z|^2 (the prior's is d). agg_kl: KL(N(m, S) || N(0, I)) in nats, N(m, S) the
    Gaussian with q's mean and covariance; 0 for the prior, growing as q shifts, shrinks or stretches
    away from it (a lower bound of nothing: q need not be Gaussian; it is a distance on two moments).
    NaN when S is singular (e.g. no more sentences than dimensions).
    """
    points = means.double()
    dim = points.shape[1]
    mean = points.mean(dim=0)
    centred = points - mean
    cov = centred.T @ centred / points.shape[0]
    sq_norm = points.pow(2).sum(dim=1).mean()
    if variances is not None:
        spread = variances.double()
        cov = cov + torch.diag(spread.mean(dim=0))
        sq_norm = sq_norm + spread.sum(dim=1).mean()
    eigenvalues = torch.linalg.eigvalsh(cov)
    singular = bool(eigenvalues.min() <= SINGULAR * eigenvalues.max())
    kl = math.nan if singular else float(0.5 * (eigenvalues.sum() + mean @ mean - dim - eigenvalues.log().sum()))
    return {"agg_sq_norm": float(sq_norm), "agg_kl": kl}


def distinct_ngrams(rows: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of all sentences (Li et al.'s distinct-n); 0 when there are none."""
    grams = [tuple(row[i:i + n]) for row in rows for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sample_health(rows: list[list[int]], max_len: int) -> dict[str, float]:
    """Health of decoded sentences (token ids without specials), each decoded for at most `max_len` tokens.

    prior_at_max_len: share that never ended (no </s> within max_len tokens), the degenerate loop's mark;
    prior_mean_len: mean length in tokens; prior_distinct_1/2: distinct unigrams/bigrams over all of them
    (low when samples repeat themselves or each other).
    """
    if not rows:
        raise ValueError("sample_health needs at least one sentence")
    return {
        "prior_at_max_len": sum(len(row) >= max_len for row in rows) / len(rows),
        "prior_mean_len": sum(len(row) for row in rows) / len(rows),
        "prior_distinct_1": distinct_ngrams(rows, 1),
        "prior_distinct_2": distinct_ngrams(rows, 2),
    }


def prior_health(generator: Generator, num: int, max_len: int, rng: torch.Generator) -> dict[str, float]:
    """`sample_health` of `num` greedy decodings of z ~ N(0, I) drawn from `rng` (as the evaluation's prior
    samples are decoded: all variety comes from z)."""
    z = torch.randn(num, generator.latent_dim, generator=rng, device=rng.device)
    return sample_health(generator.decode(z, max_len), max_len)
