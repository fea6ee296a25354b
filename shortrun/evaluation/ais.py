"""Annealed importance sampling (AIS) of log p(x) for a decoder p(x|z) with prior N(0, I).

AIS (Neal 2001) moves chains from the prior p(z) to the posterior p(z|x) along the geometric path
f_t(z) = p(z) p(x|z)^beta_t, 0 = beta_0 < beta_1 < ... < beta_T = 1 (T intermediate distributions). A
chain starts at z ~ p(z); at t = 1 .. T it adds (beta_t - beta_{t-1}) log p(x|z) to its log weight and
then (t < T) moves z by an HMC transition that leaves f_t invariant. exp(log weight) is an unbiased
estimate of p(x), so the log-mean-exp over C independent chains per sentence is a stochastic lower
bound of log p(x), with a standard error over the chains (`importance.estimate_from_log_weights`).
T = 1 is plain importance sampling from the prior.

Run backwards (`reverse`), from an exact posterior sample to the prior, the weights are an unbiased
estimate of 1 / p(x), so minus their log-mean-exp is a stochastic upper bound: `bdmc` uses that on
sentences simulated from the model, where the z that generated x is an exact posterior sample.

Transitions: HMC with `leapfrog` steps and fresh momentum. Each sentence has one step size, shared by
its chains and adapted after every transition towards an acceptance rate of 0.65
(log s += ADAPT_RATE * (mean acceptance probability - 0.65)). Adapting from the chains' own past is a
small departure from textbook AIS, made by practical AIS for decoders (Wu et al. 2017); BDMC measures
the estimator as it is run.

The core (`anneal`) sees only a log-likelihood function z [N, d] -> log p(x_n | z_n) [N], differentiable
in z, with rows ordered chain-major (row c * B + b is chain c of sentence b): it runs on any decoder,
and on a linear-Gaussian model whose log p(x) is known.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from shortrun.config import EvaluateConfig
from shortrun.data.batching import Batch
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.importance import Estimate, estimate_from_log_weights
from shortrun.inference import chain_mode
from shortrun.model import Generator, latent_generator

LogLikelihood = Callable[[Tensor], Tensor]
Schedule = Literal["sigmoid", "linear"]

TARGET_ACCEPTANCE = 0.65
ADAPT_RATE = 1.0
"""log step size moves by this times (acceptance - target) per transition: from 0.1 to 1 in about 7
transitions at full acceptance, so the first few of T >= 20 distributions find the scale."""
SIGMOID_SPREAD = 4.0
"""The sigmoid schedule (Grosse et al. 2015) is sigmoid(x) for x evenly spaced in [-4, 4], rescaled to
[0, 1]: many small steps near the prior and the posterior, where log p(x|z) changes the target most."""


def betas(steps: int, schedule: Schedule = "sigmoid") -> Tensor:
    """beta_0 = 0 < ... < beta_T = 1 for T = `steps` intermediate distributions, float64 [T + 1]."""
    if steps < 1:
        raise ValueError(f"AIS needs at least one intermediate distribution, got {steps}")
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if schedule == "linear":
        return grid
    curve = torch.sigmoid(SIGMOID_SPREAD * (2.0 * grid - 1.0))
    return (curve - curve[0]) / (curve[-1] - curve[0])


@dataclass(frozen=True)
class AnnealResult:
    """log_weights [C, B] (float64), end points z [C, B, d], step sizes reached [B], mean acceptance."""

    log_weights: Tensor
    z: Tensor
    step_sizes: Tensor
    acceptance: float


def anneal(log_likelihood: LogLikelihood, z: Tensor, path: Tensor, leapfrog: int, step_size: float,
           rng: torch.Generator | None = None) -> AnnealResult:
    """Run C chains per sentence from z [C, B, d] along the betas `path` [T + 1] (increasing or decreasing).

    The log weight of a chain is sum_t (path[t] - path[t-1]) log p(x|z_{t-1}); z moves by one HMC
    transition at path[t] after each term but the last.
    """
    chains, batch, dim = z.shape
    z = z.reshape(chains * batch, dim).detach()
    sizes = torch.full((batch,), math.log(step_size), dtype=torch.float64, device=z.device)
    log_w = torch.zeros(chains * batch, dtype=torch.float64, device=z.device)
    ll, grad = _value_and_grad(log_likelihood, z)
    accepted = []
    for t in range(1, len(path)):
        log_w += (path[t] - path[t - 1]).item() * ll.double()
        if t == len(path) - 1:
            break
        eps = sizes.exp().to(z.dtype).repeat(chains).unsqueeze(1)
        z, ll, grad, prob = _hmc(log_likelihood, z, ll, grad, float(path[t]), eps, leapfrog, rng)
        mean_prob = prob.double().reshape(chains, batch).mean(dim=0)
        sizes += ADAPT_RATE * (mean_prob - TARGET_ACCEPTANCE)
        accepted.append(float(mean_prob.mean()))
    acceptance = sum(accepted) / len(accepted) if accepted else float("nan")
    return AnnealResult(log_w.reshape(chains, batch), z.reshape(chains, batch, dim), sizes.exp(), acceptance)


def forward(log_likelihood: LogLikelihood, chains: int, batch: int, dim: int, path: Tensor, leapfrog: int,
            step_size: float, rng: torch.Generator | None = None, like: Tensor | None = None) -> tuple[Estimate, AnnealResult]:
    """AIS from the prior: a stochastic lower bound of log p(x) per sentence [B], error from the chains.

    `like`: a tensor whose device and dtype the chains use (default: CPU float32).
    """
    kind = {"device": like.device, "dtype": like.dtype} if like is not None else {}
    z0 = torch.randn(chains, batch, dim, generator=rng, **kind)
    run = anneal(log_likelihood, z0, path, leapfrog, step_size, rng)
    return estimate_from_log_weights(run.log_weights), run


def reverse(log_likelihood: LogLikelihood, posterior: Tensor, chains: int, path: Tensor, leapfrog: int,
            step_size: float, rng: torch.Generator | None = None) -> tuple[Estimate, AnnealResult]:
    """AIS from exact posterior samples `posterior` [B, d] back to the prior: a stochastic UPPER bound of
    log p(x) per sentence (minus the log-mean-exp of weights whose mean is 1 / p(x))."""
    start = posterior.detach().unsqueeze(0).expand(chains, -1, -1).contiguous()
    run = anneal(log_likelihood, start, path.flip(0), leapfrog, step_size, rng)
    inverse = estimate_from_log_weights(run.log_weights)
    return Estimate(-inverse.log_likelihood, inverse.std_error), run


def _value_and_grad(log_likelihood: LogLikelihood, z: Tensor) -> tuple[Tensor, Tensor]:
    """log p(x|z) [N] and its gradient in z [N, d], both detached."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        ll = log_likelihood(z)
        (grad,) = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), grad


