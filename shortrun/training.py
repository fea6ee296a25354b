"""The trainer shared by SRI, VAE and LM: epochs over length-bucketed batches, Adam, clipping,
per-epoch validation, checkpoints every epoch and on interrupt, and exact resume.

Reproducibility: the global torch RNG (model init, dropout, chain noise, VAE samples) is seeded with
train.seed; the batch order of an epoch depends only on (seed, epoch); validation draws from its own
generator seeded with train.seed, so validation numbers are comparable across epochs. A checkpoint
holds the RNG state and the position in the epoch, so a resumed run ends with the same weights as
an uninterrupted one.

After each epoch latent models also report how far their aggregate posterior is from the prior and
the health of their prior samples (shortrun.monitor), beside the validation NLL.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from shortrun.checkpoint import load_checkpoint, save_checkpoint
from shortrun.config import LangevinConfig, ModelConfig, TrainConfig
from shortrun.data.batching import Batch, make_batches
from shortrun.errors import TrainingError
from shortrun.inference import ChainDiverged
from shortrun.measures import perplexity
from shortrun.model import build_model, latent_generator
from shortrun.monitor import prior_health
from shortrun.numerics import numeric_path
from shortrun.objectives import SRIObjective, StepContext, StepOutput, build_objective
from shortrun.step_learning import StepSizesDiverged

FORMAT = 1
# params a resumed run may change: more epochs, which models the pipeline trains, where and in which precision it
# runs, how many prior samples the per-epoch diagnostics decode
FREE_ON_RESUME = {("train", "epochs"), ("train", "models"), ("train", "device"), ("train", "precision"),
                  ("train", "health_samples")}
log = logging.getLogger("shortrun.training")
EpochCallback = Callable[[dict[str, float]], None]
BatchCallback = Callable[[int, int, float], None]


@dataclass
class TrainOutcome:
    """The trained model (eval mode), one metrics dict per epoch, the wall time of this run, and the
    short-run chain it was trained with (with the learned step sizes under langevin.learn_steps)."""

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    langevin: LangevinConfig

    @property
    def best_valid_nll(self) -> float:
        return min(row["valid_nll"] for row in self.history)


@dataclass
class _Progress:
    """Where training is; everything here goes into the checkpoint."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def epoch_temperature(langevin: LangevinConfig, epochs: int, epoch: int) -> float:
    """SRI noise temperature of an epoch (0-based) of `epochs`: temperature_start for the hold epochs, then
    equal steps up to the chain's temperature over the ramp epochs, then flat. The defaults ramp linearly
    from the first epoch (at temperature_start) to the last (at temperature)."""
    hold = langevin.temperature_hold_epochs
    ramp = langevin.temperature_ramp_epochs or epochs - hold
    if epoch < hold or ramp <= 0:
        return langevin.temperature_start
    progress = min((epoch - hold + 1) / ramp, 1.0)
    return langevin.temperature_start + (langevin.temperature - langevin.temperature_start) * progress


def epoch_batches(dataset: Any, train: TrainConfig, epoch: int) -> list[Batch]:
    """The shuffled, length-bucketed batches of one epoch; the order depends only on (seed, epoch)."""
    batches = make_batches(dataset, train.batch_size, shuffle=True, seed=train.seed * 100_003 + epoch)
    return batches[: train.max_batches_per_epoch] if train.max_batches_per_epoch else batches


def validation_batches(dataset: Any, train: TrainConfig) -> list[Batch]:
    """The fixed validation batches: the first train.valid_sentences sentences (all when None)."""
    if train.valid_sentences is not None and train.valid_sentences < len(dataset):
        dataset = dataset.select(range(train.valid_sentences))
    return make_batches(dataset, train.batch_size, shuffle=False)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_config(model_cfg: ModelConfig, langevin: LangevinConfig, train: TrainConfig) -> dict[str, Any]:
    return {"model": model_cfg.model_dump(), "langevin": langevin.model_dump(), "train": train.model_dump()}


def _check_resumable(path: Path, state: dict[str, Any], kind: str, vocab_size: int, config: dict[str, Any]) -> None:
    """A checkpoint only continues the same run: every param that shapes the weights must match."""
    if state.get("kind") != kind or state.get("vocab_size") != vocab_size:
        raise TrainingError(
            f"{path}: checkpoint is a {state.get('kind')} model over {state.get('vocab_size')} tokens, "
            f"not {kind} over {vocab_size}; train without --resume"
        )
    saved = state.get("config", {})
    for section, values in config.items():
        for key, value in values.items():
            old = saved.get(section, {}).get(key)
            if (section, key) not in FREE_ON_RESUME and old != value:
                raise TrainingError(
                    f"{path}: checkpoint was trained with {section}.{key}={old!r}, params say {value!r}; "
                    "restore the param or train without --resume"
                )


