"""The export stage: one latent vector per prepared sentence, for one latent model, as Parquet files.

Writes latents/<kind>/{train,valid,test}.parquet and labeled_<budget>.parquet for every labeled subset
in data/prepared/labeled/ (format: shortrun.latents). The folder is replaced atomically, and only with
usable latents: NaN/Inf or runaway values (shortrun.latents.latents_problem) fail the stage in one line
naming the model, and the previous latents stay.
"""
from __future__ import annotations

import time

import mlflow

from shortrun.checkpoint import load_trained
from shortrun.config import LATENT_MODELS, PipelineConfig
from shortrun.data.prepared import SPLITS, labeled_budgets, load_labeled, load_split
from shortrun.errors import ConfigError, TrainingError
from shortrun.io import atomic_dir
from shortrun.latents import encode_splits, write_latents
from shortrun.numerics import numeric_path
from shortrun.ops.tracking import stage_run
from shortrun.paths import latents_dir, model_dir


def run(cfg: PipelineConfig, kind: str) -> None:
    """Encode every split and labeled subset with models/<kind>/ (each distinct sentence once) and write latents/<kind>/."""
    if kind not in LATENT_MODELS:
        raise ConfigError(f"export --model {kind}: that model has no latent variable; expected one of {', '.join(LATENT_MODELS)}")
    trained = load_trained(model_dir(kind))
    datasets = {split: load_split(split) for split in SPLITS}
    datasets.update({f"labeled_{budget}": load_labeled(budget) for budget in labeled_budgets()})
    numerics = numeric_path(cfg.train.device, cfg.train.precision)
    with stage_run(f"export-{kind}", cfg, ("export", "langevin")):
        mlflow.set_tags({"device": str(numerics.device), "precision": numerics.precision})
        start = time.perf_counter()
        try:
            tables = encode_splits(
                trained.model, datasets, langevin=cfg.export_langevin.inherit_sizes(trained.langevin), chains=cfg.export.chains,
                batch_size=cfg.export.batch_size, seed=cfg.export.seed, numerics=numerics, desc=f"export {kind}",
            )
        except TrainingError as err:  # a diverged chain or unusable latents: say which model, keep the old latents
            raise TrainingError(f"{model_dir(kind)}: {err}; {latents_dir(kind)} left as it was") from None
        mlflow.log_metric("seconds", time.perf_counter() - start)
        with atomic_dir(latents_dir(kind)) as out:
            for name, table in tables.items():
                write_latents(table, out / f"{name}.parquet")
                mlflow.log_metric(f"{name}_sentences", len(table))
