"""Throwaway copies of the project for end-to-end tests: git + DVC, the shared corpora, an own MLflow store.

Tests that exercise a promise the way a user meets it (a scheduled run, `dvc repro` after a change, a
registry across corpora) need a workspace of their own; they build it here rather than each copying
the project in their own way.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from shortrun.params import DATA_ENV, data_root, write_params

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd` with a throwaway identity; return stdout."""
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def dvc(*args: str, cwd: Path, check: bool = True) -> str:
    """Run DVC with this interpreter in `cwd`; return stdout."""
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=check,
                          capture_output=True, text=True).stdout


def copy_project(dest: Path, preset: str | None = None) -> Path:
    """Copy the project's tracked and unignored files (not tests/) into `dest`, as a fresh git + DVC repo.

    Its params.yaml reads the shared corpora by their absolute path (the committed relative root does not
    reach them from a temporary folder), with `preset`'s values written out in full when one is given.
    """
    for name in git("ls-files", "-co", "--exclude-standard", cwd=ROOT).splitlines():
        source = ROOT / name
        if source.is_file() and not name.startswith("tests/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    write_params(preset, [], dest / "params.yaml", root=str(data_root(ROOT)))
    git("init", "-q", cwd=dest)
    if not (dest / ".dvc" / "config").is_file():
        dvc("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "workspace", cwd=dest)
    return dest


@contextmanager
def entered(dest: Path) -> Iterator[Path]:
    """Work inside `dest`: its own SQLite MLflow store, the corpora found the way the product finds them."""
    corpora = data_root(ROOT)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(dest)
        patch.setenv(DATA_ENV, str(corpora))
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")  # `shortrun` for dvc.yaml
        uri = f"sqlite:///{dest / 'mlflow.db'}"
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)  # MLflow writes it to os.environ; the patch restores it
        yield dest


def commit_placeholders(dest: Path) -> None:
    """Record every stage of `dest` as up to date, with placeholder outputs and without running any stage.

    Afterwards `dvc status` lists exactly the stages that a change to their inputs makes stale, which is
    what a dependency test needs to see (in seconds, where running the stages would take minutes). The
    prepared data are the real ones (the library's prepare_corpus, in this process): a test that reruns
    prepare then sees which of its parts really changed.
    """
    from dvc.repo import Repo

    from shortrun.data.preparation import prepare_corpus
    from shortrun.params import corpus_root, load_config
    from shortrun.paths import PREPARED

    data = load_config(dest / "params.yaml").data
    prepare_corpus(data, corpus_root(data, dest), dest / PREPARED)
    with Repo(str(dest)) as repo:
        paths = [Path(out.fs_path) for out in repo.index.outs]
    for path in [p for p in paths if not p.is_relative_to(dest / PREPARED)]:
        folder = path.parent if path.suffix else path
        folder.mkdir(parents=True, exist_ok=True)
        (path if path.suffix else path / "placeholder").write_text("{}\n")
    dvc("commit", "--force", "--quiet", cwd=dest)
