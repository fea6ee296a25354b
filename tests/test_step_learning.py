"""Step sizes learned by the short-run chain's ELBO: exact gradient, an update that helps, the settings'
bounds, the guard that stops a run, and learned sizes that travel with the model into export and serving."""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from shortrun.checkpoint import load_checkpoint, load_trained
from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.batching import collate
from shortrun.data.preparation import prepare_corpus
from shortrun.data.prepared import SPLITS, labeled_budgets, load_labeled, load_split
from shortrun.errors import ConfigError, TrainingError
from shortrun.evaluation.jacobian import batched_log_det, replicated_log_det
from shortrun.inference import short_run, step_sizes
from shortrun.latents import encode_splits
from shortrun.model import Generator
from shortrun.numerics import numeric_path
from shortrun.ops.serving import log_generator
from shortrun.params import build_config, data_root
from shortrun.step_learning import StepSizeLearner, chain_elbo
from shortrun.training import train_model
from tasks import export, train

V = 12
CFG = ModelConfig(latent_dim=4, emb_dim=8, hidden_dim=16, encoder_hidden_dim=16, dropout_emb=0.0, dropout_out=0.0)
CHAIN = LangevinConfig(steps=4, learn_steps=True, learn_steps_lr=0.02, learn_steps_sentences=4)
TEMPERATURE = 0.3


def small_generator(seed: int = 0) -> Generator:
    """An untrained generator with weights large enough that z matters (the sizes then matter too)."""
    torch.manual_seed(seed)
    gen = Generator(V, CFG)
    with torch.no_grad():
        for param in gen.parameters():
            param.mul_(6.0)
    return gen.eval()


def tokens() -> torch.Tensor:
    return collate([[4, 5, 6], [7, 8], [9, 10, 11, 4, 5], [6]]).tokens


