"""One sweep trial in a workspace of its own: a git clone at the sweep's commit, the trial's params, its command.

The same function runs a trial on the sweep's own machine (flows/sweep.py, local path) and on any worker
of a Prefect work pool (flows/sweep_pool.py). A workspace that exists already is reused, so a retried
trial resumes where DVC left it; a trial never writes into another's workspace. With a DVC remote (flows/dvc_remote.py) a trial starts from
the sweep's prepared data and pushes its outputs when its command succeeds. Nothing here imports Prefect.
"""
from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from flows.dvc_remote import DataSharing, pull_shared, push
from shortrun.errors import ERROR_PREFIX, ShortrunError
from shortrun.params import PARAMS_FILE, write_params
from shortrun.sweep import SWEEP_TRIAL_ENV

TRIAL_TIMEOUT_S = 72 * 3600
PHASES_PREFIX = "shortrun: trial seconds: "


def _git(*args: str, cwd: Optional[Path] = None) -> None:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise ShortrunError(f"git {args[0]} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")


def prepare_workspace(source: str, commit: str, dest: Path, preset: Optional[str], overrides: Sequence[str],
                      data_root: Optional[str]) -> bool:
    """A clone of `source` at `commit` in `dest` (kept when it exists) with the trial's params.yaml; True when new.

    `data_root` None lets the workspace find the corpora itself ($SHORTRUN_DATA, else a shared/data above it).
    """
    fresh = not (dest / ".git").is_dir()
    if fresh:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "--quiet", "--no-checkout", source, str(dest))
        _git("checkout", "--quiet", commit, cwd=dest)
    write_params(preset, list(overrides), dest / PARAMS_FILE, root=data_root)
    return fresh


def _error_line(log: Path) -> str:
    """The trial's own one-line error (what `shortrun` printed), else its last line."""
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    own = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    return (own or lines or ["no output"])[-1][:300]


class PhaseClock:
    """Seconds spent in each phase of a trial (workspace, dvc pull, command, dvc push), for its log's last line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)

    def line(self) -> str:
        return f"{PHASES_PREFIX}{json.dumps(self.seconds)}\n"


def read_phases(log_file: Path) -> dict[str, float]:
    """The phase seconds a trial's log ends with (empty when it has none)."""
    lines = [line for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.startswith(PHASES_PREFIX)]
    return json.loads(lines[-1][len(PHASES_PREFIX):]) if lines else {}


def run_trial(source: str, commit: str, dest: Path, key: str, preset: Optional[str], overrides: Sequence[str],
              data_root: Optional[str], command: Sequence[str], env: Mapping[str, str], log_file: Path,
              sharing: Optional[DataSharing] = None) -> Optional[str]:
    """Prepare the workspace and run the trial command there; None when it exited 0 (and its outputs were
    pushed, with `sharing`), else its one-line error. The log ends with the seconds of each phase."""
    clock = PhaseClock()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("", encoding="utf-8")
    try:
        with clock.phase("workspace"):
            fresh = prepare_workspace(source, commit, dest, preset, overrides, data_root)
        if sharing:
            with clock.phase("dvc_pull"):
                pull_shared(dest, sharing, fresh)
        with log_file.open("a", encoding="utf-8") as out, clock.phase("command"):
            done = subprocess.run(list(command), cwd=dest, stdout=out, stderr=subprocess.STDOUT,
                                  env={**env, SWEEP_TRIAL_ENV: key}, timeout=TRIAL_TIMEOUT_S)
        if done.returncode:
            return f"exit {done.returncode}: {_error_line(log_file)}"
        if sharing:
            with clock.phase("dvc_push"):
                push(dest)
    except subprocess.TimeoutExpired:
        return f"stopped after {TRIAL_TIMEOUT_S} s"
    except (ShortrunError, OSError) as err:
        return (str(err).splitlines() or [type(err).__name__])[0][:300]
    finally:
        with log_file.open("a", encoding="utf-8") as out:
            out.write(clock.line())
    return None
