"""A registered generator loads by `models:/<name>-<corpus>@champion` as pyfunc and encodes, generates, interpolates."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from shortrun.cli import main
from shortrun.data.vocab import Vocab
from shortrun.errors import ShortrunError
from shortrun.ops.serving import GeneratorPyfunc, load_generator
from shortrun.ops.tracking import connect
from shortrun.params import build_config
from tasks import register
from tests.registry_workspace import CHAIN, LATENT_DIM, corpus, generator, write_classifier, write_workspace

EXPORT_STEPS = 2
WORDS = "the food was great terrible service slow friendly".split()


@pytest.fixture(scope="module")
def champion_uri(tmp_path_factory, sqlite_workspace):
    """An (untrained) SRI model and a classifier of its latents in a temporary workspace, registered as the flow does."""
    root = tmp_path_factory.mktemp("serving")
    with sqlite_workspace(root):
        vocab = Vocab(WORDS)
        write_workspace(root, generator(vocab, sharpness=1.0), vocab, corpus(WORDS, 20, (2, 5), seed=0))
        write_classifier(root, valid_accuracy=0.75)
        cfg = build_config("tiny", {"registry": {"generator_name": "serving-test", "classifier_name": "serving-test-clf"},
                                    "export": {"langevin": {"steps": EXPORT_STEPS}}})
        connect()
        registered = register.run(cfg)
        assert registered.generator.promoted and registered.classifier.promoted
        yield "models:/serving-test-short_yelp@champion"


@pytest.fixture(scope="module")
def loaded(champion_uri):
    return mlflow.pyfunc.load_model(champion_uri)


def test_predict_encodes_two_sentences_to_two_vectors(loaded):
    z = loaded.predict(["the food was great", "slow service"])
    assert isinstance(z, np.ndarray) and z.shape == (2, LATENT_DIM) and z.dtype == np.float32
    assert np.isfinite(z).all()
    assert not np.allclose(z[0], z[1])


def test_predict_is_deterministic_and_accepts_a_dataframe(loaded):
    sentences = ["the food was great", "slow service", "friendly"]
    first = loaded.predict(sentences)
    again = loaded.predict(pd.DataFrame({"sentence": sentences}))
    np.testing.assert_allclose(first, again)
    model = loaded.unwrap_python_model()
    np.testing.assert_allclose(model.encode(sentences), first)
    other_seed = model.encode(sentences, chains=3, seed=1)
    assert other_seed.shape == first.shape and not np.allclose(first, other_seed)


def test_served_latents_use_the_export_chain_not_the_training_chain(loaded):
    """The registered classifier was fit on exported latents: serving must encode the same way."""
    model = loaded.unwrap_python_model()
    assert model.trained.langevin.steps == CHAIN.steps and model.langevin.steps == EXPORT_STEPS


def test_generate_and_interpolate_through_the_unwrapped_model(loaded):
    model = loaded.unwrap_python_model()
    assert isinstance(model, GeneratorPyfunc)
    samples = model.generate(3, seed=0)
    assert len(samples) == 3 and all(set(s.split()) <= set(WORDS) for s in samples)
    assert samples == model.generate(3, seed=0)
    path = model.interpolate("the food was great", "slow service", steps=4)
    assert len(path) == 4


def test_cli_encode_prints_one_vector_per_sentence(champion_uri, capsys):
    assert main(["encode", "--model", champion_uri, "the food", "slow service"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["sentence"] for r in rows] == ["the food", "slow service"]
    assert all(len(r["z"]) == LATENT_DIM for r in rows)


def test_cli_generate_and_interpolate(champion_uri, capsys):
    assert main(["generate", "--model", champion_uri, "-n", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # one line per sentence (an untrained model may end at once)
    assert main(["interpolate", "--model", champion_uri, "the food", "slow service", "--steps", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_missing_model_uri_is_one_line_naming_it(champion_uri, capsys):
    with pytest.raises(ShortrunError, match="models:/no-such-model@champion"):
        load_generator("models:/no-such-model@champion")
    assert main(["generate", "--model", "models:/serving-test-short_yelp@no-such-alias"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shortrun: error: model models:/serving-test-short_yelp@no-such-alias") and "\n" not in err


def test_a_classifier_uri_is_not_a_generator(champion_uri):
    with pytest.raises(ShortrunError, match="models:/serving-test-clf-short_yelp@champion: not a shortrun generator"):
        load_generator("models:/serving-test-clf-short_yelp@champion")
