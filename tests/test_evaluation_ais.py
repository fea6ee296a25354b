"""Annealed importance sampling and BDMC against a linear-Gaussian model whose log p(x) is known, and on a tiny generator."""
from __future__ import annotations

import pytest
import torch

from shortrun.config import EvaluateConfig, LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.errors import ConfigError
from shortrun.evaluation import ais, bdmc
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.importance import importance_sample, standard_normal_log_density
from shortrun.evaluation.likelihood import laplace
from shortrun.evaluation.posterior import chain_gaussian
from shortrun.model import Generator
from shortrun.params import build_config
from tests.linear_gaussian import LinearGaussian

SENTENCES = 6


def forward_on(model: LinearGaussian, x: torch.Tensor, chains: int, steps: int, seed: int = 0):
    return ais.forward(model.log_likelihood(x.repeat(chains, 1)), chains, len(x), model.dim_z, ais.betas(steps),
                       leapfrog=2, step_size=0.1, rng=torch.Generator().manual_seed(seed), like=x)


def test_betas_run_from_prior_to_posterior_and_one_step_is_prior_sampling() -> None:
    for schedule in ("sigmoid", "linear"):
        path = ais.betas(50, schedule)
        assert path.shape == (51,) and path[0] == 0.0 and path[-1] == 1.0 and (path.diff() > 0).all()
    sigmoid = ais.betas(50)
    assert sigmoid[1] < 0.2 / 50 and 1.0 - sigmoid[-2] < 0.2 / 50  # small steps at both ends
    with pytest.raises(ValueError, match="at least one intermediate distribution"):
        ais.betas(0)
    model = LinearGaussian()
    _, x = model.simulate(SENTENCES, seed=1)
    est, run = forward_on(model, x, chains=8, steps=1)  # T = 1: the weights are p(x | z0), z0 ~ prior
    z0 = torch.randn(8, SENTENCES, model.dim_z, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    prior = importance_sample(model.log_joint(x), z0, standard_normal_log_density(z0))
    assert torch.allclose(est.log_likelihood, prior.log_likelihood) and torch.equal(run.z, z0)


def test_ais_recovers_the_analytic_log_likelihood_within_its_standard_error() -> None:
    model = LinearGaussian(dim_z=3, dim_x=5, sigma=0.5)
    _, x = model.simulate(SENTENCES, seed=1)
    truth = model.log_marginal(x)
    est, run = forward_on(model, x, chains=64, steps=200)
    assert est.log_likelihood.shape == (SENTENCES,) and (est.std_error > 0).all() and est.std_error.max() < 0.2
    assert ((est.log_likelihood - truth).abs() < 4 * est.std_error + 0.02).all()
    assert 0.5 < run.acceptance < 0.8  # the per-sentence step sizes found the target acceptance of 0.65
    few, _ = forward_on(model, x, chains=64, steps=2)
    assert (truth - few.log_likelihood).mean() > 1.0  # with too few distributions AIS is visibly loose: the test can fail


def test_bdmc_bounds_bracket_the_analytic_value_and_close_in_on_it_with_more_steps() -> None:
    model = LinearGaussian(dim_z=6, dim_x=12, sigma=0.3, seed=2)
    num = 20
    z, x = model.simulate(num, seed=3)  # z: exact posterior samples for x
    truth = model.log_marginal(x)
    gaps = []
    for steps in (5, 100):
        rng = torch.Generator().manual_seed(steps)
        log_likelihood = model.log_likelihood(x.repeat(16, 1))
        lower, _ = ais.forward(log_likelihood, 16, num, model.dim_z, ais.betas(steps), 2, 0.1, rng, like=x)
        upper, _ = ais.reverse(log_likelihood, z, 16, ais.betas(steps), 2, 0.1, rng)
        assert lower.log_likelihood.mean() < truth.mean() < upper.log_likelihood.mean()
        # stochastic bounds: a sentence may fall on the wrong side, by d nats with probability at most exp(-d)
        assert (lower.log_likelihood > truth + 1.0).sum() <= 2 and (upper.log_likelihood < truth - 1.0).sum() <= 2
        gaps.append(float((upper.log_likelihood - lower.log_likelihood).mean()))
    assert gaps[0] > 5.0 and gaps[1] < 0.2 * gaps[0]


V = 12
CFG = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, dropout_emb=0.0, dropout_out=0.0)


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    gen = Generator(V, CFG)
    with torch.no_grad():  # larger weights than the init range, so z matters
        for param in gen.parameters():
            param.mul_(8.0)
    return gen.eval()


def test_ais_on_a_tiny_generator_agrees_with_fitted_importance_sampling() -> None:
    gen, tokens = tiny_generator(), collate([[4, 5, 6], [7, 8], [9, 10, 11, 4, 5], [6]])
    cfg = EvaluateConfig(ais_steps=100, ais_chains=16, ais_leapfrog=2)
    est = ais.estimate(gen, tokens, Settings(cfg, LangevinConfig(), torch.Generator().manual_seed(0)))
    rng = torch.Generator().manual_seed(1)
    langevin = LangevinConfig(steps=5, temperature=0.3)
    fitted = laplace(gen, tokens.tokens, chain_gaussian(gen, tokens.tokens, langevin, 4, rng)[0], samples=2000, rng=rng)
    assert est.log_likelihood.shape == (4,) and (est.std_error > 0).all()
    error = (est.std_error.pow(2) + fitted.std_error.pow(2)).sqrt()
    assert ((est.log_likelihood - fitted.log_likelihood).abs() < 4 * error + 0.1).all()


def test_bdmc_simulates_sentences_that_end_and_brackets_on_a_tiny_generator() -> None:
    gen = tiny_generator(1)
    rng = torch.Generator().manual_seed(0)
    sentences, z = bdmc.simulate(gen, 10, max_len=6, rng=rng)
    assert len(sentences) == len(z) and 0 < len(sentences) <= 10 and all(len(s) < 6 for s in sentences)
    cfg = EvaluateConfig(ais_steps=30, ais_chains=4, ais_leapfrog=1, bdmc_sentences=5, batch_size=3)
    found = bdmc.check(gen, Settings(cfg, LangevinConfig(), rng), max_len=6)["bdmc"]
    assert found["sentences"] == 5 and found["seconds"] > 0
    assert found["gap"] > -3 * found["gap_se"] and found["forward_nll"] >= found["reverse_nll"] - 3 * found["gap_se"]
    assert bdmc.check(gen, Settings(cfg.model_copy(update={"bdmc_sentences": 0}), LangevinConfig(), rng), 6) == {}


@pytest.mark.parametrize("key, value", [("ais_steps", 0), ("ais_chains", 1), ("ais_leapfrog", 0), ("ais_step_size", 0.0),
                                        ("bdmc_sentences", -1), ("ais_schedule", "cosine")])
def test_out_of_range_ais_settings_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^evaluate.{key}: "):
        build_config("tiny", {"evaluate": {key: value}})
