"""The model comparison script: every variant trains, is scored per epoch and on test, and the files exist."""
from __future__ import annotations

import json
from pathlib import Path

from bench import model_comparison
from shortrun.params import data_root, dump_params, preset_params


def test_comparison_writes_curves_table_and_test_numbers(tiny: dict, tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(dump_params(preset_params("tiny", str(data_root()))))
    out = tmp_path / "out"
    model_comparison.main(["--params", str(params), "--prepared", str(tiny["prepared"]), "--set", "train.epochs=2",
                           "--set", "evaluate.ais_steps=4", "--variants", "lm", "sri-chain",
                           "--curve-sentences", "6", "--curve-steps", "3", "--test-sentences", "6", "--out", str(out)])
    result = json.loads((out / "comparison.json").read_text())
    assert set(result) == {"lm", "sri-chain"}
    for row in result.values():
        assert [p["epoch"] for p in row["curve"]] == [1, 2]
        assert row["curve"][0]["seconds"] < row["curve"][1]["seconds"]
        assert row["best_epoch"] in (1, 2) and 0 < row["valid_nll"] and 0 < row["test_nll"]
    assert result["lm"]["test_nll_se"] == 0.0 and result["sri-chain"]["test_nll_se"] > 0.0
    assert (out / "curves.png").stat().st_size > 0
    assert "| sri-chain |" in (out / "comparison.md").read_text() and "| sri-chain |" in capsys.readouterr().out
