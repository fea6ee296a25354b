"""Typed configuration for every stage.

One `PipelineConfig` holds all settings. It is built from a named preset
(`shortrun.presets`) with the sections of `params.yaml` merged on top, so a
wrong key or a value of the wrong type fails early with the key's dotted name.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

ModelKind = Literal["sri", "vae", "lm"]
LATENT_MODELS: tuple[ModelKind, ...] = ("sri", "vae")


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where a corpus comes from and how it is turned into prepared splits."""

    root: Optional[str] = Field(
        None, description="folder holding the corpus folders (short_yelp/, ptb/); relative to the workspace. DVC hashes "
                          "<root>/<corpus>/, so `shortrun params` writes it; None (a hand-written params file) finds "
                          "it as shortrun.params.data_root does"
    )
    corpus: str = Field(description="short name used in reports, e.g. short_yelp or ptb; also the corpus's folder under root")
    hub_id: Optional[str] = Field(None, description="Hugging Face hub dataset id; used instead of local files when set")
    train_file: str = Field(description="path under the root, inside the corpus folder (e.g. short_yelp/train.txt)")
    valid_file: str
    test_file: str
    labeled: bool = Field(False, description="lines are LABEL<TAB>sentence")
    labels: list[str] = Field(default_factory=list, description="the expected label set of a labeled corpus")
    label_budget_files: dict[int, str] = Field(
        default_factory=dict, description="labeled training subsets by number of labels (classifier budgets)"
    )
    vocab_file: Optional[str] = Field(None, description="existing vocabulary file; built from train when absent")
    max_vocab: Optional[int] = Field(None, gt=4, description="vocabulary size cap, specials included")
    min_freq: PositiveInt = 1
    min_len: PositiveInt = 1
    max_len: PositiveInt = 100
    max_train: Optional[PositiveInt] = Field(None, description="keep only the first N training sentences")
    max_valid: Optional[PositiveInt] = None
    max_test: Optional[PositiveInt] = None
    on_malformed: Literal["skip", "fail"] = Field("fail", description="skip and count, or fail, on a malformed line")

    @model_validator(mode="after")
    def _labels_for_labeled(self) -> "DataConfig":
        if self.labeled and not self.labels:
            raise ValueError("data.labels: a labeled corpus needs its label set, e.g. ['0', '1']")
        if self.min_len > self.max_len:
            raise ValueError(f"data.min_len ({self.min_len}) is larger than data.max_len ({self.max_len})")
        return self


class ModelConfig(Section):
    """Sizes of the generator p(x|z) (shared by SRI, VAE decoder and LM) and the VAE encoder."""

    latent_dim: PositiveInt = 32
    emb_dim: PositiveInt = 512
    hidden_dim: PositiveInt = 1024
    encoder_hidden_dim: PositiveInt = 1024
    dropout_emb: float = Field(0.5, ge=0.0, lt=1.0)
    dropout_out: float = Field(0.5, ge=0.0, lt=1.0)


