"""The batched log |det dz_K/dz_0| of short-run chains against slow references, and estimator (a) around it."""
from __future__ import annotations

import torch

from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.evaluation.importance import importance_sample, standard_normal_log_density
from shortrun.evaluation.jacobian import batched_log_det, reference_log_det
from shortrun.evaluation.likelihood import change_of_variables, laplace, log_joint_fn, nll_hessian
from shortrun.evaluation.posterior import chain_gaussian
from shortrun.inference import short_run
from shortrun.model import Generator

V = 12
CFG = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16, dropout_emb=0.0, dropout_out=0.0)
LANGEVIN = LangevinConfig(steps=5, temperature=0.3)


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    gen = Generator(V, CFG)
    with torch.no_grad():  # larger weights than the init range, so z matters and the Jacobian is far from (1 - s^2/2) I
        for param in gen.parameters():
            param.mul_(8.0)
    return gen.eval()


def tokens() -> torch.Tensor:
    return collate([[4, 5, 6], [7, 8], [9, 10, 11, 4, 5], [6]]).tokens


def test_linear_rowwise_map_gives_each_rows_determinant() -> None:
    mats = torch.randn(5, 3, 3, dtype=torch.float64)
    end, log_det = batched_log_det(lambda z, rows: torch.einsum("nij,nj->ni", mats[rows], z), torch.randn(5, 3, dtype=torch.float64))
    assert torch.allclose(log_det, torch.linalg.slogdet(mats).logabsdet)
    assert end.shape == (5, 3) and not end.requires_grad


def test_batched_chain_log_det_equals_the_per_sentence_per_dimension_reference(float64) -> None:
    gen, toks = small_generator(), tokens()
    z0 = torch.randn(toks.size(0), CFG.latent_dim)
    noise = torch.randn(LANGEVIN.steps, toks.size(0), CFG.latent_dim)

    def chain(start: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return short_run(gen, toks[rows], LANGEVIN, z0=start, noise=noise[:, rows], create_graph=True).z

    end, fast = batched_log_det(chain, z0)
    slow_end, slow = reference_log_det(chain, z0)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=0)
    assert torch.allclose(end, short_run(gen, toks, LANGEVIN, z0=z0, noise=noise).z) and torch.allclose(end, slow_end)
    # the chain is far from the identity, so the test can tell a wrong Jacobian from a right one
    assert (fast - slow).abs().max() < 1e-4 < fast.std()


def test_batched_hessian_equals_autograd_per_sentence(float64) -> None:
    gen, toks = small_generator(), tokens()
    z = torch.randn(toks.size(0), CFG.latent_dim)
    fast = nll_hessian(gen, toks, z, rows=3)  # two passes: 3 sentences, then 1
    for b in range(toks.size(0)):
        slow = torch.autograd.functional.hessian(lambda v: gen.sentence_nll(toks[b:b + 1], v[None])[0], z[b])
        assert torch.allclose(fast[b], slow, atol=1e-8)
    assert fast.abs().max() > 0.1


def test_both_sri_estimators_agree_with_a_brute_force_prior_estimate(float64) -> None:
    gen, toks = small_generator(), tokens()
    prior = torch.randn(20000, toks.size(0), CFG.latent_dim, generator=torch.Generator().manual_seed(2))
    truth = importance_sample(log_joint_fn(gen, toks), prior, standard_normal_log_density(prior), chunk=2000)
    assert truth.std_error.max() < 0.02  # d = 4: the prior is a good enough proposal with this many samples
    cov = change_of_variables(gen, toks, LANGEVIN, samples=64, rng=torch.Generator().manual_seed(0), jacobian_rows=32)
    rng = torch.Generator().manual_seed(1)
    fit = laplace(gen, toks, chain_gaussian(gen, toks, LANGEVIN, 4, rng)[0], samples=512, rng=rng, chunk=100, rows=3)
    for est in (cov, fit):
        assert est.log_likelihood.shape == (4,) and (est.std_error > 0).all()
        assert ((est.log_likelihood - truth.log_likelihood).abs() < 4 * est.std_error + 0.05).all()
