"""A registered generator as an MLflow pyfunc model, and the CLI commands that use one.

`mlflow.pyfunc.load_model("models:/<name>@champion").predict(sentences)` encodes sentences to latents
(the mean of a few short-run chains, fixed seed, so the same input gives the same vectors).
Generating and interpolating are methods of the underlying model, reachable through
`loaded.unwrap_python_model()`; the `shortrun encode|generate|interpolate` commands wrap all three.
`load_pair` loads a generator with a registered classifier of its latents, checked to belong together.
`log_generator` and `log_classifier` package the models for the registry (`tasks/register.py`).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import mlflow
import mlflow.sklearn
import numpy as np
import torch
from datasets import Dataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from shortrun.checkpoint import load_trained
from shortrun.config import LangevinConfig
from shortrun.data.tokenize import tokenize
from shortrun.errors import DataError, ShortrunError
from shortrun.latents import encode_dataset
from shortrun.model import latent_generator
from shortrun.numerics import numeric_path
from shortrun.ops.registry import check_pair, resolve
from shortrun.ops.tracking import connect

SERVING_ENTRY = Path(__file__).parent / "serving_entry.py"
# What a fresh environment needs to load the generator (the shortrun code itself travels with the model).
GENERATOR_REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "datasets", "pydantic", "pyyaml", "tqdm", "mlflow")
CLASSIFIER_REQUIREMENTS = ("scikit-learn", "numpy", "mlflow")
DEFAULT_CHAINS = 5
DEFAULT_MAX_LEN = 40
ENCODE_BATCH = 64


class GeneratorPyfunc(mlflow.pyfunc.PythonModel):
    """Encode sentences to latents with short-run inference; generate and interpolate sentences."""

    def load_context(self, context: Any) -> None:
        """Load the model folder logged as the `model_dir` artifact; `chains`, `seed` and the short-run
        settings come from the model config (the export stage's; a model's learned step sizes carry over as in
        export, see LangevinConfig.inherit_sizes), so served latents match exported ones."""
        self.numerics = numeric_path()  # the serving machine's own device and precision
        self.trained = load_trained(Path(context.artifacts["model_dir"]), map_location=self.numerics.device)
        self.generator = latent_generator(self.trained.model)
        if self.generator is None:
            raise ShortrunError(f"{context.artifacts['model_dir']}: a {self.trained.kind} model has no latent variable")
        config = context.model_config or {}
        self.chains, self.seed = int(config.get("chains", DEFAULT_CHAINS)), int(config.get("seed", 0))
        chain = config.get("langevin")
        self.langevin = LangevinConfig(**chain).inherit_sizes(self.trained.langevin) if chain else self.trained.langevin

    def predict(self, context: Any, model_input: list[str], params: dict[str, Any] | None = None) -> np.ndarray:
        """Latents [n, latent_dim] (float32) of the sentences (a list, or a DataFrame's one column, e.g. `sentence`)."""
        return self.encode(model_input)

    def encode(self, sentences: Sequence[str], chains: int | None = None, seed: int | None = None) -> np.ndarray:
        """Latents of `sentences` in input order (SRI: mean of `chains` short-run chains; VAE: encoder mean).

        chains / seed default to the model's config (the export stage's `export.chains` and `export.seed`).
        """
        vocab = self.trained.vocab
        rows = Dataset.from_dict({
            "id": list(range(len(sentences))),
            "text": list(sentences),
            "ids": [vocab.encode(tokenize(s)) for s in sentences],
            "label": [-1] * len(sentences),
        })
        chains, seed = chains or self.chains, self.seed if seed is None else seed
        table = encode_dataset(self.trained.model, rows, self.langevin, chains, ENCODE_BATCH, seed,
                               numerics=self.numerics, desc="encode")
        return table.z

    def decode(self, z: np.ndarray | torch.Tensor, max_len: int = DEFAULT_MAX_LEN) -> list[str]:
        """Greedy decoding of each latent row to a sentence."""
        device = next(self.generator.parameters()).device
        ids = self.generator.decode(torch.as_tensor(z, dtype=torch.float32, device=device), max_len, greedy=True)
        return [" ".join(self.trained.vocab.decode(row)) for row in ids]

    def generate(self, n: int, seed: int = 0, max_len: int = DEFAULT_MAX_LEN) -> list[str]:
        """`n` sentences decoded from prior samples z ~ N(0, I) drawn with `seed`."""
        rng = torch.Generator().manual_seed(seed)
        return self.decode(torch.randn(n, self.generator.latent_dim, generator=rng), max_len)

    def interpolate(self, start: str, end: str, steps: int = 5, max_len: int = DEFAULT_MAX_LEN) -> list[str]:
        """Sentences decoded at `steps` evenly spaced points from start's latent to end's (both ends included)."""
        if steps < 2:
            raise DataError(f"interpolate: --steps must be at least 2, got {steps}")
        za, zb = self.encode([start, end])
        weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1.0 - weights) * za + weights * zb, max_len)


