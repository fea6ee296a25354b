"""The one shape every log-likelihood estimator has: (model, batch, settings) -> per-sentence Estimate.

An `Estimator` names an entry point of that shape, the models it applies to, how many of the first
test sentences it covers and in batches of how many, the numbers that describe how it was run, and
optionally a `check`: a measurement of the estimator's own tightness on the model (AIS: BDMC on
simulated sentences). The suite runs a list of them (`suite.ESTIMATORS`); adding an estimator is one
module with its entry point and one entry in that list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from shortrun.config import EvaluateConfig, LangevinConfig
from shortrun.data.batching import Batch
from shortrun.evaluation.importance import Estimate


@dataclass(frozen=True)
class Settings:
    """What an estimator may read: the evaluate and chain settings, and the stage's one random stream."""

    evaluate: EvaluateConfig
    langevin: LangevinConfig
    rng: torch.Generator


EstimateFn = Callable[[nn.Module, Batch, Settings], Estimate]
CheckFn = Callable[[nn.Module, Settings, int], dict[str, Any]]
"""(model, settings, max_len) -> numbers for metrics/evaluate.json (sentences of at most max_len words)."""


def _every_sentence(cfg: EvaluateConfig) -> Optional[int]:
    return None


def _stage_batch_size(cfg: EvaluateConfig) -> int:
    return cfg.batch_size


def _nothing(cfg: EvaluateConfig) -> dict[str, float]:
    return {}


def _no_headline(block: dict[str, Any]) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Estimator:
    """One way to estimate log p(x), as the suite runs it.

    name: its key in the metrics; label: a line for the report; applies: whether it fits a model;
    sentences: how many of the first sentences it covers (None: all); batch_size: sentences per call;
    describe: numbers that say how it ran (e.g. AIS's steps and chains); check: see the module doc;
    headline: numbers of its metrics block repeated at the model's top level when it is the reported one.
    """

    name: str
    label: str
    estimate: EstimateFn
    applies: Callable[[nn.Module], bool]
    sentences: Callable[[EvaluateConfig], Optional[int]] = _every_sentence
    batch_size: Callable[[EvaluateConfig], int] = _stage_batch_size
    describe: Callable[[EvaluateConfig], dict[str, float]] = _nothing
    check: Optional[CheckFn] = None
    headline: Callable[[dict[str, Any]], dict[str, float]] = _no_headline
