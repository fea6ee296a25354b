"""`params.yaml`: read and validate it, and write it out in full from a preset, overrides and a data root.

params.yaml holds every value the stages use (all keys of every section), so DVC hashes exactly what
the stages read and `dvc params diff` / `dvc exp show` show it. A preset is a named starting point:
choosing one writes all of its values (`write_params`, `shortrun params --preset P`). `data.root` says
where the corpora are; DVC hashes `<data.root>/<data.corpus>/` as prepare's input.
"""
from __future__ import annotations

import copy
import os
from itertools import takewhile
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from shortrun.config import DataConfig, PipelineConfig
from shortrun.errors import ConfigError
from shortrun.io import write_text
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
    try:
        return PipelineConfig(preset=preset, **raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{key}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})") from None


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (`what` names it in errors); missing, malformed (with its line) or not a
    mapping is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or err.__class__.__name__
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Load the raw params mapping; a missing or malformed file is a ConfigError."""
    return read_yaml_mapping(path, "params file")


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
    """Where corpora are found when params.yaml does not say: $SHORTRUN_DATA, else the first `shared/data`
    beside the workspace or above it."""
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


def corpus_root(data: DataConfig, workspace: str | Path = ".") -> Path:
    """The folder prepare reads corpora from: data.root (what DVC hashes), relative to the workspace.

    $SHORTRUN_DATA must agree with it: a different folder would make the stage read files DVC does not
    track, so it is an error naming the command that writes the new root, not a silent override.
    """
    if data.root is None:
        return data_root(workspace)
    root = (Path(workspace) / Path(data.root).expanduser()).resolve()
    env = os.environ.get(DATA_ENV)
    if env and Path(env).expanduser().resolve() != root:
        raise ConfigError(f"data.root: params.yaml reads corpora from {root}, but {DATA_ENV}={env}; "
                          f"write it to params.yaml with `shortrun params --data-root {env}` (or unset {DATA_ENV})")
    return root


def corpus_file(data: DataConfig, relative: str, root: Path, key: str) -> Path:
    """A corpus file under the root; it must lie in the corpus folder `<root>/<corpus>/`, the one DVC hashes."""
    path = resolve_data_path(relative, root).resolve()
    folder = (root / data.corpus).resolve()
    if not path.is_relative_to(folder):
        raise ConfigError(f"{key}: {path} is outside {folder}, the corpus folder DVC tracks for prepare; "
                          "keep a corpus's files in <data.root>/<data.corpus>/")
    return path


def render(cfg: PipelineConfig) -> dict[str, Any]:
    """params.yaml's content for a config: the preset's name and every key of every section."""
    return cfg.model_dump()


def preset_params(preset: str, root: str) -> dict[str, Any]:
    """A preset written out in full, reading corpora under `root`."""
    return render(build_config(preset, {"data": {"root": root}}))


def choose_root(current: Mapping[str, Any], workspace: Path, explicit: str | None = None) -> str:
    """The data.root to write: `explicit`, else $SHORTRUN_DATA, else the params file's own when that folder
    exists, else the one `data_root` finds (written relative to the workspace)."""
    workspace = workspace.resolve()
    env = os.environ.get(DATA_ENV)
    own = (current.get("data") or {}).get("root")
    if explicit:
        root = explicit
    elif env:
        root = str(Path(env).expanduser().resolve())
    elif isinstance(own, str) and (workspace / own).is_dir():
        root = own
    else:
        root = os.path.relpath(data_root(workspace), workspace)
    if not (workspace / Path(root).expanduser()).is_dir():
        raise ConfigError(f"data.root: {root}: folder not found (relative to {workspace}); "
                          f"expected the folder holding the corpus folders (set {DATA_ENV} or --data-root)")
    return root


def updated_params(preset: str | None, overrides: list[str], path: str | Path = PARAMS_FILE,
                   root: str | None = None) -> dict[str, Any]:
    """params.yaml in full after choosing `preset` (its values replace the file's), applying `key=value`
    overrides and choosing the data root (`choose_root`; an override of data.root counts as `root`);
    validated, nothing is written."""
    path = Path(path)
    current = read_params(path)
    start = {"preset": preset} if preset else current
    changed = apply_overrides(start, list(overrides))
    set_root = [value for parts, value in map(parse_override, overrides) if parts == ["data", "root"]]
    data_root_value = choose_root(current, path.parent, root or (str(set_root[-1]) if set_root else None))
    sections = {k: v for k, v in changed.items() if k != "preset"}
    sections["data"] = {**(sections.get("data") or {}), "root": data_root_value}
    return render(build_config(changed.get("preset", ""), sections))


def write_params(preset: str | None, overrides: list[str], path: str | Path = PARAMS_FILE,
                 root: str | None = None) -> PipelineConfig:
    """Write `updated_params` to params.yaml (atomically, keeping its header comment) and load the result."""
    path = Path(path)
    updated = updated_params(preset, overrides, path, root)
    if updated != read_params(path):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        header = "".join(takewhile(lambda line: line.startswith("#"), lines))
        write_text(path, header + dump_params(updated))
    return load_config(path)


class _ParamsDumper(yaml.SafeDumper):
    """Sections and their mappings in block style (one key a line, as `dvc params diff` lists them), lists inline."""


_ParamsDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def dump_params(params: Mapping[str, Any]) -> str:
    """params.yaml's text for a params mapping (keys in config order)."""
    return yaml.dump(dict(params), Dumper=_ParamsDumper, sort_keys=False, default_flow_style=False, width=120)
