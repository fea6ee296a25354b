"""Scheduled runs really happen: a real `prefect server start`, then the pipeline on a short schedule,
served by `shortrun serve --interval` and deployed from prefect.yaml to a process work pool.

One server and one throwaway workspace (the `tiny` preset) serve all tests: the served schedule runs
the pipeline for real (the `served_run` fixture), and that run is the end-to-end check of the flow (every
stage runs under its MLflow parent run, the pair is registered, `dvc status` is clean); the work pool's
scheduled run and a `shortrun run` then find every stage up to date and change nothing. A schedule's runs are created by
the server's scheduler (`auto_scheduled`); nothing is started by hand.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from uuid import UUID

import mlflow
import pytest
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pipeline import run_from_cli
from flows.stages import stage_targets
from shortrun.cli import TRACKED_STAGES
from shortrun.ops.dvclock import out_md5
from shortrun.ops.registry import CANDIDATE, CHAMPION
from shortrun.paths import PREPARED, PREPARED_PARTS
from tests.processes import Processes, start_prefect_server, wait_until
from tests.workspace import copy_project, dvc, entered, git

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 600  # the tiny pipeline took 7.5 min here on 2 cores shared with other jobs (load ~7)
ACTIVE = {StateType.PENDING, StateType.RUNNING}
GENERATOR = "shortrun-tiny-generator-short_yelp"  # one registered generator per corpus; tiny has names of its own
CLASSIFIER = "shortrun-tiny-classifier-short_yelp"


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> Iterator[Processes]:
    started = Processes(tmp_path_factory.mktemp("logs"))
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Path]:
    with entered(copy_project(tmp_path_factory.mktemp("workspace"), preset="tiny")) as dest:
        yield dest


@dataclass
class PrefectServer:
    """A running `prefect server start`, the environment that points at it, and its log."""

    env: dict[str, str]
    proc: subprocess.Popen
    processes: Processes

    def log(self) -> str:
        return self.processes.tail(self.proc)

    def client(self) -> SyncPrefectClient:
        with temporary_settings(updates={PREFECT_API_URL: self.env["PREFECT_API_URL"]}):
            return get_client(sync_client=True)

    def deployment_id(self, name: str) -> UUID | None:
        with self.client() as api:
            return next((d.id for d in api.read_deployments() if d.name == name), None)

    def scheduled_runs(self, deployment_id: UUID) -> list[FlowRun]:
        """The deployment's runs that its schedule created (none started by hand)."""
        with self.client() as api:
            runs = api.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))
        return [run for run in runs if run.auto_scheduled]


@pytest.fixture(scope="module")
def server(tmp_path_factory, processes, workspace) -> PrefectServer:
    """A Prefect server started the documented way, on a free loopback port with a PREFECT_HOME of its own."""
    # `shortrun serve` asks for due runs every 2 s instead of 10 s, as the workers do: a shorter test, same path
    env, proc = start_prefect_server(processes, tmp_path_factory.mktemp("prefect"), workspace,
                                     {"PREFECT_RUNNER_POLL_FREQUENCY": "2"})
    return PrefectServer(env, proc, processes)


def completed_scheduled_run(server: PrefectServer, name: str, proc: subprocess.Popen) -> FlowRun:
    """Wait for a scheduled run of deployment `name`, run by `proc`, to complete; fail at once if one fails.

    The schedule is paused as soon as that run is running (pausing removes only runs not yet started), so
    no later run starts after it and `proc` may be stopped as soon as it has completed.
    """
    def details() -> str:
        return f"--- {name}:\n{server.processes.tail(proc)}\n--- server:\n{server.log()}"

    dep_id = wait_until(lambda: server.deployment_id(name), 120, f"deployment {name} created", details=details)
    # The scheduler creates runs ahead of time; none at all means it is broken (e.g. SQLAlchemy 2.1).
    wait_until(lambda: server.scheduled_runs(dep_id), 60, f"{name}: the server's scheduler created runs",
               details=details)

    def runs_in(states: set[StateType]) -> list[FlowRun]:
        assert proc.poll() is None, f"{name}: the serving process exited\n{details()}"
        runs = server.scheduled_runs(dep_id)
        broken = [r for r in runs if r.state_type in (StateType.FAILED, StateType.CRASHED)]
        assert not broken, f"scheduled run {broken[0].name} {broken[0].state_name}: {broken[0].state.message}\n{details()}"
        return [r for r in runs if r.state_type in states]

    (started, *_) = wait_until(lambda: runs_in({StateType.RUNNING, StateType.COMPLETED}), RUN_TIMEOUT_S,
                               f"a scheduled run of {name} started", details=details)
    with server.client() as api:
        api.pause_deployment(dep_id)
    run = wait_until(lambda: next((r for r in runs_in({StateType.COMPLETED}) if r.id == started.id), None),
                     RUN_TIMEOUT_S, f"scheduled run {started.name} of {name} Completed", interval_s=2, details=details)
    wait_until(lambda: not runs_in(ACTIVE), 60, f"{name}: no run active after pausing", details=details)
    return run


def assert_dvc_clean(workspace: Path) -> None:
    assert json.loads(dvc("status", "--json", cwd=workspace)) == {}


