"""What one training step minimises and what validation measures, per model kind.

All three share the decoder, the batches and the loss unit: the training loss is the NLL summed over
a sentence's tokens and averaged over the sentences of the batch (the per-sentence log-likelihood
the paper maximises; longer sentences weigh more, as they do in the data's likelihood).

- sri: z inferred by short-run Langevin dynamics from the prior (no gradient through the chain),
  then NLL(x|z_K). Validation: NLL(x|z_K) on the validation set at short-run inferred z. Two
  training rules (train.chain_gradients), with z_0 ~ N(0, I), z_1 .. z_K the chain, all held fixed:
  - endpoint (the paper's text): the update follows grad_theta of (1/B) sum_b NLL(x_b|z_K,b), a Monte
    Carlo estimate of the log-likelihood's gradient E_{p(z|x)}[grad log p(x|z)] with the short-run
    posterior standing in for p(z|x); the decoder learns to explain x from where the chain ends.
  - chain (the authors' bpucla/sri_text train_sri.py, whose infer_z calls nll.backward() at every
    step with nothing clearing the parameter gradients before the optimizer step): the update follows
    grad_theta of (1/B) sum_b NLL(x_b|z_K,b) + sum_{k=0}^{K-1} sum_b NLL(x_b|z_k,b). The chain terms are
    batch SUMS, as in that code, so they outweigh the end point about K * B to 1 (B = 32, K = 20: 640)
    and the update is in effect the gradient of sum_k NLL(x|z_k): the decoder learns to explain each
    sentence from every point of its chain, from the prior draw z_0 on, which can pull the short-run
    posterior towards the prior and close holes in it (the shortrun.monitor diagnostics measure both).
    Clipping (train.clip_grad) applies to the whole sum afterwards, so with Adam the overall scale
    matters little and the mix of terms a lot.
  langevin.chain_dropout (separate) keeps dropout on in the training chain, as that code does.
- vae: reconstruction NLL + w * KL (w annealed 0 -> 1, optional free bits). Validation: the
  negative ELBO (valid_nll), split into valid_rec and valid_kl.
- lm: exact NLL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from shortrun.config import LangevinConfig, TrainConfig
from shortrun.data.batching import Batch
from shortrun.inference import short_run
from shortrun.measures import perplexity
from shortrun.model import VAE, Generator, LanguageModel
from shortrun.monitor import aggregate_posterior, latent_metrics
from shortrun.numerics import FLOAT32_CPU, NumericPath
from shortrun.step_learning import StepSizeLearner


@dataclass
class StepContext:
    """Where training is: the noise temperature of this epoch and the global step (VAE KL annealing)."""

    temperature: float
    global_step: int


@dataclass
class StepOutput:
    """The loss to minimise and the summed per-sentence quantities to report.

    The update is the parameters' .grad after loss.backward(): the trainer zeroes .grad before
    train_step, so gradients the objective accumulates itself (the chain rule's) are kept.
    """

    loss: Tensor
    nll_sum: Tensor
    kl_sum: Optional[Tensor] = None


class Objective(Protocol):
    def train_step(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput: ...

    def validate(self, model: nn.Module, batches: list[Batch], rng: torch.Generator) -> dict[str, float]: ...

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]: ...


def _nll_metrics(prefix: str, nll_sum: float, sentences: int, tokens: int) -> dict[str, float]:
    return {f"{prefix}_nll": nll_sum / sentences, f"{prefix}_ppl": perplexity(nll_sum, tokens)}


class SRIObjective:
    """Short-run inference: Langevin-inferred z, then the generator's NLL."""

    def __init__(self, langevin: LangevinConfig, chain_gradients: str = "endpoint",
                 numerics: NumericPath = FLOAT32_CPU) -> None:
        self.chain_gradients = chain_gradients == "chain"
        self.numerics = numerics
        self.configured = langevin
        self.step_learner = StepSizeLearner(langevin) if langevin.learn_steps else None

    @property
    def langevin(self) -> LangevinConfig:
        """The chain of training and validation: the configured one, with the learned sizes under learn_steps."""
        return self.step_learner.chain if self.step_learner is not None else self.configured

    def train_step(self, model: Generator, batch: Batch, ctx: StepContext) -> StepOutput:
        if self.step_learner is not None and self.step_learner.due(ctx.global_step):
            self.step_learner.update(model, batch.tokens, ctx.temperature)
        z = short_run(model, batch.tokens, self.langevin, temperature=ctx.temperature,
                      param_grads=self.chain_gradients).z
        nll = model.sentence_nll(batch.tokens, z)
        return StepOutput(loss=nll.mean(), nll_sum=nll.detach().sum())

    def noise_free_end(self, model: Generator, batch: Batch) -> Tensor:
        """The end point of the noise-free chain from z0 = 0: a deterministic stand-in for the posterior mean
        (not a mode: K steps of gradient descent on the energy need not reach one).

        Active units are computed from it: z_K of a noisy chain from a random z0 keeps part of z0
        (the short chain does not forget its start), so its spread across sentences would count
        units as active even when the decoder ignores z.
        """
        z0 = torch.zeros(len(batch.lengths), model.latent_dim, device=batch.tokens.device)
        with self.numerics.autocast():
            return short_run(model, batch.tokens, self.langevin, temperature=0.0, z0=z0).z

    def validate(self, model: Generator, batches: list[Batch], rng: torch.Generator) -> dict[str, float]:
        nll_sum, tokens, z0_abs, zk_abs, grad_norm, zs, ends = 0.0, 0, 0.0, 0.0, 0.0, [], []
        for batch in batches:
            with self.numerics.autocast():  # the chain in the training precision, the reported NLL in float32
                result = short_run(model, batch.tokens, self.langevin, rng=rng)
            with torch.no_grad():
                nll_sum += float(model.sentence_nll(batch.tokens, result.z).sum())
            tokens += int(batch.lengths.sum())
            z0_abs += float(result.z0.abs().mean(dim=1).sum())
            zk_abs += float(result.z.abs().mean(dim=1).sum())
            grad_norm += float(result.grad_norms.mean()) * len(batch.lengths)
            ends.append(result.z)
            zs.append(self.noise_free_end(model, batch))
        n = sum(len(b.lengths) for b in batches)
        metrics = _nll_metrics("valid", nll_sum, n, tokens)
        metrics.update(z0_abs_mean=z0_abs / n, zk_abs_mean=zk_abs / n, chain_grad_norm=grad_norm / n)
        metrics.update(latent_metrics(torch.cat(zs).cpu()))
        metrics.update(aggregate_posterior(torch.cat(ends)))
        return metrics

    def epoch_metrics(self, ctx: StepContext) -> dict[str, float]:
        learned = self.step_learner.epoch_metrics() if self.step_learner is not None else {}
        return {"temperature": ctx.temperature, **learned}


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
        rec_sum, kl_sum, tokens, mus, variances = 0.0, 0.0, 0, [], []
        for batch in batches:
            rec, kl, mu = model(batch.tokens, batch.lengths, rng=rng)
            variances.append(model.encode(batch.tokens, batch.lengths)[1].exp())
            rec_sum += float(rec.sum())
            kl_sum += float(kl.sum())
            tokens += int(batch.lengths.sum())
            mus.append(mu)
        n = sum(len(b.lengths) for b in batches)
        metrics = _nll_metrics("valid", rec_sum + kl_sum, n, tokens)
        metrics.update(valid_rec=rec_sum / n, valid_kl=kl_sum / n)
        metrics.update(latent_metrics(torch.cat(mus).cpu()))
        metrics.update(aggregate_posterior(torch.cat(mus), torch.cat(variances)))
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


def build_objective(kind: str, langevin: LangevinConfig, train: TrainConfig,
                    numerics: NumericPath = FLOAT32_CPU) -> Objective:
    """The objective of a model kind (`numerics`: the precision of SRI's validation chains)."""
    if kind == "sri":
        return SRIObjective(langevin, train.chain_gradients, numerics)
    if kind == "vae":
        return VAEObjective(train)
    return LMObjective()
