"""`shortrun sweep` without a Prefect server, as a user runs it: trials as local subprocesses in their own clones.

The trial command is tests/sweep_trial.py (seconds; a tiny pipeline run takes minutes on a shared
2-core machine): it logs its run the way the pipeline does, so what is checked here is the sweep's own
promise: one MLflow parent run with every trial's run as its child, the better trial chosen on the
validation metric, the table and the plot logged, a failing trial reported while the others finish,
and a second start repeating no finished trial.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.workspace import copy_project, entered

pytestmark = pytest.mark.slow

TRIAL = Path(__file__).with_name("sweep_trial.py")
METRIC = "train.sri.best_valid_nll"


def sweep(workspace: Path) -> subprocess.CompletedProcess:
    """Three trials, two at a time; langevin.steps=13 fails (see sweep_trial.py), steps=7 is the best."""
    args = [str(Path(sys.executable).parent / "shortrun"), "sweep", "--name", "chain",
            "--grid", "langevin.steps=5,7,13", "--set", "langevin.step_size=0.5", "--metric", METRIC,
            "--parallel", "2", "--command", f"{sys.executable} {TRIAL}"]
    return subprocess.run(args, cwd=workspace, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with entered(copy_project(tmp_path_factory.mktemp("sweep"), preset="tiny")) as dest:
        yield dest


def children(client: MlflowClient, parent_id: str) -> list:
    experiment_id = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


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

    again = sweep(workspace)
    assert again.returncode == 3, again.stderr
    assert again.stdout.count("already finished; skipped") == 2
    runs = children(client, parent.info.run_id)  # the same parent run; only the failed trial ran again
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert client.get_run(parent.info.run_id).data.tags["sweep.chosen_run_id"] == chosen.info.run_id
