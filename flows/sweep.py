"""`shortrun sweep`: run a sweep's trials, each one pipeline run in its own workspace, under one MLflow parent run.

Each trial gets a git clone of this checkout at its commit, with its params.yaml written from the sweep's
preset, fixed overrides and the trial's settings (flows/trial.py), so trials never write over each
other's data, models or dvc.lock. The trial command (`shortrun run` by default) runs there with
$SHORTRUN_SWEEP_RUN_ID and $SHORTRUN_SWEEP_TRIAL set: the pipeline's MLflow run becomes a child of the
sweep's parent run `sweep-<name>`, tagged with the trial's key. MLflow is the record of what finished:
a trial whose child run FINISHED with the metric is not run again when the sweep is started again; a
failed one is reported and retried (in its workspace, where DVC skips the stages that already completed).

Trials run here as subprocesses (one after another, or `parallel` at a time), or, with `pool`, as flow
runs of the `shortrun-sweep-trial` deployment on a Prefect work pool, picked up by any of its workers.
The tracking store must be one every trial reaches: $MLFLOW_TRACKING_URI, else this workspace's
mlflow.db by absolute path (local path and workers on this machine only). With a DVC remote
(`dvc_remote`), the data is prepared once in the sweep's `prepared/` workspace and shared through the
remote, and each trial pushes its outputs there (flows/dvc_remote.py).
"""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.dvc_remote import DataSharing, prepare_shared, use_remote
from flows.stages import child_env
from flows.trial import prepare_workspace, run_trial
from shortrun.errors import ShortrunError
from shortrun.io import write_json, write_text
from shortrun.params import PARAMS_FILE, corpus_root, load_config, read_params
from shortrun.sweep import (
    SWEEP_RUN_ENV,
    SWEEP_TAG,
    TRIAL_TAG,
    SweepConfig,
    Trial,
    TrialResult,
    check_trials,
    choose,
    is_test_metric,
    plan_trials,
)
from shortrun.ops.tracking import DEFAULT_TRACKING_URI, PARENT_RUN_ENV, connect
from shortrun.sweep_report import report_markdown, write_plot

DEFAULT_COMMAND = "shortrun run"
SWEEPS_DIR = Path(".shortrun") / "sweeps"  # ignored by git; one folder per sweep name
DVC_REMOTE_ENV = "SHORTRUN_DVC_REMOTE"
Log = Callable[[str], None]