def mlflow_runs(run: FlowRun) -> tuple[Run, set[str]]:
    """The MLflow parent run of pipeline flow run `run`, and the names of its child runs (one per stage that ran)."""
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(experiments, filter_string=f"tags.`prefect.flow_run_id` = '{run.id}'")
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, {child.data.tags.get("mlflow.runName") for child in children}


def unchanged_by_a_run(workspace: Path) -> tuple[dict[Path, int], int]:
    """What a run with nothing to do must leave as it is: the model files' mtimes, the generator's version count."""
    stamps = {p: p.stat().st_mtime_ns for p in sorted((workspace / "models").rglob("*")) if p.is_file()}
    return stamps, len(MlflowClient().search_model_versions(f"name = '{GENERATOR}'"))


@pytest.fixture(scope="module")
def served_run(server, workspace, processes) -> FlowRun:
    """The pipeline's first run in the workspace, started by the schedule of `shortrun serve --interval 10`.

    A fixture, not a test's side effect: the tests below that need a workspace where every stage has run
    ask for it, so each of them runs alone (`pytest -k`) as well as after the others.
    """
    serve = processes.start("serve", [str(BIN / "shortrun"), "serve", "--interval", "10", "--name", "every-10s"],
                            workspace, server.env)
    run = completed_scheduled_run(server, "every-10s", serve)
    processes.stop(serve)
    return run


def test_served_schedule_runs_every_stage_registers_and_leaves_dvc_clean(served_run, workspace):
    run = served_run
    assert run.auto_scheduled and run.flow_id is not None
    assert_dvc_clean(workspace)

    parent, children = mlflow_runs(run)
    targets = [target for target in stage_targets(workspace) if target.split("@")[0] in TRACKED_STAGES]
    stages = {target.replace("@", "-") for target in targets}  # a stage's MLflow run: train-sri for train@sri
    assert {"prepare", "train-sri", "classify", "evaluate"} <= stages
    assert stages | {"register"} <= children  # every stage ran here, under this run
    assert parent.data.tags["preset"] == "tiny"
    assert parent.data.tags["git_commit"] == git("rev-parse", "HEAD", cwd=workspace).strip()
    prepared = {part: out_md5(PREPARED / part, workspace) for part in PREPARED_PARTS}
    assert None not in prepared.values()
    assert {part: parent.data.tags[f"dvc.prepared.{part}"] for part in PREPARED_PARTS} == prepared
    assert any(key.startswith("train.sri.") for key in parent.data.metrics)

    client = MlflowClient()
    candidate = client.get_model_version_by_alias(GENERATOR, CANDIDATE)
    assert candidate.tags["dvc_md5"] == out_md5("models/sri", workspace)
    # the gate's held-out likelihood on validation sentences is also the run's metric (what a sweep chooses on)
    assert parent.data.metrics["register.generator.valid_heldout_nll"] == pytest.approx(float(candidate.tags["gate.value"]))
    assert candidate.tags["gate.decision"] in ("promoted", "refused") and candidate.tags["gate.reason"]
    z = mlflow.pyfunc.load_model(f"models:/{GENERATOR}@{CHAMPION}").predict(["the food was great", "bad service"])
    assert z.shape[0] == 2 and z.ndim == 2
    champion = client.get_model_version_by_alias(GENERATOR, CHAMPION)
    assert client.get_model_version_by_alias(CLASSIFIER, CHAMPION).tags["generator_version"] == str(champion.version)


def test_work_pool_worker_runs_the_scheduled_deployment(served_run, server, workspace, processes):
    before = unchanged_by_a_run(workspace)
    spec_path = workspace / "prefect.yaml"
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    (deployment,) = spec["deployments"]
    deployment["schedules"] = [{"interval": 10, "active": True}]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")

    def prefect(*args: str) -> None:
        done = processes.start(f"prefect-{args[0]}", [str(BIN / "prefect"), "--no-prompt", *args], workspace, server.env)
        assert done.wait(timeout=120) == 0, processes.tail(done)

    prefect("work-pool", "create", deployment["work_pool"]["name"], "--type", "process")
    prefect("deploy", "--all")
    worker = processes.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool",
                                        deployment["work_pool"]["name"]], workspace, server.env)
    run = completed_scheduled_run(server, deployment["name"], worker)
    processes.stop(worker, grace_s=3)  # just after a run it can ignore SIGTERM for 15 s; the run is over
    assert run.auto_scheduled and run.work_pool_name == deployment["work_pool"]["name"]
    assert_dvc_clean(workspace)
    assert mlflow_runs(run)[1] <= {"register"}  # no stage ran: DVC found every one up to date
    assert unchanged_by_a_run(workspace) == before


def test_shortrun_run_then_is_a_no_op(served_run, server, workspace, capsys):
    before = unchanged_by_a_run(workspace)
    with temporary_settings(updates={PREFECT_API_URL: server.env["PREFECT_API_URL"]}):
        assert run_from_cli(None, []) == 0
    out = capsys.readouterr().out
    assert " ran" not in out and "restored" not in out and "train@sri skipped" in out
    assert unchanged_by_a_run(workspace) == before
