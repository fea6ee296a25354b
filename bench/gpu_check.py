"""The GPU check (issue 15): every CUDA path of shortrun and its speed, in one command.

    python -m bench.gpu_check                                  # CUDA, paper sizes (`make gpu-check`)
    python -m bench.gpu_check --device cpu --sizes tiny        # the same parts on CPU, in well under a minute

Parts, in order (figures go to one JSON file, --out; a short table is printed):
1. tests:       the cuda-marked tests (CUDA_TESTS), run by pytest in a subprocess (they skip without a GPU);
2. throughput:  bench.train_throughput's timed training steps of SRI, VAE and LM per size: tokens/s, step ms,
                peak memory, and the SRI step's achieved TFLOP/s beside a same-shape bf16 matmul of the output
                layer timed in the same run (their ratio; target >= 0.5 on the GPU); where bfloat16 is fast (CUDA, AMX CPUs) also the
                SRI step with train.precision bfloat16 (`sri_bfloat16`);
3. training:    two epochs of the training preset (yelp-paper; tiny) on its real corpus, prepared in memory with
                the prepare stage's library functions; validation NLL and wall seconds per epoch (target on
                the GPU: <= 30 s per yelp-paper epoch); where bfloat16 is fast the same again with train.precision
                bfloat16 and the change of the last validation NLL (target: within 0.05 nats);
4. evaluation:  bench.evaluate_speed's SRI estimators, (a) change of variables (batched Jacobian) and (b) Laplace,
                on the model part 3 trained and its validation sentences.

Needs only PyTorch and the packages of requirements.lock, none of the pipeline's servers (docs/gpu.md).
The entry point is deliberately not called main(): `python -m bench` runs every module's main(), and
this check belongs on a GPU, not in the CPU benchmark run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import shortrun  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
import torch
from torch import nn

from bench.evaluate_speed import sri_part
from bench.train_throughput import KINDS, SIZES, matmul_gflops, random_batches, sri_step_flops, time_training
from shortrun.config import DataConfig, PipelineConfig
from shortrun.data.batching import Batch, collate
from shortrun.data.preparation import build_corpus
from shortrun.data.vocab import Vocab
from shortrun.errors import ConfigError
from shortrun.io import write_json
from shortrun.model import Generator
from shortrun.numerics import bfloat16_is_fast
from shortrun.params import build_config, data_root
from shortrun.training import train_model

REPO = Path(__file__).resolve().parents[1]
CUDA_TESTS = ["tests/test_cuda_paths.py"]
DEFAULT_OUT = Path("reports/gpu_check.json")
TRAIN_EPOCHS = 2
# per --sizes: the presets whose model sizes the throughput part times, and the preset trained for two epochs
SIZE_SETS: dict[str, dict[str, Any]] = {
    "paper": {"throughput": ("yelp", "yelp-paper", "ptb-paper"), "train": "yelp-paper"},
    "tiny": {"throughput": ("tiny",), "train": "tiny"},
}
# vocabulary size and mean sentence length (words) of each throughput preset's corpus
PRESET_SHAPES = {"yelp": SIZES["yelp"], "yelp-paper": SIZES["yelp"], "ptb-paper": SIZES["ptb"],
                 "tiny": (300, SIZES["yelp"][1])}


def precisions(device: torch.device) -> tuple[str, ...]:
    """float32, then bfloat16 where the device multiplies it natively (what train.precision auto would take)."""
    return ("float32", "bfloat16") if bfloat16_is_fast(device) else ("float32",)


BFLOAT16_NLL_TOLERANCE = 0.05  # nats: bfloat16 training may move the validation NLL this much (issue 15)
EVAL_SENTENCES = {"cuda": 8, "cpu": 1}  # sentences for estimator (a); its cost is linear in them
EVAL_MIN_SECONDS = {"cuda": 5.0, "cpu": 0.0}  # (b) repeats until it has run this long


def pick_device(name: str) -> torch.device:
    """--device: cuda must exist (a one-line error otherwise)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA device here; use --device cpu for the CPU fallback")
    return torch.device(name)


def run_tests() -> dict[str, Any]:
    """The cuda-marked tests in a pytest subprocess: its exit code, summary line and seconds."""
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *CUDA_TESTS],
                          cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-300:]
    if done.returncode not in (0, 5):  # 5: nothing selected
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n", flush=True)
    return {"exit_code": done.returncode, "summary": summary, "seconds": time.perf_counter() - tic}


def step_row(cfg: PipelineConfig, kind: str, vocab: int, batches: list[Batch], device: torch.device) -> dict[str, float]:
    """bench.train_throughput's timed steps of one model kind: tokens/s, step ms, peak MiB (SRI: TFLOP/s)."""
    measured = time_training(cfg, kind, vocab, batches, device)
    row = {"tokens_per_s": measured.best(lambda batch: float(batch.lengths.sum())),
           "step_ms": 1e3 / measured.best(lambda batch: 1.0), "peak_mib": measured.peak_mib}
    if kind == "sri":
        row["tflops"] = measured.best(lambda batch: sri_step_flops(cfg, vocab, batch)) / 1e12
    return row


