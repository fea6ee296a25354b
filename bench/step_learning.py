"""Validation NLL reached per second of training: fixed against learned step sizes (langevin.learn_steps).

Three SRI runs side by side in one process, on the yelp corpus cut to TRAIN_SENTENCES training and
VALID_SENTENCES validation sentences with the yelp preset's model and training settings: the fixed
schedule at K = 5 and K = 10 and learned step sizes at K = 5 (LEARN). The runs take turns of
SLICE_SECONDS of their own training, so all of them see the same load from whatever else runs on the
machine, until each has trained for RUN_SECONDS (env SHORTRUN_BENCH_RUN_SECONDS). Each is validated
every VALID_EVERY_SECONDS of its own training time, on the same sentences with the same seeds, two ways:

- IS NLL: -log p(x) estimated by importance sampling (the registry gate's estimator, `evaluation.heldout`:
  a Laplace proposal centred on the mean of a few chains of the run's own chain), i.e. the model's
  likelihood, which the chain changes only through training;
- recon NLL: the trainer's valid_nll, NLL(x|z_K) at the end point of the run's own chain, which also
  depends on how far that chain moves from its prior draw (a chain that moves less scores worse).

Validation is not counted as training time; the step-size updates are.

Target (issue 12): learned steps at K = 5 reach the fixed K = 10 run's final validation NLL within
TARGET_SHARE of the time the K = 10 run took to reach it, judged on each NLL. Times are those of the
first validation at or below that NLL, so they are known to VALID_EVERY_SECONDS.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from shortrun.config import HeldOutConfig, PipelineConfig
from shortrun.data.batching import Batch
from shortrun.data.preparation import prepare_corpus
from shortrun.data.prepared import load_split, load_vocab
from shortrun.evaluation.heldout import heldout_likelihood
from shortrun.inference import step_sizes
from shortrun.objectives import StepContext
from shortrun.params import build_config, data_root
from shortrun.paths import PREPARED
from shortrun.training import Trainer, epoch_batches, validation_batches

TRAIN_SENTENCES = 4000
VALID_SENTENCES = 200
SCORED = HeldOutConfig(sentences=100, importance_samples=16, proposal_chains=4, batch_size=50, seed=0)
RUN_SECONDS = float(os.environ.get("SHORTRUN_BENCH_RUN_SECONDS", "150"))
SLICE_SECONDS = 10.0
VALID_EVERY_SECONDS = 30.0
LEARN = {"learn_steps": True, "learn_steps_lr": 0.1, "learn_steps_every": 10, "learn_steps_sentences": 1}
RUNS = {"fixed K=5": {"steps": 5}, "learned K=5": {"steps": 5, **LEARN}, "fixed K=10": {"steps": 10}}
REFERENCE, CANDIDATE = "fixed K=10", "learned K=5"
TARGET_SHARE = 0.6
COLUMNS = {1: "IS NLL", 2: "recon NLL"}


@dataclass
class Run:
    """One training run: its trainer, where it is in the data, its training seconds and validation curve."""

    name: str
    trainer: Trainer
    train_set: Any
    seconds: float = 0.0
    steps: int = 0
    epoch: int = 0
    queue: list[Batch] = field(default_factory=list)
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (train seconds, IS NLL, recon NLL)

    def train_for(self, seconds: float) -> None:
        """Training steps until this run's training clock has advanced by `seconds`."""
        cfg = self.trainer.train_cfg
        until = self.seconds + seconds
        while self.seconds < until:
            if not self.queue:
                self.queue = epoch_batches(self.train_set, cfg, self.epoch)
                self.epoch += 1
            batch = self.queue.pop(0)
            tic = time.perf_counter()
            self.trainer.step(batch, StepContext(self.trainer.temperature(self.epoch - 1), self.steps))
            self.seconds += time.perf_counter() - tic
            self.steps += 1

    def validate(self, batches: list[Batch], scored: Any) -> None:
        model, objective = self.trainer.model, self.trainer.objective
        model.eval()
        rng = torch.Generator().manual_seed(self.trainer.train_cfg.seed)
        recon = objective.validate(model, batches, rng)["valid_nll"]
        likelihood = heldout_likelihood(model, scored, objective.langevin, SCORED, torch.device("cpu"))["nll"]
        self.curve.append((self.seconds, likelihood, recon))
        model.train()

    def time_to_reach(self, nll: float, column: int) -> Optional[float]:
        """Training seconds at the first validation whose NLL in `column` (COLUMNS) is at or below `nll`."""
        return next((point[0] for point in self.curve if point[column] <= nll + 1e-9), None)


