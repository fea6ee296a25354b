"""A registered generator loads by `models:/<name>@champion` as pyfunc and encodes, generates, interpolates."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from shortrun.checkpoint import save_model_dir
from shortrun.cli import main
from shortrun.config import LangevinConfig, ModelConfig
from shortrun.data.vocab import Vocab
from shortrun.errors import ShortrunError
from shortrun.io import write_json
from shortrun.model import Generator
from shortrun.params import build_config
from shortrun.paths import METRICS, model_dir
from shortrun.registry import connect, register_generator
from shortrun.serving import GeneratorPyfunc, load_generator

LATENT_DIM = 4
EXPORT_STEPS = 2
WORDS = "the food was great terrible service slow friendly".split()


@pytest.fixture(scope="module")
def champion_uri(tmp_path_factory, sqlite_workspace):
    """An (untrained) SRI model folder and metrics in a temporary workspace, registered through the gate."""
    root = tmp_path_factory.mktemp("serving")
    with sqlite_workspace(root):
        torch.manual_seed(0)
        model_cfg = ModelConfig(latent_dim=LATENT_DIM, emb_dim=8, hidden_dim=8, encoder_hidden_dim=8,
                                dropout_emb=0.0, dropout_out=0.0)
        vocab = Vocab(WORDS)
        save_model_dir(model_dir("sri"), "sri", Generator(len(vocab), model_cfg), vocab, model_cfg, LangevinConfig(steps=3))
        write_json(METRICS / "train" / "sri.json", {"valid_nll": 12.5, "train_nll": 12.0})
        cfg = build_config("tiny", {"registry": {"generator_name": "serving-test"},
                                    "export": {"langevin": {"steps": EXPORT_STEPS}}})
        connect()
        registration = register_generator(cfg)
        assert registration is not None and registration.promoted
        yield "models:/serving-test@champion"


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
    assert model.trained.langevin.steps == 3 and model.langevin.steps == EXPORT_STEPS


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
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["interpolate", "--model", champion_uri, "the food", "slow service", "--steps", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_missing_model_uri_is_one_line_naming_it(champion_uri, capsys):
    with pytest.raises(ShortrunError, match="models:/no-such-model@champion"):
        load_generator("models:/no-such-model@champion")
    assert main(["generate", "--model", "models:/serving-test@no-such-alias"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shortrun: error: model models:/serving-test@no-such-alias") and "\n" not in err


def test_a_classifier_uri_is_not_a_generator(champion_uri):
    from sklearn.linear_model import LogisticRegression

    from shortrun.registry import register_sklearn

    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [0.9, 0.1]])
    classifier = LogisticRegression().fit(x, [0, 1, 0, 1])
    with mlflow.start_run():
        reg = register_sklearn(classifier, "serving-test-classifier", "valid_accuracy", 0.75, input_example=x[:1],
                               source_md5="clf-md5")
    assert reg.promoted and reg.new
    assert register_sklearn(classifier, "serving-test-classifier", "valid_accuracy", 0.75, source_md5="clf-md5").new is False
    with pytest.raises(ShortrunError, match="models:/serving-test-classifier@champion: not a shortrun generator"):
        load_generator("models:/serving-test-classifier@champion")
