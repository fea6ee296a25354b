"""Failures that say what happened and lose nothing (issue 11, section 4).

A failing command ends with one line naming the file, key or server to fix; a failed stage keeps the
previous good outputs and `dvc status` says it is stale; the README's resume advice leaves every stage
downstream of the resumed model stale. The workspace tests run the real commands (`shortrun run`,
`dvc repro`, `shortrun stage`) as subprocesses in a throwaway copy of the project with its own corpus copy.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset

from shortrun import cli
from shortrun.checkpoint import CHECKPOINT, save_model_dir
from shortrun.config import ModelConfig
from shortrun.data.prepared import FEATURES, write_prepared
from shortrun.data.vocab import Vocab
from shortrun.errors import ConfigError, TrainingError
from shortrun.model import build_model
from shortrun.params import DATA_ENV, build_config, data_root, read_params, write_params
from tasks import export, headline, train
from tests.workspace import copy_project, dvc, entered

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL_CFG = {"latent_dim": 4, "emb_dim": 8, "hidden_dim": 16, "encoder_hidden_dim": 16}
CORPUS = "short_yelp"
TRAIN_FILE = "short_yelp.train.10000.txt"
BAD_LINE = 6  # 1-based line of the training file that gets a label the corpus does not have


# ---------------------------------------------------------------- small helpers

def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def synthetic_prepared(root: Path) -> Vocab:
    """A small data/prepared (random token ids) so stages that read it can run in seconds."""
    rng = np.random.default_rng(0)
    vocab = Vocab(f"w{i}" for i in range(16))

    def split(n: int) -> Dataset:
        seqs = [rng.integers(4, 16, size=rng.integers(2, 8)).tolist() for _ in range(n)]
        return Dataset.from_dict({"id": list(range(n)), "text": [f"s{i}" for i in range(n)], "ids": seqs,
                                  "label": rng.integers(0, 2, n).tolist()}, features=FEATURES)

    write_prepared(root / "data" / "prepared", vocab, {"train": split(24), "valid": split(8), "test": split(8)}, {6: split(6)})
    return vocab


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the workspace, with its own SQLite MLflow store."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    return tmp_path


# ---------------------------------------------------------------- one-line errors on bad input

def test_a_yaml_syntax_error_in_params_names_the_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("preset: tiny\ntrain:\n  epochs: 3\n   lr: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{params}:4:6: not valid YAML \(mapping values are not allowed here\)$"):
        read_params(params)


@pytest.mark.parametrize("argv, message", [
    (["generate", "-n", "-1"], "generate: -n/--num must be at least 1, got -1"),
    (["encode", ""], "encode: sentence 1 is empty; expected at least one word"),
    (["encode", "the food was good .", "  "], "encode: sentence 2 is empty; expected at least one word"),
    (["interpolate", "the food .", "", "--steps", "3"], "interpolate: sentence 2 is empty; expected at least one word"),
])
def test_model_commands_refuse_bad_arguments_before_loading_a_model(argv, message, capsys, monkeypatch) -> None:
    # An unreachable registry: loading the model first would fail with a different message.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    assert cli.main([argv[0], "--model", "models:/shortrun-generator@champion", *argv[1:]]) == 2
    assert capsys.readouterr().err.splitlines() == [f"shortrun: error: {message}"]


def test_an_unforeseen_stage_error_is_one_line_and_its_traceback_goes_to_a_log_file(scratch, capsys, monkeypatch,
                                                                                     request) -> None:
    previous = signal.getsignal(signal.SIGTERM)  # `shortrun stage` turns SIGTERM into an interrupt; not for pytest
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
    (scratch / "params.yaml").write_text("preset: tiny\n", encoding="utf-8")

    def crash(_cfg) -> None:  # stands in for a bug in a stage
        raise RuntimeError("something nobody foresaw\nwith a second line")

    monkeypatch.setattr(headline, "run", crash)
    assert cli.main(["stage", "headline"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shortrun: error: RuntimeError: something nobody foresaw (traceback in ")
    log = Path(lines[0].rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert log.parent == Path(".shortrun/logs") and "Traceback" in log.read_text(encoding="utf-8")
    monkeypatch.setenv(cli.VERBOSE_ENV, "0")  # --verbose sets it (for the stages DVC starts); restored after the test
    with pytest.raises(RuntimeError, match="something nobody foresaw"):  # --verbose: Python's own traceback
        cli.main(["stage", "headline", "--verbose"])


def test_no_file_of_the_repository_names_a_machine_specific_path() -> None:
    markers = ["/" + name for name in ("work/", "home/", "root/", "Users/", "tmp/pytest-of-")]  # not matching itself
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    found = []
    for name in listed:
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        found += [f"{name}: {marker}" for marker in markers if marker in text]
    assert not found, "machine-specific paths (find corpora with shortrun.params.data_root): " + ", ".join(found)


# ---------------------------------------------------------------- the train stage: nothing half-written, nothing lost

def test_resume_with_no_checkpoint_writes_nothing(scratch: Path) -> None:
    synthetic_prepared(scratch)
    cfg = build_config("tiny", {"model": MODEL_CFG, "train": {"epochs": 1, "max_batches_per_epoch": 2}})
    with pytest.raises(TrainingError, match=r"^train --model sri --resume: no checkpoint to resume from"):
        train.run(cfg, "sri", resume=True)
    assert sorted(p.name for p in scratch.iterdir()) == ["data"]


def test_a_failed_training_keeps_the_old_model_and_a_finished_one_replaces_it_whole(scratch: Path) -> None:
    synthetic_prepared(scratch)
    cfg = build_config("tiny", {"model": MODEL_CFG, "train": {"epochs": 1, "max_batches_per_epoch": 2}})
    train.run(cfg, "sri")
    model, metrics = scratch / "models" / "sri", scratch / "metrics" / "train" / "sri.json"
    before, metrics_before = tree_digest(model), metrics.read_bytes()

    runaway = build_config("tiny", {"model": MODEL_CFG, "langevin": {"step_size": 1e6}, "train": {"epochs": 1}})
    with pytest.raises(TrainingError, match="Langevin step"):
        train.run(runaway, "sri")
    assert tree_digest(model) == before and metrics.read_bytes() == metrics_before

    (model / "stale.txt").write_text("left over from an older run\n")
    train.run(cfg, "sri")
    assert set(tree_digest(model)) == set(before)  # the stray file is gone: the folder was replaced whole
    assert not (scratch / ".shortrun" / "train" / "sri").exists()


@pytest.mark.slow
def test_a_terminated_training_keeps_the_old_model_and_saves_its_checkpoint(scratch: Path) -> None:
    synthetic_prepared(scratch)
    train.run(build_config("tiny", {"model": MODEL_CFG, "train": {"epochs": 1, "max_batches_per_epoch": 2}}), "sri")
    model, checkpoint = scratch / "models" / "sri", scratch / ".shortrun" / "train" / "sri" / CHECKPOINT
    before = tree_digest(model)
    params = {"preset": "tiny", "model": MODEL_CFG, "train": {"epochs": 1000}}
    (scratch / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    proc = subprocess.Popen([str(BIN / "shortrun"), "stage", "train", "--model", "sri"], cwd=scratch,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # what the flow's time limit or a `kill` sends
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and out.strip().splitlines()[-1] == "shortrun: interrupted", out[-2000:]
    assert tree_digest(model) == before  # the finished model stays until a run completes
    assert checkpoint.is_file()  # and `--resume` continues the interrupted run from here


# ---------------------------------------------------------------- export refuses unusable latents

def test_export_refuses_runaway_or_non_finite_latents_naming_the_model(scratch: Path) -> None:
    vocab = synthetic_prepared(scratch)
    cfg = build_config("tiny", {"model": MODEL_CFG, "export": {"batch_size": 8}})
    torch.manual_seed(0)
    vae = build_model("vae", len(vocab), cfg.model)
    save_model_dir(scratch / "models" / "vae", "vae", vae, vocab, ModelConfig(**MODEL_CFG), cfg.langevin)
    export.run(cfg, "vae")
    latents = scratch / "latents" / "vae"
    good = tree_digest(latents)

    for value, problem in ((1e5, "latents have run away"), (float("nan"), "latents contain NaN/Inf")):
        with torch.no_grad():
            vae.to_posterior.bias.fill_(value)
        save_model_dir(scratch / "models" / "vae", "vae", vae, vocab, ModelConfig(**MODEL_CFG), cfg.langevin)
        with pytest.raises(TrainingError) as err:
            export.run(cfg, "vae")
        message = str(err.value)
        assert message.startswith(f"models/vae: export vae: {problem} (") and "\n" not in message
        assert message.endswith("; latents/vae left as it was")
        assert tree_digest(latents) == good


# ---------------------------------------------------------------- in a workspace, through the real commands

def run_command(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """A shortrun/dvc command as a user types it (this interpreter's bin folder first on PATH); its output and
    errors interleaved in `.stdout`, as a terminal shows them."""
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(args, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A git + DVC copy of the project on the tiny preset, reading its own copy of the short Yelp corpus."""
    base = tmp_path_factory.mktemp("failures")
    corpora = base / "corpora"
    shutil.copytree(data_root(ROOT) / CORPUS, corpora / CORPUS)
    for path in (corpora / CORPUS).iterdir():
        path.chmod(0o644)
    dest = copy_project(base / "ws", preset="tiny")
    with entered(dest), pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_ENV, str(corpora))
        write_params("tiny", [], dest / "params.yaml", root=str(corpora))
        yield dest


