"""Short-run Langevin inference: step schedules, the chain raising log p(x, z), padding, noise, NaN guard."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError

from shortrun.config import LangevinConfig, ModelConfig, TrainConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES
from shortrun.errors import ConfigError, TrainingError
from shortrun.inference import MAX_NORM_PER_SQRT_DIM, PAPER_STEPS, ChainDiverged, short_run, step_sizes
from shortrun.model import Generator
from shortrun.params import build_config
from shortrun.training import train_model

V = 10
CFG = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16)


def two_topic_corpus(n: int) -> Dataset:
    """Sentences that alternate 4 5 4 5 ... or 6 7 6 7 ...: which one is a latent choice."""
    seqs = [([4, 5] if i % 2 else [6, 7]) * (1 + i % 4) for i in range(n)]
    return Dataset.from_dict({"id": list(range(n)), "text": ["x"] * n, "ids": seqs, "label": [-1] * n}, features=FEATURES)


@pytest.fixture(scope="module")
def trained() -> Generator:
    """A generator trained a little by short-run inference on the two-topic corpus."""
    train = TrainConfig(epochs=6, batch_size=16, lr=3e-3, device="cpu", precision="float32")
    outcome = train_model("sri", V, two_topic_corpus(64), two_topic_corpus(16), CFG, LangevinConfig(steps=10), train,
                          progress=False)
    assert outcome.history[-1]["train_nll"] < outcome.history[0]["train_nll"]
    return outcome.model


def energy(gen: Generator, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (gen.sentence_nll(tokens, z) + 0.5 * z.pow(2).sum(1)).mean()


def test_paper_schedule_is_the_reference_for_k20_and_keeps_its_shape_for_other_k() -> None:
    assert step_sizes(LangevinConfig(steps=20)) == pytest.approx(PAPER_STEPS)
    for k in (1, 5, 40):
        sizes = step_sizes(LangevinConfig(steps=k))
        assert len(sizes) == k and sizes[0] == pytest.approx(0.8)
        assert all(a >= b - 1e-12 for a, b in zip(sizes, sizes[1:]))
    assert step_sizes(LangevinConfig(steps=5))[-1] == pytest.approx(0.05)
    scaled = step_sizes(LangevinConfig(steps=20, step_size=0.4, final_step_size=0.1))
    assert scaled[0] == pytest.approx(0.4) and scaled[-1] == pytest.approx(0.1)


def test_linear_and_constant_schedules() -> None:
    assert step_sizes(LangevinConfig(steps=3, schedule="linear", step_size=0.5, final_step_size=0.1)) == pytest.approx([0.5, 0.3, 0.1])
    assert step_sizes(LangevinConfig(steps=4, schedule="constant", step_size=0.3)) == [0.3] * 4


@pytest.mark.parametrize("temperature", [0.0, 0.05])
def test_short_run_raises_log_joint_on_a_trained_decoder(trained: Generator, temperature: float) -> None:
    tokens = collate(two_topic_corpus(32)["ids"]).tokens
    torch.manual_seed(3)
    result = short_run(trained, tokens, LangevinConfig(steps=20), temperature=temperature)
    path = torch.cat([result.energies, energy(trained, tokens, result.z).reshape(1)])
    assert result.energies.shape == result.grad_norms.shape == (20,)
    assert (path[1:] - path[:-1]).mean() < 0  # -log p(x, z) falls on average over the steps
    assert path[-1] < path[0] - 1.0


def test_a_batch_with_padding_infers_what_each_sentence_alone_infers(trained: Generator) -> None:
    seqs = [[4, 5, 4, 5, 4, 5], [6, 7], [4]]
    cfg = LangevinConfig(steps=5, noise=False)
    z0 = torch.randn(3, CFG.latent_dim)
    together = short_run(trained, collate(seqs).tokens, cfg, z0=z0).z
    alone = torch.cat([short_run(trained, collate([s]).tokens, cfg, z0=z0[i : i + 1]).z for i, s in enumerate(seqs)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_noise_controls(trained: Generator) -> None:
    tokens = collate([[4, 5], [6, 7, 6]]).tokens
    cfg = LangevinConfig(steps=4)
    z0 = torch.randn(2, CFG.latent_dim)
    quiet = short_run(trained, tokens, cfg.model_copy(update={"noise": False}), z0=z0).z
    assert torch.equal(quiet, short_run(trained, tokens, cfg, temperature=0.0, z0=z0).z)
    noise = torch.randn(4, 2, CFG.latent_dim)
    fixed = short_run(trained, tokens, cfg, z0=z0, noise=noise).z
    assert torch.equal(fixed, short_run(trained, tokens, cfg, z0=z0, noise=noise).z)
    assert not torch.allclose(fixed, quiet)
    rng = torch.Generator().manual_seed(5)
    drawn = short_run(trained, tokens, cfg, rng=rng).z
    assert torch.equal(drawn, short_run(trained, tokens, cfg, rng=torch.Generator().manual_seed(5)).z)
    with pytest.raises(ValueError, match=r"noise must have shape \(4, 2, 4\)"):
        short_run(trained, tokens, cfg, noise=torch.zeros(3, 2, 4))


def test_chain_restores_training_mode_and_leaves_no_parameter_gradients(trained: Generator) -> None:
    trained.zero_grad(set_to_none=True)
    trained.train()
    short_run(trained, collate([[4, 5]]).tokens, LangevinConfig(steps=2))
    assert trained.training and trained.drop_emb.training
    assert all(p.grad is None for p in trained.parameters())
    trained.eval()


def test_create_graph_differentiates_the_chain_wrt_z0(trained: Generator) -> None:
    gen = trained.double()
    try:
        tokens = collate([[4, 5, 4], [6, 7]]).tokens
        cfg = LangevinConfig(steps=3, noise=False)
        z0 = torch.randn(2, CFG.latent_dim, dtype=torch.float64, requires_grad=True)
        zk = short_run(gen, tokens, cfg, z0=z0, create_graph=True).z
        direction = torch.randn_like(z0)
        (jvp,) = torch.autograd.grad(zk, z0, grad_outputs=direction)
        eps = 1e-6
        plus = short_run(gen, tokens, cfg, z0=(z0 + eps * direction).detach()).z
        minus = short_run(gen, tokens, cfg, z0=(z0 - eps * direction).detach()).z
        numeric_vjp = ((plus - minus) / (2 * eps) * direction).sum()
        assert torch.allclose((jvp * direction).sum(), numeric_vjp, rtol=1e-4)
    finally:
        trained.float()


@pytest.mark.parametrize("schedule", ["constant", "paper"])
def test_huge_step_size_stops_the_chain_naming_the_step(trained: Generator, schedule: str) -> None:
    """paper (5 steps): the small late steps would keep z finite, near 1e22; a runaway all the same."""
    cfg = LangevinConfig(steps=5, schedule=schedule, step_size=1e6)
    with pytest.raises(ChainDiverged, match=r"^Langevin step 1: \|z\| of a sentence reached .*lower langevin\.step_size") as err:
        short_run(trained, collate([[4, 5]]).tokens, cfg, temperature=0.0)
    assert isinstance(err.value, TrainingError) and err.value.step == 1


def test_non_finite_values_stop_the_chain_naming_the_step() -> None:
    gen = Generator(V, CFG)
    with torch.no_grad():
        gen.out.bias[4] = float("nan")
    with pytest.raises(ChainDiverged, match=r"^Langevin step 1: z or its gradient became NaN/Inf; lower langevin\.step_size"):
        short_run(gen, collate([[4, 5]]).tokens, LangevinConfig(steps=3))


def test_the_runaway_bound_lies_far_outside_the_prior_and_a_long_chain_stays_inside(trained: Generator) -> None:
    assert MAX_NORM_PER_SQRT_DIM >= 100  # P(|z| > 10 sqrt(d)) under N(0, I) is below 1e-22 for every d
    far = torch.full((1, CFG.latent_dim), 0.9 * MAX_NORM_PER_SQRT_DIM)  # |z| = 0.9 * bound * sqrt(d): allowed
    z = short_run(trained, collate([[4, 5]]).tokens, LangevinConfig(steps=1, step_size=1e-3), z0=far).z
    assert z.norm() > 100 * CFG.latent_dim ** 0.5
    torch.manual_seed(0)
    short_run(trained, collate(two_topic_corpus(32)["ids"]).tokens, LangevinConfig(steps=200, schedule="constant",
                                                                             step_size=0.3, temperature=1.0))


@pytest.mark.parametrize(("section", "key", "value"), [("langevin", "steps", 0), ("langevin", "step_size", -0.1),
                                                        ("langevin", "temperature", -1.0)])
def test_out_of_range_chain_params_are_refused(section: str, key: str, value: float) -> None:
    with pytest.raises(ValidationError):
        LangevinConfig(**{key: value})
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: "):
        build_config("tiny", {section: {key: value}})
