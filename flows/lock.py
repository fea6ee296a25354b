"""One pipeline run per workspace: a file lock in `.shortrun/` that says who holds it.

Prefect's deployment concurrency limit only guards runs of one deployment; this lock also
covers a hand-started `shortrun run` overlapping a scheduled one. DVC's own repo lock is the
second line of defence, but it fails mid-pipeline; this one refuses before any work starts.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from shortrun.errors import ShortrunError
from shortrun.io import write_json

LOCK_DIR = Path(".shortrun")
LOCK_FILE = LOCK_DIR / "pipeline.lock"
OWNER_FILE = LOCK_DIR / "pipeline.owner.json"


class WorkspaceBusy(ShortrunError):
    """Another pipeline run holds this workspace."""


def describe_owner(root: Path) -> str:
    """Who holds the lock, from the note the holder wrote (it may be gone if the holder just finished)."""
    try:
        owner = json.loads((root / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "an unknown process"
    return (f"pid {owner.get('pid')} on {owner.get('host')}, flow run {owner.get('flow_run')}, "
            f"started {owner.get('started')}")


@contextmanager
def workspace_lock(root: str | Path = ".", wait_s: float = 0.0, flow_run: str | None = None,
                   log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the workspace's pipeline lock; wait up to `wait_s` seconds, then raise WorkspaceBusy naming the holder."""
    root = Path(root).resolve()
    (root / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe_owner(root)
        if wait_s <= 0:
            raise WorkspaceBusy(f"{root / LOCK_FILE}: another pipeline run holds this workspace ({holder}); "
                                "skipped this run") from None
        log(f"another pipeline run holds {root / LOCK_FILE} ({holder}); waiting up to {wait_s:g} s")
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise WorkspaceBusy(f"{root / LOCK_FILE}: still held after waiting {wait_s:g} s ({describe_owner(root)}); "
                                "skipped this run") from None
    try:
        note = {"pid": os.getpid(), "host": socket.gethostname(), "flow_run": flow_run,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_json(root / OWNER_FILE, note)
        yield
    finally:
        (root / OWNER_FILE).unlink(missing_ok=True)
        lock.release()
