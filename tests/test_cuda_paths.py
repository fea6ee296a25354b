"""CUDA paths: a training step of every model kind, the differentiable chain (cuDNN off), export, both SRI
likelihood estimators and a served generator, each on the GPU and, where the randomness can be shared, against
the same computation on CPU. Marked `cuda`; they skip without a GPU (`make gpu-check` runs them, docs/gpu.md).
"""
from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
import torch
from datasets import Dataset

from shortrun.checkpoint import save_model_dir
from shortrun.config import EvaluateConfig, LangevinConfig, ModelConfig, TrainConfig
from shortrun.data.batching import collate
from shortrun.data.prepared import FEATURES
from shortrun.data.vocab import Vocab
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.likelihood import chain_proposal, laplace_at_chain_mean
from shortrun.inference import short_run
from shortrun.latents import encode_dataset
from shortrun.model import Generator
from shortrun.numerics import NumericPath
from shortrun.objectives import StepContext
from shortrun.ops.serving import GeneratorPyfunc
from shortrun.training import Trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make gpu-check on a GPU)")]

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
WORDS = "the food was great terrible service slow friendly staff never again".split()
MODEL = ModelConfig(latent_dim=4, emb_dim=16, hidden_dim=32, encoder_hidden_dim=16, dropout_emb=0.0, dropout_out=0.0)
CHAIN = LangevinConfig(steps=5, temperature=0.5)
TOLERANCE = 1e-3  # CPU float32 against CUDA float32 (different kernels, same arithmetic)


def sentences(count: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 4 + len(WORDS), size=rng.integers(2, 8)).tolist() for _ in range(count)]


def generator(sharpness: float = 4.0) -> Generator:
    """An untrained generator whose weights are scaled by `sharpness` (4: sentences depend on z)."""
    torch.manual_seed(0)
    model = Generator(4 + len(WORDS), MODEL).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(sharpness)
    return model


@pytest.mark.parametrize("kind", ["sri", "vae", "lm"])
def test_a_training_step_runs_on_the_gpu_and_moves_every_weight(kind):
    trainer = Trainer(kind, 4 + len(WORDS), MODEL, CHAIN, TrainConfig(device="cuda", precision="float32"), progress=False)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.model.train()
    out, loss = trainer.step(collate(sentences(16)).to(CUDA), StepContext(temperature=0.2, global_step=0), where="test")
    assert math.isfinite(loss) and loss > 0
    assert out.nll_sum.device.type == "cuda"
    for name, param in trainer.model.named_parameters():
        assert param.device.type == "cuda", name
        assert not torch.equal(param.detach(), before[name]), f"{kind}: {name} did not move"


def test_a_bfloat16_training_step_keeps_float32_weights_and_a_loss_close_to_float32s():
    """train.precision bfloat16: the step's forward passes under autocast; same seed, same chain noise."""
    batch, losses = collate(sentences(16)).to(CUDA), {}
    for precision in ("float32", "bfloat16"):
        trainer = Trainer("sri", 4 + len(WORDS), MODEL, CHAIN, TrainConfig(device="cuda", precision=precision), progress=False)
        trainer.model.train()
        losses[precision] = trainer.step(batch, StepContext(temperature=0.2, global_step=0), where="test")[1]
        assert all(param.dtype == torch.float32 for param in trainer.model.parameters())
    assert math.isfinite(losses["bfloat16"]) and math.isclose(losses["bfloat16"], losses["float32"], rel_tol=0.02)