def throughput(preset: str, device: torch.device) -> dict[str, Any]:
    """Timed training steps of every model kind at a preset's sizes (where bfloat16 is fast also the SRI step
    under bfloat16 autocast, `sri_bfloat16`), and the bf16 matmul of its output layer, timed before and after the SRI steps."""
    vocab, mean_len = PRESET_SHAPES[preset]
    cfg = build_config(preset, {"train": {"device": device.type, "precision": "float32"}})
    batches = random_batches(cfg, vocab, mean_len, count=4)
    tokens = int(sum(int(b.lengths.sum()) for b in batches) / len(batches))
    hidden = cfg.model.hidden_dim
    matmul = matmul_gflops(tokens, hidden, vocab, device, torch.bfloat16)
    figures: dict[str, Any] = {"vocab": vocab, "hidden_dim": hidden, "steps_k": cfg.langevin.steps}
    for kind in KINDS:
        figures[kind] = step_row(cfg, kind, vocab, batches, device)
    for precision in precisions(device)[1:]:
        lower = build_config(preset, {"train": {"device": device.type, "precision": precision}})
        figures[f"sri_{precision}"] = step_row(lower, "sri", vocab, batches, device)
    matmul = max(matmul, matmul_gflops(tokens, hidden, vocab, device, torch.bfloat16))  # same load as the steps
    figures["matmul_bf16_tflops"] = matmul / 1e3
    for row in [key for key in figures if key.startswith("sri")]:
        figures[f"{row}_over_matmul"] = figures[row]["tflops"] / figures["matmul_bf16_tflops"]
    return figures


def prepared_splits(data: DataConfig, root: Path) -> tuple[Vocab, Any, Any]:
    """The vocabulary and the train and valid datasets, made in memory as the prepare stage makes them."""
    corpus = build_corpus(data, root)
    return corpus.vocab, corpus.dataset("train"), corpus.dataset("valid")


def train_recorded(cfg: PipelineConfig, vocab: Vocab, train_set: Any, valid_set: Any,
                   kind: str = "sri") -> tuple[nn.Module, dict[str, Any]]:
    """Train a model of `kind` for cfg.train.epochs, printing the validation NLL as each epoch ends."""
    epochs: list[dict[str, float]] = []
    marks = {"start": time.perf_counter(), "batch": 0.0}  # when the epoch began, when its last batch ended

    def on_batch(epoch: int, batches: int, loss: float) -> None:
        marks["batch"] = time.perf_counter()

    def on_epoch(metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        epochs.append({"epoch": int(metrics["epoch"]), "valid_nll": metrics["valid_nll"],
                       "train_nll": metrics["train_nll"], "tokens_per_s": metrics["tokens_per_s"],
                       "train_seconds": marks["batch"] - marks["start"], "seconds": now - marks["start"]})
        marks["start"] = now
        print(f"  {cfg.preset} {kind} ({cfg.train.precision}) epoch {epochs[-1]['epoch']}: valid NLL {metrics['valid_nll']:.3f}, "
              f"{epochs[-1]['train_seconds']:.1f} s training, {epochs[-1]['seconds']:.1f} s with validation", flush=True)

    outcome = train_model(kind, len(vocab), train_set, valid_set, cfg.model, cfg.langevin, cfg.train,
                          on_epoch=on_epoch, on_batch=on_batch, progress=False, max_len=cfg.data.max_len)
    figures = {"preset": cfg.preset, "model": kind, "precision": cfg.train.precision, "train_sentences": len(train_set),
               "valid_sentences": len(valid_set),
               "steps_k": cfg.langevin.steps, "epochs": epochs, "seconds": outcome.seconds}
    return outcome.model, figures


def evaluation(model: Generator, cfg: PipelineConfig, valid_set: Any, device: torch.device) -> dict[str, float]:
    """bench.evaluate_speed's SRI estimators on the trained model and the first validation sentences (without
    its per-sentence reference for (a): minutes at these sizes, and a check of the batched code, not of the GPU)."""
    ev = cfg.evaluate
    ids = [valid_set[i]["ids"] for i in range(min(ev.batch_size, len(valid_set)))]
    tokens = collate(ids).tokens.to(device)
    return sri_part(model.to(device).eval(), tokens, EVAL_SENTENCES[device.type], cfg.langevin, ev, device,
                    EVAL_MIN_SECONDS[device.type], reference=False)


def table(report: dict[str, Any]) -> list[str]:
    """The short summary table of a report."""
    parts = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in report["part_seconds"].items())
    lines = [f"GPU check on {report['device_name']} ({report['device']}, sizes {report['sizes']}, "
             f"{report['seconds']:.0f} s: {parts})", f"tests: {report['tests']['summary']}",
             f"{'size':10} {'model':5} {'tokens/s':>10} {'step ms':>8} {'TFLOP/s':>8} {'peak MiB':>9}"]
    for preset, figures in report["throughput"].items():
        for kind in [key for key in figures if isinstance(figures[key], dict)]:
            row = figures[kind]
            tflops = f"{row['tflops']:8.2f}" if "tflops" in row else " " * 8
            lines.append(f"{preset:10} {kind:5} {row['tokens_per_s']:10.0f} {row['step_ms']:8.1f} {tflops} "
                         f"{row['peak_mib']:9.0f}")
        ratios = ", ".join(f"{key[:-len('_over_matmul')]} {value:.2f}" for key, value in figures.items()
                           if key.endswith("_over_matmul"))
        lines.append(f"{preset:10} bf16 matmul {figures['matmul_bf16_tflops']:.2f} TFLOP/s; step / matmul: {ratios} "
                     "(target >= 0.5)")
    for train in [report[key] for key in ("training", "training_bfloat16") if key in report]:
        for row in train["epochs"]:
            lines.append(f"{train['preset']} ({train['precision']}) epoch {row['epoch']}: valid NLL "
                         f"{row['valid_nll']:.3f}, {row['train_seconds']:.1f} s training (target <= 30 s on the GPU), "
                         f"{row['seconds']:.1f} s with validation")
    if "bfloat16_valid_nll_change" in report:
        lines.append(f"bfloat16 training moves the last validation NLL by {report['bfloat16_valid_nll_change']:+.3f} nats "
                     f"(target within {BFLOAT16_NLL_TOLERANCE})")
    ev = report["evaluation"]
    lines.append(f"evaluation: (a) batched {ev['batched_sentences_per_s']:.2f} sentences/s, (b) Laplace "
                 f"{ev['laplace_sentences_per_s']:.1f} sentences/s, max |(b) - (a)| {ev['max_gap_nats']:.2f} nats")
    return lines


