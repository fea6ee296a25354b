"""The end-to-end pipeline as one Prefect flow: every DVC stage through `dvc repro`, then the registry.

One flow run = one workspace lock, one MLflow parent run (stage runs nest under it through
$SHORTRUN_PARENT_RUN_ID), one Prefect task per DVC stage item, a check that `dvc status` is clean,
the registration of the SRI generator and its classifier (tasks/register.py), and a markdown summary artifact. DVC decides what is up to
date, so a run with nothing changed retrains nothing; Prefect's own result caching is off.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Cancelled

from flows.lock import WorkspaceBusy, workspace_lock
from flows.server import prefect_api
from flows.stages import StageFailed, dvc_status, repro, stage_targets
from flows.summary import collect_metrics, summary_markdown
from shortrun.config import PipelineConfig
from shortrun.errors import ShortrunError
from shortrun.ops.dvclock import out_md5
from shortrun.ops.registry import Registration
from shortrun.ops.tracking import PARENT_RUN_ENV, connect, git_commit
from shortrun.params import updated_params, write_params
from shortrun.paths import PREPARED, PREPARED_PARTS
from shortrun.sweep import sweep_tags

FLOW_NAME = "shortrun-pipeline"
SUMMARY_KEY = "shortrun-pipeline-summary"
# Upper bounds per stage (paper-scale presets on one GPU fit well inside); a stage past its bound is stopped.
STAGE_TIMEOUT_S = {"prepare": 2 * 3600, "train": 48 * 3600, "export": 12 * 3600, "classify": 6 * 3600,
                   "evaluate": 24 * 3600}
DEFAULT_TIMEOUT_S = 12 * 3600


def _transient(task_, task_run, state) -> bool:
    """Retry a stage only when its failure looks transient (a lock held elsewhere, a store that blipped).

    A crash, a config error or a timeout would only repeat, and a retried training run costs hours.
    """
    error = state.result(raise_on_failure=False)
    return isinstance(error, StageFailed) and error.transient


@task(name="dvc-repro", task_run_name="{target}", retries=1, retry_delay_seconds=15,
      retry_condition_fn=_transient, cache_policy=NO_CACHE)
def run_stage(target: str, parent_run_id: str) -> str:
    """`dvc repro --single-item <target>`, logged line by line; returns ran, restored or skipped."""
    logger = get_run_logger()
    timeout_s = STAGE_TIMEOUT_S.get(target.split("@")[0], DEFAULT_TIMEOUT_S)
    outcome = repro(target, log=logger.info, timeout_s=timeout_s, extra_env={PARENT_RUN_ENV: parent_run_id})
    logger.info(f"{target}: {outcome}")
    return outcome


@task(name="dvc-status", cache_policy=NO_CACHE)
def check_clean() -> None:
    """Fail unless `dvc status` has nothing to do: the run must leave DVC's bookkeeping true."""
    status = dvc_status()
    if status:
        raise StageFailed(f"dvc status is not clean after the run: {json.dumps(status)[:500]}")


@task(name="register", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def register(cfg: PipelineConfig, parent_run_id: str) -> Registration | None:
    """Register the SRI generator and its classifier as a pair (idempotent per file hash); returns the generator's."""
    from tasks import register as registration_step  # here: it loads torch, which serving or deploying the flow need not

    result = registration_step.run(cfg, parent_run_id=parent_run_id)
    for line in result.lines():
        get_run_logger().info(line)
    return result.generator


def _run_link(tracking_uri: str, run: mlflow.ActiveRun) -> str:
    """Where to see the parent run: a UI link for a server, the `mlflow ui` command for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return f"`mlflow ui --backend-store-uri {tracking_uri}` → experiment {run.info.experiment_id}, run {run.info.run_id}"


def _run_pipeline(preset: str | None, overrides: list[str]) -> dict[str, Any]:
    logger = get_run_logger()
    cfg = write_params(preset, overrides)
    tracking_uri = connect()
    commit = git_commit()
    tags = {"preset": cfg.preset, "git_commit": commit, "mlflow.source.git.commit": commit,
            "prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name),
            "overrides": json.dumps(overrides),
            **sweep_tags(os.environ)}  # a sweep's trial: a child of the sweep's parent run (flows/sweep.py)
    with mlflow.start_run(run_name=f"pipeline-{cfg.preset}", tags=tags) as run:
        run_id = run.info.run_id
        logger.info(f"MLflow parent run {run_id} at {tracking_uri}")
        outcomes: dict[str, str] = {}
        for target in stage_targets():
            outcomes[target] = run_stage(target, run_id)
            if target == "prepare":  # which data this run's models saw: DVC's hash of each prepared part
                mlflow.set_tags({f"dvc.prepared.{part}": out_md5(PREPARED / part) or "unknown" for part in PREPARED_PARTS})
        check_clean()
        registration = register(cfg, run_id)
        metrics = collect_metrics()
        if registration is not None and registration.gate_value is not None:  # a likelihood a sweep can choose on
            metrics[f"register.generator.valid_{registration.gate_metric}"] = registration.gate_value
        mlflow.log_metrics(metrics)
        link = _run_link(tracking_uri, run)
        create_markdown_artifact(
            summary_markdown(cfg.preset, outcomes, metrics, registration, run_id, link), key=SUMMARY_KEY,
            description=f"shortrun pipeline ({cfg.preset}): key metrics and the MLflow run",
        )
    return {"mlflow_run_id": run_id, "stages": outcomes,
            "registered": f"{registration.name} v{registration.version}" if registration else None}


@flow(name=FLOW_NAME)
def pipeline(preset: str | None = None, overrides: list[str] | None = None, lock_wait_s: float = 0.0):
    """Run prepare → train → export → classify → evaluate through DVC, then register; one run per workspace.

    preset / overrides (`section.key=value`) rewrite params.yaml first. If another run holds the
    workspace, wait up to `lock_wait_s` seconds, then end as Cancelled saying who holds it.
    """
    logger = get_run_logger()
    try:
        with workspace_lock(Path.cwd(), wait_s=lock_wait_s, flow_run=str(flow_run.id), log=logger.warning):
            return _run_pipeline(preset, list(overrides or []))
    except WorkspaceBusy as busy:
        logger.warning(str(busy))
        return Cancelled(message=str(busy))


def run_from_cli(preset: str | None = None, overrides: list[str] | None = None, lock_wait_s: float = 0.0) -> int:
    """`shortrun run`: check params and tracking first (fast one-line errors), then run the flow once."""
    overrides = list(overrides or [])
    updated_params(preset, overrides)
    connect()
    with prefect_api():  # PREFECT_API_URL, or a temporary server that ends with this process (flows/server.py)
        state = pipeline(preset=preset, overrides=overrides, lock_wait_s=lock_wait_s, return_state=True)
    if state.is_completed():
        result = state.result()
        print(f"shortrun: pipeline done; MLflow run {result['mlflow_run_id']}; "
              + ", ".join(f"{target} {outcome}" for target, outcome in result["stages"].items()))
        return 0
    if state.is_cancelled():
        raise WorkspaceBusy(state.message or "pipeline run cancelled")
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        raise error
    raise ShortrunError(f"pipeline run ended {state.name}: {state.message}")
