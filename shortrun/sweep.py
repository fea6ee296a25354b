"""A sweep's pure part: its typed config (a sweep file or command-line flags), the trials it plans, the best one.

A search space maps params keys to a list of values (`grid`) or a distribution (`random`):
`uniform(a, b)`, `loguniform(a, b)`, `randint(a, b)` (both ends included) or `choice(v1, v2, ...)`.
`grid` runs every combination of the lists; `random` draws `budget` trials with `seed` (grid lists are
then drawn from uniformly). Each trial is a list of `key=value` overrides applied on top of the sweep's
`preset` and `fixed` overrides; every trial is validated as params before any runs.

A sweep chooses on a validation metric only: the metric's name must say `valid` and must not say `test`
(the evaluate stage and the classifiers' test accuracy read the test split; they are reported for the
chosen trial, never used to choose it). Nothing here starts a process or talks to MLflow.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from shortrun.errors import ConfigError
from shortrun.params import apply_overrides, parse_override, read_yaml_mapping

SWEEP_RUN_ENV = "SHORTRUN_SWEEP_RUN_ID"  # the sweep's MLflow parent run: a trial's pipeline run nests under it
SWEEP_TRIAL_ENV = "SHORTRUN_SWEEP_TRIAL"  # the trial's key, tagged on its pipeline run
TRIAL_TAG = "shortrun.sweep.trial"
SWEEP_TAG = "shortrun.sweep"

_DISTRIBUTION = re.compile(r"^\s*(uniform|loguniform|randint|choice)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Distribution:
    """One random setting: `kind(args)` as written in a sweep file or `--random key=...`."""

    kind: str
    args: tuple[Any, ...]

    @classmethod
    def parse(cls, key: str, text: str) -> "Distribution":
        match = _DISTRIBUTION.match(str(text))
        if not match:
            raise ConfigError(f"random.{key}: {text!r} is not a distribution; expected uniform(a, b), "
                              "loguniform(a, b), randint(a, b) or choice(v1, v2, ...)")
        kind, inner = match.groups()
        args = tuple(yaml.safe_load(f"[{inner}]") or [])
        if kind == "choice":
            if not args:
                raise ConfigError(f"random.{key}: choice() needs at least one value")
            return cls(kind, args)
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"random.{key}: {kind} takes two numbers, got {text!r}")
        low, high = args
        if not low < high or (kind == "loguniform" and low <= 0) or (kind == "randint" and not
                                                                      all(isinstance(a, int) for a in args)):
            raise ConfigError(f"random.{key}: {text!r}: expected low < high"
                              + (", both positive" if kind == "loguniform" else "")
                              + (", both integers" if kind == "randint" else ""))
        return cls(kind, args)

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if self.kind == "randint":
            return rng.randint(low, high)
        if self.kind == "loguniform":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return float(f"{value:.4g}")  # readable overrides; four digits are finer than any chain setting needs

    @property
    def log_scale(self) -> bool:
        return self.kind == "loguniform"


def validation_metric(name: str) -> str:
    """The metric a sweep may choose on: its name says valid and does not say test."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    if any(word.startswith("test") for word in words):
        raise ConfigError(f"metric {name}: a test metric; a sweep chooses on a validation metric "
                          "(e.g. train.sri.best_valid_nll) and reports test numbers only for the chosen trial")
    if not any("valid" in word for word in words):
        raise ConfigError(f"metric {name}: not a validation metric (its name must say valid, "
                          "e.g. train.sri.best_valid_nll)")
    return name


def _param_key(key: str) -> str:
    """A space key must be a params key (section.key); its values are checked per trial."""
    parts, _ = parse_override(f"{key}=0")
    if parts == ["preset"]:
        raise ConfigError(f"{key}: a sweep's preset is fixed (sweep key preset); search params keys instead")
    return key


