"""One sweep trial in a workspace of its own: a git clone at the sweep's commit, the trial's params, its command.

The same function runs a trial on the sweep's own machine (flows/sweep.py, local path) and on any worker
of a Prefect work pool (flows/sweep_pool.py). A workspace that exists already is reused, so a retried
trial resumes where DVC left it; a trial never writes into another's workspace. Nothing here imports Prefect.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Mapping, Optional, Sequence

from shortrun.errors import ERROR_PREFIX, ShortrunError
from shortrun.params import PARAMS_FILE, write_params
from shortrun.sweep import SWEEP_TRIAL_ENV

TRIAL_TIMEOUT_S = 72 * 3600


def _git(*args: str, cwd: Optional[Path] = None) -> None:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise ShortrunError(f"git {args[0]} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")


def prepare_workspace(source: str, commit: str, dest: Path, preset: Optional[str], overrides: Sequence[str],
                      data_root: Optional[str]) -> None:
    """A clone of `source` at `commit` in `dest` (kept when it exists) with the trial's params.yaml.

    `data_root` None lets the workspace find the corpora itself ($SHORTRUN_DATA, else a shared/data above it).
    """
    if not (dest / ".git").is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "--quiet", "--no-checkout", source, str(dest))
        _git("checkout", "--quiet", commit, cwd=dest)
    write_params(preset, list(overrides), dest / PARAMS_FILE, root=data_root)


def _error_line(log: Path) -> str:
    """The trial's own one-line error (what `shortrun` printed), else its last line."""
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    own = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    return (own or lines or ["no output"])[-1][:300]


def run_trial(source: str, commit: str, dest: Path, key: str, preset: Optional[str], overrides: Sequence[str],
              data_root: Optional[str], command: Sequence[str], env: Mapping[str, str], log_file: Path) -> Optional[str]:
    """Prepare the workspace and run the trial command there; None when it exited 0, else its one-line error."""
    try:
        prepare_workspace(source, commit, dest, preset, overrides, data_root)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("w", encoding="utf-8") as out:
            done = subprocess.run(list(command), cwd=dest, stdout=out, stderr=subprocess.STDOUT,
                                  env={**env, SWEEP_TRIAL_ENV: key}, timeout=TRIAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"stopped after {TRIAL_TIMEOUT_S} s"
    except (ShortrunError, OSError) as err:
        return (str(err).splitlines() or [type(err).__name__])[0][:300]
    return f"exit {done.returncode}: {_error_line(log_file)}" if done.returncode else None