class LangevinConfig(Section):
    """Short-run Langevin dynamics initialised from the prior."""

    steps: PositiveInt = Field(20, description="K, number of Langevin steps")
    step_size: float = Field(0.8, gt=0.0, description="s_0, the first step size")
    final_step_size: float = Field(0.05, gt=0.0, description="last step size of the linear and paper schedules")
    schedule: Literal["constant", "linear", "paper"] = Field(
        "paper", description="paper: the reference's decaying steps 0.8 ... 0.05, stretched to K steps"
    )
    temperature: float = Field(0.2, ge=0.0, description="noise temperature T: reached by SRI training at the end of "
                                                     "its ramp, and used by every chain outside training")
    temperature_start: float = Field(0.05, ge=0.0, description="SRI training: noise temperature at the first epoch")
    temperature_hold_epochs: int = Field(1, ge=0, description="SRI training: first epochs at temperature_start")
    temperature_ramp_epochs: Optional[PositiveInt] = Field(
        None, description="SRI training: epochs after the hold whose temperature rises linearly, the last reaching "
                          "temperature; None ramps over every remaining epoch"
    )
    noise: bool = Field(True, description="False runs the noise-free (gradient descent) chain")
    chain_dropout: bool = Field(
        False, description="SRI training: dropout stays on in the chain of a training step, a fresh mask per step (the "
                           "authors' code); chains of a model in eval mode (validation, evaluation, export) never use it"
    )
    learned_sizes: Optional[list[float]] = Field(
        None, description="K per-step sizes that replace the schedule; SRI training with learn_steps writes the "
                          "learned ones into the model's model_config.json (see shortrun.step_learning)"
    )
    learn_steps: bool = Field(
        False, description="SRI training: learn the K step sizes (from the schedule) by maximising the short-run "
                           "chain's ELBO; export, evaluation and serving then use the learned chain"
    )
    learn_steps_lr: float = Field(0.05, gt=0.0, description="Adam learning rate of the log step sizes (about the "
                                                            "most a log size moves per update)")
    learn_steps_every: PositiveInt = Field(50, description="one step-size update every N training batches")
    learn_steps_sentences: PositiveInt = Field(
        2, description="sentences of the batch (one chain each) per update; an update costs about 3 latent_dim "
                       "times a training chain on them (the chain's Jacobian, differentiated)"
    )

    @model_validator(mode="after")
    def _sizes_fit_the_chain(self) -> "LangevinConfig":
        sizes = self.learned_sizes
        if sizes is not None and len(sizes) != self.steps:
            raise ValueError(f"langevin.learned_sizes: {len(sizes)} sizes for a chain of {self.steps} steps")
        if sizes is not None and not all(0.0 < s < math.inf for s in sizes):
            raise ValueError(f"langevin.learned_sizes: every size must be positive and finite, got {sizes}")
        return self

    def inherit_sizes(self, trained: "LangevinConfig") -> "LangevinConfig":
        """This chain with the step sizes a model learned in training (`trained`, its model_config.json chain)
        when it runs that chain (same K and schedule settings) and sets no sizes of its own; else unchanged.

        So an export or evaluation chain that only changes e.g. the temperature or the noise uses the
        learned sizes, and one with its own schedule or K (the presets' feature chains) keeps its own.
        """
        schedule = ("steps", "schedule", "step_size", "final_step_size")
        if self.learned_sizes is not None or trained.learned_sizes is None:
            return self
        if any(getattr(self, key) != getattr(trained, key) for key in schedule):
            return self
        return self.model_copy(update={"learned_sizes": list(trained.learned_sizes)})


class TrainConfig(Section):
    """Optimisation settings shared by every model kind."""

    models: list[ModelKind] = Field(default_factory=lambda: ["sri", "vae", "lm"])
    chain_gradients: Literal["endpoint", "chain"] = Field(
        "endpoint", description="SRI update: endpoint = the gradient of the batch-mean NLL(x|z_K) (the paper's text); "
                                "chain = that plus the parameter gradients of the batch-summed NLL(x|z_k) at every chain "
                                "step k = 0 .. K-1 (the authors' code; see shortrun.objectives)"
    )
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: float = Field(1e-3, gt=0.0)
    clip_grad: float = Field(5.0, gt=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="matrix products of training, validation chains and export chains: bfloat16 autocast "
                            "(float32 weights, optimizer and reported likelihoods) or float32; auto takes bfloat16 "
                            "where the device multiplies it natively (CUDA, CPUs with AMX), float32 elsewhere "
                            "(shortrun.numerics); evaluation's likelihoods are always float32"
    )
    kl_anneal_steps: int = Field(10000, ge=0, description="VAE: steps over which the KL weight rises from 0 to 1")
    free_bits: float = Field(0.0, ge=0.0, description="VAE: free-bits floor per latent dimension (0 turns it off)")
    max_batches_per_epoch: Optional[PositiveInt] = Field(None, description="cap for quick runs")
    valid_sentences: Optional[PositiveInt] = Field(
        None, description="first N validation sentences for the per-epoch validation (SRI runs two chains per sentence); None uses all"
    )
    health_samples: int = Field(
        200, ge=0, description="latent models: sentences decoded greedily from z ~ N(0, I) after each epoch for the "
                               "prior-sample health metrics (share at the maximum length, distinct n-grams); 0 skips them"
    )