def shared_tracking_uri(workspace: Path) -> str:
    """$MLFLOW_TRACKING_URI, else this workspace's SQLite store by absolute path (a trial's own cwd differs)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(workspace / uri[len('sqlite:///'):]).resolve()}"
    return uri


def remote_url(url: str) -> str:
    """A remote URL every clone reads the same: a local folder by absolute path (a clone's own cwd differs)."""
    return url if "://" in url else str(Path(url).expanduser().resolve())


def head_commit(workspace: Path, log: Log) -> str:
    """The commit every trial runs; uncommitted changes are not in the trials' clones, so say so."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True)
        if done.returncode:
            raise ShortrunError(f"sweep: {workspace} is not a git checkout with a commit (trials are clones of it)")
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        log(f"shortrun: sweep: trials run commit {commit[:12]}; uncommitted changes here are not in them")
    return commit


class Sweep:
    """One sweep in one workspace: its trials folder and state file, its MLflow parent run, its trials."""

    def __init__(self, cfg: SweepConfig, workspace: Path = Path("."), trials_dir: Optional[Path] = None,
                 command: str = DEFAULT_COMMAND, pool: Optional[str] = None, repo: Optional[str] = None,
                 trial_timeout_s: Optional[float] = None, dvc_remote: Optional[str] = None) -> None:
        self.cfg = cfg
        self.workspace = workspace.resolve()
        self.folder = (trials_dir or self.workspace / SWEEPS_DIR / cfg.name).resolve()
        self.command = shlex.split(command)
        self.pool = pool
        self.repo = repo or str(self.workspace)  # what workers clone: a URL they reach, or this checkout's path
        self.trial_timeout_s = trial_timeout_s
        dvc_remote = dvc_remote or os.environ.get(DVC_REMOTE_ENV)
        self.dvc_remote = remote_url(dvc_remote) if dvc_remote else None
        self.state_file = self.folder / "state.json"
        self.trials = plan_trials(cfg)
        self._lock = threading.Lock()
        self._results: list[TrialResult] = []

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8")) if self.state_file.is_file() else {}

    def _save(self, parent_run_id: str) -> None:
        with self._lock:
            state = {"name": self.cfg.name, "parent_run_id": parent_run_id, "trials": {
                r.trial.key: {"overrides": r.trial.overrides, "status": r.status, "metric": r.metric,
                              "run_id": r.run_id, "error": r.error} for r in self._results}}
            write_json(self.state_file, state)

    def _parent_run(self, client: MlflowClient) -> Optional[str]:
        """The parent run of an earlier start of this sweep, if the state file names one the store still has."""
        run_id = self._state().get("parent_run_id")
        if not run_id:
            return None
        try:
            client.get_run(run_id)
        except Exception:  # deleted, or another store: start a new parent run
            return None
        return run_id

    def _child(self, client: MlflowClient, parent_run_id: str, trial: Trial) -> Optional[Run]:
        """The trial's latest pipeline run under the sweep's parent run."""
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        runs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1,
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' "
                                                f"and tags.`{TRIAL_TAG}` = '{trial.key}'")
        return runs[0] if runs else None

    def _finished(self, run: Optional[Run]) -> Optional[float]:
        """The metric of a child run that FINISHED with it, else None."""
        if run is None or run.info.status != "FINISHED":
            return None
        value = run.data.metrics.get(self.cfg.metric)
        return value if value is not None and math.isfinite(value) else None

    def _settle(self, client: MlflowClient, parent_id: str, result: TrialResult, error: Optional[str], log: Log) -> None:
        """Record how a trial ended: its command's error, else its child run's metric (none logged is a failure)."""
        run = self._child(client, parent_id, result.trial)
        result.run_id = run.info.run_id if run else None
        metric = self._finished(run)
        if error:
            result.status, result.error = "failed", error
        elif metric is None:
            result.status, result.error = "failed", f"its run logged no {self.cfg.metric}"
        else:
            result.status, result.metric = "finished", metric
        log(f"shortrun: sweep {self.cfg.name}: trial {result.trial.key} {result.status}"
            + (f" ({self.cfg.metric} = {result.metric:.4g})" if result.metric is not None else f": {result.error}"))
        self._save(parent_id)

    def _data_root(self) -> str:
        return str(corpus_root(load_config(self.workspace / PARAMS_FILE).data, self.workspace))

    def _share_data(self, commit: str, parent_id: str, log: Log) -> DataSharing:
        """Prepare the data once in the sweep's `prepared/` workspace and push it to the DVC remote."""
        dest = self.folder / "prepared"
        log(f"shortrun: sweep {self.cfg.name}: preparing the data once in {dest}, shared through {self.dvc_remote}")
        prepare_workspace(self.repo, commit, dest, self.cfg.preset, self.cfg.fixed, self._data_root())
        use_remote(dest, self.dvc_remote)
        lock = prepare_shared(dest, {PARENT_RUN_ENV: parent_id})
        return DataSharing(remote_url=self.dvc_remote, prepared_lock=lock)

    def _run_here(self, client: MlflowClient, parent_id: str, todo: list[TrialResult], sweep_env: dict[str, str],
                  commit: str, parallel: int, sharing: Optional[DataSharing], log: Log) -> None:
        """Local path: each trial a subprocess in its clone under the trials folder, `parallel` at a time."""
        data_root = self._data_root()
        env = child_env(sweep_env)

        def one(result: TrialResult) -> None:
            trial = result.trial
            dest = self.folder / f"trial-{trial.key}"
            log(f"shortrun: sweep {self.cfg.name}: trial {trial.key} ({trial.label()}) starts in {dest}")
            error = run_trial(self.repo, commit, dest, trial.key, trial.preset, trial.overrides, data_root,
                              self.command, env, self.folder / f"trial-{trial.key}.log", sharing)
            self._settle(client, parent_id, result, error, log)

        with ThreadPoolExecutor(max_workers=parallel) as threads:
            list(threads.map(one, todo))

    def run(self, parallel: int = 1, log: Log = print) -> tuple[list[TrialResult], Optional[TrialResult], Path]:
        """Run the trials not yet finished, choose the best, write and log the report; returns results, chosen, report."""
        if parallel < 1:
            raise ShortrunError(f"--parallel {parallel}: must be at least 1")
        check_trials(self.trials, read_params(self.workspace / PARAMS_FILE))
        commit = head_commit(self.workspace, log)
        uri = shared_tracking_uri(self.workspace)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.setdefault("MLFLOW_REGISTRY_URI", uri)
        connect()
        client = MlflowClient()
        self.folder.mkdir(parents=True, exist_ok=True)
        resumed = self._parent_run(client)
        with mlflow.start_run(run_id=resumed, run_name=None if resumed else f"sweep-{self.cfg.name}",
                              tags={SWEEP_TAG: self.cfg.name}) as parent:
            parent_id = parent.info.run_id
            mlflow.set_tags({"sweep.method": self.cfg.method, "sweep.metric": self.cfg.metric,
                             "sweep.direction": self.cfg.direction, "sweep.space": json.dumps(
                                 {"grid": self.cfg.grid, "random": self.cfg.random}),
                             "sweep.budget": str(self.cfg.budget), "sweep.seed": str(self.cfg.seed),
                             "sweep.preset": str(self.cfg.preset), "sweep.fixed": json.dumps(self.cfg.fixed),
                             "sweep.commit": commit, "sweep.pool": str(self.pool),
                             "sweep.dvc_remote": str(self.dvc_remote)})
            self._results = [TrialResult(t) for t in self.trials]
            todo = []
            for result in self._results:
                run = self._child(client, parent_id, result.trial)
                metric = self._finished(run)
                if metric is not None:
                    result.status, result.metric, result.run_id = "finished", metric, run.info.run_id
                    log(f"shortrun: sweep {self.cfg.name}: trial {result.trial.key} already finished; skipped")
                else:
                    todo.append(result)
            self._save(parent_id)
            sweep_env = {SWEEP_RUN_ENV: parent_id, "MLFLOW_TRACKING_URI": uri,
                         "MLFLOW_REGISTRY_URI": os.environ["MLFLOW_REGISTRY_URI"]}
            sharing = self._share_data(commit, parent_id, log) if self.dvc_remote and todo else None
            if self.pool:
                from flows.sweep_pool import run_on_pool  # Prefect is imported only for the pool path

                run_on_pool(self.pool, self.repo, commit, self.cfg.name, parent_id, todo, self.command, sweep_env,
                            lambda result, error: self._settle(client, parent_id, result, error, log), log,
                            self.trial_timeout_s, sharing)
            else:
                self._run_here(client, parent_id, todo, sweep_env, commit, parallel, sharing, log)
            chosen = choose(self._results, self.cfg.direction)
            report = self._report(client, parent_id, chosen)
        return self._results, chosen, report

    def _report(self, client: MlflowClient, parent_id: str, chosen: Optional[TrialResult]) -> Path:
        """Write the table and the plot, log them and the choice to the parent run."""
        tests: dict[str, float] = {}
        if chosen is not None:
            mlflow.set_tags({"sweep.chosen_trial": chosen.trial.key, "sweep.chosen_run_id": str(chosen.run_id),
                             "sweep.chosen_overrides": json.dumps(chosen.trial.overrides)})
            mlflow.log_metric(f"chosen.{self.cfg.metric}", chosen.metric)
            metrics = client.get_run(chosen.run_id).data.metrics if chosen.run_id else {}
            tests = {name: value for name, value in metrics.items() if is_test_metric(name)}
        failed = sum(r.status != "finished" for r in self._results)
        mlflow.log_metrics({"trials": len(self._results), "trials_failed": failed})
        report = self.folder / "sweep.md"
        write_text(report, report_markdown(self.cfg, self._results, chosen, tests, parent_id))
        plot = write_plot(self.cfg, self._results, self.folder / "sweep.png")
        mlflow.log_artifact(str(report))
        mlflow.log_artifact(str(plot))
        return report