class corrupted_corpus:
    """The workspace's training file with one bad label on BAD_LINE while inside; restored after."""

    def __init__(self) -> None:
        self.path = Path(os.environ[DATA_ENV]) / CORPUS / TRAIN_FILE

    def __enter__(self) -> Path:
        self.original = self.path.read_text(encoding="utf-8")
        lines = self.original.splitlines(keepends=True)
        lines[BAD_LINE - 1] = "7\tthis sentence has a label the corpus does not have .\n"
        self.path.write_text("".join(lines), encoding="utf-8")
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.write_text(self.original, encoding="utf-8")


def bad_label_error(path: Path) -> str:
    return f"{path}:{BAD_LINE}: label '7' is not an expected label; expected one of 0, 1 (data.labels)"


@pytest.mark.slow
def test_a_failed_prepare_keeps_its_outputs_and_dvc_status_says_it_is_stale(workspace: Path) -> None:
    done = run_command(["dvc", "repro", "prepare"], workspace)
    assert done.returncode == 0, done.stdout[-3000:]
    prepared, stats = tree_digest(workspace / "data" / "prepared"), (workspace / "metrics" / "prepare.json").read_bytes()
    assert prepared and json.loads(dvc("status", "--json", cwd=workspace) or "{}").get("prepare") is None

    with corrupted_corpus() as corpus:
        failed = run_command(["dvc", "repro", "prepare"], workspace)
        assert failed.returncode != 0
        assert bad_label_error(corpus) in failed.stdout
        assert tree_digest(workspace / "data" / "prepared") == prepared
        assert (workspace / "metrics" / "prepare.json").read_bytes() == stats
        assert "prepare" in json.loads(dvc("status", "--json", cwd=workspace) or "{}")


