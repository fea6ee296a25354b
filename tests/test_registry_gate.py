"""The promotion gate and version bookkeeping on a real SQLite model registry (fast; no server)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest
from mlflow.tracking import MlflowClient

from shortrun.ops.registry import (
    CANDIDATE,
    CHAMPION,
    GENERATOR_TAG,
    GENERATOR_VERSION_TAG,
    Gate,
    PairMismatch,
    Registration,
    already_registered,
    check_pair,
    decide,
    decide_with_generator,
    release,
)
from shortrun.ops.tracking import TrackingUnavailable, connect


@dataclass
class Registry:
    client: MlflowClient
    source: str
    name: str

    def register(self, value: float, metric: str = "heldout_nll", lower_is_better: bool = True,
                 identity: dict | None = None, tags: dict | None = None, name: str | None = None) -> Registration:
        """One version through the gate, in a release of its own."""
        name = name or self.name
        gate = Gate(metric, value, lower_is_better, identity or {})
        with release() as batch:
            decision = decide(batch.client, name, gate, (tags or {}).get("dvc_md5"))
            return batch.register(self.source, name, gate, decision, tags or {}, lambda v: f"version {v}",
                                  "a test model", {"corpus": "test"})

    def alias(self, alias: str, name: str | None = None) -> str:
        return str(self.client.get_model_version_by_alias(name or self.name, alias).version)

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
    assert registry.client.get_model_version(registry.name, "1").description == "version 1"
    model = registry.client.get_registered_model(registry.name)
    assert model.description == "a test model" and model.tags["corpus"] == "test" and model.tags["champion.version"] == "1"


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


def test_a_version_judged_on_other_sentences_is_never_compared(registry):
    registry.register(5.0, identity={"gate.sentences_sha": "a"})
    other = registry.register(1.0, identity={"gate.sentences_sha": "b"})
    assert not other.promoted
    assert other.reason == "not comparable with champion v1: gate.sentences_sha is b, the champion's is a; the champion stays"
    assert registry.register(4.0, identity={"gate.sentences_sha": "a"}).promoted


def test_failure_in_a_release_leaves_no_version_and_the_champion_in_place(registry):
    registry.register(5.0)
    gate = Gate("heldout_nll", 4.0)
    with pytest.raises(RuntimeError, match="the classifier failed"):
        with release() as batch:
            decision = decide(batch.client, registry.name, gate)
            batch.register(registry.source, registry.name, gate, decision, {}, str, "a test model", {})
            raise RuntimeError("the classifier failed")
    versions = registry.client.search_model_versions(f"name = '{registry.name}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert registry.alias(CHAMPION) == "1"


def test_same_source_hash_is_registered_once(registry):
    assert already_registered(registry.name, "abc.dir") is None
    first = registry.register(5.25, tags={"dvc_md5": "abc.dir"})
    again = already_registered(registry.name, "abc.dir")
    assert again is not None and (again.version, again.new, again.promoted) == ("1", False, True)
    # what the gate measured comes back with it (the pipeline logs it as a metric either way)
    assert (first.gate_metric, first.gate_value) == (again.gate_metric, again.gate_value) == ("heldout_nll", 5.25)
    assert already_registered(registry.name, "other.dir") is None


def test_same_source_with_other_settings_is_a_new_version(registry):
    registry.register(5.0, tags={"dvc_md5": "abc.dir", "encoding_sha": "a"})
    assert already_registered(registry.name, "abc.dir", {"encoding_sha": "a"}).version == "1"
    assert already_registered(registry.name, "abc.dir", {"encoding_sha": "b"}) is None


def test_champion_weights_with_new_settings_replace_the_champion_on_a_tie(registry):
    """Served latents must follow the current export settings, which the classifiers were fit on."""
    registry.register(5.0, tags={"dvc_md5": "w.dir", "encoding_sha": "a"})
    resettled = registry.register(5.0, tags={"dvc_md5": "w.dir", "encoding_sha": "b"})
    assert resettled.promoted and "same files as champion v1" in resettled.reason
    assert registry.alias(CHAMPION) == "2"
    other_weights = registry.register(5.0, tags={"dvc_md5": "x.dir", "encoding_sha": "b"})
    assert not other_weights.promoted and registry.alias(CHAMPION) == "2"


def test_a_classifier_follows_its_generator(registry):
    gen, clf = f"{registry.name}-gen", f"{registry.name}-clf"
    first = registry.register(5.0, name=gen)

    def classifier(value: float, generator: Registration) -> Registration:
        gate = Gate("valid_accuracy", value, lower_is_better=False, identity={GENERATOR_TAG: gen})
        with release() as batch:
            decision = decide_with_generator(batch.client, clf, gate, generator)
            return batch.register(registry.source, clf, gate, decision,
                                  {GENERATOR_TAG: gen, GENERATOR_VERSION_TAG: generator.version}, str, "", {})

    assert classifier(0.9, first).promoted
    assert not classifier(0.8, first).promoted  # same generator: the usual comparison
    unpromoted = classifier(0.99, Registration(gen, "7", promoted=False, reason=""))
    assert not unpromoted.promoted and unpromoted.reason == f"fit on {gen} v7, which is not champion (v1)"
    second = registry.register(4.0, name=gen)
    moved = classifier(0.5, second)  # worse accuracy, but the old champion reads the old generator's latents
    assert moved.promoted and "moves with champion" in moved.reason
    assert registry.alias(CHAMPION, clf) == moved.version


def test_retired_champion_loses_its_alias_and_a_failed_release_gives_it_back(registry):
    registry.register(5.0)
    with release() as batch:
        batch.retire(registry.name)
    assert registry.client.get_registered_model(registry.name).aliases.get(CHAMPION) is None
    registry.register(4.0)
    with pytest.raises(RuntimeError):
        with release() as batch:
            batch.retire(registry.name)
            batch.promote()
            raise RuntimeError("later failure")
    assert registry.alias(CHAMPION) == "2"


def test_check_pair_names_both_versions_in_one_line(registry):
    gen = registry.register(5.0, name=f"{registry.name}-gen")
    generator = registry.client.get_model_version(gen.name, gen.version)
    with release() as batch:
        gate = Gate("valid_accuracy", 0.9, False)
        clf = batch.register(registry.source, f"{registry.name}-clf", gate, decide(batch.client, f"{registry.name}-clf", gate),
                             {GENERATOR_TAG: gen.name, GENERATOR_VERSION_TAG: "9"}, str, "", {})
    classifier = registry.client.get_model_version(clf.name, clf.version)
    with pytest.raises(PairMismatch) as err:
        check_pair(generator, classifier)
    assert str(err.value).startswith(f"classifier {clf.name} v1 was fit on the latents of {gen.name} v9, not of {gen.name} v1")
    assert "\n" not in str(err.value)


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


@pytest.mark.slow
def test_register_command_refuses_a_workspace_dvc_calls_stale(tmp_path, capsys):
    """The generator, its latents and its classifier must come from one run: `shortrun register` checks first."""
    from shortrun.cli import main
    from tests.workspace import copy_project, entered

    with entered(copy_project(tmp_path)):
        assert main(["register"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shortrun: error: register: dvc status is not clean (") and "prepare" in err
    assert err.endswith("run `dvc repro` first") and "\n" not in err
