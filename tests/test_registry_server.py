"""The Model Registry as a user meets it, on a real `mlflow server` (loopback, SQLite, artifacts in tmp).

One champion per corpus and vocabulary; promotion on held-out likelihood, on the same sentences only;
generator and classifier champions as a pair; descriptions that say how to load what one browses.
Models are constructed, not trained (tests/registry_workspace.py), so a registration takes seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from shortrun.data.vocab import Vocab
from shortrun.ops.registry import CHAMPION, PairMismatch
from shortrun.ops.serving import load_model, load_pair
from shortrun.params import build_config
from tasks import register
from tests.processes import Processes, start_mlflow_server
from tests.registry_workspace import (
    corpus,
    generator,
    metric_tag,
    reconstruction_nll,
    widen_prior,
    write_classifier,
    write_workspace,
)

pytestmark = pytest.mark.slow

YELP_WORDS = "the food was great terrible service slow friendly staff".split()
PTB_WORDS = "market shares rose fell percent".split()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a SQLite store and an artifact folder in tmp, on a free loopback port; stopped by pid."""
    root = tmp_path_factory.mktemp("mlflow-server")
    processes = Processes(root)
    try:
        url = start_mlflow_server(processes, root)
        yield url
    finally:
        for proc in processes.started:
            processes.stop(proc, grace_s=5)  # a throwaway store: what has not ended 5 s after SIGTERM is killed


