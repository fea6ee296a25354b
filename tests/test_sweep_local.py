"""`shortrun sweep` without a Prefect server, as a user runs it: trials as local subprocesses in their own clones.

The trial command is tests/sweep_trial.py (seconds; a tiny pipeline run takes minutes on a shared
2-core machine): it logs its run the way the pipeline does, so what is checked here is the sweep's own
promise: one MLflow parent run with every trial's run as its child, the better trial chosen on the
validation metric, the table and the plot logged, a failing trial reported while the others finish,
a second start repeating no finished trial, and (with a DVC remote in a local folder) the data prepared
once by the sweep and pulled into every trial's clone.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.trial import read_phases
from shortrun.params import load_config
from shortrun.sweep import TRIAL_TAG
from tests.workspace import copy_project, dvc, entered

pytestmark = pytest.mark.slow

TRIAL = Path(__file__).with_name("sweep_trial.py")
METRIC = "train.sri.best_valid_nll"


def sweep(workspace: Path) -> subprocess.CompletedProcess:
    """Three trials, two at a time, sharing a DVC remote; langevin.steps=13 fails (see sweep_trial.py), steps=7 is the best."""
    args = [str(Path(sys.executable).parent / "shortrun"), "sweep", "--name", "chain",
            "--grid", "langevin.steps=5,7,13", "--set", "langevin.step_size=0.5", "--metric", METRIC,
            "--parallel", "2", "--command", f"{sys.executable} {TRIAL}", "--dvc-remote", str(remote(workspace))]
    return subprocess.run(args, cwd=workspace, capture_output=True, text=True, timeout=300)


def remote(workspace: Path) -> Path:
    return workspace.parent / "dvc-remote"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with entered(copy_project(tmp_path_factory.mktemp("sweep"), preset="tiny")) as dest:
        yield dest


def children(client: MlflowClient, parent_id: str, trials: bool = True) -> list:
    """The parent run's trial runs (else its other children: the stage runs of the shared data)."""
    experiment_id = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return [run for run in runs if (TRIAL_TAG in run.data.tags) == trials]


def test_local_sweep_chooses_on_validation_reports_failures_and_resumes(workspace):
    first = sweep(workspace)
    assert first.returncode == 3, first.stderr  # a trial failed: reported, and the sweep still chose
    folder = workspace / ".shortrun" / "sweeps" / "chain"
    table = (folder / "sweep.md").read_text()
    assert table in first.stdout
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if re.match(r"^\| [0-9a-f]{12} ", line)}
    assert set(rows) == {"5", "7", "13"}
    assert "**(chosen)**" in rows["7"] and "| 0.5 | finished |" in rows["7"]
    assert "| 2.5 | finished |" in rows["5"]
    assert "failed: exit 2: stage train@sri: the chain diverged" in rows["13"]
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = MlflowClient()
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                   filter_string="attributes.run_name = 'sweep-chain'")
    tags = parent.data.tags
    assert tags["sweep.metric"] == METRIC and tags["sweep.direction"] == "minimize"
    assert '"langevin.steps": [5, 7, 13]' in tags["sweep.space"]
    runs = children(client, parent.info.run_id)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    chosen = next(r for r in runs if r.info.run_id == tags["sweep.chosen_run_id"])
    assert chosen.data.metrics[METRIC] == 0.5 and "langevin.steps=7" in tags["sweep.chosen_overrides"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"sweep.md", "sweep.png"}
    # each trial wrote into its own clone
    written = sorted(p.read_text().split()[0] for p in folder.glob("trial-*/metrics/trial.txt"))
    assert written == ["13", "5", "7"]
    # the data was prepared once, under the sweep's run, and every clone got it from the remote
    assert [r.data.tags.get("stage") for r in children(client, parent.info.run_id, trials=False)] == ["prepare"]
    assert tags["sweep.dvc_remote"] == str(remote(workspace).resolve())
    prepared = folder / "prepared" / "data" / "prepared" / "train"
    for clone in folder.glob("trial-*/"):
        assert [(p.name, p.read_bytes()) for p in sorted((clone / "data/prepared/train").iterdir())] == \
            [(p.name, p.read_bytes()) for p in sorted(prepared.iterdir())]
        assert "up to date" in dvc("status", "prepare", cwd=clone)  # DVC would not prepare it again
        assert "in sync" in dvc("status", "--cloud", "prepare", cwd=clone)  # and the remote holds it
        phases = read_phases(clone.with_name(f"{clone.name}.log"))  # where the trial's time went
        pushed = load_config(clone / "params.yaml").langevin.steps != 13  # the failed trial pushes nothing
        assert sorted(phases) == sorted(["workspace", "dvc_pull", "command"] + ["dvc_push"] * pushed)
        assert phases["command"] > 0

    again = sweep(workspace)
    assert again.returncode == 3, again.stderr
    assert again.stdout.count("already finished; skipped") == 2
    runs = children(client, parent.info.run_id)  # the same parent run; only the failed trial ran again
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert client.get_run(parent.info.run_id).data.tags["sweep.chosen_run_id"] == chosen.info.run_id
    assert len(children(client, parent.info.run_id, trials=False)) == 1  # not prepared again

