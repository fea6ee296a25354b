"""`shortrun sweep --pool`: trials as flow runs on a Prefect work pool, picked up by two real workers.

A real `prefect server start` on a free loopback port, a process work pool, two `prefect worker start
--limit 1` processes (each with a trials folder of its own), a real `mlflow server` (SQLite) and a DVC
remote in a local folder. Two real trials of the `tiny` pipeline (`shortrun run`) run at the same time,
one on each worker, each in its own clone: both are children of the sweep's MLflow parent run, the
better one on validation is chosen, the data prepared once by the sweep reaches both through the remote
(neither prepares again), each pushes its models there, and `dvc status` is clean in each clone. Then a
worker is killed in the middle of a trial (the cheap hanging command of tests/sweep_trial.py), and the
sweep still ends, reporting that trial failed. Every process is stopped by pid.
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings

from shortrun.sweep import TRIAL_TAG
from tests.processes import Processes, start_mlflow_server, start_prefect_server, wait_until
from tests.workspace import copy_project, dvc, entered

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TRIAL = Path(__file__).with_name("sweep_trial.py")
METRIC = "train.sri.best_valid_nll"
# The lost trial is given up this long after the sweep sees it running; every second here is waited in full.
LOST_TIMEOUT_S = 15


@dataclass
class Pool:
    workspace: Path
    env: dict[str, str]
    processes: Processes
    workers: dict[str, subprocess.Popen]
    root: Path

    def sweep(self, name: str, *args: str) -> list[str]:
        return [str(BIN / "shortrun"), "sweep", "--name", name, "--metric", METRIC, "--pool", "trials", *args]

    def clones(self, worker: str, sweep: str) -> list[Path]:
        return sorted((self.root / f"worker-{worker}" / "trials" / sweep).glob("trial-*/"))

    def flow_runs(self, tag: str) -> list:
        with temporary_settings(updates={PREFECT_API_URL: self.env["PREFECT_API_URL"]}), \
                get_client(sync_client=True) as api:
            return api.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))

    def logs(self) -> str:
        return "\n".join(f"--- worker {n}\n{self.processes.tail(w)}" for n, w in self.workers.items())


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    processes = Processes(root)
    try:
        with entered(copy_project(root / "ws", preset="tiny")) as workspace:
            tracking = start_mlflow_server(processes, root)
            env, _ = start_prefect_server(processes, root, workspace,
                                          {"MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking})
            created = subprocess.run([str(BIN / "prefect"), "--no-prompt", "work-pool", "create", "trials", "--type",
                                      "process"], cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
            assert created.returncode == 0, created.stdout + created.stderr
            workers = {}
            for name in ("a", "b"):
                folder = root / f"worker-{name}"
                folder.mkdir()
                workers[name] = processes.start(
                    f"worker-{name}", [str(BIN / "prefect"), "worker", "start", "--pool", "trials", "--limit", "1"],
                    folder, {**env, "SHORTRUN_TRIALS_DIR": str(folder / "trials")})  # corpora: the test's $SHORTRUN_DATA
            yield Pool(workspace, env, processes, workers, root)
    finally:
        processes.stop_all()


def lock_stage(workspace: Path, stage: str) -> dict:
    return yaml.safe_load((workspace / "dvc.lock").read_text())["stages"][stage]


def test_tiny_trials_run_in_parallel_on_two_workers_sharing_one_dvc_remote(pool):
    remote = pool.root / "dvc-remote"
    done = subprocess.run(pool.sweep("par", "--grid", "langevin.steps=2,4", "--dvc-remote", str(remote)),
                          cwd=pool.workspace, env=pool.env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr + pool.logs()

    clones = [clone for worker in ("a", "b") for clone in pool.clones(worker, "par")]
    assert [len(pool.clones(worker, "par")) for worker in ("a", "b")] == [1, 1]  # one trial on each worker
    flow_runs = pool.flow_runs("sweep:par")
    assert sorted(r.state_name for r in flow_runs) == ["Completed", "Completed"]
    first, second = sorted(flow_runs, key=lambda r: r.start_time)
    assert second.start_time < first.end_time  # the two trials ran at the same time

    client = MlflowClient(pool.env["MLFLOW_TRACKING_URI"])
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                   filter_string="attributes.run_name = 'sweep-par'")
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    trials = [r for r in runs if TRIAL_TAG in r.data.tags]
    assert sorted(r.info.status for r in trials) == ["FINISHED", "FINISHED"]
    best = min(trials, key=lambda r: r.data.metrics[METRIC])
    assert parent.data.tags["sweep.chosen_run_id"] == best.info.run_id  # the better trial on validation

    shared = lock_stage(pool.workspace / ".shortrun" / "sweeps" / "par" / "prepared", "prepare")
    for clone in clones:
        log = clone.with_name(f"{clone.name}.log").read_text()
        assert "prepare skipped" in log, log[-2000:]  # the shared prepared data, pulled from the remote
        assert lock_stage(clone, "prepare")["outs"] == shared["outs"]
        assert "up to date" in dvc("status", cwd=clone), clone  # every stage current in the worker's clone
        assert "in sync" in dvc("status", "--cloud", cwd=clone), clone  # all its outputs are in the remote
    models = {lock_stage(clone, "train@sri")["outs"][0]["md5"] for clone in clones}
    assert len(models) == 2  # each trial's own generator, both in the remote (status --cloud above)


def test_a_worker_killed_mid_trial_ends_the_sweep_with_the_trial_reported_failed(pool):
    """langevin.steps=11 hangs; its worker is killed while it runs, and the sweep gives up on it after the timeout."""
    sweep = pool.processes.start("sweep-lost", pool.sweep("lost", "--grid", "langevin.steps=11", "--trial-timeout",
                                                          str(LOST_TIMEOUT_S), "--command", f"{sys.executable} {TRIAL}"),
                                 pool.workspace, pool.env)
    running = wait_until(lambda: [w for w in pool.workers if pool.clones(w, "lost")], 120,
                         "the hanging trial started on a worker", details=pool.logs)
    pool.processes.stop(pool.workers[running[0]])
    assert sweep.wait(timeout=300) == 2  # no trial finished
    report = (pool.workspace / ".shortrun" / "sweeps" / "lost" / "sweep.md").read_text()
    # Crashed by the sweep's own timeout ("flow run marked Crashed: no result within 15 s of running") or, on a
    # loaded machine, by the trial's own process as its worker's signal ends it ("flow run Crashed: ..."):
    # either way the trial is reported failed, not left pending
    assert re.search(r"\| failed: flow run (marked )?Crashed", report), report
    assert "sweep lost: no trial finished" in pool.processes.tail(sweep)
    assert [r.state_name for r in pool.flow_runs("sweep:lost")] == ["Crashed"]
