"""Processes an end-to-end test starts (servers, `shortrun serve`, workers), stopped by pid with all they started.

Each process starts in a session of its own, its output goes to a log file the test can quote when it
fails, and `stop` ends the process group and every descendant found beforehand (the pipeline runs
`dvc repro` in sessions of their own, out of reach of the group signal). Tests hold a `Processes` in a
fixture whose `finally` calls `stop_all`, so nothing outlives a failing test.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import httpx
import psutil


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie lingers until init reaps it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 1.0,
               details: Callable[[], str] = lambda: "") -> object:
    """Poll `condition` until it returns something truthy (returned); fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{details()}")


def wait_healthy(api_url: str, proc: subprocess.Popen, timeout_s: float,
                 details: Callable[[], str] = lambda: "") -> None:
    """Wait until a server (Prefect API, MLflow) answers /health; fail at once if `proc` (it, or its client) ended."""
    def healthy() -> bool:
        assert proc.poll() is None, f"process exited with code {proc.returncode}\n{details()}"
        try:
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout_s, f"{api_url}/health answering", interval_s=0.5, details=details)


class Processes:
    """Started processes, each with a log file in `log_dir`; stopped by pid, group and descendants."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(list(args), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.started.append(proc)
        self.logs[proc.pid] = log
        return proc

    def tail(self, proc: subprocess.Popen, lines: int = 40) -> str:
        text = self.logs[proc.pid].read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, grace_s: float = 15) -> None:
        """SIGTERM to the process group and every descendant, SIGKILL to whatever is left after `grace_s`."""
        tree = descendants(proc.pid)
        if proc.poll() is None:
            tree.insert(0, psutil.Process(proc.pid))
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for child in tree:
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                pass
        _, left = psutil.wait_procs(tree, timeout=grace_s)
        for child in left:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        proc.wait(timeout=5)

    def stop_all(self) -> None:
        for proc in reversed(self.started):  # clients before the server they talk to
            self.stop(proc)


def start_mlflow_server(processes: Processes, root: Path) -> str:
    """`mlflow server` with a SQLite store and an artifact folder under `root`, on a free loopback port; its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    proc = processes.start("mlflow", [str(Path(sys.executable).parent / "mlflow"), "server",
                                      "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                      "--artifacts-destination", str(root / "artifacts"),
                                      "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1"],
                           cwd=root, env=os.environ)
    wait_healthy(url, proc, 240, details=lambda: processes.tail(proc))
    return url


def start_prefect_server(processes: Processes, root: Path, cwd: Path,
                         extra: Mapping[str, str] | None = None) -> tuple[dict[str, str], subprocess.Popen]:
    """`prefect server start` on a free loopback port with its PREFECT_HOME under `root`; the environment that
    points at it (workers ask for runs every 2 s instead of 10 s: shorter waits, same path) and its process."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect-home"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_WORKER_QUERY_SECONDS": "2", **(extra or {})}
    proc = processes.start("prefect-server", [str(Path(sys.executable).parent / "prefect"), "server", "start",
                                              "--host", "127.0.0.1", "--port", str(port)], cwd, env)
    wait_healthy(env["PREFECT_API_URL"], proc, timeout_s=180, details=lambda: processes.tail(proc))
    return env, proc
