"""The two SRI training rules (end point vs the authors' chain gradients) and dropout in the chain."""
from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset

from shortrun.config import LangevinConfig, ModelConfig, TrainConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES
from shortrun.inference import short_run, step_sizes
from shortrun.model import Generator
from shortrun.objectives import StepContext
from shortrun.training import Trainer, train_model

V = 12
QUIET = ModelConfig(latent_dim=3, emb_dim=6, hidden_dim=8, encoder_hidden_dim=8, dropout_emb=0.0, dropout_out=0.0)
LANGEVIN = LangevinConfig(steps=4)
TEMPERATURE = 0.1
BATCH = collate([[4, 5, 6, 7], [8, 9], [10, 11, 4]])


def expected_gradients(model: Generator, z0: torch.Tensor, noise: torch.Tensor) -> tuple[list, list]:
    """(end point gradient, chain steps' gradient) per parameter, by a Langevin loop written out here."""
    params = list(model.parameters())
    tokens, z = BATCH.tokens, z0
    chain = [torch.zeros_like(p) for p in params]
    for k, s in enumerate(step_sizes(LANGEVIN)):
        z = z.detach().requires_grad_(True)
        grad_z, *grads = torch.autograd.grad(model.sentence_nll(tokens, z).sum(), [z, *params])
        chain = [c + g for c, g in zip(chain, grads)]
        z = z - 0.5 * s * s * (z + grad_z) + TEMPERATURE * s * noise[k]
    end = torch.autograd.grad(model.sentence_nll(tokens, z.detach()).mean(), params)
    return list(end), chain


@pytest.mark.parametrize("rule", ["endpoint", "chain"])
def test_the_update_is_the_end_point_gradient_plus_under_chain_every_steps_summed_gradient(rule: str) -> None:
    train = TrainConfig(device="cpu", precision="float32", chain_gradients=rule, clip_grad=1e12)
    trainer = Trainer("sri", V, QUIET, LANGEVIN, train, progress=False)
    trainer.model.eval()  # dropout off: the chain and the end point are deterministic given z0, noise
    before = copy.deepcopy(trainer.model)
    torch.manual_seed(7)
    trainer.step(BATCH, StepContext(temperature=TEMPERATURE, global_step=0))
    torch.manual_seed(7)  # the objective's chain draws z0, then one noise per step, from the global RNG
    z0 = torch.randn(len(BATCH), QUIET.latent_dim)
    noise = torch.stack([torch.randn(len(BATCH), QUIET.latent_dim) for _ in range(LANGEVIN.steps)])
    end, chain = expected_gradients(before, z0, noise)
    expected = [e + c for e, c in zip(end, chain)] if rule == "chain" else end
    for (name, param), want in zip(trainer.model.named_parameters(), expected):
        assert torch.allclose(param.grad, want, rtol=1e-5, atol=1e-7), name
    chain_norm = torch.cat([c.flatten() for c in chain]).norm()
    assert chain_norm > 3 * torch.cat([e.flatten() for e in end]).norm()  # batch sums over K steps dominate


def test_chain_gradients_come_from_the_same_chain_and_leave_z_unchanged() -> None:
    torch.manual_seed(0)
    model = Generator(V, QUIET).double()
    z0 = torch.randn(len(BATCH), QUIET.latent_dim, dtype=torch.float64)
    noise = torch.randn(LANGEVIN.steps, len(BATCH), QUIET.latent_dim, dtype=torch.float64)
    plain = short_run(model, BATCH.tokens, LANGEVIN, TEMPERATURE, z0=z0, noise=noise)
    assert all(p.grad is None for p in model.parameters())
    accumulated = short_run(model, BATCH.tokens, LANGEVIN, TEMPERATURE, z0=z0, noise=noise, param_grads=True)
    assert torch.equal(plain.z, accumulated.z) and torch.equal(plain.energies, accumulated.energies)
    _, chain = expected_gradients(model, z0, noise)
    for param, want in zip(model.parameters(), chain):
        assert torch.allclose(param.grad, want, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="param_grads and create_graph"):
        short_run(model, BATCH.tokens, LANGEVIN, z0=z0.requires_grad_(True), create_graph=True, param_grads=True)


def test_chain_dropout_acts_only_in_train_mode_and_the_modes_come_back() -> None:
    torch.manual_seed(0)
    model = Generator(V, ModelConfig(latent_dim=3, emb_dim=6, hidden_dim=8, encoder_hidden_dim=8))
    z0 = torch.randn(len(BATCH), QUIET.latent_dim)
    without = LANGEVIN.model_copy(update={"noise": False})  # no Langevin noise: dropout is the only randomness
    with_dropout = without.model_copy(update={"chain_dropout": True})

    def end(cfg: LangevinConfig) -> torch.Tensor:
        return short_run(model, BATCH.tokens, cfg, z0=z0).z

    model.train()
    assert not torch.equal(end(with_dropout), end(with_dropout))  # a fresh dropout mask at every step
    assert torch.equal(end(without), end(without))
    assert model.drop_emb.training and model.drop_out.training
    model.eval()
    assert torch.equal(end(with_dropout), end(without))  # validation, evaluation and export: never dropout
    assert not model.drop_emb.training and model.lstm.training is False


def test_chain_rule_with_chain_dropout_trains() -> None:
    """The reference rule end to end through the trainer: the loss falls on a corpus with a latent choice."""
    seqs = [([4, 5] if i % 2 else [6, 7]) * (1 + i % 3) for i in range(48)]
    data = Dataset.from_dict({"id": list(range(48)), "text": ["x"] * 48, "ids": seqs, "label": [-1] * 48},
                             features=FEATURES)
    train = TrainConfig(epochs=3, batch_size=16, lr=3e-3, device="cpu", precision="float32", chain_gradients="chain", health_samples=20)
    langevin = LANGEVIN.model_copy(update={"chain_dropout": True})
    history = train_model("sri", V, data, data, QUIET, langevin, train, progress=False, max_len=10).history
    assert history[-1]["train_nll"] < history[0]["train_nll"]
    assert 0.0 <= history[-1]["prior_at_max_len"] <= 1.0 and history[-1]["agg_sq_norm"] > 0
