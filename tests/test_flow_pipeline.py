"""The Prefect flow end to end on the `tiny` preset, in a temporary copy of the workspace.

Flow runs are few on purpose: each needs Prefect's test server and a DVC subprocess per stage.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from flows.lock import workspace_lock
from flows.pipeline import pipeline, run_from_cli, updated_params, write_params
from shortrun.dvclock import out_md5
from shortrun.errors import ConfigError
from shortrun.registry import CANDIDATE, CHAMPION
from shortrun.tracking import TrackingUnavailable
from tests.workspace import copy_project, dvc as _dvc, entered, git as _git

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = "shortrun-tiny-generator-short_yelp"  # one registered generator per corpus; tiny has names of its own
CLASSIFIER = "shortrun-tiny-classifier-short_yelp"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A git + DVC copy of the project's tracked files, using the shared corpora and its own MLflow store."""
    with entered(copy_project(tmp_path_factory.mktemp("workspace"))) as dest:
        yield dest


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
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
def test_flow_runs_every_stage_registers_and_leaves_dvc_clean(workspace, prefect_server):
    result = pipeline(preset="tiny")
    assert result["stages"] and set(result["stages"].values()) == {"ran"}
    assert {"prepare", "train@sri", "classify", "evaluate"} <= set(result["stages"])
    assert json.loads(_dvc("status", "--json", cwd=workspace) or "{}") == {}

    client = MlflowClient()
    parent = client.get_run(result["mlflow_run_id"])
    assert parent.data.tags["preset"] == "tiny"
    assert parent.data.tags["git_commit"] == _git("rev-parse", "HEAD", cwd=workspace).strip()
    assert parent.data.tags["dvc.prepared_md5"] == out_md5("data/prepared")
    assert parent.data.tags["prefect.flow_run_id"] not in ("", "None")
    assert any(key.startswith("train.sri.") for key in parent.data.metrics)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {"prepare", "register"} <= {run.data.tags.get("mlflow.runName") for run in children}

    candidate = client.get_model_version_by_alias(GENERATOR, CANDIDATE)
    assert candidate.tags["dvc_md5"] == out_md5("models/sri")
    assert candidate.tags["gate.decision"] in ("promoted", "refused") and candidate.tags["gate.reason"]
    z = mlflow.pyfunc.load_model(f"models:/{GENERATOR}@{CHAMPION}").predict(["the food was great", "bad service"])
    assert z.shape[0] == 2 and z.ndim == 2
    champion = client.get_model_version_by_alias(GENERATOR, CHAMPION)
    assert client.get_model_version_by_alias(CLASSIFIER, CHAMPION).tags["generator_version"] == str(champion.version)


@pytest.mark.slow
def test_second_run_is_a_no_op(workspace, prefect_server, capsys):
    models = sorted(p for p in (workspace / "models").rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in models}
    versions = len(MlflowClient().search_model_versions(f"name = '{GENERATOR}'"))
    assert run_from_cli(None, []) == 0
    out = capsys.readouterr().out
    assert " ran" not in out and "restored" not in out and "train@sri skipped" in out
    assert {p: p.stat().st_mtime_ns for p in models} == stamps
    assert len(MlflowClient().search_model_versions(f"name = '{GENERATOR}'")) == versions


@pytest.mark.slow
def test_run_on_a_busy_workspace_is_cancelled_saying_why(workspace, prefect_server):
    with workspace_lock(workspace, flow_run="a-running-pipeline"):
        state = pipeline(return_state=True)
    assert state.is_cancelled()
    assert "a-running-pipeline" in state.message and "skipped" in state.message