@pytest.fixture()
def registry(server, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", server)  # MLflow writes it to os.environ; the patch restores it
    return MlflowClient(server, server)


def run_step(root: Path, cfg, monkeypatch) -> register.Registered:
    """The registration step inside the workspace `root`, as the flow runs it."""
    monkeypatch.chdir(root)
    return register.run(cfg)


def test_each_corpus_keeps_its_own_champion_and_vocabulary(registry, tmp_path, monkeypatch):
    yelp_vocab, ptb_vocab = Vocab(YELP_WORDS), Vocab(PTB_WORDS)
    write_workspace(tmp_path / "yelp", generator(yelp_vocab), yelp_vocab, corpus(YELP_WORDS, 30, (6, 9), seed=1))
    yelp = run_step(tmp_path / "yelp", build_config("yelp"), monkeypatch).generator
    # PTB's model scores a far better number (shorter sentences, fewer words): it must not matter to yelp.
    write_workspace(tmp_path / "ptb", generator(ptb_vocab, seed=1), ptb_vocab, corpus(PTB_WORDS, 30, (2, 3), seed=2))
    ptb = run_step(tmp_path / "ptb", build_config("ptb"), monkeypatch).generator

    assert (yelp.name, ptb.name) == ("shortrun-generator-short_yelp", "shortrun-generator-ptb")
    yelp_nll = metric_tag(registry.get_model_version(yelp.name, "1").tags, "heldout_nll")
    ptb_tags = registry.get_model_version(ptb.name, "1").tags
    assert metric_tag(ptb_tags, "heldout_nll") < yelp_nll and ptb.promoted
    assert registry.get_model_version_by_alias(yelp.name, CHAMPION).version == "1"
    assert [v.version for v in registry.search_model_versions(f"name = '{yelp.name}'")] == ["1"]
    assert load_model(f"models:/{yelp.name}@champion").unwrap_python_model().trained.vocab == yelp_vocab
    assert load_model(f"models:/{ptb.name}@champion").unwrap_python_model().trained.vocab == ptb_vocab

    # Same corpus, another vocabulary (e.g. the tiny preset's own 300 words): refused, however good its number.
    small = Vocab(YELP_WORDS[:5])
    write_workspace(tmp_path / "small", generator(small, seed=2), small, corpus(YELP_WORDS[:5], 30, (2, 3), seed=3))
    other = run_step(tmp_path / "small", build_config("yelp"), monkeypatch).generator
    assert metric_tag(registry.get_model_version(other.name, other.version).tags, "heldout_nll") < yelp_nll
    assert not other.promoted and "vocab_sha" in other.reason
    assert registry.get_model_version_by_alias(yelp.name, CHAMPION).version == "1"


def test_better_reconstruction_but_worse_likelihood_is_not_promoted(registry, tmp_path, monkeypatch):
    vocab = Vocab(YELP_WORDS)
    sentences = corpus(YELP_WORDS, 40, (3, 7), seed=4)
    honest = generator(vocab)
    careless = widen_prior(honest, 10.0)  # ignores its prior: latents fit better, p(x) is lower
    assert reconstruction_nll(careless, vocab, sentences) < reconstruction_nll(honest, vocab, sentences) - 0.2
    cfg = build_config("tiny", {"registry": {"generator_name": "likelihood-gate"}})

    write_workspace(tmp_path / "honest", honest, vocab, sentences)
    first = run_step(tmp_path / "honest", cfg, monkeypatch).generator
    write_workspace(tmp_path / "careless", careless, vocab, sentences)
    second = run_step(tmp_path / "careless", cfg, monkeypatch).generator

    tags = [registry.get_model_version(first.name, v).tags for v in ("1", "2")]
    assert metric_tag(tags[1], "valid_recon_nll") < metric_tag(tags[0], "valid_recon_nll")
    assert metric_tag(tags[1], "heldout_nll") > metric_tag(tags[0], "heldout_nll") + 3 * metric_tag(tags[1], "heldout_nll_se")
    assert not second.promoted and "heldout_nll" in second.reason and "does not beat champion v1" in second.reason
    assert registry.get_model_version_by_alias(first.name, CHAMPION).version == "1"
    assert tags[1]["gate.sentences"] == "40" and tags[1]["gate.sentences_sha"] == tags[0]["gate.sentences_sha"]


def test_versions_scored_on_other_sentences_are_not_compared(registry, tmp_path, monkeypatch):
    vocab = Vocab(YELP_WORDS)
    sentences = corpus(YELP_WORDS, 40, (3, 7), seed=5)
    honest = generator(vocab)
    write_workspace(tmp_path / "careless", widen_prior(honest, 10.0), vocab, sentences)
    write_workspace(tmp_path / "honest", honest, vocab, sentences)
    name = {"generator_name": "subsets"}
    worse = run_step(tmp_path / "careless", build_config("tiny", {"registry": name}), monkeypatch).generator
    assert worse.promoted

    fewer = build_config("tiny", {"registry": {**name, "heldout": {"sentences": 20}}})
    better = run_step(tmp_path / "honest", fewer, monkeypatch).generator
    assert not better.promoted and "not comparable with champion v1: gate.sentences_sha" in better.reason
    tags = registry.get_model_version(better.name, better.version).tags
    assert tags["gate.decision"] == "refused" and tags["gate.reason"] == better.reason

    same = run_step(tmp_path / "honest", build_config("tiny", {"registry": name}), monkeypatch).generator
    assert same.promoted and "beats champion v1" in same.reason


def test_promotion_moves_the_classifier_with_its_generator(registry, tmp_path, monkeypatch):
    vocab = Vocab(YELP_WORDS)
    sentences = corpus(YELP_WORDS, 40, (3, 7), seed=6)
    honest = generator(vocab)
    cfg = build_config("tiny", {"registry": {"generator_name": "pair-gen", "classifier_name": "pair-clf"}})
    gen, clf = "pair-gen-short_yelp", "pair-clf-short_yelp"

    write_workspace(tmp_path / "v1", widen_prior(honest, 10.0), vocab, sentences)
    write_classifier(tmp_path / "v1", valid_accuracy=0.9, seed=1)
    first = run_step(tmp_path / "v1", cfg, monkeypatch)
    assert first.generator.promoted and first.classifier.promoted

    # A better generator: its classifier becomes champion with it, though its accuracy is lower.
    write_workspace(tmp_path / "v2", honest, vocab, sentences)
    write_classifier(tmp_path / "v2", valid_accuracy=0.6, seed=2)
    second = run_step(tmp_path / "v2", cfg, monkeypatch)
    assert second.generator.promoted and second.classifier.promoted
    champion = registry.get_model_version_by_alias(clf, CHAMPION)
    assert (champion.version, champion.tags["generator_version"]) == ("2", "2")
    assert registry.get_model_version_by_alias(gen, CHAMPION).version == "2"

    # A worse generator: neither it nor its (more accurate) classifier moves.
    write_workspace(tmp_path / "v3", widen_prior(honest, 12.0), vocab, sentences)
    write_classifier(tmp_path / "v3", valid_accuracy=0.99, seed=3)
    third = run_step(tmp_path / "v3", cfg, monkeypatch)
    assert not third.generator.promoted and not third.classifier.promoted
    assert "not champion" in third.classifier.reason
    assert registry.get_model_version(clf, "3").tags["generator_version"] == "3"
    assert (registry.get_model_version_by_alias(gen, CHAMPION).version,
            registry.get_model_version_by_alias(clf, CHAMPION).version) == ("2", "2")

    pair = load_pair(f"models:/{gen}@champion", f"models:/{clf}@champion")
    assert pair.predict(sentences[:3]).shape == (3,)
    with pytest.raises(PairMismatch) as err:
        load_pair(f"models:/{gen}/1", f"models:/{clf}@champion")
    message = str(err.value)
    assert "\n" not in message and f"{clf} v2" in message and f"{gen} v2" in message and f"{gen} v1" in message


def test_every_model_and_version_says_what_it_is_and_how_to_load_it(registry, tmp_path, monkeypatch):
    vocab = Vocab(YELP_WORDS)
    write_workspace(tmp_path, generator(vocab), vocab, corpus(YELP_WORDS, 40, (3, 7), seed=7))
    write_classifier(tmp_path, valid_accuracy=0.8)
    cfg = build_config("tiny", {"registry": {"generator_name": "described", "classifier_name": "described-clf"}})
    done = run_step(tmp_path, cfg, monkeypatch)
    for reg in (done.generator, done.classifier):
        model = registry.get_registered_model(reg.name)
        version = registry.get_model_version(reg.name, reg.version)
        for text in (model.description, version.description):
            assert "short_yelp" in text and ("import mlflow" in text or "load_pair" in text)
        assert f"models:/{reg.name}@champion" in model.description
        assert f"models:/{reg.name}/{reg.version}" in version.description
        assert model.tags["corpus"] == version.tags["corpus"] == "short_yelp"
        headline = [key for key in version.tags if key.startswith("metrics.")]
        assert headline and all(np.isfinite(metric_tag(version.tags, key[len("metrics."):])) for key in headline)
        assert model.tags["champion.version"] == reg.version
    gen_tags = registry.get_model_version(done.generator.name, done.generator.version).tags
    assert {"metrics.heldout_nll", "metrics.heldout_nll_se", "metrics.valid_recon_nll"} <= set(gen_tags)
    # The snippet in the description runs as written.
    snippet = registry.get_registered_model(done.generator.name).description.split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["z"].shape == (2, 4)
