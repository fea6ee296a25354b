"""How close the SRI step can come to the plain product's rate (issue 16's 0.75 target): its parts alone.

Under the authors' rule every pass of the chain runs the decoder forward and backward with weight gradients:
the LSTM over M = B(T-1) positions and the output layer with its token NLL over the N scored tokens, 3F FLOPs
with F = M 8H(E + d + H) + N 2HV as bench.train_throughput counts them. Here those two parts of the preset's
generator run alone, in the step's precision, taken in turn with the plain [N, H] x [H, V] product, with warm
caches and nothing else between calls: their combined rate is the best a pass can reach. The step adds the
embeddings, dropout, the Langevin update and the optimizer, so its rate in bench.train_throughput cannot
exceed this ceiling.

    python -m bench step_ceiling
"""
from __future__ import annotations

from typing import Callable

import torch

from bench.step_parts import DTYPES, in_turn
from bench.train_throughput import SIZES, print_per_size_and_path
from shortrun.model import Generator, TokenNLL
from shortrun.numerics import NumericPath
from shortrun.params import build_config

TARGET = 0.75


def pass_parts(preset: str, path: NumericPath) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """The product and one pass's two parts as callables, and the FLOPs of each (a multiply-add is 2)."""
    vocab, mean_len = SIZES[preset]
    cfg = build_config(preset, {"train": {"device": "cpu", "precision": path.precision}})
    model = cfg.model
    batch, positions = cfg.train.batch_size, mean_len + 1  # the words and </s> are scored
    rows = batch * positions
    decoder = Generator(vocab, model)
    dtype = DTYPES[path.precision]
    left, right = torch.randn(rows, model.hidden_dim, dtype=dtype), torch.randn(model.hidden_dim, vocab, dtype=dtype)
    hidden = torch.randn(rows, model.hidden_dim, requires_grad=True)
    targets = torch.randint(4, vocab, (rows,))
    inputs = torch.randn(batch, positions, model.emb_dim + model.latent_dim, requires_grad=True)
    state = (torch.randn(1, batch, model.hidden_dim, requires_grad=True), torch.zeros(1, batch, model.hidden_dim))

    def output_layer() -> None:
        with path.autocast():
            nll = TokenNLL.apply(decoder.out(hidden), targets)
        nll.sum().backward()

    def lstm() -> None:
        with path.autocast():
            out, _ = decoder.lstm(inputs, state)
        out.float().sum().backward()

    parts = {"product": lambda: torch.mm(left, right), "output layer + token NLL": output_layer, "LSTM": lstm}
    product = 2 * rows * model.hidden_dim * vocab
    flops = {"product": product, "output layer + token NLL": 3 * product,
             "LSTM": 3 * rows * 8 * model.hidden_dim * (model.emb_dim + model.latent_dim + model.hidden_dim)}
    return parts, flops


def ceiling_line(preset: str, path: NumericPath) -> str:
    parts, flops = pass_parts(preset, path)
    ms = in_turn(parts)
    rate = {name: flops[name] / ms[name] / 1e6 for name in parts}  # GFLOP/s
    one_pass = (flops["output layer + token NLL"] + flops["LSTM"]) / (ms["output layer + token NLL"] + ms["LSTM"]) / 1e6
    alone = ", ".join(f"{name} {ms[name]:.2f} ms ({rate[name]:,.0f} GFLOP/s)" for name in parts if name != "product")
    return (f"{preset:5} {path.precision:9} product {rate['product']:,.0f} GFLOP/s; forward + backward alone: {alone}; "
            f"one pass at best {one_pass:,.0f} GFLOP/s = {one_pass / rate['product']:.2f} of the product "
            f"(the SRI step's ceiling; target >= {TARGET})")


def main() -> None:
    print_per_size_and_path("SRI step ceiling: one chain pass's parts alone against the plain product",
                            "best of repeated calls, parts in turn", lambda preset, path: [ceiling_line(preset, path)])
