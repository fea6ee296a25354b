"""bench.precision_agreement: both precision paths train and their validation NLLs are compared per epoch."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench import precision_agreement
from shortrun.numerics import bfloat16_is_fast


def test_agreement_on_tiny_writes_both_paths_per_epoch_or_says_why_not(tmp_path: Path, capsys) -> None:
    out = tmp_path / "agreement.json"
    precision_agreement.run(["--preset", "tiny", "--models", "sri", "--epochs", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    if not bfloat16_is_fast(torch.device("cpu")):
        assert "no bfloat16 matrix units" in printed and not out.exists()
        return
    runs = json.loads(out.read_text())["models"]["sri"]
    assert [row["epoch"] for row in runs["bfloat16"]["epochs"]] == [1, 2]
    assert runs["bfloat16"]["precision"] == "bfloat16" and runs["float32"]["precision"] == "float32"
    exact = [row["valid_nll"] for row in runs["float32"]["epochs"]]
    lower = [row["valid_nll"] for row in runs["bfloat16"]["epochs"]]
    assert runs["differences"] == [b - a for a, b in zip(exact, lower)]
    assert runs["largest_difference"] < precision_agreement.TOLERANCE and "within 0.05" in printed
