"""Running DVC stages from the flow: outcome, streamed output, failures, time limits, status."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from flows.stages import StageFailed, StageTimeout, dvc_status, repro, stage_targets

PY = sys.executable


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A DVC project (no git) with a working, a failing and a hanging stage, and foreach items out of order."""
    root = tmp_path_factory.mktemp("dvcproject")
    subprocess.run([PY, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    stages = {
        "evaluate": {"cmd": f"{PY} -c \"open('evaluated.txt', 'w').write('ok')\"", "deps": ["made.txt"],
                     "outs": ["evaluated.txt"]},
        "prepare": {"cmd": f"{PY} -c \"print('making it'); open('made.txt', 'w').write('x')\"", "outs": ["made.txt"]},
        "train": {"foreach": ["b", "a"], "do": {"cmd": f"{PY} -c \"open('${{item}}.txt', 'w').write('1')\"",
                                                  "outs": ["${item}.txt"]}},
        "broken": {"cmd": f"{PY} -c \"import sys; print('something broke'); sys.exit(3)\"", "outs": ["never.txt"]},
        "hangs": {"cmd": f"{PY} -c \"import time; print('started', flush=True); time.sleep(60)\"", "outs": ["late.txt"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root


def test_targets_follow_the_pipeline_order(project):
    targets = stage_targets(project)
    assert targets.index("prepare") < targets.index("train@b") < targets.index("evaluate")
    assert targets[-2:] == ["broken", "hangs"]  # stages the flow does not know run last


def test_stage_runs_once_then_is_skipped_and_status_follows(project):
    lines: list[str] = []
    assert repro("prepare", lines.append, timeout_s=120, cwd=project) == "ran"
    assert "making it" in lines and any(line.startswith("Running stage 'prepare'") for line in lines)
    assert repro("prepare", lambda _: None, timeout_s=120, cwd=project) == "skipped"
    assert "prepare" not in dvc_status(project)


def test_failure_names_the_stage_and_is_not_transient(project):
    with pytest.raises(StageFailed, match="stage broken: dvc repro exited with") as err:
        repro("broken", lambda _: None, timeout_s=120, cwd=project)
    assert not err.value.transient and "\n" not in str(err.value)


def test_time_limit_stops_the_stage_and_its_children(project):
    lines: list[str] = []
    start = time.monotonic()
    with pytest.raises(StageTimeout, match="stage hangs: stopped after its 8 s time limit"):
        repro("hangs", lines.append, timeout_s=8, cwd=project)
    assert time.monotonic() - start < 40
    assert "started" in lines
    leftover = subprocess.run(["pgrep", "-f", "time.sleep\\(60\\)"], capture_output=True, text=True).stdout
    assert leftover.strip() == ""