class SweepConfig(BaseModel):
    """A sweep: what to search, how many trials, and the validation metric that chooses among them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$",
                      description="names the MLflow parent run sweep-<name> and the trials folder")
    preset: Optional[str] = Field(None,
                                  description="preset every trial starts from; default: the workspace's params.yaml")
    fixed: list[str] = Field(default_factory=list, description="key=value overrides for every trial")
    method: Optional[Literal["grid", "random"]] = Field(
        None, description="default: random when any random key, else grid")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="key: values to try")
    random: dict[str, str] = Field(default_factory=dict, description="key: distribution, e.g. loguniform(0.1, 1)")
    budget: Optional[PositiveInt] = Field(None, description="trials to run (random: required; grid: the first N)")
    seed: int = 0
    metric: str = Field(description="validation metric of a trial's pipeline run, e.g. train.sri.best_valid_nll")
    direction: Literal["minimize", "maximize"] = "minimize"

    @field_validator("metric")
    @classmethod
    def _metric(cls, name: str) -> str:
        return validation_metric(name)

    @field_validator("grid", "random")
    @classmethod
    def _keys(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, values in space.items():
            _param_key(key)
            if isinstance(values, list) and not values:
                raise ConfigError(f"grid.{key}: no values")
        return space

    @model_validator(mode="after")
    def _space(self) -> "SweepConfig":
        if not self.grid and not self.random:
            raise ConfigError("search space: empty; give --grid key=v1,v2 or --random key=dist "
                              "(or grid:/random: in the file)")
        both = sorted(set(self.grid) & set(self.random))
        if both:
            raise ConfigError(f"{both[0]}: searched both by grid and at random; choose one")
        if self.method is None:
            self.method = "random" if self.random else "grid"
        if self.method == "grid" and self.random:
            raise ConfigError(f"random.{next(iter(self.random))}: method grid takes lists only; use method random")
        if self.method == "random" and self.budget is None:
            raise ConfigError("budget: method random needs a number of trials")
        for key, text in self.random.items():
            Distribution.parse(key, text)
        return self

    def searched_keys(self) -> list[str]:
        return [*self.grid, *self.random]

    def distributions(self) -> dict[str, Distribution]:
        return {key: Distribution.parse(key, text) for key, text in self.random.items()}


def build_sweep(raw: Mapping[str, Any], where: str = "sweep") -> SweepConfig:
    """Validate a sweep mapping; a bad key or value is one line naming it."""
    try:
        return SweepConfig(**raw)
    except ConfigError as err:  # our validators' own one-line errors (they are not pydantic's ValueErrors)
        raise ConfigError(f"{where}: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "sweep"
        raise ConfigError(f"{where}: {key}: {first['msg']}") from None


def load_sweep_file(path: str | Path, **updates: Any) -> SweepConfig:
    """A sweep file (e.g. sweeps/chain.yaml) with command-line values in `updates` taking precedence."""
    path = Path(path)
    raw = read_yaml_mapping(path, "sweep file")
    raw.setdefault("name", path.stem)
    return build_sweep({**raw, **{k: v for k, v in updates.items() if v not in (None, [], {})}}, str(path))


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`--grid key=v1,v2` flags as {key: [v1, v2]} (values YAML-typed; `[a,b],[c]` gives lists)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = _split(item, "--grid", "langevin.steps=5,10")
        try:
            grid[key] = yaml.safe_load(f"[{values}]") or []
        except yaml.YAMLError:
            raise ConfigError(f"--grid {key}: {values!r} is not a comma-separated list of values") from None
    return grid


def parse_random(items: list[str]) -> dict[str, str]:
    """`--random key=loguniform(0.1,1)` flags as {key: text}; the distribution is checked by SweepConfig."""
    return dict(_split(item, "--random", "langevin.step_size=loguniform(0.1,1)") for item in items)


def _split(item: str, flag: str, example: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"{flag} {item!r}: expected key=values, e.g. {flag} {example}")
    key, values = item.split("=", 1)
    return key.strip(), values


def _yaml_value(value: Any) -> str:
    """A value as override text that parse_override reads back to the same value."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


@dataclass(frozen=True)
class Trial:
    """One pipeline run of a sweep: its searched settings as overrides; `key` identifies it across resumes."""

    settings: tuple[tuple[str, Any], ...]
    preset: Optional[str]
    fixed: tuple[str, ...]

    @property
    def overrides(self) -> list[str]:
        """What the trial changes: the sweep's fixed overrides, then its searched settings."""
        return [*self.fixed, *(f"{key}={_yaml_value(value)}" for key, value in self.settings)]

    @property
    def key(self) -> str:
        text = json.dumps({"preset": self.preset, "overrides": self.overrides})
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def label(self) -> str:
        return ", ".join(f"{key}={_yaml_value(value)}" for key, value in self.settings)


def plan_trials(cfg: SweepConfig) -> list[Trial]:
    """The sweep's trials in order: grid combinations (the first `budget`), or `budget` seeded random draws.

    Draws that repeat an earlier trial are dropped (a choice or randint space can run out).
    """
    def trial(settings: Mapping[str, Any]) -> Trial:
        return Trial(tuple(settings.items()), cfg.preset, tuple(cfg.fixed))

    if cfg.method == "grid":
        combos = itertools.product(*cfg.grid.values())
        return [trial(dict(zip(cfg.grid, combo))) for combo in itertools.islice(combos, cfg.budget)]
    rng = random.Random(cfg.seed)
    dists = cfg.distributions()
    trials: dict[str, Trial] = {}
    for _ in range(cfg.budget or 0):
        settings = {key: rng.choice(values) for key, values in cfg.grid.items()}
        settings.update({key: dist.sample(rng) for key, dist in dists.items()})
        drawn = trial(settings)
        trials.setdefault(drawn.key, drawn)
    return list(trials.values())


def check_trials(trials: list[Trial], params: Mapping[str, Any]) -> None:
    """Validate every trial's overrides against the workspace's params before any trial runs."""
    for number, trial in enumerate(trials, 1):
        start = {**params, "preset": trial.preset} if trial.preset else params
        try:
            apply_overrides(start, trial.overrides)
        except ConfigError as err:
            raise ConfigError(f"trial {number} ({trial.label()}): {err}") from None


Status = Literal["finished", "failed", "pending"]


@dataclass
class TrialResult:
    """What became of a trial: its status, its metric, its MLflow run, and the error of a failed one."""

    trial: Trial
    status: Status = "pending"
    metric: Optional[float] = None
    run_id: Optional[str] = None
    error: Optional[str] = None


def choose(results: list[TrialResult], direction: str) -> Optional[TrialResult]:
    """The finished trial with the best finite metric (ties: the earlier trial), or None."""
    usable = [r for r in results if r.status == "finished" and r.metric is not None and math.isfinite(r.metric)]
    if not usable:
        return None
    sign = 1 if direction == "minimize" else -1
    return min(usable, key=lambda r: sign * r.metric)


def sweep_tags(environ: Mapping[str, str]) -> dict[str, str]:
    """Tags that make a pipeline run a trial of a sweep: a child of the sweep's run, named by its trial key."""
    parent = environ.get(SWEEP_RUN_ENV)
    if not parent:
        return {}
    return {"mlflow.parentRunId": parent, TRIAL_TAG: environ.get(SWEEP_TRIAL_ENV, "")}


def is_test_metric(name: str) -> bool:
    """A headline number measured on the test split (not prepare's counts of it): reported for the chosen trial only."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    if name.startswith("prepare."):
        return False
    return any(word.startswith("test") for word in words) or (
        name.startswith("evaluate.") and words[-1] in ("nll", "ppl"))
