"""A sweep's trials on a Prefect work pool: one flow run of the `shortrun-sweep-trial` deployment per trial.

`shortrun sweep --pool NAME` (with PREFECT_API_URL set) registers the deployment `shortrun-sweep-trial/NAME`
on pool NAME, submits every trial not yet finished with `run_deployment(..., timeout=0)` and waits for
the flow runs; any worker of the pool picks them up (`prefect worker start --pool NAME --limit 1`, one per
machine or workspace). On a worker, each trial clones the repository into
$SHORTRUN_TRIALS_DIR/<sweep>/trial-<key> (default ~/.shortrun/trials; the process worker's own working
folder is temporary) and runs there (flows/trial.py). A trial whose flow run from an earlier start of the
sweep is still scheduled or running is waited for, not submitted again.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Optional
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Crashed
from prefect.types.entrypoint import EntrypointType

from flows.dvc_remote import DataSharing
from flows.stages import child_env
from flows.trial import run_trial
from shortrun.errors import ShortrunError
from shortrun.sweep import TrialResult

TRIAL_FLOW = "shortrun-sweep-trial"
TRIALS_DIR_ENV = "SHORTRUN_TRIALS_DIR"
POLL_S = 2.0
ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]


@flow(name=TRIAL_FLOW)
def sweep_trial(source: str, commit: str, sweep: str, key: str, preset: Optional[str], overrides: list[str],
                command: list[str], env: dict[str, str], sharing: Optional[DataSharing] = None) -> str:
    """A sweep's trial on a work-pool worker, in $SHORTRUN_TRIALS_DIR/<sweep>/trial-<key>; fails with the trial's error."""
    folder = Path(os.environ.get(TRIALS_DIR_ENV, Path.home() / ".shortrun" / "trials")).expanduser() / sweep
    dest = folder / f"trial-{key}"
    get_run_logger().info(f"trial {key} in {dest}: {' '.join(overrides)}")
    error = run_trial(source, commit, dest, key, preset, overrides, None, command, child_env(env),
                      folder / f"trial-{key}.log", sharing)
    if error:
        raise ShortrunError(f"trial {key}: {error}")
    return str(dest)


def _active_flow_run(tags: list[str]) -> Optional[FlowRun]:
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=tags), state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))))
    return runs[0] if runs else None


def run_on_pool(pool: str, repo: str, commit: str, sweep: str, parent_id: str, todo: list[TrialResult],
                command: list[str], sweep_env: dict[str, str], settle: Callable[[TrialResult, Optional[str]], None],
                log: Callable[[str], None], trial_timeout_s: Optional[float] = None,
                sharing: Optional[DataSharing] = None) -> None:
    """Submit each trial as a flow run on `pool`, then call `settle(result, error)` as each flow run ends.

    A flow run still running `trial_timeout_s` after this sweep first saw it running (its worker killed) is
    set Crashed and its trial reported failed, so a lost worker does not keep the sweep waiting forever;
    time spent waiting for a free worker does not count.
    """
    from flows.schedule import require_server  # here: a trial's flow run on a worker need not load the pipeline (torch, MLflow)

    require_server()
    deployment = sweep_trial.to_deployment(name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                                           tags=["shortrun", "sweep"])
    deployment.apply(work_pool_name=pool)
    waiting: dict[UUID, TrialResult] = {}
    for result in todo:
        trial = result.trial
        tags = [f"sweep:{sweep}", f"sweep-run:{parent_id}", f"trial:{trial.key}"]
        flow_run = _active_flow_run(tags) or run_deployment(
            f"{TRIAL_FLOW}/{pool}", timeout=0, as_subflow=False, tags=tags, flow_run_name=f"{sweep}-{trial.key}",
            parameters={"source": repo, "commit": commit, "sweep": sweep, "key": trial.key, "preset": trial.preset,
                        "overrides": trial.overrides, "command": command, "env": sweep_env,
                        "sharing": sharing.model_dump() if sharing else None})
        log(f"shortrun: sweep {sweep}: trial {trial.key} ({trial.label()}) is flow run {flow_run.name} on pool {pool}")
        waiting[flow_run.id] = result
    running_since: dict[UUID, float] = {}
    while waiting:
        time.sleep(POLL_S)
        with get_client(sync_client=True) as api:
            states = {run_id: api.read_flow_run(run_id).state for run_id in waiting}
            for run_id, state in states.items():
                if state is not None and state.is_running():
                    running_since.setdefault(run_id, time.monotonic())
                if state is not None and state.is_final():
                    error = None if state.is_completed() else f"flow run {state.name}: {state.message or ''}".strip()
                    settle(waiting.pop(run_id), error)
                elif trial_timeout_s and time.monotonic() - running_since.get(run_id, math.inf) > trial_timeout_s:
                    message = f"no result within {trial_timeout_s:g} s of running (its worker lost?)"
                    api.set_flow_run_state(run_id, Crashed(message=message), force=True)
                    settle(waiting.pop(run_id), f"flow run marked Crashed: {message}")
