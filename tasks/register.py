"""The registration step: the SRI generator and the classifier fit on its latents, registered as a pair.

The flow runs it after every DVC stage and after checking that `dvc status` is clean, so the files it
reads belong together: models/sri (and its DVC hash in dvc.lock), the first registry.heldout.sentences
of data/prepared/valid (the gate's sentences), metrics/train/sri.json and metrics/evaluate.json (headline
tags), classifiers/summary.json with the largest budget's seed-0 classifier, and latents/sri/valid.parquet
(the classifier's input example).

Names are per corpus: `<registry.generator_name>-<data.corpus>` and `<registry.classifier_name>-<data.corpus>`.
The generator's gate is its held-out likelihood (`shortrun.evaluation.heldout`), compared only with a
champion of the same vocabulary, gate sentences and estimator settings; the classifier follows its generator.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
from datasets import Dataset

from shortrun.checkpoint import TrainedModel, load_trained
from shortrun.config import PipelineConfig
from shortrun.data.prepared import load_split, load_vocab
from shortrun.errors import ConfigError, DataError, TrainingError
from shortrun.evaluation.heldout import heldout_likelihood
from shortrun.latents import read_latents
from shortrun.model import latent_generator
from shortrun.numerics import resolve_device
from shortrun.ops.dvclock import out_md5
from shortrun.ops.model_cards import (
    CorpusCard,
    classifier_description,
    classifier_version_description,
    generator_description,
    generator_version_description,
)
from shortrun.paths import METRICS, VOCAB, latents_dir, model_dir
from shortrun.ops.registry import (
    GENERATOR_TAG,
    GENERATOR_VERSION_TAG,
    METRIC_PREFIX,
    SOURCE_TAG,
    Gate,
    Registration,
    Release,
    already_registered,
    decide,
    decide_with_generator,
    release,
)
from shortrun.ops.serving import log_classifier, log_generator
from shortrun.ops.tracking import PARENT_RUN_ENV, flatten, git_commit

KIND = "sri"  # the registered generator; its classifier reads latents/sri
CLASSIFIERS = Path("classifiers")
GATE_METRIC = "heldout_nll"
ENCODING_TAG = "encoding_sha"  # how the generator encodes (export chains, seed, chain), hashed
IDENTITY_TAGS = ("corpus", "vocab_sha", "gate.sentences_sha", "gate.estimator_sha")


@dataclass(frozen=True)
class Registered:
    """What the step registered (or found already registered): the generator and its classifier."""

    generator: Registration | None
    classifier: Registration | None = None

    def lines(self) -> list[str]:
        """One line per registered model: name, version, role and the gate's reason."""
        if self.generator is None:
            return ["no SRI model in this pipeline; nothing to register"]
        return [f"{reg.name} v{reg.version}: {'champion' if reg.promoted else 'candidate'} ({reg.reason})"
                for reg in (self.generator, self.classifier) if reg is not None]


@dataclass(frozen=True)
class GeneratorInput:
    """The generator to register and what its gate and tags need."""

    name: str
    folder: Path
    trained: TrainedModel
    sentences: Dataset
    identity: dict[str, str]
    settings: dict[str, str]  # with the DVC hash: what makes a version the same as an earlier one
    encoding: dict[str, Any]
    estimator: dict[str, Any]
    source: str | None
    card: CorpusCard


@dataclass(frozen=True)
class ClassifierInput:
    """The classifier to register: the seed-0 fit of the largest label budget."""

    name: str
    file: Path
    budget: int
    valid_accuracy: float
    test_accuracy: float
    classifier: str


def registered_names(cfg: PipelineConfig) -> tuple[str, str]:
    """(generator, classifier) registered-model names of the configured corpus."""
    corpus = cfg.data.corpus
    if not corpus.strip() or any(char in corpus for char in "/:@"):
        raise ConfigError(f"data.corpus: {corpus!r} cannot name a registered model (no '/', ':' or '@', not empty)")
    return f"{cfg.registry.generator_name}-{corpus}", f"{cfg.registry.classifier_name}-{corpus}"


