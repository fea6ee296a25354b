"""One list of stages: dvc.yaml's, the `shortrun stage` dispatch table's and the flow's order agree."""
from __future__ import annotations

from dvc.repo import Repo

from shortrun.cli import STAGE_RUNNERS, TRACKED_STAGES
from shortrun.paths import STAGES
from tests.workspace import ROOT


def test_every_dvc_stage_has_a_runner_in_dag_order() -> None:
    with Repo(str(ROOT)) as repo:
        in_dvc = list(dict.fromkeys(stage.addressing.split("@")[0] for stage in repo.index.stages))
    assert in_dvc == list(STAGES) == list(STAGE_RUNNERS)  # dvc.yaml lists its stages in DAG order
    assert set(TRACKED_STAGES) == set(STAGES) - {"headline"}
