"""Short-run Langevin inference of z for given sentences: K steps from the prior on log p(x|z) + log p(z).

    z_{k+1} = z_k - (s_k^2 / 2) (z_k + grad_z NLL(x|z_k)) + T s_k eps_k

The chain runs with dropout off: it then targets the posterior of the model that is evaluated and
exported (dropout noise would add an uncontrolled second noise source on top of T), and training,
export and evaluation all infer z the same way. langevin.chain_dropout keeps dropout on in the chains
of training steps only (the authors' code does; a model in eval mode never uses it). The LSTM itself
stays in train mode inside the chain only because cuDNN refuses a backward pass in eval mode; a
one-layer LSTM has no internal dropout, so this changes nothing numerically.

Divergence guard: a chain stops with ChainDiverged at the first step whose NLL or z is NaN/Inf, or whose
z has run away: a sentence's |z| above MAX_NORM_PER_SQRT_DIM * sqrt(d). Under the prior |z| is about
sqrt(d) (P(|z| > 10 sqrt(d)) is below 1e-22 for every d), and at 1000 sqrt(d) the prior alone costs
|z|^2 / 2 = 500,000 d nats, orders of magnitude beyond any sentence's NLL (at most a few thousand
nats), so no posterior puts mass there: such values come only from a step size that overshoots
(the chain then multiplies z by about s^2 / 2 per step). Checked once after the chain, with no host
sync per step.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor

from shortrun.config import LangevinConfig
from shortrun.errors import TrainingError
from shortrun.model import Generator, ScoredPositions

# The reference implementation's schedule for K = 20 (bpucla/sri_text); "paper" stretches its shape.
PAPER_STEPS = [0.8, 0.7, 0.6, 0.5, 0.2, 0.2, 0.1, 0.1, 0.05] + [0.05] * 11
MAX_NORM_PER_SQRT_DIM = 1e3
"""A sentence's |z| beyond this times sqrt(latent_dim) stops the chain (see the module docstring)."""


class ChainDiverged(TrainingError):
    """The chain produced NaN/Inf or a runaway z; `step` is the first bad Langevin step (1-based)."""

    def __init__(self, step: int, what: str = "z or its gradient became NaN/Inf") -> None:
        super().__init__(f"Langevin step {step}: {what}; lower langevin.step_size (or train.lr)")
        self.step = step


@dataclass
class ShortRunResult:
    """End point z_K [B, d] (detached unless create_graph), start z0, and per-step diagnostics.

    grad_norms: mean over sentences of |grad_z NLL(x|z_k)| at each step [K] (a decoder that ignores z
    has gradients near zero: a sign of posterior collapse).
    energies: mean over sentences of NLL(x|z_k) + |z_k|^2 / 2 = -log p(x, z_k) + const at each step [K].
    """

    z: Tensor
    z0: Tensor
    grad_norms: Tensor
    energies: Tensor


def step_sizes(cfg: LangevinConfig) -> list[float]:
    """The K step sizes s_0 .. s_{K-1}: the learned ones when the config holds K of them, else the schedule's.

    (A copy of a learned chain with another K, e.g. the evaluation's NLL-vs-K sweep, runs the schedule.)
    """
    k = cfg.steps
    if cfg.learned_sizes is not None and len(cfg.learned_sizes) == k:
        return list(cfg.learned_sizes)
    first, last = cfg.step_size, cfg.final_step_size
    if cfg.schedule == "constant":
        return [first] * k
    if k == 1:
        return [first]
    if cfg.schedule == "linear":
        return [first + (last - first) * i / (k - 1) for i in range(k)]
    ref_first, ref_last = PAPER_STEPS[0], PAPER_STEPS[-1]
    sizes = []
    for i in range(k):
        pos = i * (len(PAPER_STEPS) - 1) / (k - 1)
        lo = int(pos)
        hi = min(lo + 1, len(PAPER_STEPS) - 1)
        ref = PAPER_STEPS[lo] + (PAPER_STEPS[hi] - PAPER_STEPS[lo]) * (pos - lo)
        sizes.append(round(last + (ref - ref_last) / (ref_first - ref_last) * (first - last), 12))
    return sizes


@contextmanager
def chain_mode(generator: Generator, dropout: bool = False) -> Iterator[None]:
    """Dropout off for the chain unless `dropout` and the generator is in train mode (LSTM in train mode
    for cuDNN's backward); restores the modes after."""
    modes = {module: module.training for module in generator.modules()}
    if not (dropout and generator.training):
        generator.eval()
    generator.lstm.train()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.train(mode)


