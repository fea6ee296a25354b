"""The promotion gate and registration rules on a real SQLite model registry."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest
from mlflow.tracking import MlflowClient

from shortrun.registry import CANDIDATE, CHAMPION, TrackingUnavailable, already_registered, connect, register_version


@dataclass
class Registry:
    client: MlflowClient
    source: str
    name: str

    def register(self, value: float, **kwargs):
        metric = kwargs.pop("metric", "valid_nll")
        return register_version(self.source, self.name, metric, value, **kwargs)

    def alias(self, alias: str) -> str:
        return str(self.client.get_model_version_by_alias(self.name, alias).version)

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(self.name, version).tags


@pytest.fixture(scope="module")
def store(tmp_path_factory, sqlite_workspace):
    """One SQLite tracking + registry store per module (creating its schema takes seconds)."""
    root = tmp_path_factory.mktemp("registry")
    with sqlite_workspace(root):
        connect()
        source = root / "model"
        source.mkdir()
        (source / "MLmodel").write_text("flavors: {}\n")
        yield str(source)


@pytest.fixture()
def registry(store, request) -> Registry:
    """The shared store, with a registered-model name of this test's own."""
    return Registry(MlflowClient(), store, request.node.name.replace("_", "-"))


def test_first_version_becomes_champion_and_candidate(registry):
    reg = registry.register(5.0)
    assert (reg.version, reg.promoted) == ("1", True)
    assert "no champion yet" in reg.reason
    assert registry.alias(CANDIDATE) == registry.alias(CHAMPION) == "1"
    tags = registry.tags("1")
    assert tags["gate.decision"] == "promoted" and tags["validation_status"] == "passed"
    assert float(tags["gate.value"]) == 5.0


def test_gate_promotes_better_and_refuses_worse(registry):
    registry.register(5.0)
    better = registry.register(4.0)
    assert better.promoted and "beats champion v1" in better.reason
    assert registry.alias(CHAMPION) == "2"

    worse = registry.register(4.5)
    assert not worse.promoted and "does not beat champion v2" in worse.reason
    assert registry.alias(CANDIDATE) == "3" and registry.alias(CHAMPION) == "2"
    tags = registry.tags("3")
    assert tags["gate.decision"] == "refused" and tags["validation_status"] == "failed"
    assert tags["gate.reason"] == worse.reason


def test_tie_and_non_finite_are_refused(registry):
    registry.register(5.0)
    assert not registry.register(5.0).promoted
    assert not registry.register(math.nan).promoted
    assert registry.alias(CHAMPION) == "1"


def test_higher_is_better_direction(registry):
    registry.register(0.7, metric="accuracy", lower_is_better=False)
    assert registry.register(0.8, metric="accuracy", lower_is_better=False).promoted
    assert not registry.register(0.75, metric="accuracy", lower_is_better=False).promoted
    assert registry.alias(CHAMPION) == "2"


def test_failure_after_create_leaves_no_version(registry):
    registry.register(5.0)
    with pytest.raises(Exception):
        registry.register(4.0, tags={"k" * 300: "a tag key longer than MLflow allows"})
    versions = registry.client.search_model_versions(f"name = '{registry.name}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert registry.alias(CHAMPION) == "1"


def test_same_source_hash_is_registered_once(registry):
    assert already_registered(registry.name, "abc.dir") is None
    registry.register(5.0, tags={"dvc_md5": "abc.dir"})
    again = already_registered(registry.name, "abc.dir")
    assert again is not None and (again.version, again.new, again.promoted) == ("1", False, True)
    assert already_registered(registry.name, "other.dir") is None


def test_same_source_with_other_settings_is_a_new_version(registry):
    registry.register(5.0, tags={"dvc_md5": "abc.dir", "encoding_sha": "a"})
    assert already_registered(registry.name, "abc.dir", {"encoding_sha": "a"}).version == "1"
    assert already_registered(registry.name, "abc.dir", {"encoding_sha": "b"}) is None


def test_champion_weights_with_new_settings_replace_the_champion_on_a_tie(registry):
    """Served latents must follow the current export settings, which the classifiers were fit on."""
    registry.register(5.0, tags={"dvc_md5": "w.dir", "encoding_sha": "a"})
    resettled = registry.register(5.0, tags={"dvc_md5": "w.dir", "encoding_sha": "b"})
    assert resettled.promoted and "same weights as champion v1" in resettled.reason
    assert registry.alias(CHAMPION) == "2"
    other_weights = registry.register(5.0, tags={"dvc_md5": "x.dir", "encoding_sha": "b"})
    assert not other_weights.promoted and registry.alias(CHAMPION) == "2"


def test_unreachable_tracking_server_is_one_line_naming_the_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:9")  # MLflow writes it to os.environ; restore it too
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable) as err:
        connect(timeout_s=2)
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "http://127.0.0.1:9" in message and "\n" not in message
