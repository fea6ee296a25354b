"""metrics/headline.json: the few numbers `dvc exp show` compares runs on."""
from shortrun.headline import headline

EVALUATE = {"sentences": 32,
            "lm": {"nll": 40.0, "ppl": 50.0, "seconds": 1.0},
            "vae": {"nll": 39.0, "au": 2, "kl": 0.1},
            "sri": {"nll": 38.5, "au": 7, "laplace": {"nll": 38.5}}}
CLASSIFY = {"classifier": "logreg",
            "models": {"sri": {"budgets": {"500": {"acc_mean": 0.71}, "100": {"acc_mean": 0.64}}},
                       "vae": {"budgets": {"100": {"acc_mean": 0.55}, "500": {"acc_mean": 0.6}}}}}


def test_headline_is_nll_and_active_units_per_model_and_accuracy_at_the_smallest_budget():
    assert headline(EVALUATE, CLASSIFY) == {
        "nll": {"lm": 40.0, "vae": 39.0, "sri": 38.5},
        "au": {"vae": 2, "sri": 7},
        "accuracy": {"labels": 100, "sri": 0.64, "vae": 0.55},
    }


def test_an_unlabeled_corpus_has_no_accuracy_block():
    assert set(headline(EVALUATE, {"classifier": "logreg", "models": {}})) == {"nll", "au"}
