"""Serve the pipeline on a cron schedule from a plain terminal (`shortrun serve`).

Schedules need a real Prefect server (`prefect server start`): the temporary local server that
`shortrun run` uses has no scheduler. Runs of the deployment never overlap: a run that comes due
while the previous one is still going is cancelled (concurrency limit 1, CANCEL_NEW), and the
workspace lock (flows/lock.py) also keeps a hand-started `shortrun run` from overlapping.
"""
from __future__ import annotations

import httpx
from prefect import serve as prefect_serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.settings import PREFECT_API_URL
from prefect.types.entrypoint import EntrypointType
from pydantic import ValidationError

from flows.pipeline import pipeline
from shortrun.errors import ConfigError, ShortrunError

DEFAULT_CRON = "0 3 * * *"
DEFAULT_NAME = "shortrun-scheduled"
SERVER_HINT = ("run `prefect server start` in another terminal, then "
               "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`")


class SchedulerUnavailable(ShortrunError):
    """No Prefect server to hold the schedule."""


def build_deployment(cron: str = DEFAULT_CRON, name: str = DEFAULT_NAME) -> RunnerDeployment:
    """The pipeline's deployment: the cron schedule and at most one run at a time (extra runs are cancelled)."""
    try:
        return pipeline.to_deployment(
            name=name,
            cron=cron,
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            tags=["shortrun"],
            entrypoint_type=EntrypointType.MODULE_PATH,  # flows.pipeline.pipeline: found wherever shortrun is installed
            description="shortrun: prepare → train → export → classify → evaluate → register, through DVC",
        )
    except ValidationError:
        raise ConfigError(f"--cron {cron!r}: not a valid cron expression (five fields, e.g. '{DEFAULT_CRON}')") from None


def require_server() -> str:
    """The configured Prefect API URL, checked to answer; otherwise a one-line error saying what to do."""
    api = PREFECT_API_URL.value()
    if not api:
        raise SchedulerUnavailable(f"schedules need a Prefect server and PREFECT_API_URL is not set: {SERVER_HINT}")
    try:
        httpx.get(f"{api.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as err:
        raise SchedulerUnavailable(f"Prefect server at {api} does not answer ({err.__class__.__name__}): {SERVER_HINT}") from None
    return api


def serve(cron: str = DEFAULT_CRON, name: str = DEFAULT_NAME) -> int:
    """Serve the pipeline on `cron` until interrupted; the schedule stays active across restarts."""
    deployment = build_deployment(cron, name)
    api = require_server()
    print(f"shortrun: serving '{deployment.flow_name}/{name}' on cron '{cron}' via {api} (Ctrl-C to stop)")
    prefect_serve(deployment, pause_on_shutdown=False)
    return 0
