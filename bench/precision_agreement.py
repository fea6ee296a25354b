"""Same answers in bfloat16: a preset's models trained twice on its real corpus, float32 and bfloat16
autocast (train.precision), with the validation NLL of both at every epoch and their difference
(target: within 0.05 nats per sentence at the same epoch, issue 16) beside the training speed.

    python -m bench.precision_agreement                              # yelp, SRI, the preset's epochs
    python -m bench.precision_agreement --preset tiny --models sri vae lm --epochs 2

Only where the machine multiplies bfloat16 natively (shortrun.numerics): elsewhere bfloat16 is emulated
and `auto` never takes it, so there is nothing to compare. The data are prepared in memory as the prepare
stage prepares them; figures go to --out (JSON) and a table is printed. Not part of `python -m bench` (it
trains for the preset's budget).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import shortrun  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)

from bench.gpu_check import prepared_splits, train_recorded
from shortrun.io import write_json
from shortrun.numerics import bfloat16_is_fast, resolve_device
from shortrun.params import build_config, data_root

PATHS = ("float32", "bfloat16")
TOLERANCE = 0.05  # nats per sentence
DEFAULT_OUT = Path("docs/results/precision_agreement_{preset}.json")


def compare(preset: str, models: list[str], epochs: int | None) -> dict[str, Any]:
    """{model: {"float32": record, "bfloat16": record, "largest_difference": nats}} (records: train_recorded's)."""
    figures: dict[str, Any] = {}
    vocab, train_set, valid_set = prepared_splits(build_config(preset).data, data_root())  # once: the same data for all
    for kind in models:
        runs = {}
        for path in PATHS:
            train = {"precision": path, "device": "cpu", **({"epochs": epochs} if epochs else {})}
            runs[path] = train_recorded(build_config(preset, {"train": train}), vocab, train_set, valid_set, kind)[1]
        pairs = zip(runs["float32"]["epochs"], runs["bfloat16"]["epochs"])
        runs["differences"] = [lower["valid_nll"] - exact["valid_nll"] for exact, lower in pairs]
        runs["largest_difference"] = max(abs(d) for d in runs["differences"])
        figures[kind] = runs
    return figures


def table(figures: dict[str, Any]) -> list[str]:
    lines = [f"{'model':5} {'epoch':>5} {'float32':>9} {'bfloat16':>9} {'diff':>7} {'f32 tok/s':>10} {'bf16 tok/s':>10}"]
    for kind, runs in figures.items():
        for exact, lower, diff in zip(runs["float32"]["epochs"], runs["bfloat16"]["epochs"], runs["differences"]):
            lines.append(f"{kind:5} {exact['epoch']:5d} {exact['valid_nll']:9.3f} {lower['valid_nll']:9.3f} {diff:+7.3f} "
                         f"{exact['tokens_per_s']:10.0f} {lower['tokens_per_s']:10.0f}")
        verdict = "within" if runs["largest_difference"] < TOLERANCE else "BEYOND"
        lines.append(f"{kind}: largest |difference| {runs['largest_difference']:.3f} nats, {verdict} {TOLERANCE}")
    return lines


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yelp")
    parser.add_argument("--models", nargs="+", default=["sri"], choices=("sri", "vae", "lm"))
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--out", type=Path, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv or [])
    if not bfloat16_is_fast(resolve_device("cpu")):
        print("this CPU has no bfloat16 matrix units: train.precision auto is float32 here, nothing to compare", flush=True)
        return
    figures = compare(args.preset, args.models, args.epochs)
    out = args.out or Path(str(DEFAULT_OUT).format(preset=args.preset))
    write_json(out, {"preset": args.preset, "tolerance": TOLERANCE, "models": figures})
    print("\n".join(table(figures)), flush=True)
    print(f"figures: {out}", flush=True)


if __name__ == "__main__":
    run(sys.argv[1:])
