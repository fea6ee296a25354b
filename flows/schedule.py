"""Serve the pipeline on a schedule from a plain terminal (`shortrun serve --cron ...` or `--interval ...`).

Schedules need a real Prefect server (`prefect server start`): its scheduler service creates the runs
as they come due, and `shortrun serve` (Prefect's `serve`) polls for them and runs each one in a
subprocess. The temporary server that `shortrun run` starts has no scheduler. Runs of the deployment
never overlap: a run that comes due while the previous one is still going is cancelled (concurrency
limit 1, CANCEL_NEW), and the workspace lock (flows/lock.py) also keeps a hand-started `shortrun run`
from overlapping. tests/test_schedule_fires.py proves that scheduled runs complete, served and through
a work pool.
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


def build_deployment(cron: str | None = None, name: str = DEFAULT_NAME,
                     interval_s: float | None = None) -> RunnerDeployment:
    """The pipeline's deployment: a cron schedule (default daily at 03:00) or a fixed interval, one run at a time.

    An interval schedule counts from the moment the deployment is built, so its first run comes due
    `interval_s` seconds after `shortrun serve` starts. Extra runs that come due while one is going are cancelled.
    """
    if cron is not None and interval_s is not None:
        raise ConfigError("--cron and --interval: give one schedule, not both")
    if interval_s is not None and not interval_s > 0:
        raise ConfigError(f"--interval {interval_s:g}: must be a positive number of seconds")
    schedule = {"interval": interval_s} if interval_s is not None else {"cron": cron or DEFAULT_CRON}
    try:
        return pipeline.to_deployment(
            name=name,
            **schedule,
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            tags=["shortrun"],
            entrypoint_type=EntrypointType.MODULE_PATH,  # flows.pipeline.pipeline: found wherever shortrun is installed
            description="shortrun: prepare → train → export → classify → evaluate → register, through DVC",
        )
    except ValidationError:
        raise ConfigError(f"--cron {cron!r}: not a valid cron expression (five fields, e.g. '{DEFAULT_CRON}')") from None


def describe_schedule(deployment: RunnerDeployment) -> str:
    """'cron '0 3 * * *'' or 'every 30 s', for the line `shortrun serve` prints."""
    schedule = deployment.schedules[0].schedule
    cron = getattr(schedule, "cron", None)
    return f"cron '{cron}'" if cron else f"every {schedule.interval.total_seconds():g} s"


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


def serve(cron: str | None = None, name: str = DEFAULT_NAME, interval_s: float | None = None) -> int:
    """Serve the pipeline on its schedule until interrupted; the schedule stays active across restarts."""
    deployment = build_deployment(cron, name, interval_s)
    api = require_server()
    print(f"shortrun: serving '{deployment.flow_name}/{name}' on {describe_schedule(deployment)} via {api} "
          "(Ctrl-C to stop)", flush=True)
    prefect_serve(deployment, pause_on_shutdown=False)
    return 0
