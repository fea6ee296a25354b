"""The trainer on the tiny preset: losses fall, runs are deterministic, resume is exact, bad runs stop cleanly."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from shortrun.checkpoint import load_checkpoint, load_trained, write_model_files
from shortrun.config import LangevinConfig, PipelineConfig
from shortrun.errors import TrainingError
from shortrun.measures import AU_THRESHOLD
from shortrun.params import build_config
from shortrun.training import epoch_temperature, train_model, validation_batches


def config(tiny: dict, **train) -> PipelineConfig:
    cfg: PipelineConfig = tiny["cfg"]
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu", **train})})


def fit(tiny: dict, kind: str, cfg: PipelineConfig, **kwargs):
    return train_model(kind, len(tiny["vocab"]), tiny["train"], tiny["valid"], cfg.model, cfg.langevin, cfg.train,
                       progress=False, **kwargs)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("kind", ["sri", "vae", "lm"])
def test_training_nll_decreases_on_the_tiny_preset(tiny: dict, kind: str) -> None:
    history = fit(tiny, kind, config(tiny, epochs=3)).history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_nll"] < history[0]["train_nll"] - 0.5
    assert history[-1]["valid_nll"] < history[0]["valid_nll"]
    if kind == "lm":
        assert "active_units" not in history[-1] and "agg_kl" not in history[-1]
    else:
        row = history[-1]
        variances = [row[f"z_var_d{i:02d}"] for i in range(tiny["cfg"].model.latent_dim)]
        assert row["active_units"] == sum(v > AU_THRESHOLD for v in variances)  # counted from the logged variances
        assert row["agg_kl"] >= 0 and row["agg_sq_norm"] > 0  # the aggregate posterior against the prior
        assert 0 <= row["prior_at_max_len"] <= 1 and 0 < row["prior_distinct_2"] <= 1
        assert row["collapsed"] == float(row["active_units"] == 0)
        assert len([k for k in row if k.startswith("z_var_d")]) == tiny["cfg"].model.latent_dim
    if kind == "sri":
        assert history[-1]["zk_abs_mean"] > 0 and history[-1]["chain_grad_norm"] > 0
        assert history[0]["temperature"] == 0.05 and history[-1]["temperature"] == pytest.approx(0.2)


def test_same_seed_same_weights_other_seed_other_weights(tiny: dict) -> None:
    cfg = config(tiny, epochs=1, max_batches_per_epoch=3)
    first = weights(fit(tiny, "sri", cfg).model)
    assert_same_weights(first, weights(fit(tiny, "sri", cfg).model))
    other = weights(fit(tiny, "sri", config(tiny, epochs=1, max_batches_per_epoch=3, seed=1)).model)
    assert not torch.equal(first["out.weight"], other["out.weight"])


class Interrupt:
    """Simulates Ctrl-C after a given optimizer step."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def __call__(self, epoch: int, batch: int, loss: float) -> None:
        if (epoch, batch) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("kind", "epoch", "batch"), [("sri", 2, 2), ("vae", 1, 4), ("lm", 1, 5)])
def test_resume_after_interrupt_equals_an_uninterrupted_run(tiny: dict, tmp_path: Path, kind: str, epoch: int, batch: int) -> None:
    cfg = config(tiny, epochs=3, max_batches_per_epoch=5)
    straight = fit(tiny, kind, cfg)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny, kind, cfg, checkpoint_path=path, on_batch=Interrupt(epoch, batch))
    saved = load_checkpoint(path)
    assert (saved["progress"]["epoch"], saved["progress"]["batch"]) == (epoch - 1, batch)
    seen: list[int] = []
    resumed = fit(tiny, kind, cfg, checkpoint_path=path, resume=True, on_epoch=lambda m: seen.append(m["epoch"]))
    assert seen == [1, 2, 3]
    assert_same_weights(weights(straight.model), weights(resumed.model))
    assert [r["train_nll"] for r in resumed.history] == [r["train_nll"] for r in straight.history]


