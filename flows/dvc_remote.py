"""A sweep's DVC remote: the prepared data computed once and shared, each trial's outputs pushed.

DVC finds a stage's outputs through the `dvc.lock` entry that names them, and this project's outputs are
`persist: true`, which its run cache skips. So the sweep prepares the data once in a workspace of its
own, pushes it, and hands the `prepare` entry of that lock to every trial: a trial writes it into its
own dvc.lock and pulls, and `dvc repro` then finds `prepare` up to date when the trial's corpus, code and
data params are the same (else it prepares again, as it should). After its run a trial pushes what its
dvc.lock names (prepared data, models, latents), so a trial on any machine can fetch another's outputs.

The remote is `shortrun sweep --dvc-remote URL` (or $SHORTRUN_DVC_REMOTE), written to each clone's
`.dvc/config.local`, never committed. Without one, trials keep their outputs in their own clones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml
from pydantic import BaseModel

from flows.stages import dvc_output

REMOTE_NAME = "sweep"
LOCK_FILE = "dvc.lock"
SHARED_STAGE = "prepare"


class DataSharing(BaseModel):
    """What a trial needs to share through the remote: its URL and the `prepare` lock entry of the sweep's
    prepared data."""

    remote_url: str
    prepared_lock: str


def use_remote(workspace: Path, url: str) -> None:
    """Make `url` the workspace's default remote, in its local config (never committed)."""
    dvc_output(workspace, "remote", "add", "--local", "--force", "--default", REMOTE_NAME, url)


def prepare_shared(workspace: Path, env: Mapping[str, str]) -> str:
    """`dvc repro prepare` in the workspace (`env` for its stage), push its outputs; returns the lock entry
    trials seed theirs with."""
    dvc_output(workspace, "repro", "--single-item", SHARED_STAGE, env=env)
    dvc_output(workspace, "push", "--quiet", SHARED_STAGE)
    stages = yaml.safe_load((workspace / LOCK_FILE).read_text(encoding="utf-8"))["stages"]
    return yaml.safe_dump({SHARED_STAGE: stages[SHARED_STAGE]}, sort_keys=False)


def seed_lock(workspace: Path, entry: str) -> None:
    """Write the shared `prepare` entry into the workspace's dvc.lock (other stages' entries are kept)."""
    path = workspace / LOCK_FILE
    lock = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    lock = lock or {"schema": "2.0", "stages": {}}
    lock["stages"] = {**yaml.safe_load(entry), **{k: v for k, v in lock["stages"].items() if k != SHARED_STAGE}}
    path.write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")


def pull_shared(workspace: Path, sharing: DataSharing, fresh: bool) -> None:
    """Before a trial: point it at the remote, seed a fresh clone's lock with the shared data, fetch what it names."""
    use_remote(workspace, sharing.remote_url)
    if fresh:
        seed_lock(workspace, sharing.prepared_lock)
    dvc_output(workspace, "pull", "--quiet", "--allow-missing")


def push(workspace: Path) -> None:
    """Send every cached output the workspace's dvc.lock names to the remote."""
    dvc_output(workspace, "push", "--quiet")
