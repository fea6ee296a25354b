"""Read `params.yaml`, apply the chosen preset and overrides, and validate the result."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from shortrun.config import PipelineConfig
from shortrun.errors import ConfigError
from shortrun.presets import PRESETS

PARAMS_FILE = "params.yaml"
DATA_ENV = "SHORTRUN_DATA"
SECTIONS = ("data", "model", "langevin", "train", "evaluate", "export", "classify", "registry")


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `update` merged in; nested mappings merge, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_config(preset: str, sections: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Validate preset + section overrides into a `PipelineConfig`, naming any bad key."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    sections = dict(sections or {})
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a params section; expected one of {', '.join(SECTIONS)}")
    raw = deep_merge(PRESETS[preset], {k: v for k, v in sections.items() if v})
    export_chain = raw.get("export", {}).get("langevin")
    if isinstance(export_chain, Mapping):  # a partial export chain inherits the training chain's other keys
        raw["export"]["langevin"] = deep_merge(raw.get("langevin", {}), export_chain)
    try:
        return PipelineConfig(preset=preset, **raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{key}: {first['msg']} (got {first.get('input')!r})") from None


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Load the raw params mapping; a missing or malformed file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path = PARAMS_FILE) -> PipelineConfig:
    """The validated config of a workspace's params.yaml."""
    raw = read_params(path)
    preset = raw.get("preset")
    if not isinstance(preset, str):
        raise ConfigError(f"{path}: key 'preset' must name a preset, got {preset!r}")
    return build_config(preset, {k: v for k, v in raw.items() if k != "preset"})


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `section.key=value` into its dotted key path and a YAML-typed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.epochs=3")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] != "preset" and (parts[0] not in SECTIONS or len(parts) < 2):
        raise ConfigError(f"override {key!r}: not a param; expected preset or <section>.<key> with section in {', '.join(SECTIONS)}")
    return parts, yaml.safe_load(value)


def apply_overrides(raw: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return params with `key=value` overrides applied; the result is validated before it is returned."""
    updated = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node = updated
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    build_config(updated.get("preset", ""), {k: v for k, v in updated.items() if k != "preset"})
    return updated


def data_root(start: str | Path = ".") -> Path:
    """Where corpora live: $SHORTRUN_DATA, else the first `shared/data` beside the workspace or above it."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"corpora not found: set {DATA_ENV} to the folder holding short_yelp/ and ptb/")


def resolve_data_path(relative: str, root: Path) -> Path:
    """A corpus file path: absolute paths stay, others are read under the data root."""
    path = Path(relative).expanduser()
    return path if path.is_absolute() else root / path
