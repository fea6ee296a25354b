"""Everything the evaluate stage measures for one trained model, on one list of test sentences.

Sentences are processed in length-bucketed batches; every per-sentence result is put back at the
sentence's position in the given dataset, so "the first n sentences" means the same sentences for
every model and estimator. Randomness comes from one torch.Generator seeded with evaluate.seed.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from datasets import Dataset
from torch import Tensor
from tqdm import tqdm

from shortrun.checkpoint import TrainedModel
from shortrun.config import EvaluateConfig, LangevinConfig
from shortrun.data.batching import Batch, make_batches
from shortrun.evaluation.importance import Estimate
from shortrun.evaluation.likelihood import change_of_variables, gaussian_importance, laplace, lm_log_likelihood
from shortrun.evaluation.posterior import (
    active_units,
    chain_gaussian,
    encoder_gaussian,
    gaussian_kl,
    mutual_information,
    reconstruction_nll,
)
from shortrun.evaluation.samples import SampleSheet, decode_means, interpolation_path, prior_samples
from shortrun.model import VAE, Generator, latent_generator

DECODER_ROWS = 512
"""Sentence x sample rows per decoder pass of importance sampling (bounds the [rows, T, V] logits)."""


@dataclass
class ModelEvaluation:
    """One model's results: nested metrics for metrics/evaluate.json plus what the report and plots need."""

    kind: str
    metrics: dict[str, Any]
    estimate: Estimate  # per-sentence log p(x) of the model's main estimator, dataset order, on the CPU
    au_variance: Tensor | None = None  # [d] variance of the posterior mean per dimension
    nll_vs_k: list[dict[str, float]] = field(default_factory=list)
    samples: SampleSheet | None = None


def corpus_metrics(est: Estimate, lengths: Tensor) -> dict[str, float]:
    """Mean per-sentence NLL (nats), perplexity per predicted token (words and </s>), and the NLL's MC error."""
    nll = -est.log_likelihood.double().cpu()
    return {
        "nll": float(nll.mean()),
        "ppl": float(math.exp(nll.sum() / lengths.sum())),
        "nll_se": float(est.std_error.double().cpu().pow(2).sum().sqrt() / len(nll)),
        "sentences": len(nll),
    }


def sentence_lengths(dataset: Dataset) -> Tensor:
    """Predicted tokens per sentence (words and </s>) [N], dataset order."""
    return torch.tensor([len(s) + 1 for s in dataset["ids"]], dtype=torch.float64)


def _batches(dataset: Dataset, batch_size: int, device: torch.device, desc: str) -> Iterator[tuple[Tensor, Batch]]:
    """(dataset positions [B], batch on `device`) for length-bucketed batches, with a progress bar."""
    position = {int(i): p for p, i in enumerate(dataset["id"])}
    for batch in tqdm(make_batches(dataset, batch_size, shuffle=False), desc=desc, file=sys.stderr, leave=False):
        yield torch.tensor([position[int(i)] for i in batch.ids], device=device), batch.to(device)


def _estimate_all(dataset: Dataset, batch_size: int, device: torch.device, desc: str,
                  fn: Callable[[Batch], Estimate]) -> Estimate:
    """fn(batch) over the whole dataset, results in dataset order."""
    ll = torch.zeros(len(dataset), dtype=torch.float64, device=device)
    se = torch.zeros_like(ll)
    for pos, batch in _batches(dataset, batch_size, device, desc):
        est = fn(batch)
        ll[pos], se[pos] = est.log_likelihood.double(), est.std_error.double()
    return Estimate(ll, se)


def evaluate_model(trained: TrainedModel, dataset: Dataset, cfg: EvaluateConfig, langevin: LangevinConfig,
                   device: torch.device, max_len: int) -> ModelEvaluation:
    """Likelihood (and, for latent models, posterior health, the SRI estimators and samples) of one model."""
    start = time.perf_counter()
    model = trained.model.to(device).eval()
    generator = latent_generator(model)
    rng = torch.Generator(device=device).manual_seed(cfg.seed)
    lengths = sentence_lengths(dataset)
    if generator is None:
        est = _estimate_all(dataset, cfg.batch_size, device, f"evaluate {trained.kind}",
                            lambda b: lm_log_likelihood(model, b.tokens))
        result = ModelEvaluation(trained.kind, corpus_metrics(est, lengths), _cpu(est))
    else:
        result = _evaluate_latent(trained, model, generator, dataset, cfg, langevin, device, rng, max_len)
    sheet = result.samples or SampleSheet(trained.kind)
    sheet.prior = prior_samples(model, generator, trained.vocab, cfg.num_prior_samples, max_len, rng)
    result.samples = sheet
    result.metrics["seconds"] = time.perf_counter() - start
    return result


