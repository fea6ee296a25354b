"""What each change to the SRI training step saves, part by part, at the yelp and ptb sizes (issue 16).

The step's overheads found by profiling one yelp SRI step, and what replaced them; each pair below is timed
in turn in the same run (forward and backward, the best of repeated calls), per precision path:

- dropout masks: nn.Dropout draws its mask with bernoulli_, one number at a time on CPU; shortrun.model.Dropout
  compares 24-bit random integers, drawn vectorised. Under the authors' rule every chain step runs dropout
  on the embeddings and the LSTM outputs: 2(K + 1) masks per training step.
- token NLL: F.cross_entropy (log_softmax, then a backward that zero-fills a gradient, scatters into it and
  runs log_softmax's backward) against shortrun.model.TokenNLL (one log-softmax kept for a one-pass
  backward; under bfloat16 one softmax in bfloat16 kept, no float32 copies of the [N, V] logits).
- optimizer step: torch.optim.Adam's default on CPU loops over the parameters with per-tensor kernels;
  fused=True updates them in one kernel (the same arithmetic). One step per batch for every model kind.
- scored positions: selecting the non-padding targets with a boolean mask in every chain step against
  indices found once per chain (shortrun.model.ScoredPositions); on CUDA the mask also costs a host
  synchronisation per step.

Not changed, and why: the LSTM's input-side product of the token embeddings does not depend on z, but
nn.LSTM's fused oneDNN kernel takes [embedding; z] as one input, and a hand-written LSTM loop that hoisted
it out of the chain would lose more in small sequential kernels than the product costs (it is about 30%
of the LSTM's FLOPs, the LSTM about 16% of the step's). Freezing the weights during the chain (so that the
LSTM's backward could skip their gradients) saved nothing measurable: oneDNN computes them regardless.
Fusing the output layer with the token NLL in one autograd function (the bias folded into the bfloat16
product as a ones column, the weight cast once per parameter version, its gradient made in the weight's
[V, H] layout) was tried and removed: against nn.Linear plus TokenNLL it ran x1.09 at the yelp size and
x0.90 at ptb's (forward and backward, bfloat16, best of 60 in turn), and the whole yelp SRI step changed by
x0.94 to x1.14 across three in-process A/B runs (noise), ptb's x0.89. What a profile of the bfloat16 yelp step
still shows per chain step (Intel Xeon with AMX, 2 threads): about 1.8 ms casting the output weight's
gradient to float32 and 0.7 ms adding it into .grad (the authors' rule accumulates K + 1 of them), 4.7 ms in
the LSTM's forward and backward, 1.7 ms in the softmax. Deferring the chain steps' output-layer weight
gradients (the layer run on detached parameters, each pass's logits gradient kept by a hook, one
[V, K N] x [K N, H] product at the end of the chain) was tried and removed too: concatenating the K logits
gradients alone cost about 43 ms per yelp step, and the step ran x0.85 of the plain one (one thread, in turn).
Adding the bfloat16 weight gradient straight into the float32 .grad (a mixed-dtype add_, no cast) would save
nothing either: at the yelp output layer's shape it took 1.44 ms against 1.45 ms for cast then add (one
thread, best of 20, same run; a one-off script, not kept).
Two more, each a whole bfloat16 yelp SRI step against the current one, trainers taken in turn on the same
batches (best of 12 steps each, 2 threads of an Intel Xeon with AMX; one-off scripts, not kept): running the
chain on bfloat16 copies of the decoder's weights, so that the K chain gradients sum in bfloat16 and reach the
float32 .grad in one cast per training step, ran x0.84, x0.96 and x0.99 in three runs (not kept: a saving of
the size of the machine's noise, bought with gradients summed at 8 bits of mantissa); the output layer as a
product then a bias add instead of nn.Linear's addmm (alone, at the yelp shape, 1.74 times as fast in one run of a
microbenchmark, 0.92 times in the next) ran x1.01 twice.
Three more on the output layer and its token NLL alone, forward and backward at ptb's shape (705 x 256 x 10002)
in bfloat16, against nn.Linear plus TokenNLL in the same run (one-off scripts, not kept): the layer and the NLL
fused and chunked over the vocabulary, so that no [tokens x vocabulary] array ever leaves the cache (a
log-sum-exp forward, a backward that recomputes each chunk's logits), ran x0.57 to x0.77 with chunks of 256
to 2048 words: on this machine those arrays live in a 300 MiB L3, and the extra product costs more than the
memory traffic saved. torch.compile of nn.Linear plus F.cross_entropy (Inductor's fused C++ kernels, 31 s to
compile) ran x0.93 to x0.97 with the weight gradients and x0.75 to x0.85 without. Arrays of 2 MiB and more on
transparent huge pages (THP_MEM_ALLOC_ENABLE=1): the whole bfloat16 SRI step ran x0.80 (yelp) and x0.94 (ptb),
the best step of 3 children each, taken in turn with children without it. Short spinning at OpenMP's barriers
instead of shortrun's passive wait (GOMP_SPINCOUNT, the yelp bfloat16 step in child processes taken in turn, best
of 3 to 5): on an idle machine 1,000 to 300,000 spins ran x1.07 to x1.70 (x1.57 and x1.70 for 20,000 in two runs,
x1.11 in a third), but with one busy process beside it 20,000 spins ran x0.56 and 300,000 x0.60 while the passive
wait lost nothing (325 ms against 302 idle): not kept, since the machines these steps run on are shared.
Kept instead: freed memory stays in the process (shortrun.allocator, measured by bench/allocator.py), which
takes the step's page faults from tens of thousands to a few thousand.
Three more in a later session (one-off scripts, not kept). The chain passes' output-layer gradients deferred
once more, now without any concatenation: the passes ran the layer on its parameters cast once and detached,
TokenNLL wrote each pass's logits gradient into one preallocated [K, N, V] array, and after the chain one
[V, KN] x [KN, H] product (and a product with a ones vector for the bias) added them to .grad. Alternate steps
of one trainer with and without it, in one process: yelp bfloat16 x0.88 (median of 16 pairs), yelp float32 x0.97,
ptb bfloat16 x0.91. At yelp's size the one wide product took 26 ms against 22 ms for its K thin ones (its [KN, V]
operand is read transposed), and summing that array's rows into float32 took 47 ms (3 ms as a product with a ones
vector). TokenNLL's backward written into its kept array in place (and the scaling skipped where the incoming
gradient is all ones): the NLL's forward and backward at yelp's size ran x1.24 in bfloat16 and x1.51 in float32,
but a retained graph's second backward (gradcheck, per-row Jacobians) then fails; a test now guards that.
Spinning at OpenMP's barriers for fewer rounds than before (GOMP_SPINCOUNT 1,000 / 3,000 / 10,000, yelp bfloat16
step in child processes, best of 3 each): idle x1.09 / x0.93 / x1.09, beside one busy process x0.78 / x0.62 /
x0.36. The passive wait stays.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.train_throughput import SIZES, print_per_size_and_path
from shortrun.config import ModelConfig
from shortrun.data.vocab import PAD
from shortrun.model import Dropout, Generator, ScoredPositions, TokenNLL
from shortrun.numerics import NumericPath
from shortrun.params import build_config

REPEATS = 30
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def best_ms(work: Callable[[], None]) -> float:
    work()
    best = math.inf
    for _ in range(REPEATS):
        tic = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - tic)
    return 1e3 * best


def in_turn(pair: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Both variants' best times, measured alternately so that they see the same load."""
    best = dict.fromkeys(pair, math.inf)
    for _ in range(3):
        for name, work in pair.items():
            best[name] = min(best[name], best_ms(work))
    return best


