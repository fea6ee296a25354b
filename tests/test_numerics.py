"""The numeric path: bfloat16 autocast where the device multiplies it natively, float32 elsewhere, and the
same answers either way (float32 weights, optimizer state and reported likelihoods)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import shortrun.numerics as numerics
from bench.precision_agreement import TOLERANCE
from shortrun.config import LangevinConfig, ModelConfig, TrainConfig
from shortrun.data.batching import collate
from shortrun.errors import ConfigError
from shortrun.model import Generator, TokenNLL
from shortrun.numerics import NumericPath, cpu_has_bfloat16_units, numeric_path
from shortrun.objectives import StepContext
from shortrun.training import Trainer, train_model

MODEL = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, encoder_hidden_dim=8)
BATCH = collate([[4, 5, 6], [7, 8], [9, 10, 11, 12]])
VOCAB = 13
AMX_FLAGS = "flags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
EPYC_FLAGS = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"  # bfloat16 instructions, but no matrix units


@pytest.fixture
def cpu_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the flag reader at a /proc/cpuinfo-like file with the given flags line."""

    def write(flags: str) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text("processor\t: 0\nmodel name\t: test CPU\n" + flags)
        monkeypatch.setattr(numerics, "CPUINFO", cpuinfo)
        cpu_has_bfloat16_units.cache_clear()

    yield write
    cpu_has_bfloat16_units.cache_clear()


@pytest.mark.parametrize(("flags", "chosen"), [(AMX_FLAGS, "bfloat16"), (EPYC_FLAGS, "float32")])
def test_auto_takes_bfloat16_only_on_a_cpu_with_matrix_units(cpu_flags, flags: str, chosen: str) -> None:
    cpu_flags(flags)
    assert numeric_path("cpu", "auto") == NumericPath(torch.device("cpu"), chosen)
    assert numeric_path("cpu", "float32").precision == "float32"
    assert numeric_path("cpu", "bfloat16").precision == "bfloat16"  # asked for: honoured, even if slow


def test_an_unreadable_cpuinfo_means_float32(cpu_flags, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_flags(AMX_FLAGS)
    monkeypatch.setattr(numerics, "CPUINFO", tmp_path / "missing")
    assert numeric_path("cpu", "auto").precision == "float32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.device: 'cuda' requested"):
        numeric_path("cuda", "auto")


def test_under_autocast_the_nll_is_float32_and_close_to_float32s() -> None:
    """The output layer multiplies in bfloat16; the log-softmax and the per-sentence NLL stay float32."""
    torch.manual_seed(0)
    model = Generator(VOCAB, MODEL).eval()
    z = torch.randn(3, MODEL.latent_dim, requires_grad=True)
    exact = model.sentence_nll(BATCH.tokens, z)
    (exact_grad,) = torch.autograd.grad(exact.sum(), z)
    with NumericPath(torch.device("cpu"), "bfloat16").autocast():
        lower = model.sentence_nll(BATCH.tokens, z)
        assert model.out(torch.zeros(1, MODEL.hidden_dim)).dtype == torch.bfloat16
    (lower_grad,) = torch.autograd.grad(lower.sum(), z)
    assert lower.dtype == torch.float32 and lower_grad.dtype == torch.float32
    assert torch.allclose(lower, exact, atol=0.05) and not torch.equal(lower, exact)
    assert torch.allclose(lower_grad, exact_grad, atol=0.02, rtol=0.05)


@pytest.mark.parametrize("kind", ["sri", "vae", "lm"])
def test_a_bfloat16_step_keeps_float32_weights_and_optimizer_state(kind: str) -> None:
    losses = {}
    for precision in ("float32", "bfloat16"):
        trainer = Trainer(kind, VOCAB, MODEL, LangevinConfig(steps=3), TrainConfig(device="cpu", precision=precision),
                          progress=False)
        trainer.model.train()
        losses[precision] = trainer.step(BATCH, StepContext(temperature=0.2, global_step=0), where="test")[1]
        assert all(param.dtype == torch.float32 for param in trainer.model.parameters())
        moments = [value for state in trainer.optimizer.state.values() for value in state.values() if value.dim()]
        assert moments and all(value.dtype == torch.float32 for value in moments)
    assert losses["bfloat16"] != losses["float32"]  # autocast took effect
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.01)


@pytest.mark.skipif(not cpu_has_bfloat16_units(), reason="this CPU has no bfloat16 matrix units (AMX)")
def test_bfloat16_training_on_tiny_reaches_float32s_validation_nll(tiny: dict) -> None:
    """Issue 16's agreement: the tiny preset trained both ways, validation NLL within 0.05 nats per sentence."""
    history = {}
    for precision in ("float32", "bfloat16"):
        cfg = tiny["cfg"]
        train = cfg.train.model_copy(update={"precision": precision, "device": "cpu", "health_samples": 0})
        outcome = train_model("sri", len(tiny["vocab"]), tiny["train"], tiny["valid"], cfg.model, cfg.langevin, train,
                              progress=False)
        history[precision] = [row["valid_nll"] for row in outcome.history]
    assert len(history["bfloat16"]) == tiny["cfg"].train.epochs
    for lower, exact in zip(history["bfloat16"], history["float32"]):
        assert abs(lower - exact) < TOLERANCE, history


def test_a_bfloat16_token_nll_is_float32_close_to_the_exact_one_and_finite_when_a_probability_underflows() -> None:
    torch.manual_seed(0)
    logits = (torch.randn(20, 50) * 4).to(torch.bfloat16)
    targets = torch.randint(0, 50, (20,))
    exact_logits = logits.float().requires_grad_(True)
    exact = F.cross_entropy(exact_logits, targets, reduction="none")
    (exact_grad,) = torch.autograd.grad(exact.sum(), exact_logits)
    lower_logits = logits.clone().requires_grad_(True)
    lower = TokenNLL.apply(lower_logits, targets)
    (lower_grad,) = torch.autograd.grad(lower.sum(), lower_logits)
    assert lower.dtype == torch.float32 and lower_grad.dtype == torch.bfloat16
    assert torch.allclose(lower, exact, atol=0.01) and not torch.equal(lower, exact)
    assert torch.allclose(lower_grad.float(), exact_grad, atol=0.01)
    far = torch.tensor([[0.0, 200.0]], dtype=torch.bfloat16)  # p(target 0) = e^-200: below float32's range
    assert TokenNLL.apply(far, torch.tensor([0])).item() == pytest.approx(-math.log(torch.finfo(torch.float32).tiny))
