"""bench.step_ceiling: one chain pass's parts, timed alone, bound the SRI step's rate."""
from __future__ import annotations

import re

import torch

from bench import step_ceiling
from bench.train_throughput import SIZES, sri_step_flops
from shortrun.data.batching import collate
from shortrun.numerics import NumericPath
from shortrun.params import build_config


def test_a_pass_counts_the_flops_that_the_throughput_benchmark_counts_per_chain_step() -> None:
    cfg = build_config("yelp", {"train": {"device": "cpu", "precision": "float32"}})
    vocab, mean_len = SIZES["yelp"]
    batch = collate([[5] * mean_len] * cfg.train.batch_size)  # every sentence of the mean length
    _, flops = step_ceiling.pass_parts("yelp", NumericPath(torch.device("cpu"), "float32"))
    assert cfg.train.chain_gradients == "chain"  # 3F per chain step and 3F for the update: (3K + 3) F in all
    per_pass = sri_step_flops(cfg, vocab, batch) / (3 * cfg.langevin.steps + 3) * 3
    assert flops["output layer + token NLL"] + flops["LSTM"] == per_pass


def test_the_ceiling_line_is_the_parts_combined_rate_over_the_product() -> None:
    line = step_ceiling.ceiling_line("yelp", NumericPath(torch.device("cpu"), "float32"))
    rates = [float(r.replace(",", "")) for r in re.findall(r"([\d,]+) GFLOP/s", line)]
    product, output_layer, lstm, one_pass = rates
    assert min(output_layer, lstm) <= one_pass <= max(output_layer, lstm)  # a time-weighted mean of the two
    ratio = float(re.search(r"= ([\d.]+) of the product", line).group(1))
    assert abs(ratio - one_pass / product) < 0.01 and line.startswith("yelp  float32   product ")