def test_resume_refuses_changed_params_and_missing_checkpoints(tiny: dict, tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    fit(tiny, "lm", config(tiny, epochs=1, max_batches_per_epoch=2), checkpoint_path=path)
    with pytest.raises(TrainingError, match=r"train\.lr=0\.001, params say 0\.01"):
        fit(tiny, "lm", config(tiny, epochs=2, max_batches_per_epoch=2, lr=0.01), checkpoint_path=path, resume=True)
    longer = fit(tiny, "lm", config(tiny, epochs=2, max_batches_per_epoch=2), checkpoint_path=path, resume=True)
    assert [r["epoch"] for r in longer.history] == [1, 2]
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        fit(tiny, "lm", config(tiny), checkpoint_path=tmp_path / "none.pt", resume=True)


def test_checkpoint_is_plain_data_and_makes_a_loadable_model_folder(tiny: dict, tmp_path: Path) -> None:
    cfg = config(tiny, epochs=1, max_batches_per_epoch=2)
    outcome = fit(tiny, "vae", cfg, checkpoint_path=tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert isinstance(state["rng"]["cpu"], torch.Tensor) and state["config"]["model"] == cfg.model.model_dump()
    assert state["progress"]["epoch"] == 1 and "state" in state["optimizer"]
    write_model_files(tmp_path, "vae", tiny["vocab"], cfg.model, cfg.langevin)
    loaded = load_trained(tmp_path)
    assert loaded.kind == "vae" and not loaded.model.training and loaded.vocab == tiny["vocab"]
    assert_same_weights(weights(outcome.model), weights(loaded.model))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_a_clear_error(tiny: dict, tmp_path: Path, damage: str) -> None:
    path = tmp_path / "checkpoint.pt"
    cfg = config(tiny, epochs=1, max_batches_per_epoch=1)
    fit(tiny, "lm", cfg, checkpoint_path=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint" * 10)
    with pytest.raises(TrainingError, match=r"checkpoint\.pt: checkpoint is truncated or corrupt"):
        fit(tiny, "lm", cfg, checkpoint_path=path, resume=True)


def test_huge_step_size_stops_training_naming_step_epoch_and_setting(tiny: dict, tmp_path: Path) -> None:
    """langevin.step_size=1e6 alone: the paper schedule's small late steps keep z finite (|z| near 1e22),
    and training must stop all the same, naming the step, the epoch and the setting."""
    path = tmp_path / "checkpoint.pt"
    good = config(tiny, epochs=1, max_batches_per_epoch=2)
    fit(tiny, "sri", good, checkpoint_path=path)
    before = path.read_bytes()
    bad = good.model_copy(update={"langevin": good.langevin.model_copy(update={"step_size": 1e6})})
    with pytest.raises(TrainingError, match=r"^epoch 1, batch 1: Langevin step 1: \|z\| of a sentence .*lower langevin\.step_size"):
        fit(tiny, "sri", bad, checkpoint_path=path)
    assert path.read_bytes() == before  # the last good checkpoint stays


def test_a_runaway_validation_chain_names_the_epoch(tiny: dict) -> None:
    """langevin.temperature is the chain's noise outside training: huge, only validation's chain runs away."""
    cfg = config(tiny, epochs=1, max_batches_per_epoch=1)
    noisy = cfg.model_copy(update={"langevin": cfg.langevin.model_copy(update={"temperature": 1e9})})
    with pytest.raises(TrainingError, match=r"^epoch 1, validation: Langevin step 1: \|z\| of a sentence reached"):
        fit(tiny, "sri", noisy)


def test_collapse_is_reported_loudly(tiny: dict, caplog: pytest.LogCaptureFixture) -> None:
    """With the KL at full weight from step 0 the tiny VAE collapses; the run must say so."""
    with caplog.at_level(logging.WARNING, logger="shortrun.monitor"):
        history = fit(tiny, "vae", config(tiny, epochs=1, kl_anneal_steps=0)).history
    assert history[-1]["collapsed"] == 1.0 and history[-1]["active_units"] == 0
    assert "POSTERIOR COLLAPSE" in caplog.text


def test_validation_can_use_the_first_sentences_only(tiny: dict) -> None:
    train = config(tiny, valid_sentences=40).train
    assert sum(len(b) for b in validation_batches(tiny["valid"], train)) == 40
    assert sum(len(b) for b in validation_batches(tiny["valid"], config(tiny).train)) == len(tiny["valid"])


def test_temperature_anneals_linearly_over_epochs() -> None:
    chain = LangevinConfig(temperature_start=0.1, temperature=0.4)
    assert [epoch_temperature(chain, 4, e) for e in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert epoch_temperature(LangevinConfig(), 1, 0) == 0.05


def test_temperature_holds_then_ramps_like_the_reference_schedule() -> None:
    """The authors' PTB script: T = 0.05 for 15 epochs, then +0.05 per epoch up to 0.2 (the chain's temperature)."""
    chain = build_config("ptb-paper").langevin
    assert [epoch_temperature(chain, 20, e) for e in range(13, 20)] == pytest.approx([0.05, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    held_to_the_end = LangevinConfig(temperature_hold_epochs=5)
    assert [epoch_temperature(held_to_the_end, 3, e) for e in range(3)] == pytest.approx([0.05] * 3)


def test_progress_bar_redraws_only_at_its_interval(tiny: dict, capsys, monkeypatch) -> None:
    """Run logs capture every redraw: the loss postfix must not force one per batch."""
    monkeypatch.setenv("TQDM_MININTERVAL", "30")
    train_model("lm", len(tiny["vocab"]), tiny["train"], tiny["valid"], tiny["cfg"].model, tiny["cfg"].langevin,
                config(tiny, epochs=1).train, progress=True)
    redraws = capsys.readouterr().err.count("epoch 1:")
    assert 1 <= redraws <= 3
