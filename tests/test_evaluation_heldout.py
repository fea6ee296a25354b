"""The registry gate's held-out likelihood: exact where the answer is known, and it ranks a prior-ignoring model last."""
from __future__ import annotations

import torch
from datasets import Dataset

from shortrun.config import HeldOutConfig
from shortrun.data.batching import collate
from shortrun.data.vocab import Vocab
from shortrun.evaluation.heldout import heldout_likelihood
from tests.registry_workspace import CHAIN, corpus, generator, reconstruction_nll, widen_prior

WORDS = "the food was great terrible service slow friendly".split()
CPU = torch.device("cpu")


def dataset(vocab: Vocab, sentences: list[str]) -> Dataset:
    return Dataset.from_dict({"id": list(range(len(sentences))), "text": sentences,
                              "ids": [vocab.encode(s.split()) for s in sentences], "label": [-1] * len(sentences)})


def test_a_decoder_that_ignores_z_gets_its_exact_likelihood():
    """p(x) = p(x | z) for every z when z is not read: the estimate must find it, within its own error."""
    vocab = Vocab(WORDS)
    sentences = corpus(WORDS, 12, (2, 6), seed=0)
    model = widen_prior(generator(vocab), 0.0)
    with torch.no_grad():
        exact = float(model.sentence_nll(collate([vocab.encode(s.split()) for s in sentences]).tokens, torch.zeros(12, 4)).mean())
    cfg = HeldOutConfig(importance_samples=256, batch_size=5)
    result = heldout_likelihood(model, dataset(vocab, sentences), CHAIN, cfg, CPU)
    assert result["sentences"] == 12 and 0 < result["nll_se"] < 0.02
    assert abs(result["nll"] - exact) < 4 * result["nll_se"]


def test_same_settings_same_number_and_the_prior_ignoring_model_scores_worse():
    vocab = Vocab(WORDS)
    sentences = corpus(WORDS, 30, (3, 7), seed=1)
    data, cfg = dataset(vocab, sentences), HeldOutConfig()
    honest = generator(vocab)
    careless = widen_prior(honest, 10.0)
    first = heldout_likelihood(honest, data, CHAIN, cfg, CPU)
    assert heldout_likelihood(honest, data, CHAIN, cfg, CPU) == first
    worse = heldout_likelihood(careless, data, CHAIN, cfg, CPU)
    assert reconstruction_nll(careless, vocab, sentences) < reconstruction_nll(honest, vocab, sentences)
    assert worse["nll"] > first["nll"] + 3 * (worse["nll_se"] + first["nll_se"])
