"""Typed configuration for every stage.

One `PipelineConfig` holds all settings. It is built from a named preset
(`shortrun.presets`) with the sections of `params.yaml` merged on top, so a
wrong key or a value of the wrong type fails early with the key's dotted name.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

ModelKind = Literal["sri", "vae", "lm"]
LATENT_MODELS: tuple[ModelKind, ...] = ("sri", "vae")


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where a corpus comes from and how it is turned into prepared splits."""

    corpus: str = Field(description="short name used in reports, e.g. short_yelp or ptb")
    hub_id: Optional[str] = Field(None, description="Hugging Face hub dataset id; used instead of local files when set")
    train_file: str = Field(description="path relative to the data root (or absolute)")
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
    temperature: float = Field(0.2, ge=0.0, description="noise temperature T used outside training")
    noise: bool = Field(True, description="False runs the noise-free (gradient descent) chain")


class TrainConfig(Section):
    """Optimisation settings shared by every model kind."""

    models: list[ModelKind] = Field(default_factory=lambda: ["sri", "vae", "lm"])
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: float = Field(1e-3, gt=0.0)
    clip_grad: float = Field(5.0, gt=0.0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    temperature_start: float = Field(0.05, ge=0.0, description="SRI noise temperature at the first epoch")
    temperature_end: float = Field(0.2, ge=0.0, description="SRI noise temperature reached at the end of the ramp")
    temperature_hold_epochs: int = Field(1, ge=0, description="SRI: first epochs at temperature_start")
    temperature_ramp_epochs: Optional[PositiveInt] = Field(
        None, description="SRI: epochs after the hold whose temperature rises linearly, the last reaching "
                          "temperature_end; None ramps over every remaining epoch"
    )
    kl_anneal_steps: int = Field(10000, ge=0, description="VAE: steps over which the KL weight rises from 0 to 1")
    free_bits: float = Field(0.0, ge=0.0, description="VAE: free-bits floor per latent dimension (0 turns it off)")
    max_batches_per_epoch: Optional[PositiveInt] = Field(None, description="cap for quick runs")
    valid_sentences: Optional[PositiveInt] = Field(
        None, description="first N validation sentences for the per-epoch validation (SRI runs two chains per sentence); None uses all"
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
    batch_size: PositiveInt = 64
    num_prior_samples: PositiveInt = 10
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
    langevin: Optional[LangevinConfig] = Field(
        None, description="short-run settings for features only (e.g. more steps, no noise); keys not set here "
                          "take the top-level langevin section's values (see PipelineConfig.export_langevin)"
    )


class ClassifyConfig(Section):
    """Downstream classifiers on exported latents."""

    classifier: Literal["logreg", "mlp"] = "logreg"
    budgets: list[PositiveInt] = Field(default_factory=lambda: [100, 500, 1000, 2000, 10000])
    seeds: PositiveInt = Field(5, description="resamples per budget where the budget allows it")
    c_grid: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0])
    gmm_components: Optional[PositiveInt] = Field(None, description="None uses the number of labels")


class RegistryConfig(Section):
    """Model Registry names and the promotion gate."""

    generator_name: str = "shortrun-generator"
    classifier_name: str = "shortrun-classifier"
    gate_metric: str = Field("valid_nll", description="lower is better; the champion moves only on improvement")


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
        """The chain that makes latent features: export.langevin when set, else the training chain."""
        return self.export.langevin or self.langevin