class Trainer:
    """Trains one model kind; `run()` returns a TrainOutcome."""

    def __init__(
        self,
        kind: str,
        vocab_size: int,
        model_cfg: ModelConfig,
        langevin: LangevinConfig,
        train: TrainConfig,
        checkpoint_path: Optional[Path] = None,
        on_epoch: Optional[EpochCallback] = None,
        on_batch: Optional[BatchCallback] = None,
        progress: bool = True,
        max_len: int = 100,
    ) -> None:
        self.kind, self.vocab_size, self.train_cfg, self.max_len = kind, vocab_size, train, max_len
        self.config = _plain_config(model_cfg, langevin, train)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_epoch, self.on_batch, self.progress = on_epoch, on_batch, progress
        self.numerics = numeric_path(train.device, train.precision)
        self.device = self.numerics.device
        torch.manual_seed(train.seed)
        self.model = build_model(kind, vocab_size, model_cfg).to(self.device)
        # fused: one kernel for all parameters instead of a loop of per-tensor kernels (bench/step_parts.py)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train.lr, fused=True)
        self.objective = build_objective(kind, langevin, train, self.numerics)
        self.step_learner = self.objective.step_learner if isinstance(self.objective, SRIObjective) else None
        self.langevin = langevin
        self.state = _Progress()
        self.rng = _rng_state(self.device)

    def resume(self) -> None:
        """Continue from the checkpoint: weights, optimizer, RNG, position and history."""
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            raise TrainingError(f"{self.checkpoint_path}: no checkpoint to resume from; train without --resume")
        saved = load_checkpoint(self.checkpoint_path, map_location=self.device)
        _check_resumable(self.checkpoint_path, saved, self.kind, self.vocab_size, self.config)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.step_learner is not None:
            self.step_learner.load_state_dict(saved["step_learner"])
        self.state = _Progress(**saved["progress"])
        self.rng = {k: (v.cpu() if k == "cpu" else [t.cpu() for t in v]) for k, v in saved["rng"].items()}
        _set_rng_state(self.rng, self.device)
        log.info("resumed %s at epoch %d, batch %d", self.kind, self.state.epoch + 1, self.state.batch)

    def save(self) -> None:
        """Checkpoint the last consistent state (never a half-finished batch)."""
        if self.checkpoint_path is None:
            return
        progress = self.state
        save_checkpoint(self.checkpoint_path, {
            "format": FORMAT, "kind": self.kind, "vocab_size": self.vocab_size, "config": self.config,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": self.rng,
            "progress": {"epoch": progress.epoch, "batch": progress.batch, "global_step": progress.global_step,
                         "sums": dict(progress.sums), "history": [dict(row) for row in progress.history]},
            **({"step_learner": self.step_learner.state_dict()} if self.step_learner is not None else {}),
        })

    def run(self, train_set: Any, valid_set: Any) -> TrainOutcome:
        """Train until train.epochs; on Ctrl-C save a checkpoint and re-raise."""
        started = time.perf_counter()
        for row in self.state.history:
            self._report(row)
        valid_batches = [b.to(self.device) for b in validation_batches(valid_set, self.train_cfg)]
        epochs = tqdm(range(self.state.epoch, self.train_cfg.epochs), desc=f"train {self.kind}", unit="epoch",
                      initial=self.state.epoch, total=self.train_cfg.epochs, disable=not self.progress)
        try:
            for epoch in epochs:
                self._train_epoch(train_set, epoch)
                self._finish_epoch(epoch, valid_batches)
        except KeyboardInterrupt:
            self.save()
            log.warning("interrupted: checkpoint saved at epoch %d, batch %d; continue with --resume",
                        self.state.epoch + 1, self.state.batch)
            raise
        self.model.eval()
        chain = self.step_learner.chain if self.step_learner is not None else self.langevin
        return TrainOutcome(model=self.model, history=list(self.state.history), seconds=time.perf_counter() - started,
                            langevin=chain)

    def _train_epoch(self, train_set: Any, epoch: int) -> None:
        state = self.state
        batches = epoch_batches(train_set, self.train_cfg, epoch)
        ctx = StepContext(temperature=self.temperature(epoch), global_step=state.global_step)
        bar = tqdm(batches[state.batch:], desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                   initial=state.batch, total=len(batches), disable=not self.progress)
        self.model.train()
        for batch in bar:
            tic = time.perf_counter()
            batch = batch.to(self.device)
            ctx.global_step = state.global_step
            out, loss = self.step(batch, ctx, where=f"epoch {epoch + 1}, batch {state.batch + 1}")
            self._accumulate(batch, out, loss, time.perf_counter() - tic)
            bar.set_postfix(loss=f"{state.sums['loss'] / state.sums['batches']:.2f}", refresh=False)
            if self.on_batch:
                self.on_batch(epoch + 1, state.batch, loss)

    def temperature(self, epoch: int) -> float:
        """The SRI chain's noise temperature in training epoch `epoch` (0-based)."""
        return epoch_temperature(self.langevin, self.train_cfg.epochs, epoch)

    def step(self, batch: Batch, ctx: StepContext, where: str = "") -> tuple[StepOutput, float]:
        """One optimizer step on `batch` (in train mode); non-finite values raise TrainingError naming `where`."""
        self.optimizer.zero_grad(set_to_none=True)  # before the objective: it may accumulate gradients itself
        try:
            with self.numerics.autocast():
                out = self.objective.train_step(self.model, batch, ctx)
        except (ChainDiverged, StepSizesDiverged) as err:
            raise TrainingError(f"{where}: {err}") from None
        loss = float(out.loss.detach())
        if not math.isfinite(loss):
            raise TrainingError(f"{where}: the loss is {loss}; lower train.lr (or langevin.step_size)")
        out.loss.backward()
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.clip_grad))
        if not math.isfinite(norm):
            raise TrainingError(f"{where}: the gradient norm is {norm}; lower train.lr (or langevin.step_size)")
        self.optimizer.step()
        return out, loss

    def _accumulate(self, batch: Batch, out: StepOutput, loss: float, seconds: float) -> None:
        """Count a finished batch; the RNG snapshot makes the state after it resumable."""
        sums = self.state.sums
        for key, value in (("loss", loss), ("nll", float(out.nll_sum)), ("sentences", len(batch.lengths)),
                           ("tokens", int(batch.lengths.sum())), ("batches", 1), ("seconds", seconds),
                           ("kl", float(out.kl_sum) if out.kl_sum is not None else 0.0)):
            sums[key] = sums.get(key, 0.0) + value
        self.state.batch += 1
        self.state.global_step += 1
        self.rng = _rng_state(self.device)

    def _finish_epoch(self, epoch: int, valid_batches: list[Batch]) -> None:
        sums = self.state.sums
        self.model.eval()
        rng = torch.Generator(device=self.device).manual_seed(self.train_cfg.seed)
        metrics: dict[str, float] = {"epoch": epoch + 1}
        metrics.update(self._train_metrics(sums))
        try:
            metrics.update(self.objective.validate(self.model, valid_batches, rng))
        except ChainDiverged as err:
            raise TrainingError(f"epoch {epoch + 1}, validation: {err}") from None
        generator = latent_generator(self.model)
        if generator is not None and self.train_cfg.health_samples:
            metrics.update(prior_health(generator, self.train_cfg.health_samples, self.max_len, rng))
        metrics.update(self.objective.epoch_metrics(
            StepContext(temperature=self.temperature(epoch), global_step=self.state.global_step)))
        self.state.history.append(metrics)
        self.state.epoch, self.state.batch, self.state.sums = epoch + 1, 0, {}
        self.rng = _rng_state(self.device)
        self.save()
        self._report(metrics)

    def _train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        sentences, tokens = max(sums.get("sentences", 0.0), 1.0), max(sums.get("tokens", 0.0), 1.0)
        metrics = {
            "train_loss": sums.get("loss", 0.0) / max(sums.get("batches", 0.0), 1.0),
            "train_nll": sums.get("nll", 0.0) / sentences,
            "train_ppl": perplexity(sums.get("nll", 0.0), tokens),
            "tokens_per_s": sums.get("tokens", 0.0) / max(sums.get("seconds", 0.0), 1e-9),
        }
        if self.kind == "vae":
            metrics["train_kl"] = sums.get("kl", 0.0) / sentences
        return metrics

    def _report(self, metrics: dict[str, float]) -> None:
        log.info("%s epoch %d: train_nll %.3f valid_nll %.3f", self.kind, int(metrics["epoch"]),
                 metrics["train_nll"], metrics["valid_nll"])
        if self.on_epoch:
            self.on_epoch(dict(metrics))


def train_model(
    kind: str,
    vocab_size: int,
    train_set: Any,
    valid_set: Any,
    model_cfg: ModelConfig,
    langevin: LangevinConfig,
    train: TrainConfig,
    checkpoint_path: Optional[Path] = None,
    resume: bool = False,
    on_epoch: Optional[EpochCallback] = None,
    on_batch: Optional[BatchCallback] = None,
    progress: bool = True,
    max_len: int = 100,
) -> TrainOutcome:
    """Train `kind` (sri, vae, lm) from scratch, or continue from `checkpoint_path` with `resume`.

    on_epoch(metrics) is called once per epoch in order (restored epochs of a resumed run first);
    on_batch(epoch, batches_done, loss) after every optimizer step. max_len: decoding limit of the
    per-epoch prior samples (train.health_samples); the train stage passes data.max_len.
    """
    trainer = Trainer(kind, vocab_size, model_cfg, langevin, train, checkpoint_path, on_epoch, on_batch, progress,
                      max_len)
    if resume:
        trainer.resume()
    return trainer.run(train_set, valid_set)