def reduced_yelp() -> PipelineConfig:
    return build_config("yelp", {"data": {"max_train": TRAIN_SENTENCES, "max_valid": VALID_SENTENCES},
                                 "train": {"device": "cpu", "valid_sentences": VALID_SENTENCES}})


def machine() -> str:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    name = names[0] if names else "unknown CPU"
    return f"{name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load {load}"


def main() -> None:
    cfg = reduced_yelp()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        prepare_corpus(cfg.data, data_root(Path(__file__).parent))
        vocab, train_set = load_vocab(Path(PREPARED)), load_split("train", Path(PREPARED))
        valid_set = load_split("valid", Path(PREPARED))
        valid = validation_batches(valid_set, cfg.train)
        report(race(cfg, len(vocab), train_set, valid, valid_set.select(range(SCORED.sentences))))


def race(cfg: PipelineConfig, vocab: int, train_set: Any, valid: list[Batch], scored: Any) -> list[Run]:
    """The runs of RUNS, trained in turns until each has had RUN_SECONDS, validated along the way."""
    runs = [Run(name, Trainer("sri", vocab, cfg.model, cfg.langevin.model_copy(update=chain), cfg.train,
                              progress=False), train_set)
            for name, chain in RUNS.items()]
    for run in runs:
        run.trainer.model.train()
    print(f"yelp: {len(train_set)} training, {sum(len(b.lengths) for b in valid)} validation sentences; "
          f"{RUN_SECONDS:.0f} s of training per run, turns of {SLICE_SECONDS:.0f} s, validation every "
          f"{VALID_EVERY_SECONDS:.0f} s (IS NLL on the first {SCORED.sentences}); learned: {LEARN}", flush=True)
    while any(run.seconds < RUN_SECONDS for run in runs):
        for run in runs:
            if run.seconds >= RUN_SECONDS:
                continue
            if run.seconds >= len(run.curve) * VALID_EVERY_SECONDS:
                run.validate(valid, scored)
            run.train_for(min(SLICE_SECONDS, RUN_SECONDS - run.seconds))
    for run in runs:
        run.validate(valid, scored)
    return runs


def report(runs: list[Run]) -> None:
    print(f"\n{'run':<12} {'steps':>6} {'train s':>8} {'IS NLL':>8} {'recon NLL':>10}   "
          "curve (train s: IS NLL / recon NLL)")
    for run in runs:
        curve = "  ".join(f"{s:.0f}: {a:.2f} / {b:.2f}" for s, a, b in run.curve)
        last = run.curve[-1]
        print(f"{run.name:<12} {run.steps:>6} {run.seconds:>8.1f} {last[1]:>8.3f} {last[2]:>10.3f}   {curve}")
    by_name = {run.name: run for run in runs}
    learned = by_name[CANDIDATE].trainer.objective.langevin
    print(f"\n{CANDIDATE} sizes: {[round(s, 4) for s in learned.learned_sizes or []]}")
    print(f"schedule K=5 sizes: {[round(s, 4) for s in step_sizes(learned.model_copy(update={'learned_sizes': None}))]}")
    reference = by_name[REFERENCE]
    for column, label in COLUMNS.items():
        target = reference.curve[-1][column]
        ref_time = reference.time_to_reach(target, column) or reference.seconds
        print(f"\n{label}: target = the {REFERENCE} run's final {target:.3f}, first reached at {ref_time:.0f} s")
        for run in runs:
            if run is not reference:
                reached = run.time_to_reach(target, column)
                share = "not reached" if reached is None else f"{reached / ref_time:.2f} of {REFERENCE}'s time"
                print(f"  {run.name}: {'-' if reached is None else f'{reached:.0f} s'} ({share})")
        reached = by_name[CANDIDATE].time_to_reach(target, column)
        met = reached is not None and reached / ref_time <= TARGET_SHARE
        print(f"  target ({CANDIDATE} within {TARGET_SHARE:.0%} of {REFERENCE}'s time): {'met' if met else 'NOT met'}")
    print(f"\nmachine at the end: {machine()}")
