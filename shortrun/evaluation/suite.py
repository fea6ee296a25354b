"""Everything the evaluate stage measures for one trained model, on one list of test sentences.

Likelihood: the suite runs a list of estimators (`ESTIMATORS`, each of the one shape in `estimators`):
every one that applies to the model, each on its first `sentences`. The first that applies is the
model's reported estimate, the tightest: exact for the LM, annealed importance sampling (with its BDMC
check) for latent models. Its numbers on the first evaluate.ais_sentences sentences are the model's
top-level nll, ppl and nll_se (so every model reports on the same sentences); every other estimator
reports its distance from it on the sentences both cover (`nll_minus_<name>`). Latent models also get posterior health, SRI the NLL-vs-K sweep, and samples.

Sentences are processed in length-bucketed batches; every per-sentence result is put back at the
sentence's position in the given dataset, so "the first n sentences" means the same sentences for
every model and estimator. Randomness comes from one torch.Generator seeded with evaluate.seed.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from datasets import Dataset
from torch import Tensor, nn
from tqdm import tqdm

from shortrun.checkpoint import TrainedModel
from shortrun.config import EvaluateConfig, LangevinConfig
from shortrun.data.batching import Batch, make_batches
from shortrun.evaluation import ais, bdmc, likelihood
from shortrun.evaluation.estimators import Estimator, Settings
from shortrun.evaluation.importance import Estimate
from shortrun.evaluation.posterior import chain_gaussian, encoder_gaussian, mutual_information, reconstruction_nll
from shortrun.evaluation.samples import SampleSheet, decode_means, interpolation_path, prior_samples
from shortrun.measures import active_units, gaussian_kl, perplexity
from shortrun.model import VAE, Generator, LanguageModel, latent_generator
from shortrun.monitor import aggregate_posterior, prior_health


def _is_latent(model: nn.Module) -> bool:
    return latent_generator(model) is not None


ESTIMATORS: list[Estimator] = [
    Estimator("exact", "exact", likelihood.exact, lambda model: isinstance(model, LanguageModel)),
    Estimator("ais", "annealed importance sampling from the prior (HMC)", ais.estimate, _is_latent,
              sentences=lambda cfg: cfg.ais_sentences, describe=ais.describe, check=bdmc.check, headline=ais.headline),
    Estimator("iwae", "importance sampling, encoder proposal", likelihood.encoder_proposal,
              lambda model: isinstance(model, VAE)),
    Estimator("laplace", "importance sampling, Laplace proposal at the short-run posterior mean (b)",
              likelihood.laplace_at_chain_mean, lambda model: isinstance(model, Generator)),
    Estimator("change_of_variables", "importance sampling, chain proposal by change of variables (a)",
              likelihood.chain_proposal, lambda model: isinstance(model, Generator),
              sentences=lambda cfg: cfg.jacobian_sentences,
              batch_size=lambda cfg: max(1, cfg.jacobian_batch_size // cfg.jacobian_samples)),
]
"""Tightest first: the first entry that applies to a model is its reported estimate."""


@dataclass
class ModelEvaluation:
    """One model's results: nested metrics for metrics/evaluate.json plus what the report and plots need."""

    kind: str
    metrics: dict[str, Any]
    estimates: dict[str, Estimate]  # per estimator, the reported one first: log p(x) of its first sentences, dataset order, CPU
    labels: dict[str, str]  # per estimator: what the report calls it
    au_variance: Tensor | None = None  # [d] variance of the posterior mean per dimension
    nll_vs_k: list[dict[str, float]] = field(default_factory=list)
    samples: SampleSheet | None = None

    @property
    def reported(self) -> str:
        """The name of the reported (tightest) estimator."""
        return next(iter(self.estimates))

    @property
    def estimate(self) -> Estimate:
        """The reported estimator's per-sentence log p(x)."""
        return self.estimates[self.reported]


def corpus_metrics(est: Estimate, lengths: Tensor) -> dict[str, float]:
    """Mean per-sentence NLL (nats), perplexity per predicted token (words and </s>), and the NLL's MC error."""
    nll = -est.log_likelihood.double().cpu()
    return {
        "nll": float(nll.mean()),
        "ppl": perplexity(float(nll.sum()), float(lengths.sum())),
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
                   device: torch.device, max_len: int, estimators: Sequence[Estimator] = ESTIMATORS) -> ModelEvaluation:
    """Likelihood by every estimator of `estimators` that applies (and, for latent models, posterior health,
    the NLL-vs-K sweep and samples) of one model; max_len bounds decoded and simulated sentences."""
    start = time.perf_counter()
    model = trained.model.to(device).eval()
    generator = latent_generator(model)
    settings = Settings(cfg, langevin, torch.Generator(device=device).manual_seed(cfg.seed))
    rng = settings.rng
    result = _likelihoods(trained.kind, model, dataset, settings, device, max_len,
                          [est for est in estimators if est.applies(model)])
    if generator is not None:
        mu = _posterior_health(result, model, generator, dataset, settings, device)
        if isinstance(model, Generator):
            _nll_vs_k(result, model, dataset, settings, device)
        result.samples = _sheet(trained, generator, dataset, mu, cfg, max_len)
    sheet = result.samples or SampleSheet(trained.kind)
    sheet.prior = prior_samples(model, generator, trained.vocab, cfg.num_prior_samples, max_len, rng)
    result.samples = sheet
    if generator is not None:
        result.metrics.update(prior_health(generator, cfg.health_samples, max_len, rng))
    result.metrics["seconds"] = time.perf_counter() - start
    # numbers first, then one block per estimator
    result.metrics = dict(sorted(result.metrics.items(), key=lambda item: isinstance(item[1], dict)))
    return result


