"""Run DVC from the flow: the stage list, `dvc repro` of one stage with streamed output, `dvc status`.

Stages always run through `dvc repro`, so DVC decides what is up to date and dvc.lock stays true:
a flow run leaves the workspace exactly as `dvc repro` would.
"""
from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Mapping

from shortrun.errors import ERROR_PREFIX, ShortrunError
from shortrun.paths import STAGES

Log = Callable[[str], None]


# Output that marks a failure worth one retry: a lock held by another process, a store that blipped.
TRANSIENT_MARKERS = ("Unable to acquire lock", "database is locked", "Connection refused", "ConnectionError",
                     "Temporary failure in name resolution")


class StageFailed(ShortrunError):
    """`dvc repro` of a stage exited with an error; `transient` when its output says a retry may succeed."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StageTimeout(StageFailed):
    """A stage ran past its time limit and was stopped."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for DVC and the stage commands it starts.

    The interpreter's bin folder goes first on PATH (dvc.yaml calls `shortrun`), output is unbuffered,
    and progress bars redraw at most every 30 s so they do not flood the run log.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TQDM_MININTERVAL", "30")
    env.update(extra or {})
    return env


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def dvc_output(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """`dvc <args>` in `cwd` (`env` added to its environment); its stdout, or StageFailed with DVC's last line."""
    done = subprocess.run(_dvc(*args), cwd=cwd, env=child_env(env), capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise StageFailed(f"dvc {' '.join(args)} failed in {cwd}: {lines[-1]}")
    return done.stdout


def stage_targets(cwd: Path = Path(".")) -> list[str]:
    """Every stage of dvc.yaml with foreach items expanded (e.g. train@sri), in DAG order."""
    names = dvc_output(cwd, "stage", "list", "--name-only").split()
    rank = {base: i for i, base in enumerate(STAGES)}  # a stage not named there runs after these
    return sorted(names, key=lambda name: rank.get(name.split("@")[0], len(STAGES)))


def dvc_status(cwd: Path = Path(".")) -> dict:
    """`dvc status --json`: empty when every stage is up to date."""
    out = dvc_output(cwd, "status", "--json").strip()
    return json.loads(out) if out else {}


class _Output:
    """What DVC printed for one stage: the last lines (for errors) and whether the stage ran."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=20)
        self.outcome = "skipped"

    def feed(self, line: str) -> None:
        self.tail.append(line)
        if line.startswith("Running stage"):
            self.outcome = "ran"
        elif "is cached - skipping run" in line and self.outcome == "skipped":
            self.outcome = "restored"

    def transient(self) -> bool:
        return any(marker in line for line in self.tail for marker in TRANSIENT_MARKERS)

    def own_error(self) -> str | None:
        """The stage command's own one-line error (what `shortrun stage` printed), if it printed one."""
        own = [line[len(ERROR_PREFIX):] for line in self.tail if line.startswith(ERROR_PREFIX)]
        return own[-1] if own else None

    def error_line(self) -> str:
        errors = [line for line in self.tail if "ERROR" in line]
        return (errors or list(self.tail) or ["no output"])[-1]

    def failure(self, target: str, returncode: int) -> str:
        """One line for a failed `dvc repro`: the stage's own error, else DVC's (a lock, a missing input, a signal)."""
        own = self.own_error()
        if own is not None:
            return f"stage {target}: {own}"
        return f"stage {target}: dvc repro exited with {returncode}: {self.error_line()}"


def _kill(proc: subprocess.Popen) -> None:
    """Stop DVC and the stage command it started (they share a process group)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def repro(target: str, log: Log, timeout_s: float, extra_env: Mapping[str, str] | None = None,
          cwd: Path = Path(".")) -> str:
    """`dvc repro --single-item <target>` with its output streamed to `log`; returns ran, restored or skipped."""
    proc = subprocess.Popen(_dvc("repro", "--single-item", target), cwd=cwd, env=child_env(extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True)
    output = _Output()

    def pump() -> None:
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                output.feed(line)
                log(line)

    # The reader logs in the caller's context: a Prefect run logger needs the flow's settings (its API URL);
    # a bare thread would see Prefect's import-time settings and start a temporary server of its own.
    reader = threading.Thread(target=contextvars.copy_context().run, args=(pump,), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise StageTimeout(f"stage {target}: stopped after its {timeout_s:g} s time limit") from None
    finally:
        if proc.poll() is None:
            _kill(proc)
        reader.join(timeout=5)
    if proc.returncode:
        raise StageFailed(output.failure(target, proc.returncode), transient=output.transient())
    return output.outcome
