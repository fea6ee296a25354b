"""Child process of bench.against_revision: SRI training steps timed with the code of one source tree.

    python bench/_revision_child.py TREE PRESET PRECISION STEPS SECTIONS_JSON

Only the standard library is imported at the top: TREE goes first on sys.path, so that `shortrun` and
`bench.train_throughput` come from it, not from the tree that launched this file. It uses only what every
revision since the benchmark's baseline has: build_config(preset, sections), the training rule's settings
(train.chain_gradients, langevin.chain_dropout), and bench.train_throughput's SIZES, random_batches,
ready_trainer and timed_step. SECTIONS_JSON holds params sections laid over the preset (the parent passes its
own tree's training rule, so that every tree does the same work). Prints one JSON line: the training rule, the
precision path taken, a digest of the batches (the parent checks that every tree timed the same rule on the
same batches) and the (tokens, seconds) of each timed step.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

NOISE_TEMPERATURE = 1.0  # the scale of the chain's noise changes none of the work


def time_steps(tree: str, preset: str, precision: str, steps: int, sections: dict) -> dict:
    sys.path.insert(0, tree)
    import torch

    import shortrun
    from bench.train_throughput import SIZES, random_batches, ready_trainer, timed_step
    from shortrun.config import TrainConfig
    from shortrun.params import build_config

    if not Path(shortrun.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"shortrun was imported from {shortrun.__file__}, not from {tree}")

    train = {**sections.get("train", {}), "device": "cpu"}
    if "precision" in TrainConfig.model_fields:
        train["precision"] = precision
    elif precision != "float32":
        raise SystemExit(f"{tree}: this revision has no train.precision (it trains in float32 only), "
                         f"so it cannot take {precision!r}")
    cfg = build_config(preset, {**sections, "train": train})
    vocab, mean_len = SIZES[preset]
    batches = random_batches(cfg, vocab, mean_len, count=4)
    digest = hashlib.sha256(b"".join(batch.tokens.numpy().tobytes() for batch in batches)).hexdigest()[:16]
    trainer = ready_trainer(cfg, "sri", vocab, batches[0])
    timed = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        timed.append((int(batch.lengths.sum()), timed_step(trainer, batch, step + 1, NOISE_TEMPERATURE, torch.device("cpu"))))
    numerics = getattr(trainer, "numerics", None)
    rule = cfg.train.chain_gradients + ("+dropout" if cfg.langevin.chain_dropout else "")
    return {"rule": rule, "precision": numerics.precision if numerics else "float32",
            "batches": digest, "steps": timed}


if __name__ == "__main__":
    tree, preset, precision, steps, sections = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    print(json.dumps(time_steps(tree, preset, precision, steps, json.loads(sections))))
