"""MLflow Model Registry: each pipeline run's models become new versions, promoted by a metric gate.

Every registered version gets the alias `candidate`. The alias `champion` moves to it only when its
gate metric beats the current champion's; the decision and the reason are written to the version's
tags (`gate.*`, `validation_status`). A version is registered completely or not at all: if anything
fails after the version exists, it is deleted again. Registering the same DVC output twice (a re-run
with nothing changed) returns the existing version instead of adding a copy.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import shortrun
from shortrun.config import PipelineConfig
from shortrun.dvclock import out_md5
from shortrun.errors import ConfigError, ShortrunError
from shortrun.paths import METRICS, model_dir
from shortrun.tracking import DEFAULT_TRACKING_URI, PARENT_RUN_ENV, configure_tracking, flatten, git_commit

CANDIDATE = "candidate"
CHAMPION = "champion"
SOURCE_TAG = "dvc_md5"
ENCODING_TAG = "encoding_sha"  # a generator's encoding settings (chains, seed, short-run chain), hashed
GENERATOR_KIND = "sri"
SERVING_ENTRY = Path(shortrun.__file__).parent / "serving_entry.py"
# What a fresh environment needs to load the generator (the shortrun code itself travels with the model).
GENERATOR_REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "datasets", "pydantic", "pyyaml", "tqdm", "mlflow")


class TrackingUnavailable(ShortrunError):
    """The MLflow tracking store cannot be reached or opened."""


@dataclass(frozen=True)
class GateDecision:
    """Whether a new version becomes champion, and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class Registration:
    """One registered model version and what the gate decided for it."""

    name: str
    version: str
    promoted: bool
    reason: str
    new: bool = True


@contextmanager
def _fail_fast(timeout_s: float) -> Iterator[None]:
    """HTTP requests to a tracking server without retries and with a short timeout (for the probe only)."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, timeout_s)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(timeout_s: float = 10.0) -> str:
    """Configure tracking and check the store answers; an unreachable one is one error line naming its URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    try:
        with _fail_fast(timeout_s):
            uri = configure_tracking()
            MlflowClient().search_experiments(max_results=1)
    except Exception as err:  # any failure here means the store is unusable; the URI is what the user must fix
        reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]
        raise TrackingUnavailable(
            f"MLflow tracking store {uri} is unreachable ({reason}); start the server or set MLFLOW_TRACKING_URI"
        ) from None
    return uri


def decide(client: MlflowClient, name: str, metric: str, value: float, lower_is_better: bool = True,
           source_md5: str | None = None) -> GateDecision:
    """Compare `value` with the current champion's recorded gate value.

    A version built from the champion's own DVC output (same `source_md5`) replaces it: only its settings
    changed (e.g. how a generator encodes), and they must follow the pipeline's current config.
    """
    if not math.isfinite(value):
        return GateDecision(False, f"{metric} is {value}; a non-finite metric is never promoted")
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return GateDecision(True, f"no champion yet; {metric}={value:.4f}")
    if source_md5 and champion.tags.get(SOURCE_TAG) == source_md5:
        return GateDecision(True, f"same weights as champion v{champion.version} ({SOURCE_TAG} {source_md5}), new settings")
    recorded = champion.tags.get("gate.value") if champion.tags.get("gate.metric") == metric else None
    if recorded is None:
        return GateDecision(True, f"champion v{champion.version} has no recorded {metric}; {metric}={value:.4f}")
    best = float(recorded)
    better = value < best if lower_is_better else value > best
    direction = "lower" if lower_is_better else "higher"
    if better:
        return GateDecision(True, f"{metric} {value:.4f} beats champion v{champion.version} ({best:.4f}, {direction} is better)")
    return GateDecision(False, f"{metric} {value:.4f} does not beat champion v{champion.version} ({best:.4f}, {direction} is better)")


def already_registered(name: str, source_md5: str | None, settings: Mapping[str, str] | None = None) -> Registration | None:
    """The registration of a version made from the same DVC output (content hash) and, when given, carrying
    the same `settings` tags, if there is one."""
    if not source_md5:
        return None
    query = f"name = '{name}' and tags.{SOURCE_TAG} = '{source_md5}'"
    query += "".join(f" and tags.{key} = '{value}'" for key, value in (settings or {}).items())
    try:
        found = MlflowClient().search_model_versions(query)
    except MlflowException:  # the registered model does not exist yet
        return None
    if not found:
        return None
    version = max(found, key=lambda v: int(v.version))
    return Registration(name=name, version=str(version.version), promoted=version.tags.get("gate.decision") == "promoted",
                        reason=f"unchanged since v{version.version} ({SOURCE_TAG} {source_md5})", new=False)