class EvaluateConfig(Section):
    """Size of the evaluation: how many test sentences and Monte-Carlo samples (defaults: minutes on CPU for yelp)."""

    num_sentences: Optional[PositiveInt] = Field(200, description="first N test sentences; None uses all")
    importance_samples: int = Field(32, ge=2, description="importance samples per sentence (VAE, SRI estimator b)")
    jacobian_sentences: Optional[PositiveInt] = Field(
        10, description="sentences for the change-of-variables estimator (it is the costly one)"
    )
    jacobian_samples: int = Field(4, ge=2, description="importance samples per sentence for the change-of-variables estimator")
    jacobian_batch_size: PositiveInt = Field(
        4, description="chains per batched Jacobian pass; memory grows with latent_dim x length x vocabulary per chain"
    )
    proposal_chains: int = Field(4, ge=2, description="short-run chains per sentence to fit the cheap proposal")
    k_values: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20, 40], description="K for the NLL-vs-K plot")
    k_sentences: Optional[PositiveInt] = Field(50, description="first N test sentences for the NLL-vs-K sweep")
    ais_sentences: Optional[PositiveInt] = Field(
        100, description="first N test sentences for annealed importance sampling, the reported estimate of latent models"
    )
    ais_steps: PositiveInt = Field(100, description="AIS: intermediate distributions from the prior to the posterior")
    ais_chains: int = Field(4, ge=2, description="AIS: independent chains per sentence (their spread gives the error)")
    ais_leapfrog: PositiveInt = Field(1, description="AIS: leapfrog steps per HMC transition")
    ais_step_size: float = Field(0.1, gt=0.0, description="AIS: first HMC step size, then adapted per sentence")
    ais_schedule: Literal["sigmoid", "linear"] = Field("sigmoid", description="AIS: spacing of the betas")
    bdmc_sentences: int = Field(
        10, ge=0, description="sentences simulated from each latent model for BDMC, the check of AIS's tightness; 0 skips it"
    )
    batch_size: PositiveInt = 64
    num_prior_samples: PositiveInt = 10
    health_samples: PositiveInt = Field(
        200, description="latent models: prior samples (greedy from z ~ N(0, I)) for the share at the maximum length "
                         "and distinct n-grams"
    )
    num_reconstructions: PositiveInt = 10
    num_interpolations: PositiveInt = 3
    interpolation_steps: PositiveInt = 5
    seed: int = 0


class ExportConfig(Section):
    """Latent-feature export."""

    models: list[Literal["sri", "vae"]] = Field(default_factory=lambda: list(LATENT_MODELS))
    chains: PositiveInt = Field(5, description="N short-run chains averaged per sentence (SRI)")
    batch_size: PositiveInt = 256
    seed: int = 0
    langevin: dict[str, Any] = Field(
        default_factory=dict, description="the feature chain's settings that differ from the top-level langevin "
                                          "section (e.g. more steps, no noise), keyed like it; every other key is the "
                                          "training chain's (PipelineConfig.export_langevin); a model's learned step "
                                          "sizes carry over unless this sets its own K or schedule "
                                          "(LangevinConfig.inherit_sizes)"
    )

    @field_validator("langevin", mode="before")
    @classmethod
    def _nothing_is_no_change(cls, changes: Any) -> Any:
        return {} if changes is None else changes  # params files written before this was a mapping say null

    @field_validator("langevin")
    @classmethod
    def _chain_keys(cls, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(LangevinConfig.model_fields))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a langevin key; expected some of {', '.join(LangevinConfig.model_fields)}")
        try:
            LangevinConfig(**changes)
        except ValidationError as err:
            first = err.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']} (got {first.get('input')!r})") from None
        return changes


class ClassifyConfig(Section):
    """Downstream classifiers on exported latents."""

    classifier: Literal["logreg", "mlp"] = "logreg"
    budgets: list[PositiveInt] = Field(default_factory=lambda: [100, 500, 1000, 2000, 10000])
    seeds: PositiveInt = Field(5, description="resamples per budget where the budget allows it")
    c_grid: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0])
    gmm_components: Optional[PositiveInt] = Field(None, description="None uses the number of labels")


class HeldOutConfig(Section):
    """The generator's promotion gate: importance-sampled NLL of the first validation sentences."""

    sentences: PositiveInt = Field(100, description="first N validation sentences; versions scored on other ones never compete")
    importance_samples: int = Field(16, ge=2, description="importance samples per sentence (Laplace proposal)")
    proposal_chains: int = Field(4, ge=2, description="short-run chains per sentence that centre the proposal")
    batch_size: PositiveInt = 50
    seed: int = 0


class RegistryConfig(Section):
    """Model Registry names (the corpus is appended: one champion per corpus) and the promotion gate."""

    generator_name: str = Field("shortrun-generator", description="registered as <generator_name>-<data.corpus>")
    classifier_name: str = Field("shortrun-classifier", description="registered as <classifier_name>-<data.corpus>")
    heldout: HeldOutConfig = Field(default_factory=HeldOutConfig)


class PipelineConfig(Section):
    """Everything one pipeline run needs."""

    preset: str
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    langevin: LangevinConfig = Field(default_factory=LangevinConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @property
    def export_langevin(self) -> LangevinConfig:
        """The chain that makes latent features: the training chain with export.langevin's changes."""
        return LangevinConfig(**{**self.langevin.model_dump(), **self.export.langevin})