def digest(value: Any) -> str:
    """A short, stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def generator_input(cfg: PipelineConfig) -> GeneratorInput | None:
    """The workspace's SRI generator and its gate sentences, or None when the pipeline trains no SRI model."""
    folder = model_dir(KIND)
    if KIND not in cfg.train.models or not folder.is_dir():
        return None
    name, _ = registered_names(cfg)
    trained = load_trained(folder)
    vocab = load_vocab()
    if trained.vocab != vocab:
        raise TrainingError(f"{folder}/vocab.txt: differs from {VOCAB}; retrain {KIND} on the prepared data")
    valid = load_split("valid")
    sentences = valid.select(range(min(cfg.registry.heldout.sentences, len(valid))))
    if len(sentences) < 2:
        raise DataError(f"data/prepared/valid: {len(sentences)} sentence(s); the registry gate needs at least 2")
    estimator = {"estimator": "laplace", **cfg.registry.heldout.model_dump(exclude={"sentences"})}
    identity = {
        "corpus": cfg.data.corpus,
        "vocab_sha": digest(list(vocab.tokens)),
        "gate.sentences_sha": digest(list(sentences["text"])),
        "gate.estimator_sha": digest(estimator),
    }
    encoding = {"chains": cfg.export.chains, "seed": cfg.export.seed, "langevin": cfg.export_langevin.model_dump()}
    card = CorpusCard(cfg.data.corpus, len(vocab), (sentences[0]["text"], sentences[1]["text"]), len(sentences))
    return GeneratorInput(name, folder, trained, sentences, identity, {ENCODING_TAG: digest(encoding), **identity},
                          encoding, estimator, out_md5(folder), card)


def classifier_input(cfg: PipelineConfig) -> ClassifierInput | None:
    """The classify stage's SRI classifier of the largest budget, or None when it fit none (e.g. unlabeled corpus)."""
    summary_file = CLASSIFIERS / "summary.json"
    if not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    entries = summary.get("models", {}).get(KIND)
    if not entries:
        return None
    budget = max(int(b) for b in entries)
    entry = entries[str(budget)]
    first = entry["seeds"][0]
    return ClassifierInput(registered_names(cfg)[1], CLASSIFIERS / entry["file"], budget,
                           float(first["valid_accuracy"]), float(first["test_accuracy"]), summary["classifier"])


def headline_metrics() -> dict[str, float]:
    """The generator's numbers from the other stages, when they ran: reconstruction NLL, test NLL, active units."""
    found = {}
    sources = {"valid_recon_nll": (METRICS / "train" / f"{KIND}.json", "valid_nll"),
               "test_nll": (METRICS / "evaluate.json", f"{KIND}.nll"),
               "active_units": (METRICS / "evaluate.json", f"{KIND}.au")}
    for tag, (path, key) in sources.items():
        if path.is_file():
            value = flatten(json.loads(path.read_text(encoding="utf-8"))).get(key)
            if isinstance(value, (int, float)):
                found[tag] = float(value)
    return found


def _metric_tags(metrics: dict[str, float]) -> dict[str, str]:
    return {f"{METRIC_PREFIX}{key}": f"{value:.6g}" for key, value in metrics.items()}


