"""What a registered model says about itself: the descriptions a user reads when browsing the registry.

Each says what the model is, which corpus it belongs to, and how to load and use it (the models:/ URI
and a Python snippet), so the registry page alone is enough to start.
"""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusCard:
    """The corpus facts every description repeats."""

    corpus: str
    vocab_size: int
    examples: tuple[str, str]  # two sentences of the corpus (the first gate sentences), for the snippets
    gate_sentences: int


def generator_description(name: str, card: CorpusCard, classifier: str | None) -> str:
    """The registered generator's description: the family of versions, and how to use its champion."""
    uri = f"models:/{name}@champion"
    lines = [
        f"SRI text generator trained on the corpus `{card.corpus}` (vocabulary of {card.vocab_size} tokens): an LSTM "
        "decoder p(x|z) with a Gaussian prior z ~ N(0, I) and no encoder; sentences are encoded by short-run Langevin "
        "inference. Its versions compete only with versions of this corpus and vocabulary, on the importance-sampled "
        f"NLL of the first {card.gate_sentences} validation sentences (tag `metrics.heldout_nll`, lower is better). "
        "`@champion` is the best so far, `@candidate` the latest.",
        "",
        f"Load: `{uri}`",
        "",
        *_generator_snippet(uri, card),
    ]
    if classifier:
        lines += ["", f"Its classifier: `models:/{classifier}@champion`, fit on the champion's latents (see that model)."]
    return "\n".join(lines)


def generator_version_description(name: str, version: str, card: CorpusCard, heldout_nll: float, preset: str) -> str:
    """One generator version: where it came from, its gate number, and how to load exactly it."""
    uri = f"models:/{name}/{version}"
    return "\n".join([
        f"SRI generator of `{card.corpus}` from the pipeline preset `{preset}`; held-out NLL {heldout_nll:.4f} nats per "
        f"sentence on the first {card.gate_sentences} validation sentences (the gate's tags say how it compares).",
        "",
        f"Load this version: `{uri}`",
        "",
        *_generator_snippet(uri, card),
    ])


def classifier_description(name: str, generator: str, card: CorpusCard, labels: list[str]) -> str:
    """The registered classifier's description: what it predicts, from which latents, and how to use the pair."""
    return "\n".join([
        f"Sentence classifier for the corpus `{card.corpus}` (labels {', '.join(labels)}), fit on latent vectors of "
        f"the SRI generator `{generator}`. Each version records the generator version it was fit on "
        "(tag `generator_version`); its `@champion` moves with the generator's, so the two champions always form a pair.",
        "",
        f"Load the pair: `models:/{generator}@champion` with `models:/{name}@champion`",
        "",
        *_pair_snippet(f"models:/{generator}@champion", f"models:/{name}@champion", card),
    ])


def classifier_version_description(name: str, version: str, generator: str, generator_version: str,
                                   card: CorpusCard, accuracy: float, budget: int) -> str:
    """One classifier version: its generator version, its score, and the pair to load."""
    return "\n".join([
        f"Classifier of `{card.corpus}` fit with {budget} labels on the latents of `{generator}` v{generator_version}; "
        f"validation accuracy {accuracy:.4f}. It pairs only with that generator version.",
        "",
        *_pair_snippet(f"models:/{generator}/{generator_version}", f"models:/{name}/{version}", card),
    ])


def _generator_snippet(uri: str, card: CorpusCard) -> list[str]:
    first, second = (json.dumps(text) for text in card.examples)
    return [
        "```python",
        "import mlflow",
        f'model = mlflow.pyfunc.load_model("{uri}")',
        f"z = model.predict([{first}, {second}])   # latent vectors, numpy [2, latent_dim]",
        "generator = model.unwrap_python_model()",
        "generator.generate(5, seed=0)             # sentences from the prior",
        f"generator.interpolate({first}, {second}, steps=5)",
        "```",
        f"Shell: `shortrun encode --model {uri} {first}`",
    ]


def _pair_snippet(generator_uri: str, classifier_uri: str, card: CorpusCard) -> list[str]:
    return [
        "```python",
        "from shortrun.ops.serving import load_pair",
        f'pair = load_pair("{generator_uri}", "{classifier_uri}")   # refuses a mismatched pair',
        f"pair.predict([{json.dumps(card.examples[0])}])          # label ids",
        "```",
    ]
