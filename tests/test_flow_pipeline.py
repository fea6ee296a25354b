"""The Prefect flow on the `tiny` preset, in a temporary copy of the workspace: what it checks before any
work, and a run on a busy workspace. The flow's full run (every stage, the registry, a clean `dvc
status`) and the runs after it that find nothing to do are in tests/test_schedule_fires.py, where the
pipeline runs once, scheduled on a real Prefect server: a second full run here would take minutes.
"""
from __future__ import annotations

import pytest
import yaml

from flows.lock import workspace_lock
from flows.pipeline import pipeline, run_from_cli, updated_params, write_params
from flows.server import prefect_api
from shortrun.errors import ConfigError
from shortrun.ops.tracking import TrackingUnavailable
from tests.workspace import copy_project, entered


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A git + DVC copy of the project's tracked files, using the shared corpora and its own MLflow store."""
    with entered(copy_project(tmp_path_factory.mktemp("workspace"))) as dest:
        yield dest


@pytest.fixture(scope="module")
def prefect_server():
    """The temporary Prefect server `shortrun run` starts (prefect_test_harness takes 80 s to stop)."""
    with prefect_api():
        yield


def test_bad_override_fails_before_any_work(workspace):
    before = (workspace / "params.yaml").read_text()
    with pytest.raises(ConfigError, match="train.no_such_key"):
        run_from_cli(None, ["train.no_such_key=1"])
    with pytest.raises(ConfigError, match="nosection"):
        updated_params(None, ["nosection.epochs=1"])
    assert (workspace / "params.yaml").read_text() == before


def test_unreachable_tracking_server_fails_before_any_work(workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:9")  # MLflow writes it to os.environ; restore it too
    with pytest.raises(TrackingUnavailable, match="http://127.0.0.1:9"):
        run_from_cli(None, [])


def test_overrides_rewrite_params_keeping_the_header(workspace):
    original = (workspace / "params.yaml").read_text()
    try:
        cfg = write_params("tiny", ["train.epochs=3"])
        text = (workspace / "params.yaml").read_text()
        assert cfg.train.epochs == 3 and yaml.safe_load(text)["train"]["epochs"] == 3
        assert text.startswith(original.split("\n")[0])
    finally:
        (workspace / "params.yaml").write_text(original)


@pytest.mark.slow
def test_run_on_a_busy_workspace_is_cancelled_saying_why(workspace, prefect_server):
    with workspace_lock(workspace, flow_run="a-running-pipeline"):
        state = pipeline(return_state=True)
    assert state.is_cancelled()
    assert "a-running-pipeline" in state.message and "skipped" in state.message
