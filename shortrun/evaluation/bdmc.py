"""Bidirectional Monte Carlo (Grosse et al. 2015): how tight AIS is on a model, measured on its own samples.

For (z, x) drawn from the model, z ~ N(0, I) then x ~ p(x|z), z is an exact sample of p(z|x). Forward
AIS on x (from the prior) is a stochastic lower bound of log p(x); reverse AIS from that z (to the
prior) is a stochastic upper bound. log p(x) lies between them, so their gap, averaged over simulated
sentences, bounds how far forward AIS with the same settings (intermediate distributions, chains,
leapfrog steps) is from the truth on sentences like the model's own. Test sentences are not the
model's own, so the gap there may differ; it is the measurable part of the error.

Sentences are sampled by the model's own decoder (`Generator.decode`, ancestral sampling) with at
most `max_len` words. A draw that has not ended (no </s>) within max_len words is discarded: the
choice depends on x only, so the kept z are still exact posterior samples of the kept x. A model whose
sentences rarely end (an untrained one, a degenerate loop) may leave fewer than asked for, or none;
`sentences` in the result says how many were used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from shortrun.config import EvaluateConfig
from shortrun.data.batching import collate
from shortrun.data.vocab import PAD
from shortrun.evaluation import ais
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.importance import Estimate
from shortrun.inference import chain_mode
from shortrun.model import Generator, latent_generator

DRAWS_PER_ROUND = 4
"""Each simulation round decodes this many candidates per sentence still missing."""
ROUNDS = 8
"""Simulation gives up after this many rounds (a model whose sentences rarely end)."""


@dataclass(frozen=True)
class Bracket:
    """Per simulated sentence: the forward (lower) and reverse (upper) AIS bounds of log p(x), and words."""

    lower: Estimate
    upper: Estimate
    words: Tensor

    def metrics(self) -> dict[str, float]:
        """Means over sentences: forward_nll (forward AIS, an upper bound of the NLL), reverse_nll (a lower
        bound), their gap (nats per sentence) and its Monte-Carlo error, the mean number of words."""
        num = len(self.words)
        gap = (self.upper.log_likelihood - self.lower.log_likelihood).double()
        variance = self.lower.std_error.double().pow(2) + self.upper.std_error.double().pow(2)
        return {
            "sentences": num,
            "forward_nll": float(-self.lower.log_likelihood.double().mean()),
            "reverse_nll": float(-self.upper.log_likelihood.double().mean()),
            "gap": float(gap.mean()),
            "gap_se": float(variance.sum().sqrt() / num),
            "words": float(self.words.double().mean()),
        }


def simulate(generator: Generator, num: int, max_len: int, rng: torch.Generator) -> tuple[list[list[int]], Tensor]:
    """Up to `num` sentences x ~ p(x|z), z ~ N(0, I), that end within `max_len` words (token ids), and their
    z [n, d]."""
    device = generator.out.weight.device
    kept_ids: list[list[int]] = []
    kept_z: list[Tensor] = []
    for _ in range(ROUNDS):
        missing = num - len(kept_ids)
        if missing <= 0:
            break
        z = torch.randn(DRAWS_PER_ROUND * missing, generator.latent_dim, generator=rng, device=device)
        rows = generator.decode(z, max_len, greedy=False, rng=rng)
        for row, ids in enumerate(rows):
            if len(ids) < max_len and len(kept_ids) < num:  # max_len words and no </s>: cut off, not a sample
                kept_ids.append(ids)
                kept_z.append(z[row])
    return kept_ids, torch.stack(kept_z) if kept_z else torch.zeros(0, generator.latent_dim, device=device)


def bracket(generator: Generator, tokens: Tensor, z: Tensor, cfg: EvaluateConfig, rng: torch.Generator) -> Bracket:
    """Forward and reverse AIS with the evaluate settings on sentences `tokens` whose exact posterior samples are z."""
    chains, path = cfg.ais_chains, ais.path_of(cfg)
    log_likelihood = ais.decoder_log_likelihood(generator, tokens, chains)
    with chain_mode(generator):
        lower, _ = ais.forward(log_likelihood, chains, tokens.size(0), generator.latent_dim, path, cfg.ais_leapfrog,
                               cfg.ais_step_size, rng, like=z)
        upper, _ = ais.reverse(log_likelihood, z, chains, path, cfg.ais_leapfrog, cfg.ais_step_size, rng)
    return Bracket(lower, upper, (tokens[:, 1:] != PAD).sum(dim=1) - 1)


def check(model: nn.Module, settings: Settings, max_len: int) -> dict[str, Any]:
    """The AIS estimator's check: {"bdmc": metrics} on evaluate.bdmc_sentences simulated sentences."""
    cfg = settings.evaluate
    if cfg.bdmc_sentences == 0:
        return {}
    start = time.perf_counter()
    generator = latent_generator(model)
    sentences, z = simulate(generator, cfg.bdmc_sentences, max_len, settings.rng)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))  # similar lengths together: less padding
    parts = []
    for lo in range(0, len(order), cfg.batch_size):
        rows = order[lo:lo + cfg.batch_size]
        tokens = collate([sentences[i] for i in rows]).tokens.to(z.device)
        parts.append(bracket(generator, tokens, z[rows], cfg, settings.rng))
    if parts:
        metrics = Bracket(Estimate.cat([p.lower for p in parts]), Estimate.cat([p.upper for p in parts]),
                          torch.cat([p.words for p in parts])).metrics()
    else:
        metrics = {"sentences": 0}
    metrics["seconds"] = time.perf_counter() - start
    return {"bdmc": metrics}
