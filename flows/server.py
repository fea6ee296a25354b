"""The temporary Prefect server of `shortrun run`: started by us, and gone when the run is gone.

Without PREFECT_API_URL, Prefect starts a temporary server itself (SubprocessASGIServer) and stops it
only from an atexit hook, so a `shortrun run` that is killed (`kill -9`, an OOM kill, a closed CI job)
leaves that server running as an orphan, holding a port and the SQLite database in PREFECT_HOME. Here
`shortrun run` starts the same kind of server itself (Prefect's app factory in ephemeral mode: API only,
no UI, no scheduler) and points PREFECT_API_URL at it for the run. The server process asks the Linux
kernel to send it SIGTERM when its parent dies (PR_SET_PDEATHSIG), so it ends with the run however the
run ends, with no pid file to find and clean up later. On a normal exit it is stopped in `finally`.
The kernel ties the signal to the thread that started the server, so `prefect_api` is entered on the
main thread (as `shortrun run` does), never on a short-lived worker thread.
On systems without prctl (macOS) the death signal is skipped and only the normal stop applies.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import httpx
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

from shortrun.errors import ShortrunError

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Prefect's own switches for its temporary server: ephemeral services only, no UI, no telemetry.
SERVER_ENV = {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1", "PREFECT_UI_ENABLED": "0"}
# Wall-clock seconds for the server to answer: a first start creates and migrates its database, which
# takes well over Prefect's default 20 s on a busy 2-core machine.
STARTUP_TIMEOUT_S = 120
NO_TELEMETRY = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # unless the user's environment says otherwise


class ServerFailed(ShortrunError):
    """The temporary Prefect server did not come up."""


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when its parent dies (Linux), or None.

    The libc call is looked up before the fork; in the child it only calls prctl and getppid. If the
    parent died between fork and prctl, the child would never get the signal, so it ends itself.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _free_port() -> int:
    """A loopback port nothing listens on now (Prefect's own picks at random from 8000–8999 instead)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, api_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"temporary Prefect server exited with code {proc.returncode} before answering "
                               f"at {api_url}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServerFailed(f"temporary Prefect server did not answer at {api_url} within {timeout_s:.0f} s; "
                       "start one with `prefect server start` and set PREFECT_API_URL to it")


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _drain_prefect_workers(timeout_s: float = 10) -> None:
    """Send the logs and events still queued for the server before it stops (else they retry at exit)."""
    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API to run against: PREFECT_API_URL if set, else a temporary server that lives as long as we do."""
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env={**NO_TELEMETRY, **os.environ, **SERVER_ENV}, preexec_fn=_die_with_parent(),
    )
    try:
        _wait_healthy(proc, api_url, max(STARTUP_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        # The environment for Prefect's worker threads and our subprocesses, the settings for this context.
        with _environ("PREFECT_API_URL", api_url), temporary_settings(updates={PREFECT_API_URL: api_url}):
            try:
                yield api_url
            finally:
                _drain_prefect_workers()
    finally:
        _stop(proc)
