"""Held-out likelihood of an SRI generator: the number its registry versions compete on.

The reconstruction NLL at inferred latents (training's valid_nll) rewards a model that ignores its
prior: latents far from N(0, I) reconstruct well while p(x) = E_{p(z)}[p(x|z)] falls. The gate needs
log p(x) itself, so this is the evaluate stage's estimator (b): importance sampling with the Laplace
proposal centred on the mean of a few short-run chains (`likelihood.laplace`), seeded, on given sentences.
"""
from __future__ import annotations

import torch
from datasets import Dataset

from shortrun.config import HeldOutConfig, LangevinConfig
from shortrun.data.batching import make_batches
from shortrun.evaluation.importance import Estimate
from shortrun.evaluation.likelihood import laplace, rows_per_pass
from shortrun.evaluation.posterior import chain_gaussian
from shortrun.evaluation.suite import corpus_metrics, sentence_lengths
from shortrun.model import Generator


def heldout_likelihood(generator: Generator, dataset: Dataset, langevin: LangevinConfig, cfg: HeldOutConfig,
                       device: torch.device) -> dict[str, float]:
    """Mean per-sentence NLL (nats), perplexity, the NLL's Monte-Carlo error and the count, over `dataset`.

    The same sentences, settings and seed give the same number, so two models scored alike compare.
    """
    if len(dataset) == 0:
        raise ValueError("held-out likelihood needs at least one sentence")
    generator = generator.to(device).eval()
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    parts = []
    for batch in make_batches(dataset, cfg.batch_size, shuffle=False):
        tokens = batch.to(device).tokens
        center = chain_gaussian(generator, tokens, langevin, cfg.proposal_chains, rng)[0]
        parts.append(laplace(generator, tokens, center, cfg.importance_samples, rng, rows_per_pass(batch)))
    estimate = Estimate.cat(parts)
    # make_batches reorders sentences by length; the mean, its error and the perplexity do not depend on order.
    return corpus_metrics(estimate, sentence_lengths(dataset))
