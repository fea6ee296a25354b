"""SRI against its baselines on one preset's data and budget: learning curves and test likelihoods.

    .venv/bin/python -m bench.model_comparison --out reports/comparison          # params.yaml's preset
    .venv/bin/python -m bench.model_comparison --set train.epochs=2 --variants lm sri-chain

Run it in a workspace whose `data/prepared` matches params.yaml (`dvc repro prepare`). Each variant
trains from the same seed on the same batches with the preset's model and budget:

    lm             the LSTM language model (exact likelihood)
    vae            the Gaussian VAE (likelihood of its decoder under the N(0, I) prior, by AIS)
    sri-endpoint   SRI, update on NLL(x | z_K) only (the paper's text)
    sri-chain      SRI, update with every chain step's gradient and dropout in the chain (the authors' code)
    lm-passes      the LM updated as sri-chain updates a model that ignores z: langevin.steps extra passes of
                   each batch with fresh dropout masks, batch-summed, before the mean one (RepeatedDropoutLM)

After every epoch the variant's validation likelihood is measured on the first --curve-sentences
validation sentences (AIS with --curve-steps distributions for latent models), against the wall-clock
seconds spent training so far. The epoch with the best validation likelihood is then scored on the
first --test-sentences test sentences with the evaluate section's AIS settings: choices on
validation, test numbers only for what was chosen. With --bdmc, each chosen latent model's AIS is also
checked by bidirectional Monte Carlo on evaluate.bdmc_sentences sentences simulated from it (the gap
between AIS's lower and upper bounds: how far the test estimate can be from the truth). Writes comparison.json, comparison.md and
curves.png to --out. Not part of `make bench` (it trains for the preset's full budget).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from shortrun.config import EvaluateConfig, PipelineConfig
from shortrun.data.batching import Batch, make_batches
from shortrun.data.prepared import load_split, load_vocab
from shortrun.data.vocab import Vocab
from shortrun.evaluation import ais, bdmc
from shortrun.evaluation.estimators import Settings
from shortrun.evaluation.importance import Estimate
from shortrun.evaluation.samples import loop_share, prior_samples
from shortrun.model import LanguageModel, latent_generator
from shortrun.objectives import LMObjective, Objective, StepContext, StepOutput
from shortrun.params import PARAMS_FILE, apply_overrides, build_config, read_params
from shortrun.paths import PREPARED
from shortrun.training import Trainer


class RepeatedDropoutLM(LMObjective):
    """The control for sri-chain's gain over the LM: the same update without a latent variable.

    Under the authors' rule a generator whose decoder ignores z is updated by K batch-summed NLL gradients,
    each with its own dropout masks, plus the batch mean's; this objective gives the LM exactly that, so a
    gap between sri-chain and lm-passes is what z adds and a gap between lm-passes and lm is what the
    repeated dropout passes add.
    """

    def __init__(self, passes: int) -> None:
        self.passes = passes

    def train_step(self, model: LanguageModel, batch: Batch, ctx: StepContext) -> StepOutput:
        for _ in range(self.passes):
            model.sentence_nll(batch.tokens).sum().backward()  # adds into .grad, as the chain's steps do
        return super().train_step(model, batch, ctx)


@dataclass(frozen=True)
class Variant:
    """A model kind, the config changes that make the variant, and the objective where the kind's own is not it."""

    kind: str
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    objective: Callable[[PipelineConfig], Objective] | None = None


VARIANTS: dict[str, Variant] = {
    "lm": Variant("lm"),
    "vae": Variant("vae"),
    "sri-endpoint": Variant("sri", {"train": {"chain_gradients": "endpoint"}, "langevin": {"chain_dropout": False}}),
    "sri-chain": Variant("sri", {"train": {"chain_gradients": "chain"}, "langevin": {"chain_dropout": True}}),
    "lm-passes": Variant("lm", objective=lambda cfg: RepeatedDropoutLM(cfg.langevin.steps)),
}
DEFAULT_VARIANTS = ("lm", "vae", "sri-endpoint", "sri-chain")


@dataclass
class Curve:
    """One variant's training: (seconds, epoch, validation NLL) points and its best epoch's model."""

    name: str
    kind: str
    cfg: PipelineConfig
    points: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    best_nll: float = float("inf")
    best_epoch: int = 0
    model: nn.Module | None = None


def variant_config(base: PipelineConfig, name: str) -> PipelineConfig:
    """The base config with the variant's own settings."""
    updates = {section: getattr(base, section).model_copy(update=values)
               for section, values in VARIANTS[name].changes.items()}
    return base.model_copy(update=updates)


def sentence_nll(model: nn.Module, sentences: Any, cfg: PipelineConfig, evaluate: EvaluateConfig) -> Estimate:
    """Per-sentence log-likelihood estimates: exact for the LM, AIS for latent models (fixed seed)."""
    settings = Settings(evaluate=evaluate, langevin=cfg.langevin, rng=torch.Generator().manual_seed(evaluate.seed))
    parts = []
    model.eval()
    for batch in make_batches(sentences, evaluate.batch_size, shuffle=False):
        if latent_generator(model) is None:
            with torch.no_grad():
                parts.append(Estimate.exact(-model.sentence_nll(batch.tokens).double()))
        else:
            parts.append(ais.estimate(model, batch, settings))
    return Estimate.cat(parts)