@pytest.mark.slow
def test_shortrun_run_ends_with_the_failed_stages_own_line(workspace: Path) -> None:
    with corrupted_corpus() as corpus:
        done = run_command(["shortrun", "run"], workspace)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 2
    assert lines[-1].startswith(f"shortrun: error: stage prepare: {bad_label_error(corpus)}")
    assert not any(line.startswith("Traceback") for line in lines)
    logs = sorted((workspace / ".shortrun" / "logs").glob("run-*.log"))
    assert logs and "Traceback" in logs[-1].read_text(encoding="utf-8")  # the full story is kept, not shown


@pytest.mark.slow
def test_a_stage_fails_in_seconds_with_one_line_when_the_tracking_server_is_unreachable(workspace: Path) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    done = run_command(["shortrun", "stage", "prepare"], workspace, timeout=120, MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - start
    errors = [line for line in done.stdout.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert done.returncode == 2 and elapsed < 10, (elapsed, done.stdout[-2000:])
    assert errors == [errors[-1]] and errors[-1].startswith(f"shortrun: error: MLflow tracking store {uri} is unreachable")


def readme_resume_advice() -> list[str]:
    """The README's commands from `shortrun stage train ... --resume` up to the next non-DVC line, comments cut."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("shortrun stage train") and "--resume" in line)
    advice = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("dvc commit"):
            break
        advice.append(line)
    return advice


def commit_as_done(workspace: Path, skip: set[str]) -> None:
    """Record every stage but `skip` as up to date with placeholder outputs (running them would take minutes)."""
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        stages = [stage for stage in repo.index.stages if stage.addressing not in skip]
        names = [stage.addressing for stage in stages]
        paths = [Path(out.fs_path) for stage in stages for out in stage.outs]
    for path in paths:
        target = path if path.suffix else path / "placeholder"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}\n")
    dvc("commit", "--force", "--quiet", *names, cwd=workspace)


@pytest.mark.slow
def test_the_readme_resume_advice_leaves_everything_downstream_stale(workspace: Path) -> None:
    short = ["--set", "train.epochs=1", "--set", "train.max_batches_per_epoch=2"]
    assert run_command(["shortrun", "params", *short], workspace).returncode == 0
    done = run_command(["dvc", "repro", "train@sri"], workspace)
    assert done.returncode == 0, done.stdout[-3000:]
    commit_as_done(workspace, skip={"prepare", "train@sri"})
    assert json.loads(dvc("status", "--json", cwd=workspace) or "{}") == {}

    assert run_command(["shortrun", "params", "--set", "train.epochs=2"], workspace).returncode == 0
    advice = readme_resume_advice()
    assert advice[0] == "shortrun stage train --model sri --resume" and len(advice) > 1
    for command in advice:
        step = run_command(command.split(), workspace)
        assert step.returncode == 0, (command, step.stdout[-3000:])
    assert json.loads((workspace / "metrics" / "train" / "sri.json").read_text())["epochs"] == 2

    stale = json.loads(dvc("status", "--json", cwd=workspace) or "{}")
    assert "train@sri" not in stale  # the resumed model is recorded as train@sri's output ...
    assert {"export@sri", "evaluate"} <= set(stale)  # ... and what reads it must be rebuilt