def fixed_draws(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    z0 = torch.randn(4, CFG.latent_dim, generator=rng)
    return z0, torch.randn(CHAIN.steps, 4, CFG.latent_dim, generator=rng)


def mean_elbo(gen: Generator, log_sizes: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return chain_elbo(gen, tokens(), CHAIN, log_sizes.exp(), TEMPERATURE, z0, noise).mean()


def test_replicated_log_det_equals_the_batched_one(float64) -> None:
    gen, toks = small_generator(), tokens()
    z0, noise = fixed_draws()

    def chain(start: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return short_run(gen, toks[rows], CHAIN, temperature=TEMPERATURE, z0=start, noise=noise[:, rows], create_graph=True).z

    end, log_det = replicated_log_det(chain, z0)
    fast_end, fast = batched_log_det(chain, z0)
    assert torch.allclose(end, fast_end, atol=1e-12) and torch.allclose(log_det, fast, atol=1e-9)
    assert log_det.abs().min() > 0.1  # far from the trivial value, so the comparison means something


def test_elbo_gradient_in_the_log_step_sizes_matches_finite_differences(float64) -> None:
    gen = small_generator()
    z0, noise = fixed_draws()
    log_sizes = torch.tensor(step_sizes(CHAIN)).log().requires_grad_(True)
    (grad,) = torch.autograd.grad(mean_elbo(gen, log_sizes, z0, noise), log_sizes)
    h, numeric = 1e-5, []
    for i in range(CHAIN.steps):
        step = torch.zeros(CHAIN.steps)
        step[i] = h
        up, down = mean_elbo(gen, log_sizes.detach() + step, z0, noise), mean_elbo(gen, log_sizes.detach() - step, z0, noise)
        numeric.append(float((up - down).detach()) / (2 * h))
    assert grad.abs().max() > 0.1  # the sizes matter
    assert torch.allclose(grad, torch.tensor(numeric), rtol=1e-5, atol=1e-6), (grad, numeric)


def test_one_update_raises_the_elbo_and_leaves_the_generator_alone() -> None:
    gen = small_generator()
    z0, noise = fixed_draws()
    weights = {k: v.clone() for k, v in gen.state_dict().items()}
    learner = StepSizeLearner(CHAIN)
    before_sizes = learner.log_sizes.detach().clone()
    before = float(mean_elbo(gen, before_sizes.float(), z0, noise).detach())
    reported = learner.update(gen, tokens(), TEMPERATURE, z0=z0, noise=noise)
    after = float(mean_elbo(gen, learner.log_sizes.detach().float(), z0, noise).detach())
    assert reported == pytest.approx(before, rel=1e-5)
    assert after > before + 1e-3, (before, after)
    assert not torch.equal(learner.log_sizes.detach(), before_sizes)
    assert learner.chain.learned_sizes == learner.sizes and learner.chain.steps == CHAIN.steps
    assert all(torch.equal(v, weights[k]) for k, v in gen.state_dict().items())
    assert all(p.grad is None for p in gen.parameters())


@pytest.mark.parametrize("key, value, message", [
    ("learn_steps_lr", -0.01, r"^langevin\.learn_steps_lr: "),
    ("learn_steps_lr", 0.0, r"^langevin\.learn_steps_lr: "),
    ("steps", 0, r"^langevin\.steps: "),
    ("learn_steps_every", 0, r"^langevin\.learn_steps_every: "),
    ("learn_steps_sentences", 0, r"^langevin\.learn_steps_sentences: "),
    ("learned_sizes", [0.5, 0.1], r"langevin\.learned_sizes: 2 sizes for a chain of 5 steps"),
    ("learned_sizes", [0.5, 0.1, -0.1, 0.1, 0.1], r"langevin\.learned_sizes: every size must be positive"),
])
def test_bad_step_learning_settings_are_refused_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_config("tiny", {"langevin": {"learn_steps": True, key: value}})
    assert "\n" not in str(err.value)


def test_a_chain_inherits_learned_sizes_only_when_it_runs_the_trained_chain() -> None:
    trained = LangevinConfig(steps=3, learned_sizes=[0.9, 0.3, 0.2])
    assert LangevinConfig(steps=3, temperature=0.0, noise=False).inherit_sizes(trained).learned_sizes == [0.9, 0.3, 0.2]
    assert LangevinConfig(steps=4).inherit_sizes(trained).learned_sizes is None
    assert LangevinConfig(steps=3, schedule="constant").inherit_sizes(trained).learned_sizes is None
    own = LangevinConfig(steps=3, learned_sizes=[0.1, 0.1, 0.1])
    assert own.inherit_sizes(trained) is own
    assert step_sizes(LangevinConfig(steps=3).inherit_sizes(trained)) == [0.9, 0.3, 0.2]


def test_diverging_learned_sizes_stop_training_naming_step_epoch_and_setting(tiny: dict, tmp_path: Path) -> None:
    """An absurd learning rate sends a log size to +-1000 at the first update (epoch 2, batch 1): the run stops
    there, and the checkpoint of epoch 1 with its finite sizes is what stays."""
    cfg = tiny["cfg"]
    train = cfg.train.model_copy(update={"device": "cpu", "epochs": 2, "max_batches_per_epoch": 2, "valid_sentences": 16})
    chain = cfg.langevin.model_copy(update={"learn_steps": True, "learn_steps_lr": 1000.0, "learn_steps_every": 3,
                                            "learn_steps_sentences": 2})
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(TrainingError) as err:
        train_model("sri", len(tiny["vocab"]), tiny["train"], tiny["valid"], cfg.model, chain, train,
                    checkpoint_path=checkpoint, progress=False)
    message = str(err.value)
    assert message.startswith("epoch 2, batch 1: learned step size s_") and "langevin.learn_steps_lr" in message
    saved = load_checkpoint(checkpoint)
    assert saved["progress"]["epoch"] == 1
    assert torch.allclose(saved["step_learner"]["log_sizes"].exp(), torch.tensor(step_sizes(chain), dtype=torch.float64))


def test_learned_sizes_are_saved_reloaded_and_used_by_export_and_serving(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The train stage with learn_steps: the model folder's chain holds the learned sizes (not the schedule's),
    the per-epoch rows show them, and the export stage and the served pyfunc encode with them."""
    root = data_root()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = build_config("tiny", {"train": {"epochs": 1, "max_batches_per_epoch": 3},
                                "langevin": {"learn_steps": True, "learn_steps_every": 1, "learn_steps_sentences": 2,
                                             "learn_steps_lr": 0.1}})
    prepare_corpus(cfg.data, root)
    train.run(cfg, "sri")

    trained = load_trained(Path("models/sri"))
    learned, schedule = trained.langevin.learned_sizes, step_sizes(cfg.langevin)
    assert learned is not None and len(learned) == cfg.langevin.steps
    assert max(abs(a - b) for a, b in zip(learned, schedule)) > 0.05  # three updates at lr 0.1 moved them
    assert trained.langevin.model_copy(update={"learned_sizes": None}) == cfg.langevin
    saved = load_checkpoint(Path("models/sri/checkpoint.pt"))["step_learner"]["log_sizes"].exp().tolist()
    assert saved == pytest.approx(learned, rel=1e-12)
    row = list(csv.DictReader(Path("plots/train/sri.csv").open()))[-1]
    assert [float(row[f"step_size_{i}"]) for i in range(cfg.langevin.steps)] == pytest.approx(learned)
    assert float(row["step_elbo"]) < 0  # a bound on the log-probability of a sentence

    export.run(cfg, "sri")
    exported = pd.read_parquet(Path("latents/sri/test.parquet"))
    datasets = {split: load_split(split) for split in SPLITS}
    datasets.update({f"labeled_{budget}": load_labeled(budget) for budget in labeled_budgets()})
    options = {"chains": cfg.export.chains, "batch_size": cfg.export.batch_size, "seed": cfg.export.seed,
               "numerics": numeric_path(cfg.train.device, cfg.train.precision)}
    with_learned = encode_splits(trained.model, datasets, langevin=trained.langevin, **options)["test"].z
    assert np.array_equal(np.stack(exported.z), with_learned)

    encoding = {"chains": cfg.export.chains, "seed": cfg.export.seed,
                "langevin": cfg.export_langevin.model_copy(update={"temperature": 0.0}).model_dump()}
    with mlflow.start_run():
        served = mlflow.pyfunc.load_model(log_generator(Path("models/sri"), encoding, "the food")).unwrap_python_model()
    assert served.langevin.learned_sizes == learned and served.langevin.temperature == 0.0
    sentences, schedule_chain = ["the food was good", "great service"], cfg.langevin.model_copy(update={"temperature": 0.0})
    assert not np.allclose(served.encode(sentences), encode_with(served, schedule_chain, sentences))


def encode_with(served, chain: LangevinConfig, sentences: list[str]) -> np.ndarray:
    """What the served model would give with another chain (same chains, seed and batching)."""
    own = served.langevin
    served.langevin = chain
    try:
        return served.encode(sentences)
    finally:
        served.langevin = own


def test_a_resumed_run_learns_the_same_sizes_as_an_uninterrupted_one(tiny: dict, tmp_path: Path) -> None:
    cfg = tiny["cfg"]
    chain = cfg.langevin.model_copy(update={"learn_steps": True, "learn_steps_every": 1, "learn_steps_sentences": 1,
                                            "learn_steps_lr": 0.1})

    def fit(epochs: int, path: Path, resume: bool = False):
        train = cfg.train.model_copy(update={"device": "cpu", "epochs": epochs, "max_batches_per_epoch": 2,
                                             "valid_sentences": 8, "health_samples": 0})
        return train_model("sri", len(tiny["vocab"]), tiny["train"], tiny["valid"], cfg.model, chain, train,
                           checkpoint_path=path, resume=resume, progress=False)

    whole = fit(2, tmp_path / "whole.pt")
    first = fit(1, tmp_path / "split.pt")
    resumed = fit(2, tmp_path / "split.pt", resume=True)
    assert resumed.langevin.learned_sizes == whole.langevin.learned_sizes != first.langevin.learned_sizes
    assert torch.equal(resumed.model.state_dict()["out.weight"], whole.model.state_dict()["out.weight"])
    assert [row["step_size_0"] for row in resumed.history] == [row["step_size_0"] for row in whole.history]
