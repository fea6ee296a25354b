"""Importance sampling, checked against a linear-Gaussian model whose likelihood and posterior are known."""
from __future__ import annotations

import math

import pytest
import torch

from shortrun.evaluation.importance import (
    diagonal_normal_log_density,
    estimate_from_log_weights,
    importance_sample,
    standard_normal_log_density,
)

D_Z, D_X, SIGMA = 3, 5, 0.5


class LinearGaussian:
    """z ~ N(0, I), x | z ~ N(W z + b, SIGMA^2 I): p(x) and p(z | x) are Gaussian in closed form."""

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(D_X, D_Z, generator=gen, dtype=torch.float64)
        self.bias = torch.randn(D_X, generator=gen, dtype=torch.float64)

    def log_joint(self, x: torch.Tensor):
        """z [s, B, d] -> log p(x_b, z) [s, B]."""

        def fn(z: torch.Tensor) -> torch.Tensor:
            mean = z @ self.weight.T + self.bias
            log_lik = -0.5 * (((x - mean) / SIGMA) ** 2 + math.log(2 * math.pi * SIGMA**2)).sum(-1)
            return log_lik + standard_normal_log_density(z)

        return fn

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.weight @ self.weight.T + SIGMA**2 * torch.eye(D_X, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.bias, cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        precision = torch.eye(D_Z, dtype=torch.float64) + self.weight.T @ self.weight / SIGMA**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ cov / SIGMA**2
        return torch.distributions.MultivariateNormal(mean, cov)


@pytest.fixture
def model_and_data() -> tuple[LinearGaussian, torch.Tensor]:
    model = LinearGaussian()
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, D_Z, generator=gen, dtype=torch.float64)
    x = z @ model.weight.T + model.bias + SIGMA * torch.randn(6, D_X, generator=gen, dtype=torch.float64)
    return model, x


def test_exact_posterior_proposal_recovers_the_analytic_log_likelihood(model_and_data) -> None:
    model, x = model_and_data
    posterior = model.posterior(x)
    samples = posterior.sample((20,))
    est = importance_sample(model.log_joint(x), samples, posterior.log_prob(samples), chunk=7)
    assert torch.allclose(est.log_likelihood, model.log_marginal(x), atol=1e-9)
    assert est.std_error.max() < 1e-9  # every weight equals p(x)


def test_a_wider_proposal_is_within_a_few_standard_errors_and_the_error_shrinks(model_and_data) -> None:
    model, x = model_and_data
    posterior = model.posterior(x)
    wider = torch.distributions.MultivariateNormal(posterior.mean, 3.0 * posterior.covariance_matrix)
    torch.manual_seed(2)
    errors = {}
    for num in (100, 10000):
        samples = wider.sample((num,))
        est = importance_sample(model.log_joint(x), samples, wider.log_prob(samples))
        gap = (est.log_likelihood - model.log_marginal(x)).abs()
        assert (gap < 5 * est.std_error + 1e-3).all()
        errors[num] = est.std_error
    assert (errors[10000] < errors[100] / 5).all() and (errors[100] > 0).all()


def test_log_weights_are_combined_without_overflow() -> None:
    weights = torch.tensor([[1000.0, -2000.0], [1000.0, -2000.0 + math.log(3.0)]])
    est = estimate_from_log_weights(weights)
    assert torch.allclose(est.log_likelihood, torch.tensor([1000.0, -2000.0 + math.log(2.0)], dtype=torch.float64))
    assert est.std_error[0] == 0.0 and est.std_error[1] > 0.0


def test_one_sample_has_no_standard_error() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        estimate_from_log_weights(torch.zeros(1, 3))


def test_diagonal_normal_density_matches_torch() -> None:
    mu, logvar, z = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(diagonal_normal_log_density(z, mu, logvar), expected, atol=1e-5)
