"""The GPU check's CPU fallback: `python -m bench.gpu_check --device cpu --sizes tiny` runs every part on the tiny
sizes and writes its figures (the real run is `make gpu-check` on a CUDA machine, docs/gpu.md)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from bench.gpu_check import TRAIN_EPOCHS, check, table


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "figures.json"
    assert check(["--device", "cpu", "--sizes", "tiny", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_cpu_fallback_writes_every_part(report):
    assert report["device"] == "cpu" and report["sizes"] == "tiny"
    assert set(report) >= {"tests", "throughput", "training", "evaluation", "part_seconds", "seconds"}
    assert set(report["part_seconds"]) == {"tests", "throughput", "training", "evaluation"}
    assert all(seconds > 0 for seconds in report["part_seconds"].values())


def test_the_cuda_tests_ran_and_skipped_without_a_gpu(report):
    tests = report["tests"]
    assert tests["exit_code"] == 0
    if not torch.cuda.is_available():
        assert "skipped" in tests["summary"] and "failed" not in tests["summary"] and "passed" not in tests["summary"]


def test_throughput_has_positive_rates_for_every_model_and_the_matmul(report):
    tiny = report["throughput"]["tiny"]
    for kind in ("sri", "vae", "lm"):
        assert tiny[kind]["tokens_per_s"] > 0 and tiny[kind]["step_ms"] > 0 and tiny[kind]["peak_mib"] > 0, kind
    assert tiny["sri"]["tflops"] > 0 and tiny["matmul_bf16_tflops"] > 0 and tiny["sri_over_matmul"] > 0


def test_training_reports_a_finite_validation_nll_per_epoch(report):
    training = report["training"]
    assert training["preset"] == "tiny" and training["train_sentences"] == 300
    assert [row["epoch"] for row in training["epochs"]] == list(range(1, TRAIN_EPOCHS + 1))
    assert all(0 < row["valid_nll"] < 1e4 and 0 < row["train_seconds"] < row["seconds"] for row in training["epochs"])


def test_evaluation_times_both_sri_estimators(report):
    ev = report["evaluation"]
    assert ev["batched_sentences_per_s"] > 0 and ev["laplace_sentences_per_s"] > 0
    assert 0 < ev["batched_nll"] < 1e4 and 0 < ev["laplace_nll"] < 1e4
    assert ev["max_gap_nats"] >= 0


def test_the_table_shows_the_cuda_only_figures(report):
    """On CUDA the report also holds the bfloat16 SRI step and training run; the table prints them."""
    cuda = copy.deepcopy(report)
    tiny = cuda["throughput"]["tiny"]
    tiny["sri_bfloat16"], tiny["sri_bfloat16_over_matmul"] = dict(tiny["sri"]), 0.75
    cuda["training_bfloat16"] = {**cuda["training"], "precision": "bfloat16"}
    cuda["bfloat16_valid_nll_change"] = 0.02
    lines = "\n".join(table(cuda))
    assert "tiny       sri_bfloat16" in lines and "sri_bfloat16 0.75" in lines
    assert f"tiny (bfloat16) epoch {TRAIN_EPOCHS}" in lines and "by +0.020 nats" in lines


def test_cuda_on_a_machine_without_one_is_a_one_line_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert check(["--device", "cuda", "--sizes", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda" in err and "--device cpu" in err