def register_generator(batch: Release, cfg: PipelineConfig, gen: GeneratorInput, classifier_name: str | None) -> Registration:
    """Score the generator on the gate sentences, log it as a pyfunc model and register it through the gate."""
    generator = latent_generator(gen.trained.model)
    heldout = heldout_likelihood(generator, gen.sentences, gen.trained.langevin, cfg.registry.heldout,
                                 resolve_device(cfg.train.device))
    gate = Gate(GATE_METRIC, heldout["nll"], lower_is_better=True, identity=gen.identity)
    decision = decide(batch.client, gen.name, gate, gen.source)
    model_uri = log_generator(gen.folder, gen.encoding, gen.card.examples[0])
    metrics = {"heldout_nll": heldout["nll"], "heldout_nll_se": heldout["nll_se"], "heldout_ppl": heldout["ppl"],
               **headline_metrics()}
    tags = {
        "kind": KIND, "preset": cfg.preset, "git_commit": git_commit(), SOURCE_TAG: gen.source or "",
        "vocab_size": str(gen.card.vocab_size), ENCODING_TAG: gen.settings[ENCODING_TAG],
        "gate.sentences": str(len(gen.sentences)),
        "gate.estimator": json.dumps(gen.estimator),
        **_metric_tags(metrics),
    }
    return batch.register(model_uri, gen.name, gate, decision, tags,
                          lambda version: generator_version_description(gen.name, version, gen.card, heldout["nll"], cfg.preset),
                          generator_description(gen.name, gen.card, classifier_name),
                          {"kind": KIND, "corpus": gen.card.corpus, "vocab_sha": gen.identity["vocab_sha"]})


def register_classifier(batch: Release, cfg: PipelineConfig, clf: ClassifierInput, generator: Registration,
                        card: CorpusCard) -> Registration:
    """Log the classifier and register it; its champion follows `generator`'s (see registry.decide_with_generator)."""
    gate = Gate("valid_accuracy", clf.valid_accuracy, lower_is_better=False, identity={GENERATOR_TAG: generator.name})
    decision = decide_with_generator(batch.client, clf.name, gate, generator)
    example = read_latents(latents_dir(KIND) / "valid.parquet").z[:5]
    model_uri = log_classifier(joblib.load(clf.file), example)
    tags = {
        "kind": KIND, "corpus": card.corpus, "classifier": clf.classifier, "label_budget": str(clf.budget),
        "labels": json.dumps(cfg.data.labels), "preset": cfg.preset, "git_commit": git_commit(),
        SOURCE_TAG: _md5(clf.file), GENERATOR_VERSION_TAG: generator.version,
        **_metric_tags({"valid_accuracy": clf.valid_accuracy, "test_accuracy": clf.test_accuracy}),
    }
    return batch.register(model_uri, clf.name, gate, decision, tags,
                          lambda version: classifier_version_description(clf.name, version, generator.name, generator.version,
                                                                         card, clf.valid_accuracy, clf.budget),
                          classifier_description(clf.name, generator.name, card, cfg.data.labels),
                          {"kind": KIND, "corpus": card.corpus, GENERATOR_TAG: generator.name})


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run(cfg: PipelineConfig, parent_run_id: str | None = None) -> Registered:
    """Register what is new of the generator and its classifier, as one release; nothing new opens no run.

    The MLflow run that logs the models nests under `parent_run_id` (default: $SHORTRUN_PARENT_RUN_ID).
    """
    gen = generator_input(cfg)
    if gen is None:
        return Registered(None)
    clf = classifier_input(cfg)
    generator = already_registered(gen.name, gen.source, gen.settings)
    classifier = None
    if generator is not None and clf is not None:
        classifier = already_registered(clf.name, _md5(clf.file), {GENERATOR_VERSION_TAG: generator.version})
    if generator is not None and (clf is None or classifier is not None):
        return Registered(generator, classifier)
    parent = parent_run_id or os.environ.get(PARENT_RUN_ENV)
    tags = {"stage": "register", "git_commit": git_commit(), **({"mlflow.parentRunId": parent} if parent else {})}
    with mlflow.start_run(run_name="register", nested=mlflow.active_run() is not None, tags=tags), release() as batch:
        if generator is None:
            generator = register_generator(batch, cfg, gen, clf.name if clf else None)
        if clf is not None:
            classifier = register_classifier(batch, cfg, clf, generator, gen.card)
        elif generator.new and generator.promoted:
            batch.retire(registered_names(cfg)[1])  # a champion classifier of the old generator no longer pairs
        mlflow.set_tags({"registered_model": generator.name, "registered_version": generator.version,
                         "gate.reason": generator.reason})
    return Registered(generator, classifier)