def test_the_differentiable_chain_runs_without_cudnn_and_matches_cpu():
    """create_graph=True switches cuDNN off (it has no double backward); z_K and dz_K/dz0 match CPU's."""
    model, tokens = generator(), collate(sentences(6)).tokens
    z0 = torch.randn(6, MODEL.latent_dim, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(CHAIN.steps, 6, MODEL.latent_dim, generator=torch.Generator().manual_seed(2))
    ends, grads = [], []
    for device in (CPU, CUDA):
        start = z0.to(device).requires_grad_(True)
        z = short_run(model.to(device), tokens.to(device), CHAIN, z0=start, noise=noise.to(device), create_graph=True).z
        (grad,) = torch.autograd.grad(z.pow(2).sum(), start, create_graph=True)
        (second,) = torch.autograd.grad(grad.sum(), start)  # double backward through the LSTM
        ends.append(z.detach().cpu())
        grads.append(torch.cat([grad.detach(), second]).cpu())
    assert torch.isfinite(ends[1]).all() and not torch.allclose(ends[1], z0)
    torch.testing.assert_close(ends[1], ends[0], rtol=TOLERANCE, atol=TOLERANCE)
    torch.testing.assert_close(grads[1], grads[0], rtol=TOLERANCE, atol=TOLERANCE)


def test_the_training_chain_on_the_gpu_matches_cpu():
    model, tokens = generator(), collate(sentences(6)).tokens
    z0 = torch.randn(6, MODEL.latent_dim, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(CHAIN.steps, 6, MODEL.latent_dim, generator=torch.Generator().manual_seed(2))
    cpu = short_run(model.to(CPU), tokens, CHAIN, z0=z0, noise=noise)
    gpu = short_run(model.to(CUDA), tokens.to(CUDA), CHAIN, z0=z0.to(CUDA), noise=noise.to(CUDA))
    assert gpu.z.device.type == "cuda" and gpu.energies.shape == (CHAIN.steps,)
    torch.testing.assert_close(gpu.z.cpu(), cpu.z, rtol=TOLERANCE, atol=TOLERANCE)
    torch.testing.assert_close(gpu.energies.cpu(), cpu.energies, rtol=TOLERANCE, atol=TOLERANCE)


def test_export_encodes_on_the_gpu_reproducibly_in_id_order():
    rows = sentences(20)
    dataset = Dataset.from_dict({"id": list(range(19, -1, -1)), "text": ["x"] * 20, "ids": rows, "label": [0, 1] * 10},
                                features=FEATURES)
    first = encode_dataset(generator(), dataset, CHAIN, chains=2, batch_size=8, seed=0, numerics=NumericPath(CUDA, "float32"))
    again = encode_dataset(generator(), dataset, CHAIN, chains=2, batch_size=8, seed=0, numerics=NumericPath(CUDA, "float32"))
    assert first.z.shape == (20, MODEL.latent_dim) and first.z.dtype == np.float32 and np.isfinite(first.z).all()
    assert first.ids.tolist() == list(range(20))
    np.testing.assert_array_equal(first.z, again.z)


def test_both_sri_estimators_run_on_the_gpu_and_agree_with_cpu():
    """(b) Laplace with 256 samples matches CPU's within 0.3 nats per sentence (its spread over seeds is under
    0.1); (a) change of variables (double backward, cuDNN off), noisier with 8 samples, within 2 nats on average."""
    batch = collate(sentences(4))
    ev = EvaluateConfig(importance_samples=256, jacobian_samples=8, proposal_chains=8)
    estimates = {}
    for device in (CPU, CUDA):
        for name, estimate in (("a", chain_proposal), ("b", laplace_at_chain_mean)):
            settings = Settings(ev, CHAIN, torch.Generator(device=device).manual_seed(0))
            estimates[name, device.type] = estimate(generator().to(device), batch.to(device), settings).log_likelihood.cpu()
    for key, log_p in estimates.items():
        assert log_p.shape == (4,) and torch.isfinite(log_p).all() and (log_p < 0).all(), key
    assert (estimates["b", "cuda"] - estimates["b", "cpu"]).abs().max() < 0.3
    assert abs(estimates["a", "cuda"].mean() - estimates["b", "cuda"].mean()) < 2.0


def test_a_saved_generator_loads_as_pyfunc_onto_the_gpu_and_encodes(tmp_path):
    vocab = Vocab(WORDS)
    save_model_dir(tmp_path / "model", "sri", generator(), vocab, MODEL, CHAIN)
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=GeneratorPyfunc(),
                             artifacts={"model_dir": str(tmp_path / "model")}, pip_requirements=[])
    served = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    model = served.unwrap_python_model()
    assert next(model.generator.parameters()).device.type == "cuda"
    z = served.predict(["the food was great", "slow service"])
    assert z.shape == (2, MODEL.latent_dim) and z.dtype == np.float32 and np.isfinite(z).all()
    assert len(model.generate(3, seed=0)) == 3
