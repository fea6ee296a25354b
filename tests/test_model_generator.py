"""The generator p(x|z), the LM baseline and the VAE: shapes, padding, gradients, decoding, bad sizes."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from shortrun.config import ModelConfig
from shortrun.data.batching import collate
from shortrun.data.vocab import BOS, EOS, PAD
from shortrun.errors import ConfigError
from shortrun.model import VAE, Generator, LanguageModel, TokenNLL, build_model, latent_generator
from shortrun.params import build_config

V = 23
CFG = ModelConfig(latent_dim=5, emb_dim=8, hidden_dim=12, encoder_hidden_dim=10)
SENTENCES = [[4, 5, 6], [7, 8, 9, 10, 11, 12], [13]]


def batch():
    return collate(SENTENCES)


def eval_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(kind, V, CFG).eval()


def test_log_probs_are_normalised_and_nll_sums_the_targets() -> None:
    gen = eval_model("sri")
    b = batch()
    z = torch.randn(3, CFG.latent_dim)
    logp = gen(b.tokens, z)
    assert logp.shape == (3, b.tokens.shape[1] - 1, V)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-5)
    targets = b.tokens[:, 1:]
    picked = logp.gather(2, targets.unsqueeze(2)).squeeze(2) * (targets != PAD)
    assert torch.allclose(gen.sentence_nll(b.tokens, z), -picked.sum(1), atol=1e-4)


def nll(model: torch.nn.Module, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return model.sentence_nll(tokens, z) if isinstance(model, Generator) else model.sentence_nll(tokens)


@pytest.mark.parametrize("kind", ["sri", "lm"])
def test_padding_does_not_change_a_sentence_nll(kind: str) -> None:
    model = eval_model(kind)
    z = torch.randn(3, CFG.latent_dim)
    padded = nll(model, batch().tokens, z)
    alone = torch.cat([nll(model, collate([s]).tokens, z[i : i + 1]) for i, s in enumerate(SENTENCES)])
    assert torch.allclose(padded, alone, atol=1e-5)


def test_nll_gradient_wrt_z_matches_finite_differences() -> None:
    gen = eval_model("sri").double()
    tokens = batch().tokens
    z = torch.randn(3, CFG.latent_dim, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gen.sentence_nll(tokens, z).sum(), z)
    eps = 1e-6
    numeric = torch.zeros_like(z)
    with torch.no_grad():
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                step = torch.zeros_like(z)
                step[i, j] = eps
                diff = gen.sentence_nll(tokens, z + step) - gen.sentence_nll(tokens, z - step)
                numeric[i, j] = diff[i] / (2 * eps)
    assert torch.allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    assert grad.abs().sum() > 0


def test_z_enters_the_initial_state_and_every_input() -> None:
    gen = eval_model("sri")
    assert gen.init_hidden.in_features == CFG.latent_dim
    assert gen.lstm.input_size == CFG.emb_dim + CFG.latent_dim
    tokens = batch().tokens
    assert not torch.allclose(gen.sentence_nll(tokens, torch.zeros(3, 5)), gen.sentence_nll(tokens, torch.ones(3, 5)))


def test_wrong_z_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"z must have shape \(3, 5\)"):
        eval_model("sri").sentence_nll(batch().tokens, torch.zeros(3, 4))


def test_parameters_start_uniform_in_the_reference_range() -> None:
    for kind in ("sri", "vae", "lm"):
        params = torch.cat([p.flatten() for p in eval_model(kind).parameters()])
        assert params.abs().max() <= 0.1 and params.std() > 0.04


def test_decode_returns_ids_without_specials_and_respects_max_len() -> None:
    gen = eval_model("sri")
    z = torch.randn(4, CFG.latent_dim)
    greedy = gen.decode(z, max_len=7)
    assert len(greedy) == 4 and greedy == gen.decode(z, max_len=7)
    rng = torch.Generator().manual_seed(1)
    sampled = gen.decode(z, max_len=7, greedy=False, rng=rng)
    for sentence in greedy + sampled:
        assert len(sentence) <= 7
        assert all(t not in (PAD, BOS, EOS) and 0 <= t < V for t in sentence)
    assert len(eval_model("lm").decode(2, max_len=5, greedy=False, rng=rng)) == 2


def test_vae_encoder_reads_only_the_valid_tokens() -> None:
    vae = eval_model("vae")
    b = batch()
    mu, logvar = vae.encode(b.tokens, b.lengths)
    assert mu.shape == logvar.shape == (3, CFG.latent_dim)
    one = collate([SENTENCES[2]])
    mu_alone, _ = vae.encode(one.tokens, one.lengths)
    assert torch.allclose(mu[2:], mu_alone, atol=1e-6)
    rec, kl, mean = vae(b.tokens, b.lengths)
    assert rec.shape == (3,) and kl.shape == (3, CFG.latent_dim) and (kl >= 0).all() and torch.equal(mean, mu)


def test_build_model_kinds_share_the_decoder_code() -> None:
    assert isinstance(build_model("sri", V, CFG), Generator)
    assert isinstance(build_model("lm", V, CFG), LanguageModel)
    vae = build_model("vae", V, CFG)
    assert isinstance(vae, VAE) and latent_generator(vae) is vae.generator
    assert latent_generator(build_model("lm", V, CFG)) is None
    with pytest.raises(ValueError, match="expected one of sri, vae, lm"):
        build_model("gpt", V, CFG)


def test_latent_size_zero_is_refused_before_any_work() -> None:
    with pytest.raises(ValidationError):
        ModelConfig(latent_dim=0)
    with pytest.raises(ConfigError, match=r"^model\.latent_dim: "):
        build_config("tiny", {"model": {"latent_dim": 0}})


def test_token_nll_matches_cross_entropy_to_second_order() -> None:
    logits = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, 8, 3, 1, 5])
    expected = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert torch.allclose(TokenNLL.apply(logits, targets), expected)
    assert torch.autograd.gradcheck(lambda x: TokenNLL.apply(x, targets), (logits,))
    assert torch.autograd.gradgradcheck(lambda x: TokenNLL.apply(x, targets), (logits,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("weights", ["ones", "per row"])
def test_token_nll_gradient_scales_by_the_incoming_gradient_whether_or_not_it_is_all_ones(dtype, weights) -> None:
    torch.manual_seed(0)
    logits = (3 * torch.randn(5, 11, dtype=torch.float64)).to(dtype)
    targets = torch.tensor([0, 3, 10, 3, 1])
    scale = torch.ones(5, dtype=torch.float64) if weights == "ones" else torch.tensor([0.5, 2.0, 1.0, -1.0, 3.0], dtype=torch.float64)
    exact_logits = logits.double().requires_grad_(True)
    (expected,) = torch.autograd.grad((torch.nn.functional.cross_entropy(exact_logits, targets, reduction="none") * scale).sum(), exact_logits)
    ours = logits.clone().requires_grad_(True)
    (got,) = torch.autograd.grad((TokenNLL.apply(ours, targets) * scale).sum(), ours)
    assert got.dtype == dtype
    assert torch.allclose(got.double(), expected, atol=1e-12 if dtype == torch.float64 else 0.02)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_retained_token_nll_gives_the_same_gradient_twice(dtype) -> None:
    """Its backward must leave the kept arrays as they were: gradcheck and per-row Jacobians backpropagate twice."""
    logits = torch.randn(4, 7).to(dtype).requires_grad_(True)
    nll = TokenNLL.apply(logits, torch.tensor([1, 2, 3, 4])).sum()
    (first,) = torch.autograd.grad(nll, logits, retain_graph=True)
    (second,) = torch.autograd.grad(nll, logits)
    assert torch.equal(first, second)
