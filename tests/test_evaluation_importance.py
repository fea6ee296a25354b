"""Importance sampling, checked against a linear-Gaussian model whose likelihood and posterior are known."""
from __future__ import annotations

import math

import pytest
import torch

from shortrun.evaluation.importance import diagonal_normal_log_density, estimate_from_log_weights, importance_sample
from tests.linear_gaussian import LinearGaussian


@pytest.fixture
def model_and_data() -> tuple[LinearGaussian, torch.Tensor]:
    model = LinearGaussian(dim_z=3, dim_x=5, sigma=0.5)
    return model, model.simulate(6, seed=1)[1]


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