def _hmc(log_likelihood: LogLikelihood, z: Tensor, ll: Tensor, grad: Tensor, beta: float, eps: Tensor,
         leapfrog: int, rng: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One HMC transition per row for f(z) = N(z; 0, I) p(x|z)^beta: (z, log p(x|z), its gradient,
    acceptance probability [N]). A proposal with a non-finite energy is rejected."""

    def energy(z: Tensor, ll: Tensor) -> Tensor:
        return 0.5 * z.pow(2).sum(dim=1) - beta * ll

    momentum = torch.randn(z.shape, generator=rng, device=z.device, dtype=z.dtype)
    start_h = energy(z, ll) + 0.5 * momentum.pow(2).sum(dim=1)
    new_z, new_ll, new_grad = z, ll, grad
    p = momentum - 0.5 * eps * (new_z - beta * new_grad)
    for step in range(leapfrog):
        new_z = new_z + eps * p
        new_ll, new_grad = _value_and_grad(log_likelihood, new_z)
        force = new_z - beta * new_grad
        p = p - (eps if step < leapfrog - 1 else 0.5 * eps) * force
    end_h = energy(new_z, new_ll) + 0.5 * p.pow(2).sum(dim=1)
    log_ratio = (start_h - end_h).double()
    finite = torch.isfinite(log_ratio) & torch.isfinite(new_z).all(dim=1) & torch.isfinite(new_grad).all(dim=1)
    prob = torch.where(finite, log_ratio.clamp(max=0.0).exp(), torch.zeros_like(log_ratio))
    uniform = torch.rand(prob.shape, generator=rng, device=z.device, dtype=torch.float64)
    keep = (uniform < prob).unsqueeze(1)
    return (torch.where(keep, new_z, z), torch.where(keep[:, 0], new_ll, ll), torch.where(keep, new_grad, grad),
            prob)


def decoder_log_likelihood(generator: Generator, tokens: Tensor, chains: int) -> LogLikelihood:
    """z [C * B, d] (chain-major) -> log p(x_b | z) [C * B] for the B sentences of `tokens`."""
    rows = tokens.repeat(chains, 1)
    return lambda z: -generator.sentence_nll(rows, z)


def path_of(cfg: EvaluateConfig) -> Tensor:
    """The betas of the configured AIS path."""
    return betas(cfg.ais_steps, cfg.ais_schedule)


def estimate(model: nn.Module, batch: Batch, settings: Settings) -> Estimate:
    """The AIS estimator for a latent model (SRI, or the VAE's decoder with its N(0, I) prior)."""
    generator, cfg = latent_generator(model), settings.evaluate
    with chain_mode(generator):
        est, _ = forward(decoder_log_likelihood(generator, batch.tokens, cfg.ais_chains), cfg.ais_chains, len(batch),
                         generator.latent_dim, path_of(cfg), cfg.ais_leapfrog, cfg.ais_step_size, settings.rng,
                         like=generator.out.weight)
    return est


def describe(cfg: EvaluateConfig) -> dict[str, float]:
    """How AIS ran: intermediate distributions, chains per sentence, leapfrog steps per transition."""
    return {"steps": cfg.ais_steps, "chains": cfg.ais_chains, "leapfrog": cfg.ais_leapfrog}


def headline(block: dict[str, Any]) -> dict[str, float]:
    """For the model's top level: the intermediate distributions used and BDMC's gap (when it ran)."""
    gap = block.get("bdmc", {}).get("gap")
    return {"ais_steps": block["steps"], **({"bdmc_gap": gap} if gap is not None else {})}