def check(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--sizes", choices=tuple(SIZE_SETS), default="paper",
                        help="paper: yelp, yelp-paper and ptb-paper sizes, yelp-paper training; tiny: the tiny preset")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the JSON file of figures (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    sizes = SIZE_SETS[args.sizes]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    report: dict[str, Any] = {"device": device.type, "device_name": name, "sizes": args.sizes, "torch": torch.__version__}
    laps = [started]

    def lap() -> float:
        """Seconds since the previous part ended."""
        laps.append(time.perf_counter())
        return laps[-1] - laps[-2]

    print(f"1/4 cuda-marked tests ({', '.join(CUDA_TESTS)})", flush=True)
    report["tests"] = run_tests()
    print(f"    {report['tests']['summary']}", flush=True)
    print("2/4 training throughput", flush=True)
    report["throughput"] = {preset: throughput(preset, device) for preset in sizes["throughput"]}
    report["part_seconds"] = {"tests": report["tests"]["seconds"], "throughput": lap() - report["tests"]["seconds"]}
    settings = {"epochs": TRAIN_EPOCHS, "device": device.type, "models": ["sri"], "precision": "float32"}
    cfg = build_config(sizes["train"], {"train": settings})
    vocab, train_set, valid_set = prepared_splits(cfg.data, data_root(REPO))
    print(f"3/4 {TRAIN_EPOCHS} epochs of {cfg.preset} ({len(train_set)} sentences, K = {cfg.langevin.steps}; "
          f"precision {', '.join(precisions(device))})", flush=True)
    model, report["training"] = train_recorded(cfg, vocab, train_set, valid_set)
    for precision in precisions(device)[1:]:
        lower = build_config(sizes["train"], {"train": {**settings, "precision": precision}})
        report[f"training_{precision}"] = train_recorded(lower, vocab, train_set, valid_set)[1]
        change = report[f"training_{precision}"]["epochs"][-1]["valid_nll"] - report["training"]["epochs"][-1]["valid_nll"]
        report[f"{precision}_valid_nll_change"] = change
    report["part_seconds"]["training"] = lap()
    print("4/4 evaluation: SRI estimators on the trained model", flush=True)
    report["evaluation"] = evaluation(model, cfg, valid_set, device)
    report["part_seconds"]["evaluation"] = lap()
    report["seconds"] = time.perf_counter() - started
    write_json(args.out, report)
    print("\n".join(table(report)), flush=True)
    print(f"figures written to {args.out}", flush=True)
    return 0 if report["tests"]["exit_code"] in (0, 5) else 1


if __name__ == "__main__":
    sys.exit(check(sys.argv[1:]))
