"""Step sizes of the short-run chain learned by the method's own criterion (`langevin.learn_steps`).

With its noise held fixed, the chain z_K = f_s(z_0, eps) is an invertible map of its start z_0 ~ N(0, I),
so its end point has the density q_s(z_K) = N(z_0; 0, I) / |det dz_K/dz_0| (change of variables, as in
the change-of-variables likelihood estimator). The sizes s = (s_0 .. s_{K-1}) maximise the chain's
evidence lower bound, i.e. minimise KL(q_s || p(z|x)):

    ELBO(s) = E[log p(x, z_K) - log q_s(z_K)]
            = E[-NLL(x|z_K) - |z_K|^2 / 2 + |z_0|^2 / 2 + log |det dz_K/dz_0|]   (the 2 pi terms cancel),

a lower bound on log p(x) (with the noise held fixed, q_s is the end point's density given that noise,
whose entropy is at most the marginal's: the bound is no tighter than the marginal chain's would be).
Early in training, while the decoder hardly uses z, the posterior is close to the prior and the best
chain under this criterion barely moves: the learned sizes then shrink (bench/step_learning.py).

The gradient flows through the chain (create_graph) and through its Jacobian (`jacobian.replicated_log_det`:
the chain on d copies of each start). The sizes are parametrised by their logs, so positive by
construction, and updated by their own Adam (lr `langevin.learn_steps_lr`) every
`langevin.learn_steps_every`-th training batch, on the first `langevin.learn_steps_sentences` sentences
of the batch (one chain each), at the batch's training temperature. The generator's parameters get no
gradient from it. An update costs about 3d times a training chain on those sentences (d = latent_dim:
the Jacobian's d columns, differentiated once more), so it is run on few sentences and every few batches.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from shortrun.config import LangevinConfig
from shortrun.errors import TrainingError
from shortrun.evaluation.jacobian import double_backward_ready, replicated_log_det
from shortrun.inference import ChainDiverged, chain_mode, short_run, step_sizes
from shortrun.model import Generator


class StepSizesDiverged(TrainingError):
    """A learned step size is no longer a usable step size; the run stops before it is used or saved."""


def chain_elbo(generator: Generator, tokens: Tensor, langevin: LangevinConfig, sizes: Tensor, temperature: float,
               z0: Tensor, noise: Tensor) -> Tensor:
    """Per-sentence ELBO [B] of the chain with step sizes `sizes` [K], start z0 [B, d] and fixed noise
    [K, B, d]: -NLL(x|z_K) - |z_K|^2/2 + |z_0|^2/2 + log|det dz_K/dz_0| (one sample of the bound on log p(x)).
    Differentiable in `sizes` (and in the generator's parameters, which callers leave alone)."""

    def chain(start: Tensor, rows: Tensor) -> Tensor:
        return short_run(generator, tokens[rows], langevin, temperature=temperature, z0=start, noise=noise[:, rows],
                         create_graph=True, sizes=sizes).z

    with chain_mode(generator), double_backward_ready(tokens.device):
        z_end, log_det = replicated_log_det(chain, z0)
        nll = generator.sentence_nll(tokens, z_end)
    return -nll - 0.5 * z_end.pow(2).sum(dim=1) + 0.5 * z0.pow(2).sum(dim=1) + log_det


class StepSizeLearner:
    """The chain's log step sizes, their Adam, and the schedule of updates; `chain` is the current chain."""

    def __init__(self, langevin: LangevinConfig) -> None:
        self.langevin = langevin
        self.log_sizes = torch.tensor(step_sizes(langevin), dtype=torch.float64).log().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.log_sizes], lr=langevin.learn_steps_lr)
        self.elbo_sum, self.updates = 0.0, 0

    @property
    def sizes(self) -> list[float]:
        return self.log_sizes.detach().exp().tolist()

    @property
    def chain(self) -> LangevinConfig:
        """The configured chain with the current learned sizes."""
        return self.langevin.model_copy(update={"learned_sizes": self.sizes})

    def due(self, global_step: int) -> bool:
        """Whether training batch `global_step` (0-based) starts with an update: batches every, 2 every, ..."""
        return (global_step + 1) % self.langevin.learn_steps_every == 0

    def update(self, generator: Generator, tokens: Tensor, temperature: float,
               z0: Optional[Tensor] = None, noise: Optional[Tensor] = None) -> float:
        """One Adam ascent step on the mean ELBO of one chain per sentence of `tokens` (its first
        n = learn_steps_sentences rows) from z0 [n, d] with noise [K, n, d] (drawn from the global RNG when
        None); returns that ELBO before the step."""
        tokens = tokens[: self.langevin.learn_steps_sentences]
        like = {"device": tokens.device, "dtype": generator.out.weight.dtype}
        if z0 is None:
            z0 = torch.randn(tokens.size(0), generator.latent_dim, **like)
        if noise is None:
            noise = torch.randn(self.langevin.steps, tokens.size(0), generator.latent_dim, **like)
        sizes = self.log_sizes.to(**like).exp()
        try:  # in full precision even under train.precision bfloat16: a log-determinant needs it
            with torch.autocast(tokens.device.type, enabled=False):
                elbo = chain_elbo(generator, tokens, self.langevin, sizes, temperature, z0, noise).mean()
        except ChainDiverged as err:
            raise StepSizesDiverged(
                f"step-size learning at sizes {_rounded(self.sizes)}: {err}; lower langevin.learn_steps_lr"
            ) from None
        (grad,) = torch.autograd.grad(-elbo, [self.log_sizes])
        self.log_sizes.grad = grad
        self.optimizer.step()
        self.log_sizes.grad = None
        self._check()
        value = float(elbo.detach())
        self.elbo_sum, self.updates = self.elbo_sum + value, self.updates + 1
        return value

    def _check(self) -> None:
        for index, size in enumerate(self.sizes):
            if not 0.0 < size < math.inf:
                raise StepSizesDiverged(
                    f"learned step size s_{index} (Langevin step {index + 1}) became {size}; "
                    "lower langevin.learn_steps_lr"
                )

    def epoch_metrics(self) -> dict[str, float]:
        """The current sizes (step_size_0 ..) and the mean ELBO of this epoch's updates; starts a new epoch."""
        metrics = {f"step_size_{i}": size for i, size in enumerate(self.sizes)}
        if self.updates:
            metrics["step_elbo"] = self.elbo_sum / self.updates
        self.elbo_sum, self.updates = 0.0, 0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"log_sizes": self.log_sizes.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "elbo_sum": self.elbo_sum, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_sizes.copy_(state["log_sizes"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.elbo_sum, self.updates = float(state["elbo_sum"]), int(state["updates"])


def _rounded(sizes: list[float]) -> list[float]:
    return [round(size, 4) for size in sizes]