def short_run(
    generator: Generator,
    tokens: Tensor,
    cfg: LangevinConfig,
    temperature: Optional[float] = None,
    z0: Optional[Tensor] = None,
    noise: Optional[Tensor] = None,
    create_graph: bool = False,
    rng: Optional[torch.Generator] = None,
    sizes: Optional[Tensor] = None,
    param_grads: bool = False,
) -> ShortRunResult:
    """Infer z for each sentence of `tokens` [B, T] by K Langevin steps from z0 ~ N(0, I).

    temperature: T (None uses cfg.temperature; cfg.noise False forces 0). noise: pre-drawn [K, B, d]
    standard normal noise (fixed noise for the change-of-variables estimator). create_graph keeps the
    chain differentiable with respect to z0. sizes: [K] step sizes replacing the config's (a tensor that
    requires grad, with create_graph, makes z_K differentiable in them: step-size learning).
    param_grads: also accumulate into the generator's .grad the parameter gradient of the batch-summed
    NLL(x|z_k) at every step k = 0 .. K-1, from the same backward pass that gives grad_z (the reference
    training rule, see shortrun.objectives); the caller zeroes the gradients first.
    Raises ChainDiverged on NaN/Inf or a runaway |z| (see the module docstring).
    """
    if param_grads and create_graph:
        raise ValueError("param_grads and create_graph cannot be combined")
    sizes = step_sizes(cfg) if sizes is None else sizes
    batch, dim, device = tokens.size(0), generator.latent_dim, tokens.device
    temp = 0.0 if not cfg.noise else (cfg.temperature if temperature is None else temperature)
    if z0 is None:
        z0 = torch.randn(batch, dim, device=device, generator=rng)
    if noise is not None and noise.shape != (len(sizes), batch, dim):
        raise ValueError(f"noise must have shape ({len(sizes)}, {batch}, {dim}), got {tuple(noise.shape)}")
    grad_norms, energies, finite, norms = [], [], [], []
    scored = ScoredPositions.of(tokens)
    z = z0
    # cuDNN's LSTM has no double backward: a differentiable chain on CUDA uses the native kernels
    cudnn = torch.backends.cudnn.flags(enabled=False) if create_graph and device.type == "cuda" else nullcontext()
    with torch.enable_grad(), chain_mode(generator, cfg.chain_dropout), cudnn:
        for k, s in enumerate(sizes):
            if not create_graph:
                z = z.detach().requires_grad_(True)
            elif not z.requires_grad:
                z = z.requires_grad_(True)
            nll = generator.sentence_nll(tokens, z, scored)
            if param_grads:
                nll.sum().backward()  # fills z.grad and adds this step's parameter gradient to .grad
                grad = z.grad
            else:
                (grad,) = torch.autograd.grad(nll.sum(), z, create_graph=create_graph)
            with torch.no_grad():
                grad_norms.append(grad.norm(dim=1).mean())
                energies.append((nll + 0.5 * z.pow(2).sum(dim=1)).mean())
            z = z - 0.5 * s * s * (z + grad)
            if temp > 0.0:
                eps = noise[k] if noise is not None else torch.randn(batch, dim, device=device, generator=rng)
                z = z + temp * s * eps
            with torch.no_grad():
                finite.append(torch.isfinite(nll).all() & torch.isfinite(z).all())
                norms.append(z.norm(dim=1).max())
    _check_chain(torch.stack(finite), torch.stack(norms), dim)
    if not create_graph:
        z = z.detach()
    return ShortRunResult(z=z, z0=z0, grad_norms=torch.stack(grad_norms), energies=torch.stack(energies))


def _check_chain(finite: Tensor, norms: Tensor, dim: int) -> None:
    """Raise ChainDiverged at the first step [K] that was non-finite or whose largest |z| ran away."""
    bound = MAX_NORM_PER_SQRT_DIM * dim ** 0.5
    ok = finite & (norms <= bound)
    if bool(ok.all()):  # the chain's one host sync
        return
    step = int((~ok).nonzero()[0, 0])
    if not bool(finite[step]):
        raise ChainDiverged(step + 1)
    raise ChainDiverged(step + 1, f"|z| of a sentence reached {float(norms[step]):.3g}, beyond "
                                  f"{MAX_NORM_PER_SQRT_DIM:g} sqrt(d) = {bound:.3g} where the prior N(0, I) has no mass "
                                  "(the chain diverges)")
