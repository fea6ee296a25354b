"""Stop signals of a stage command: SIGTERM (the flow's time limit, `kill`) and Ctrl-C become a KeyboardInterrupt,
so that the stage's `finally` blocks run (temporary output folders are removed, training saves a checkpoint), but
never inside a tracking-store write.

An interrupt between MLflow's SQLite insert and its commit leaves the write lock with a connection that the
unwinding exception still references; ending the run then waits out MLflow's 20-second busy timeout and fails
with "database is locked", so the stage exits with an error instead of as interrupted and its run stays open.
A signal that arrives while MLflow (or SQLAlchemy under it) is on the stack is therefore held back and looked at
again every RETRY_S, until that call has returned or HOLD_LIMIT_S has passed (a tracking server that hangs does
not keep the stage from stopping).
"""
from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Optional

RETRY_S = 0.05
HOLD_LIMIT_S = 10.0
TRACKING_PACKAGES = ("mlflow", "sqlalchemy")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def in_tracking_call(frame: Optional[FrameType]) -> bool:
    """Whether a frame of MLflow or SQLAlchemy is on the stack that `frame` ends."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).split(".")[0] in TRACKING_PACKAGES:
            return True
        frame = frame.f_back
    return False


class StopSignals:
    """The handlers of SIGTERM and SIGINT (main thread only); a held-back signal comes back as SIGALRM."""

    def __init__(self) -> None:
        self.held_since: Optional[float] = None

    def install(self) -> None:
        for signum in (*STOP_SIGNALS, signal.SIGALRM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if signum == signal.SIGALRM and self.held_since is None:
            return  # not ours: nothing is held back
        if self.held_since is None:
            self.held_since = time.monotonic()
        if in_tracking_call(frame) and time.monotonic() - self.held_since < HOLD_LIMIT_S:
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
            return
        self.held_since = None
        raise KeyboardInterrupt
