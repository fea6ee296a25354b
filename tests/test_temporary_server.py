"""`shortrun run` without PREFECT_API_URL starts a temporary Prefect server that ends with it, even on `kill -9`."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.server import prefect_api
from tests.processes import Processes, alive, descendants, wait_healthy, wait_until
from tests.workspace import copy_project, entered


def is_server(proc: psutil.Process) -> bool:
    try:
        return "uvicorn" in proc.cmdline()
    except psutil.Error:  # a short-lived child that is gone already
        return False


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def test_a_configured_server_is_used_and_none_started():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with prefect_api() as api:
            assert api == "http://127.0.0.1:9/api"
            assert psutil.Process().children() == []


@pytest.mark.slow
def test_temporary_server_dies_with_a_killed_run(tmp_path, processes):
    with entered(copy_project(tmp_path / "workspace", preset="tiny")) as workspace:
        env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        run = processes.start("run", [str(Path(sys.executable).parent / "shortrun"), "run"], workspace, env)

        def server() -> psutil.Process | None:
            assert run.poll() is None, f"shortrun run ended early:\n{processes.tail(run)}"
            return next((p for p in descendants(run.pid) if is_server(p)), None)

        found = wait_until(server, 60, "shortrun run's temporary server started", interval_s=0.2)
        cmdline = found.cmdline()
        port = cmdline[cmdline.index("--port") + 1]
        wait_healthy(f"http://127.0.0.1:{port}/api", run, timeout_s=120, details=lambda: processes.tail(run))
        wait_until(lambda: "Beginning flow run" in processes.tail(run, 200), 120, "the flow run begun",
                   details=lambda: processes.tail(run))
        tree = descendants(run.pid)  # the run's children now: a stage's dvc may be among them
        try:
            assert [p.pid for p in tree if is_server(p)] == [found.pid]  # no second server of Prefect's
            os.kill(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
            wait_until(lambda: not alive(found), 15, f"temporary server (pid {found.pid}) gone after kill -9 of its run",
                       interval_s=0.2)
        finally:
            for child in tree:  # what the killed run had started, if still there
                if alive(child):
                    child.kill()