def train_variant(name: str, base: PipelineConfig, data: dict[str, Any], args: argparse.Namespace) -> Curve:
    """Train one variant, measuring the validation likelihood after each epoch (not counted as training time)."""
    cfg = variant_config(base, name)
    variant = VARIANTS[name]
    curve = Curve(name=name, kind=variant.kind, cfg=cfg)
    curve_eval = cfg.evaluate.model_copy(update={"ais_steps": args.curve_steps, "ais_chains": 2})
    trainer = Trainer(curve.kind, data["vocab_size"], cfg.model, cfg.langevin, cfg.train, progress=False,
                      max_len=cfg.data.max_len)
    if variant.objective is not None:
        trainer.objective = variant.objective(cfg)
    clock = {"spent": 0.0, "since": time.perf_counter()}

    def on_epoch(metrics: dict[str, float]) -> None:
        clock["spent"] += time.perf_counter() - clock["since"]
        est = sentence_nll(trainer.model, data["curve"], cfg, curve_eval)
        nll, error = mean_nll(est)
        point = {"seconds": round(clock["spent"], 3), "epoch": int(metrics["epoch"]), "valid_nll": nll, "valid_nll_se": error}
        sizes = [metrics[f"step_size_{k}"] for k in range(cfg.langevin.steps) if f"step_size_{k}" in metrics]
        if sizes:  # langevin.learn_steps: the chain's learned sizes at the end of the epoch
            point["step_sizes"] = [round(size, 4) for size in sizes]
        curve.points.append(point)
        print(f"{name:13s} epoch {int(metrics['epoch'])}: {clock['spent']:7.1f} s trained, "
              f"valid NLL {nll:.3f} ± {error:.3f}", flush=True)
        if nll < curve.best_nll:
            curve.best_nll, curve.best_epoch = nll, int(metrics["epoch"])
            curve.best_state = copy.deepcopy(trainer.model.state_dict())
        clock["since"] = time.perf_counter()

    trainer.on_epoch = on_epoch
    trainer.run(data["train"], data["valid"])
    trainer.model.load_state_dict(curve.best_state)
    curve.model = trainer.model.eval()
    return curve


def bdmc_check(model: nn.Module, cfg: PipelineConfig) -> dict[str, float]:
    """BDMC with the evaluate section's AIS settings on sentences simulated from the model (shortrun.evaluation.bdmc)."""
    settings = Settings(evaluate=cfg.evaluate, langevin=cfg.langevin, rng=torch.Generator().manual_seed(cfg.evaluate.seed))
    return bdmc.check(model, settings, cfg.data.max_len).get("bdmc", {"sentences": 0})


def prior_health(model: nn.Module, vocab: Vocab, cfg: PipelineConfig, num: int) -> dict[str, Any]:
    """Greedy decodings of `num` draws z ~ N(0, I): the share of degenerate loops (a prior hole) and a few examples."""
    texts = prior_samples(model, latent_generator(model), vocab, num, cfg.data.max_len,
                          torch.Generator().manual_seed(cfg.evaluate.seed))
    return {"samples": num, "loop_share": loop_share(texts, cfg.data.max_len),
            "mean_words": sum(len(t.split()) for t in texts) / num, "examples": texts[:10]}


def mean_nll(est: Estimate) -> tuple[float, float]:
    """Mean NLL per sentence and its standard error (from the per-sentence Monte-Carlo errors)."""
    n = len(est.std_error)
    return float(-est.log_likelihood.mean()), float(est.std_error.pow(2).sum().sqrt() / n)


def plot_curves(rows: dict[str, Any], path: Path) -> None:
    """Validation NLL against training seconds, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in rows.items():
        ax.plot([p["seconds"] for p in row["curve"]], [p["valid_nll"] for p in row["curve"]], marker="o", label=name)
    ax.set_xlabel("training seconds (validation scoring excluded)")
    ax.set_ylabel("validation NLL per sentence (nats)")
    ax.set_title("exact for lm, AIS for latent models")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(rows: dict[str, Any], header: str) -> str:
    """The comparison as a markdown table under a line saying how it was measured."""
    lines = [header, "", "| variant | best epoch | valid NLL | test NLL | BDMC gap | prior loops | training s |",
             "|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        check, prior = row.get("bdmc", {}), row.get("prior")
        gap = f"{check['gap']:.2f} ± {check['gap_se']:.2f} ({check['sentences']})" if check.get("sentences") else "-"
        loops = f"{prior['loop_share']:.1%} of {prior['samples']}" if prior else "-"
        lines.append(f"| {name} | {row['best_epoch']} | {row['valid_nll']:.2f} | {row['test_nll']:.2f} ± "
                     f"{row['test_nll_se']:.2f} | {gap} | {loops} | {row['curve'][-1]['seconds']:.0f} |")
    for name, row in rows.items():
        if "prior" in row:
            lines += ["", f"{name}: sentences decoded from prior draws", ""] + [f"- {t}" for t in row["prior"]["examples"]]
    return "\n".join(lines) + "\n"


def write_outputs(rows: dict[str, Any], header: str, out: Path) -> None:
    """comparison.json (with the header), comparison.md and curves.png in `out`; the table is printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps({"header": header, "variants": rows}, indent=2))
    (out / "comparison.md").write_text(report(rows, header), encoding="utf-8")
    plot_curves(rows, out / "curves.png")
    print(report(rows, header))