def _evaluate_latent(trained: TrainedModel, model: torch.nn.Module, generator: Generator, dataset: Dataset,
                     cfg: EvaluateConfig, langevin: LangevinConfig, device: torch.device,
                     rng: torch.Generator, max_len: int) -> ModelEvaluation:
    num, dim = len(dataset), generator.latent_dim
    ll, se, rec = (torch.zeros(num, dtype=torch.float64, device=device) for _ in range(3))
    mu, logvar = torch.zeros(num, dim, device=device), torch.zeros(num, dim, device=device)
    for pos, batch in _batches(dataset, cfg.batch_size, device, f"evaluate {trained.kind}"):
        fit = _posterior(model, generator, batch, cfg, langevin, rng)
        chunk = max(1, DECODER_ROWS // len(batch))
        if isinstance(model, VAE):
            est = gaussian_importance(generator, batch.tokens, *fit, cfg.importance_samples, rng, chunk)
        else:
            est = laplace(generator, batch.tokens, fit[0], cfg.importance_samples, rng, chunk)
        ll[pos], se[pos] = est.log_likelihood.double(), est.std_error.double()
        rec[pos] = reconstruction_nll(generator, batch.tokens, *fit, rng).double()
        mu[pos], logvar[pos] = fit
    noise = None if isinstance(model, VAE) else logvar.exp().mean(dim=0) / cfg.proposal_chains
    au, variance = active_units(mu, mean_noise=noise)
    metrics = {
        **corpus_metrics(Estimate(ll, se), sentence_lengths(dataset)),
        "recon": float(rec.mean()),
        "kl": float(gaussian_kl(mu, logvar).mean()),
        "mi": mutual_information(mu, logvar, rng),
        "au": au,
    }
    result = ModelEvaluation(trained.kind, metrics, _cpu(Estimate(ll, se)), variance.cpu())
    if not isinstance(model, VAE):
        _add_sri_estimators(result, generator, dataset, cfg, langevin, device, rng)
    result.samples = _sheet(trained, generator, dataset, mu, cfg, max_len)
    return result


def _posterior(model: torch.nn.Module, generator: Generator, batch: Batch, cfg: EvaluateConfig,
               langevin: LangevinConfig, rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """The per-sentence Gaussian posterior approximation (see `posterior`)."""
    if isinstance(model, VAE):
        return encoder_gaussian(model, batch.tokens, batch.lengths)
    return chain_gaussian(generator, batch.tokens, langevin, cfg.proposal_chains, rng)


def _add_sri_estimators(result: ModelEvaluation, generator: Generator, dataset: Dataset, cfg: EvaluateConfig,
                        langevin: LangevinConfig, device: torch.device, rng: torch.Generator) -> None:
    """Both SRI estimators side by side: (a) on the first jacobian_sentences, and (b) against K."""
    lengths = sentence_lengths(dataset)
    main = {k: result.metrics[k] for k in ("nll", "ppl", "nll_se", "sentences")}
    subset = dataset.select(range(min(len(dataset), cfg.jacobian_sentences or len(dataset))))
    start = time.perf_counter()
    per_pass = max(1, cfg.jacobian_batch_size // cfg.jacobian_samples)  # sentences per batch: a visible progress bar
    cov = _estimate_all(subset, per_pass, device, "evaluate sri: change of variables", lambda b: change_of_variables(
        generator, b.tokens, langevin, cfg.jacobian_samples, rng, cfg.jacobian_batch_size))
    cov_metrics = corpus_metrics(cov, lengths[:len(subset)])
    cov_metrics["seconds"] = time.perf_counter() - start
    cov_metrics["laplace_nll"] = float(-result.estimate.log_likelihood[:len(subset)].mean())
    result.metrics["laplace"] = main
    result.metrics["change_of_variables"] = cov_metrics
    sweep = dataset.select(range(min(len(dataset), cfg.k_sentences or len(dataset))))
    for steps in cfg.k_values:
        laplace_k = _laplace_estimator(generator, langevin.model_copy(update={"steps": steps}), cfg, rng)
        est = _estimate_all(sweep, cfg.batch_size, device, f"evaluate sri: K={steps}", laplace_k)
        result.nll_vs_k.append({"k": steps, **corpus_metrics(est, lengths[:len(sweep)])})


def _laplace_estimator(generator: Generator, langevin: LangevinConfig, cfg: EvaluateConfig,
                       rng: torch.Generator) -> Callable[[Batch], Estimate]:
    """SRI (b) for one batch, centred on the mean of proposal_chains chains run with `langevin`."""

    def estimate(batch: Batch) -> Estimate:
        center = chain_gaussian(generator, batch.tokens, langevin, cfg.proposal_chains, rng)[0]
        return laplace(generator, batch.tokens, center, cfg.importance_samples, rng, max(1, DECODER_ROWS // len(batch)))

    return estimate


def _cpu(est: Estimate) -> Estimate:
    return Estimate(est.log_likelihood.cpu(), est.std_error.cpu())


def _sheet(trained: TrainedModel, generator: Generator, dataset: Dataset, mu: Tensor, cfg: EvaluateConfig,
           max_len: int) -> SampleSheet:
    """Reconstructions of the first test sentences and interpolations between consecutive pairs of them."""
    texts = dataset["text"]
    sheet = SampleSheet(trained.kind)
    count = min(cfg.num_reconstructions, len(texts))
    sheet.reconstructions = list(zip(texts[:count], decode_means(generator, trained.vocab, mu[:count], max_len)))
    for i in range(min(cfg.num_interpolations, len(texts) // 2)):
        path = interpolation_path(mu[2 * i], mu[2 * i + 1], cfg.interpolation_steps)
        sheet.interpolations.append((texts[2 * i], texts[2 * i + 1], decode_means(generator, trained.vocab, path, max_len)))
    return sheet