def _likelihoods(kind: str, model: nn.Module, dataset: Dataset, settings: Settings, device: torch.device,
                 max_len: int, estimators: Sequence[Estimator]) -> ModelEvaluation:
    """Every estimator on its first sentences: one metrics block each, the first one's numbers on top."""
    if not estimators:
        raise ValueError(f"no likelihood estimator in the list applies to the {kind} model")
    cfg, lengths = settings.evaluate, sentence_lengths(dataset)
    estimates: dict[str, Estimate] = {}
    blocks: dict[str, dict[str, Any]] = {}
    for est in estimators:
        start = time.perf_counter()
        subset = _first(dataset, est.sentences(cfg))
        found = _estimate_all(subset, est.batch_size(cfg), device, f"evaluate {kind}: {est.name}",
                              lambda batch, est=est: est.estimate(model, batch, settings))
        block = {**corpus_metrics(found, lengths[:len(subset)]), "seconds": time.perf_counter() - start,
                 **est.describe(cfg)}
        if est.check is not None:
            block.update(est.check(model, settings, max_len))
        estimates[est.name], blocks[est.name] = _cpu(found), block
    best = estimators[0]
    for est in estimators[1:]:
        blocks[est.name][f"nll_minus_{best.name}"] = nll_distance(estimates[est.name], estimates[best.name])
    covered = len(estimates[best.name].log_likelihood)
    shared = min(covered, cfg.ais_sentences or covered)  # every model's reported numbers: the same sentences
    top = corpus_metrics(_head(estimates[best.name], shared), lengths[:shared])
    metrics = {**top, **best.headline(blocks[best.name]), **blocks}
    return ModelEvaluation(kind, metrics, estimates, {est.name: est.label for est in estimators})


def nll_distance(estimate: Estimate, reference: Estimate) -> float:
    """Mean NLL of `estimate` minus that of `reference` (nats per sentence) on the first sentences both cover."""
    num = min(len(estimate.log_likelihood), len(reference.log_likelihood))
    return float((reference.log_likelihood[:num] - estimate.log_likelihood[:num]).double().mean())


def _head(est: Estimate, count: int) -> Estimate:
    return Estimate(est.log_likelihood[:count], est.std_error[:count])


def _first(dataset: Dataset, count: Optional[int]) -> Dataset:
    return dataset.select(range(min(len(dataset), count or len(dataset))))


def _posterior_health(result: ModelEvaluation, model: nn.Module, generator: Generator, dataset: Dataset,
                      settings: Settings, device: torch.device) -> Tensor:
    """recon, kl, mi, au and the aggregate posterior into result.metrics; returns the posterior means [N, d]."""
    cfg, rng = settings.evaluate, settings.rng
    num, dim = len(dataset), generator.latent_dim
    rec = torch.zeros(num, dtype=torch.float64, device=device)
    mu, logvar = torch.zeros(num, dim, device=device), torch.zeros(num, dim, device=device)
    for pos, batch in _batches(dataset, cfg.batch_size, device, f"evaluate {result.kind}: posterior"):
        fit = _posterior(model, generator, batch, cfg, settings.langevin, rng)
        rec[pos] = reconstruction_nll(generator, batch.tokens, *fit, rng).double()
        mu[pos], logvar[pos] = fit
    noise = None if isinstance(model, VAE) else logvar.exp().mean(dim=0) / cfg.proposal_chains
    au, variance = active_units(mu, mean_noise=noise)
    result.metrics.update({
        "recon": float(rec.mean()),
        "kl": float(gaussian_kl(mu, logvar).sum(dim=-1).mean()),
        "mi": mutual_information(mu, logvar, rng),
        "au": au,
        **aggregate_posterior(mu, logvar.exp()),  # the mixture of the q(z|x) against the prior
    })
    result.au_variance = variance.cpu()
    return mu


def _posterior(model: torch.nn.Module, generator: Generator, batch: Batch, cfg: EvaluateConfig,
               langevin: LangevinConfig, rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """The per-sentence Gaussian posterior approximation (see `posterior`)."""
    if isinstance(model, VAE):
        return encoder_gaussian(model, batch.tokens, batch.lengths)
    return chain_gaussian(generator, batch.tokens, langevin, cfg.proposal_chains, rng)


def _nll_vs_k(result: ModelEvaluation, generator: Generator, dataset: Dataset, settings: Settings,
              device: torch.device) -> None:
    """SRI: estimator (b) on the first k_sentences with the chain run for each K of evaluate.k_values."""
    cfg = settings.evaluate
    sweep = _first(dataset, cfg.k_sentences)
    lengths = sentence_lengths(sweep)
    for steps in cfg.k_values:
        chain = replace(settings, langevin=settings.langevin.model_copy(update={"steps": steps}))
        est = _estimate_all(sweep, cfg.batch_size, device, f"evaluate sri: K={steps}",
                            lambda batch, chain=chain: likelihood.laplace_at_chain_mean(generator, batch, chain))
        result.nll_vs_k.append({"k": steps, **corpus_metrics(est, lengths)})


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
