"""bench.against_revision: a revision's code and this tree's, timed on the same batches in child processes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from bench import against_revision
from bench.against_revision import Case, Timed
from shortrun.numerics import bfloat16_is_fast


def test_head_against_this_tree_runs_each_trees_own_code_on_the_same_batches(tmp_path: Path) -> None:
    head = against_revision.extract("HEAD", tmp_path / "head")
    assert (head / "shortrun" / "training.py").is_file() and not (head / ".git").exists()
    cases = against_revision.cases_for("HEAD", head)
    best = against_revision.compare(cases, "yelp", rounds=1, steps=1)
    assert list(best) == cases
    assert {timed.rule for timed in best.values()} == {"chain+dropout"}  # the yelp preset's rule: the authors'
    assert all(len(timed.steps) == 1 and timed.best_rate() > 0 for timed in best.values())
    auto = "bfloat16" if bfloat16_is_fast(torch.device("cpu")) else "float32"
    assert [timed.precision for timed in best.values()] == ["float32", "float32", auto]
    line = against_revision.report("yelp", best)
    assert line.startswith("yelp  SRI (chain+dropout rule): HEAD float32 ") and "x1.00 |" in line
    assert f"this tree auto{'=' + auto} " in line


@pytest.mark.parametrize("differs", ["rule", "batches"])
def test_trees_that_did_different_work_are_refused(differs: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def child(case: Case, preset: str, steps: int, rule: dict) -> Timed:
        made = {"rule": "chain", "batches": "same", differs: case.name}
        return Timed(precision="float32", steps=[(100, 0.1)], **made)

    monkeypatch.setattr(against_revision, "run_child", child)
    cases = [Case("old", tmp_path, "float32"), Case("new", tmp_path, "float32")]
    with pytest.raises(SystemExit, match="ran different rules or drew different batches"):
        against_revision.compare(cases, "yelp", rounds=1, steps=1)


def test_an_unknown_revision_stops_with_git_s_reason_and_leaves_no_folder(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SystemExit, match="git archive no-such-revision failed: .*not a valid object name"):
        against_revision.main(["--rev", "no-such-revision", "--presets", "yelp"])
    assert list(tmp_path.iterdir()) == []


def test_fewer_than_one_round_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        against_revision.main(["--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err