def merge(folders: list[str], out: Path) -> None:
    """One table and one plot from comparisons run separately (e.g. two variants per process, in parallel)."""
    parts = [json.loads((Path(folder) / "comparison.json").read_text()) for folder in folders]
    headers = {part["header"] for part in parts}
    if len(headers) != 1:
        raise SystemExit(f"comparisons measured differently, not merged: {sorted(headers)}")
    write_outputs({name: row for part in parts for name, row in part["variants"].items()}, headers.pop(), out)


def plot_stored(specs: list[str], out: Path) -> None:
    """One plot of validation curves kept in comparison.json files, each spec `FILE[:VARIANT]=LABEL`
    (the variant may be left out where the file holds one): runs made apart, seen side by side."""
    rows = {}
    for spec in specs:
        source, sep, label = spec.partition("=")
        path, _, variant = source.partition(":")
        if not sep or not label:
            raise SystemExit(f"--curves {spec!r}: expected FILE[:VARIANT]=LABEL")
        if not Path(path).is_file():
            raise SystemExit(f"--curves {spec!r}: no file {path}")
        variants = json.loads(Path(path).read_text())["variants"]
        if not variant and len(variants) != 1:
            raise SystemExit(f"--curves {spec!r}: {path} holds {sorted(variants)}; name one as {path}:VARIANT")
        variant = variant or next(iter(variants))
        if variant not in variants:
            raise SystemExit(f"--curves {spec!r}: {path} holds {sorted(variants)}, not {variant!r}")
        rows[label] = variants[variant]
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(rows, out)
    print(f"{len(rows)} curves plotted into {out}")


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default=PARAMS_FILE)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--prepared", default=str(PREPARED))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--curve-sentences", type=int, default=50)
    parser.add_argument("--curve-steps", type=int, default=50)
    parser.add_argument("--test-sentences", type=int, default=100)
    parser.add_argument("--bdmc", action="store_true", help="check each chosen latent model's AIS by BDMC")
    parser.add_argument("--prior-samples", type=int, default=0, metavar="N",
                        help="decode N prior draws of each chosen latent model; report the share of loops")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="only merge the comparisons in these folders")
    parser.add_argument("--curves", nargs="+", metavar="FILE[:VARIANT]=LABEL",
                        help="only plot these stored validation curves into --out, a .png path")
    parser.add_argument("--out", default="reports/comparison")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.curves:
        return plot_stored(args.curves, Path(args.out))
    raw = apply_overrides(read_params(args.params), args.overrides)
    base = build_config(raw["preset"], {k: v for k, v in raw.items() if k != "preset"})
    base = base.model_copy(update={"train": base.train.model_copy(update={"device": "cpu"})})
    valid, test = load_split("valid", args.prepared), load_split("test", args.prepared)
    vocab = load_vocab(args.prepared)
    data = {"vocab_size": len(vocab), "train": load_split("train", args.prepared),
            "valid": valid, "curve": valid.select(range(min(args.curve_sentences, len(valid)))),
            "test": test.select(range(min(args.test_sentences, len(test))))}
    rows = {}
    for name in args.variants:
        curve = train_variant(name, base, data, args)
        test_nll, test_se = mean_nll(sentence_nll(curve.model, data["test"], curve.cfg, curve.cfg.evaluate))
        rows[name] = {"curve": curve.points, "best_epoch": curve.best_epoch, "valid_nll": curve.best_nll,
                      "test_nll": test_nll, "test_nll_se": test_se}
        if args.bdmc and latent_generator(curve.model) is not None:
            rows[name]["bdmc"] = bdmc_check(curve.model, curve.cfg)
        if args.prior_samples and latent_generator(curve.model) is not None:
            rows[name]["prior"] = prior_health(curve.model, vocab, curve.cfg, args.prior_samples)
    header = (f"preset `{base.preset}`, {base.train.epochs} epochs, K = {base.langevin.steps}; validation: first "
              f"{len(data['curve'])} sentences, AIS {args.curve_steps} distributions x 2 chains; test: first "
              f"{len(data['test'])} sentences, AIS {base.evaluate.ais_steps} distributions x {base.evaluate.ais_chains} chains")
    write_outputs(rows, header, Path(args.out))


if __name__ == "__main__":
    run()