def load_model(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """The pyfunc model behind a URI (models:/name@alias, models:/name/3, runs:/..., or a local folder), checked
    to be a shortrun generator; a URI that cannot be loaded is one error line naming it."""
    if uri.startswith(("models:/", "runs:/")):
        connect()
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        reason = (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]
        raise ShortrunError(f"model {uri}: cannot load ({reason})") from None
    try:
        model = loaded.unwrap_python_model()
    except MlflowException:  # another flavor (e.g. a scikit-learn classifier)
        model = None
    if not isinstance(model, GeneratorPyfunc):
        raise ShortrunError(f"model {uri}: not a shortrun generator ({loaded.metadata.flavors.get('python_function', {}).get('loader_module')})")
    return loaded


def load_generator(uri: str) -> GeneratorPyfunc:
    """The generator object behind a model URI, for generate / interpolate."""
    return load_model(uri).unwrap_python_model()


@dataclass
class Pair:
    """A generator and a classifier fit on its latents: sentences in, label ids (indices into data.labels) out."""

    generator: mlflow.pyfunc.PyFuncModel
    classifier: Any

    def predict(self, sentences: Sequence[str]) -> np.ndarray:
        return self.classifier.predict(self.generator.predict(list(sentences)))


def load_pair(generator_uri: str, classifier_uri: str) -> Pair:
    """A registered generator and classifier (models:/ URIs), refused in one line unless the classifier
    was fit on the latents of exactly that generator version."""
    connect()
    client = MlflowClient()
    generator, classifier = resolve(client, generator_uri), resolve(client, classifier_uri)
    check_pair(generator, classifier)
    # Load the resolved versions, not the aliases: an alias may move between the check and the load.
    return Pair(load_model(f"models:/{generator.name}/{generator.version}"),
                mlflow.sklearn.load_model(f"models:/{classifier.name}/{classifier.version}"))


def _pinned(packages: Sequence[str]) -> list[str]:
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def log_generator(model_dir: Path, encoding: Mapping[str, Any], example: str) -> str:
    """Log a model folder to the active run as this pyfunc model (code, weights, vocabulary); its model URI.

    `encoding` (chains, seed, langevin) becomes the model config that `load_context` reads.
    """
    info = mlflow.pyfunc.log_model(
        name="generator",
        python_model=str(SERVING_ENTRY),
        artifacts={"model_dir": str(model_dir)},
        code_paths=[str(SERVING_ENTRY.parent)],
        model_config=dict(encoding),
        input_example=[example],
        pip_requirements=_pinned(GENERATOR_REQUIREMENTS),
    )
    return info.model_uri


def log_classifier(model: Any, example: np.ndarray) -> str:
    """Log a fitted scikit-learn classifier to the active run; its model URI."""
    info = mlflow.sklearn.log_model(model, name="classifier", input_example=example,
                                    pip_requirements=_pinned(CLASSIFIER_REQUIREMENTS))
    return info.model_uri


def encode_command(args: argparse.Namespace) -> int:
    """Print one JSON line per sentence: {"sentence": ..., "z": [...]}."""
    latents = load_model(args.model).predict(list(args.sentences))
    for sentence, z in zip(args.sentences, latents):
        print(json.dumps({"sentence": sentence, "z": [round(float(v), 6) for v in z]}))
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """Print `--num` sampled sentences, one per line."""
    for sentence in load_generator(args.model).generate(args.num, seed=args.seed):
        print(sentence)
    return 0


def interpolate_command(args: argparse.Namespace) -> int:
    """Print the sentences along the line between two sentences' latents, one per line."""
    for sentence in load_generator(args.model).interpolate(args.start, args.end, steps=args.steps):
        print(sentence)
    return 0