def register_version(
    model_uri: str,
    name: str,
    metric: str,
    value: float,
    lower_is_better: bool = True,
    tags: Mapping[str, str] | None = None,
) -> Registration:
    """Register `model_uri` as a new version of `name`, alias it `candidate`, and run the champion gate."""
    client = MlflowClient()
    decision = decide(client, name, metric, value, lower_is_better, (tags or {}).get(SOURCE_TAG))
    version = mlflow.register_model(model_uri, name).version
    try:
        gate_tags = {
            "gate.metric": metric,
            "gate.value": repr(float(value)),
            "gate.direction": "lower" if lower_is_better else "higher",
            "gate.decision": "promoted" if decision.promote else "refused",
            "gate.reason": decision.reason,
            "validation_status": "passed" if decision.promote else "failed",
        }
        for key, tag in {**gate_tags, **(tags or {})}.items():
            client.set_model_version_tag(name, version, key, str(tag))
        client.set_registered_model_alias(name, CANDIDATE, version)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version)
    except BaseException:
        client.delete_model_version(name, version)
        raise
    return Registration(name=name, version=str(version), promoted=decision.promote, reason=decision.reason)


def read_metric(path: Path, key: str) -> float:
    """One number of a (nested) metrics JSON file, by dotted key."""
    if not path.is_file():
        raise ConfigError(f"{path}: metrics file not found; the gate metric {key!r} is read from it")
    flat = flatten(json.loads(path.read_text(encoding="utf-8")))
    if not isinstance(flat.get(key), (int, float)):
        raise ConfigError(f"registry.gate_metric: {key!r} is not a number in {path} (keys: {', '.join(sorted(flat))})")
    return float(flat[key])


def _pinned(packages: tuple[str, ...]) -> list[str]:
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def _run_tags(stage: str, parent: str | None) -> dict[str, str]:
    tags = {"stage": stage, "git_commit": git_commit()}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def register_generator(cfg: PipelineConfig, parent_run_id: str | None = None) -> Registration | None:
    """Log models/sri as a pyfunc model and register it under `registry.generator_name` (None without an SRI model).

    The logging run nests under `parent_run_id` (default: $SHORTRUN_PARENT_RUN_ID, set by the flow).
    """
    folder = model_dir(GENERATOR_KIND)
    if GENERATOR_KIND not in cfg.train.models or not folder.is_dir():
        return None
    name, metric = cfg.registry.generator_name, cfg.registry.gate_metric
    value = read_metric(METRICS / "train" / f"{GENERATOR_KIND}.json", metric)
    source = out_md5(folder)
    encoding = {"chains": cfg.export.chains, "seed": cfg.export.seed, "langevin": cfg.export_langevin.model_dump()}
    settings = {ENCODING_TAG: hashlib.sha256(json.dumps(encoding, sort_keys=True).encode()).hexdigest()[:16]}
    existing = already_registered(name, source, settings)
    if existing is not None:
        return existing
    parent = parent_run_id or os.environ.get(PARENT_RUN_ENV)
    with mlflow.start_run(run_name="register", nested=mlflow.active_run() is not None, tags=_run_tags("register", parent)):
        info = mlflow.pyfunc.log_model(
            name="generator",
            python_model=str(SERVING_ENTRY),
            artifacts={"model_dir": str(folder)},
            code_paths=[str(SERVING_ENTRY.parent)],
            model_config=encoding,
            input_example=["a sentence"],
            pip_requirements=_pinned(GENERATOR_REQUIREMENTS),
        )
        tags = {SOURCE_TAG: source or "", **settings, "preset": cfg.preset, "git_commit": git_commit(), "kind": GENERATOR_KIND}
        result = register_version(info.model_uri, name, metric, value, lower_is_better=True, tags=tags)
        mlflow.set_tags({"registered_model": name, "registered_version": result.version, "gate.reason": result.reason})
    return result


def register_sklearn(
    model: Any,
    name: str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    input_example: Any = None,
    tags: Mapping[str, str] | None = None,
    source_md5: str | None = None,
) -> Registration:
    """Log a fitted scikit-learn model to the active run and register it through the same gate.

    `source_md5` (e.g. the DVC hash of the classifier output) makes a repeated call return the existing version.
    """
    import mlflow.sklearn

    existing = already_registered(name, source_md5)
    if existing is not None:
        return existing
    tags = {**(tags or {}), **({SOURCE_TAG: source_md5} if source_md5 else {})}
    info = mlflow.sklearn.log_model(model, name="classifier", input_example=input_example,
                                    pip_requirements=_pinned(("scikit-learn", "numpy", "mlflow")))
    return register_version(info.model_uri, name, metric, value, lower_is_better=not higher_is_better, tags=tags)
