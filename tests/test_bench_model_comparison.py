"""The model comparison script: every variant trains, is scored per epoch and on test, and the files exist."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import model_comparison
from bench.__main__ import discover
from shortrun.config import ModelConfig
from shortrun.data.batching import collate
from shortrun.model import LanguageModel
from shortrun.objectives import StepContext
from shortrun.params import data_root, dump_params, preset_params


def test_comparison_writes_curves_table_and_test_numbers(tiny: dict, tmp_path: Path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(dump_params(preset_params("tiny", str(data_root()))))
    out = tmp_path / "out"
    model_comparison.run(["--params", str(params), "--prepared", str(tiny["prepared"]), "--set", "train.epochs=2",
                           "--set", "evaluate.ais_steps=4", "--variants", "lm", "sri-chain", "lm-passes",
                           "--curve-sentences", "6", "--curve-steps", "3", "--test-sentences", "6", "--bdmc", "--prior-samples", "5", "--out", str(out)])
    result = json.loads((out / "comparison.json").read_text())["variants"]
    assert set(result) == {"lm", "sri-chain", "lm-passes"}
    # same seed and batches: only lm-passes' own objective (the extra dropout passes) can move its curve off lm's
    assert [p["valid_nll"] for p in result["lm-passes"]["curve"]] != [p["valid_nll"] for p in result["lm"]["curve"]]
    for row in result.values():
        assert [p["epoch"] for p in row["curve"]] == [1, 2]
        assert row["curve"][0]["seconds"] < row["curve"][1]["seconds"]
        assert row["best_epoch"] in (1, 2) and 0 < row["valid_nll"] and 0 < row["test_nll"]
    assert result["lm"]["test_nll_se"] == 0.0 and result["sri-chain"]["test_nll_se"] > 0.0
    assert "bdmc" not in result["lm"] and "bdmc" not in result["lm-passes"]  # exact: nothing to check
    check = result["sri-chain"]["bdmc"]
    assert check["sentences"] > 0 and check["reverse_nll"] <= check["forward_nll"] + 4 * check["gap_se"]
    prior = result["sri-chain"]["prior"]
    assert "prior" not in result["lm"] and prior["samples"] == 5 and len(prior["examples"]) == 5
    assert 0.0 <= prior["loop_share"] <= 1.0 and prior["mean_words"] > 0
    assert (out / "curves.png").stat().st_size > 0
    assert "| sri-chain |" in (out / "comparison.md").read_text() and "| sri-chain |" in capsys.readouterr().out


def test_comparison_records_the_learned_step_sizes_per_epoch(tiny: dict, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(dump_params(preset_params("tiny", str(data_root()))))
    model_comparison.run(["--params", str(params), "--prepared", str(tiny["prepared"]), "--set", "train.epochs=1",
                          "--set", "langevin.steps=3", "--set", "langevin.learn_steps=true", "--set",
                          "langevin.learn_steps_every=1", "--set", "evaluate.ais_steps=3", "--variants", "sri-chain",
                          "--curve-sentences", "4", "--curve-steps", "3", "--test-sentences", "4", "--out", str(tmp_path / "out")])
    (point,) = json.loads((tmp_path / "out" / "comparison.json").read_text())["variants"]["sri-chain"]["curve"]
    assert len(point["step_sizes"]) == 3 and all(size > 0 for size in point["step_sizes"])


def test_repeated_dropout_lm_adds_the_batch_summed_passes_to_the_mean_update() -> None:
    torch.manual_seed(0)
    batch = collate([[4, 5, 6], [7, 8], [9, 10, 11, 12]])
    model = LanguageModel(13, ModelConfig(latent_dim=2, emb_dim=6, hidden_dim=8, encoder_hidden_dim=8,
                                          dropout_emb=0.0, dropout_out=0.0))
    (mean_grad,) = torch.autograd.grad(model.sentence_nll(batch.tokens).mean(), model.out.weight)
    out = model_comparison.RepeatedDropoutLM(passes=3).train_step(model, batch, StepContext(0.0, 0))
    out.loss.backward()
    # without dropout every pass is the same: 3 batch sums (3 x 3 sentences) and the mean, 10 mean gradients
    assert torch.allclose(model.out.weight.grad, 10 * mean_grad, atol=1e-6)


def test_merge_joins_comparisons_measured_alike_and_refuses_others(tmp_path: Path) -> None:
    row = {"curve": [{"seconds": 1.0, "epoch": 1, "valid_nll": 40.0, "valid_nll_se": 0.1}], "best_epoch": 1,
           "valid_nll": 40.0, "test_nll": 41.0, "test_nll_se": 0.1}
    for folder, name, header in (("a", "lm", "same"), ("b", "vae", "same"), ("c", "sri-chain", "other")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "comparison.json").write_text(json.dumps({"header": header, "variants": {name: row}}))
    model_comparison.run(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")])
    assert set(json.loads((tmp_path / "ab" / "comparison.json").read_text())["variants"]) == {"lm", "vae"}
    assert (tmp_path / "ab" / "curves.png").is_file()
    with pytest.raises(SystemExit, match="measured differently"):
        model_comparison.run(["--merge", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "ac")])


def test_curves_plots_stored_runs_under_their_labels_and_refuses_ambiguous_files(tmp_path: Path, capsys) -> None:
    row = {"curve": [{"seconds": 1.0, "epoch": 1, "valid_nll": 40.0, "valid_nll_se": 0.1}]}
    (tmp_path / "one.json").write_text(json.dumps({"header": "h", "variants": {"sri-chain": row}}))
    (tmp_path / "two.json").write_text(json.dumps({"header": "h", "variants": {"sri-chain": row, "vae": row}}))
    out = tmp_path / "plots" / "k.png"
    model_comparison.run(["--curves", f"{tmp_path / 'one.json'}=fixed K = 5", f"{tmp_path / 'two.json'}:vae=VAE",
                          "--out", str(out)])
    assert out.is_file() and out.stat().st_size > 0
    assert "2 curves plotted" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="name one as"):
        model_comparison.run(["--curves", f"{tmp_path / 'two.json'}=both", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="not 'lm'"):
        model_comparison.run(["--curves", f"{tmp_path / 'two.json'}:lm=LM", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="FILE\\[:VARIANT\\]=LABEL"):
        model_comparison.run(["--curves", str(tmp_path / "one.json"), "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_make_bench_leaves_out_the_runs_that_train_for_a_whole_budget() -> None:
    quick = discover()
    assert {"train_throughput", "step_parts", "evaluate_speed"} <= set(quick)
    assert not {"model_comparison", "precision_agreement", "gpu_check"} & set(quick)
