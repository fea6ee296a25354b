"""MLflow bookkeeping shared by the stages: where runs go and how a stage run nests under a pipeline run.

The model code never imports this module; only `tasks/` and `flows/` do.
"""
from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from shortrun.config import PipelineConfig
from shortrun.errors import ShortrunError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_ENV = "SHORTRUN_EXPERIMENT"
PARENT_RUN_ENV = "SHORTRUN_PARENT_RUN_ID"


class TrackingUnavailable(ShortrunError):
    """The MLflow tracking store cannot be reached or opened."""


def configure_tracking() -> str:
    """Use $MLFLOW_TRACKING_URI when set, else a SQLite store in the workspace; return the URI.

    The registry follows the tracking store unless $MLFLOW_REGISTRY_URI says otherwise (MLflow's default).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get(EXPERIMENT_ENV, "shortrun"))
    return uri


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


def git_commit() -> str:
    """The workspace's commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for MLflow params, e.g. {'train.lr': 0.001}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextmanager
def stage_run(stage: str, cfg: PipelineConfig, section_names: tuple[str, ...] = ()) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage, nested under the pipeline run when the flow started one.

    Logs the preset, the git commit and the named config sections as params. An unreachable tracking
    server fails here within seconds, in one line, before the stage does any work. A stage stopped by a
    signal or Ctrl-C (KeyboardInterrupt) ends its run KILLED; any other error ends it FAILED.
    """
    connect()
    parent = os.environ.get(PARENT_RUN_ENV)
    tags = {"stage": stage, "preset": cfg.preset, "git_commit": git_commit()}
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=stage, tags=tags) as run:
        dumped = cfg.model_dump()
        params = flatten({name: dumped[name] for name in section_names})
        mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise


def log_json_metrics(path: Path, prefix: str = "") -> None:
    """Log every number of a (nested) metrics JSON file to the active run."""
    data = json.loads(Path(path).read_text())
    numbers = {f"{prefix}{k}": float(v) for k, v in flatten(data).items() if isinstance(v, (int, float))}
    mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in numbers.items()})