def dropout_pair(shape: tuple[int, ...], p: float, dtype: torch.dtype) -> dict[str, Callable[[], None]]:
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    layers = {"nn.Dropout": nn.Dropout(p), "shortrun Dropout": Dropout(p)}
    return {name: (lambda layer=layer: layer(x).sum().backward()) for name, layer in layers.items()}


def nll_pair(rows: int, vocab: int, dtype: torch.dtype) -> dict[str, Callable[[], None]]:
    logits = (3 * torch.randn(rows, vocab)).to(dtype).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,))

    def reference() -> None:
        nll = F.cross_entropy(logits.float() if dtype != torch.float32 else logits, targets, reduction="none")
        torch.autograd.grad(nll.sum(), logits)

    def lean() -> None:
        torch.autograd.grad(TokenNLL.apply(logits, targets).sum(), logits)

    return {"F.cross_entropy": reference, "TokenNLL": lean}


def positions_pair(tokens: torch.Tensor, hidden: torch.Tensor, steps: int) -> dict[str, Callable[[], None]]:
    """Selecting the scored rows of the LSTM outputs in each of `steps` chain steps."""

    def per_step_mask() -> None:
        for _ in range(steps):
            mask = tokens[:, 1:] != PAD
            hidden[mask]
            torch.arange(tokens.size(0)).unsqueeze(1).expand_as(mask)[mask]

    def once() -> None:
        scored = ScoredPositions.of(tokens)
        for _ in range(steps):
            hidden.reshape(-1, hidden.size(2)).index_select(0, scored.flat)

    return {"mask per step": per_step_mask, "indices once": once}


def optimizer_pair(model_cfg: ModelConfig, vocab: int) -> dict[str, Callable[[], None]]:
    """One Adam update of the SRI generator's parameters: a loop of per-tensor kernels against the fused one."""
    steps = {}
    for name, options in {"foreach Adam": {"foreach": True}, "fused Adam": {"fused": True}}.items():
        params = list(Generator(vocab, model_cfg).parameters())
        for param in params:
            param.grad = torch.randn_like(param)
        steps[name] = torch.optim.Adam(params, lr=1e-3, **options).step
    return steps


def lines_for(preset: str, path: NumericPath) -> list[str]:
    vocab, mean_len = SIZES[preset]
    cfg = build_config(preset, {"train": {"device": "cpu", "precision": path.precision}})
    batch, steps, dtype = cfg.train.batch_size, cfg.langevin.steps, DTYPES[path.precision]
    rows = batch * mean_len
    tokens = torch.randint(4, vocab, (batch, mean_len + 2))
    tokens[: batch // 2, -2:] = PAD
    hidden = torch.randn(batch, mean_len + 1, cfg.model.hidden_dim)
    pairs = {
        f"dropout [{batch}x{mean_len + 1}x{cfg.model.hidden_dim}]": dropout_pair(hidden.shape, cfg.model.dropout_out, dtype),
        f"token NLL [{rows}x{vocab}]": nll_pair(rows, vocab, dtype),
        f"scored positions, {steps} steps": positions_pair(tokens, hidden, steps),
        "optimizer step": optimizer_pair(cfg.model, vocab),
    }
    lines = []
    for part, pair in pairs.items():
        (old, before), (new, after) = in_turn(pair).items()
        lines.append(f"{preset:5} {path.precision:9} {part:36} {old} {before:7.2f} ms -> {new} {after:7.2f} ms "
                     f"(x{before / after:.1f})")
    return lines


def main() -> None:
    print_per_size_and_path("SRI step parts, before -> after", f"forward + backward, best of {REPEATS}, pairs in turn",
                            lines_for)
