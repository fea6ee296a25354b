"""What one training step minimises and what validation measures, per model kind.

All three share the decoder, the batches and the loss unit: the training loss is the NLL summed over
a sentence's tokens and averaged over the sentences of the batch (the per-sentence log-likelihood
the paper maximises; longer sentences weigh more, as they do in the data's likelihood).

- sri: z inferred by short-run Langevin dynamics from the prior (no gradient through the chain),
  then NLL(x|z_K). Validation: NLL(x|z_K) on the validation set at short-run inferred z.
- vae: reconstruction NLL + w * KL (w annealed 0 -> 1, optional free bits). Validation: the
  negative ELBO (valid_nll), split into valid_rec and valid_kl.
- lm: exact NLL.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from shortrun.config import LangevinConfig, TrainConfig
from shortrun.data.batching import Batch
from shortrun.inference import short_run
from shortrun.model import VAE, Generator, LanguageModel
from shortrun.monitor import latent_metrics


@dataclass
class StepContext:
    """Where training is: the noise temperature of this epoch and the global step (VAE KL annealing)."""

    temperature: float
    global_step: int


@dataclass
class StepOutput:
    """The loss to minimise and the summed per-sentence quantities to report."""

    loss: Tensor
    nll_sum: Tensor
    kl_sum: Optional[Tensor] = None


class Objective(Protocol):
    def train_step(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput: ...

    def validate(self, model: nn.Module, batches: list[Batch], rng: torch.Generator) -> dict[str, float]: ...

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]: ...


def _nll_metrics(prefix: str, nll_sum: float, sentences: int, tokens: int) -> dict[str, float]:
    return {f"{prefix}_nll": nll_sum / sentences, f"{prefix}_ppl": math.exp(min(nll_sum / tokens, 700.0))}


class SRIObjective:
    """Short-run inference: Langevin-inferred z, then the generator's NLL."""

    def __init__(self, langevin: LangevinConfig) -> None:
        self.langevin = langevin

    def train_step(self, model: Generator, batch: Batch, ctx: StepContext) -> StepOutput:
        z = short_run(model, batch.tokens, self.langevin, temperature=ctx.temperature).z
        nll = model.sentence_nll(batch.tokens, z)
        return StepOutput(loss=nll.mean(), nll_sum=nll.detach().sum())

    def posterior_mode(self, model: Generator, batch: Batch) -> Tensor:
        """A deterministic stand-in for the posterior mean: the noise-free chain from z0 = 0.

        Active units are computed from it: z_K of a noisy chain from a random z0 keeps part of z0
        (the short chain does not forget its start), so its spread across sentences would count
        units as active even when the decoder ignores z.
        """
        z0 = torch.zeros(len(batch.lengths), model.latent_dim, device=batch.tokens.device)
        return short_run(model, batch.tokens, self.langevin, temperature=0.0, z0=z0).z

    def validate(self, model: Generator, batches: list[Batch], rng: torch.Generator) -> dict[str, float]:
        nll_sum, tokens, z0_abs, zk_abs, grad_norm, zs = 0.0, 0, 0.0, 0.0, 0.0, []
        for batch in batches:
            result = short_run(model, batch.tokens, self.langevin, generator_rng=rng)
            with torch.no_grad():
                nll_sum += float(model.sentence_nll(batch.tokens, result.z).sum())
            tokens += int(batch.lengths.sum())
            z0_abs += float(result.z0.abs().mean(dim=1).sum())
            zk_abs += float(result.z.abs().mean(dim=1).sum())
            grad_norm += float(result.grad_norms.mean()) * len(batch.lengths)
            zs.append(self.posterior_mode(model, batch))
        n = sum(len(b.lengths) for b in batches)
        metrics = _nll_metrics("valid", nll_sum, n, tokens)
        metrics.update(z0_abs_mean=z0_abs / n, zk_abs_mean=zk_abs / n, chain_grad_norm=grad_norm / n)
        metrics.update(latent_metrics(torch.cat(zs).cpu()))
        return metrics

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]:
        return {"temperature": ctx.temperature}


class VAEObjective:
    """Gaussian VAE with linear KL annealing and optional free bits per dimension."""

    def __init__(self, train: TrainConfig) -> None:
        self.train = train

    def kl_weight(self, global_step: int) -> float:
        steps = self.train.kl_anneal_steps
        return 1.0 if steps == 0 else min(1.0, global_step / steps)

    def train_step(self, model: VAE, batch: Batch, ctx: StepContext) -> StepOutput:
        rec, kl, _ = model(batch.tokens, batch.lengths)
        if self.train.free_bits > 0:
            kl_term = torch.clamp(kl.mean(dim=0), min=self.train.free_bits).sum()
        else:
            kl_term = kl.sum(dim=1).mean()
        loss = rec.mean() + self.kl_weight(ctx.global_step) * kl_term
        kl_sum = kl.detach().sum()
        return StepOutput(loss=loss, nll_sum=rec.detach().sum() + kl_sum, kl_sum=kl_sum)

    @torch.no_grad()
    def validate(self, model: VAE, batches: list[Batch], rng: torch.Generator) -> dict[str, float]:
        rec_sum, kl_sum, tokens, mus = 0.0, 0.0, 0, []
        for batch in batches:
            rec, kl, mu = model(batch.tokens, batch.lengths, generator=rng)
            rec_sum += float(rec.sum())
            kl_sum += float(kl.sum())
            tokens += int(batch.lengths.sum())
            mus.append(mu)
        n = sum(len(b.lengths) for b in batches)
        metrics = _nll_metrics("valid", rec_sum + kl_sum, n, tokens)
        metrics.update(valid_rec=rec_sum / n, valid_kl=kl_sum / n)
        metrics.update(latent_metrics(torch.cat(mus).cpu()))
        return metrics

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]:
        return {"kl_weight": self.kl_weight(ctx.global_step)}


class LMObjective:
    """The language model: exact NLL."""

    def train_step(self, model: LanguageModel, batch: Batch, ctx: StepContext) -> StepOutput:
        nll = model.sentence_nll(batch.tokens)
        return StepOutput(loss=nll.mean(), nll_sum=nll.detach().sum())

    @torch.no_grad()
    def validate(self, model: LanguageModel, batches: list[Batch], rng: torch.Generator) -> dict[str, float]:
        nll_sum = sum(float(model.sentence_nll(b.tokens).sum()) for b in batches)
        tokens = sum(int(b.lengths.sum()) for b in batches)
        return _nll_metrics("valid", nll_sum, sum(len(b.lengths) for b in batches), tokens)

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]:
        return {}


def build_objective(kind: str, langevin: LangevinConfig, train: TrainConfig) -> Objective:
    """The objective of a model kind."""
    if kind == "sri":
        return SRIObjective(langevin)
    if kind == "vae":
        return VAEObjective(train)
    return LMObjective()
