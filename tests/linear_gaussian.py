"""A latent-variable model whose log p(x) and posterior are known in closed form, for likelihood-estimator tests.

z ~ N(0, I_dz), x | z ~ N(W z + b, sigma^2 I_dx): p(x) = N(b, W W^T + sigma^2 I) and p(z | x) is Gaussian.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from shortrun.evaluation.importance import standard_normal_log_density


class LinearGaussian:
    """The model with weights drawn from `seed`; float64 throughout."""

    def __init__(self, dim_z: int = 3, dim_x: int = 5, sigma: float = 0.5, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.dim_z, self.dim_x, self.sigma = dim_z, dim_x, sigma
        self.weight = torch.randn(dim_x, dim_z, generator=gen, dtype=torch.float64)
        self.bias = torch.randn(dim_x, generator=gen, dtype=torch.float64)

    def simulate(self, num: int, seed: int) -> tuple[Tensor, Tensor]:
        """(z [num, dz], x [num, dx]) drawn from the joint: each z is an exact posterior sample for its x."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(num, self.dim_z, generator=gen, dtype=torch.float64)
        return z, z @ self.weight.T + self.bias + self.sigma * torch.randn(num, self.dim_x, generator=gen, dtype=torch.float64)

    def log_likelihood(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """z [..., N, dz] -> log p(x_n | z) [..., N] for the N rows of x [N, dx]."""

        def fn(z: Tensor) -> Tensor:
            mean = z @ self.weight.T + self.bias
            return -0.5 * (((x - mean) / self.sigma) ** 2 + math.log(2 * math.pi * self.sigma**2)).sum(-1)

        return fn

    def log_joint(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """z [s, B, d] -> log p(x_b, z) [s, B]."""
        log_lik = self.log_likelihood(x)
        return lambda z: log_lik(z) + standard_normal_log_density(z)

    def log_marginal(self, x: Tensor) -> Tensor:
        cov = self.weight @ self.weight.T + self.sigma**2 * torch.eye(self.dim_x, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.bias, cov).log_prob(x)

    def posterior(self, x: Tensor) -> torch.distributions.MultivariateNormal:
        precision = torch.eye(self.dim_z, dtype=torch.float64) + self.weight.T @ self.weight / self.sigma**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ cov / self.sigma**2
        return torch.distributions.MultivariateNormal(mean, cov)
