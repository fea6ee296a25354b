"""The schedule and the overlap guards, checked without a Prefect server (tests/test_schedule_fires.py runs them)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.lock import LOCK_FILE, WorkspaceBusy, describe_owner, workspace_lock
from flows.schedule import SchedulerUnavailable, build_deployment, describe_schedule, serve
from shortrun.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_deployment_has_the_cron_and_cancels_overlapping_runs():
    deployment = build_deployment("*/15 2 * * 1", name="nightly-test")
    assert deployment.name == "nightly-test"
    assert [s.schedule.cron for s in deployment.schedules] == ["*/15 2 * * 1"]
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployment.entrypoint == "flows.pipeline.pipeline"


def test_interval_deployment_runs_every_n_seconds():
    deployment = build_deployment(name="often", interval_s=30)
    (schedule,) = deployment.schedules
    assert schedule.schedule.interval.total_seconds() == 30
    assert describe_schedule(deployment) == "every 30 s"
    assert describe_schedule(build_deployment()) == "cron '0 3 * * *'"  # the default: daily at 03:00


@pytest.mark.parametrize("cron, interval_s, message", [
    ("0 3 * * *", 60, "give one schedule, not both"),
    (None, 0, "--interval 0: must be a positive number of seconds"),
])
def test_conflicting_or_empty_schedule_is_a_config_error(cron, interval_s, message):
    with pytest.raises(ConfigError, match=message):
        build_deployment(cron, interval_s=interval_s)


def test_bad_cron_is_a_config_error():
    with pytest.raises(ConfigError, match="--cron 'every day'"):
        build_deployment("every day")


def test_serve_without_a_server_says_how_to_start_one():
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(SchedulerUnavailable) as err:
            serve("0 3 * * *", "no-server")
    message = str(err.value)
    assert "prefect server start" in message and "PREFECT_API_URL" in message and "\n" not in message


def test_serve_with_an_unreachable_server_names_it():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with pytest.raises(SchedulerUnavailable, match="http://127.0.0.1:9/api"):
            serve("0 3 * * *", "no-server")


def test_prefect_yaml_deploys_the_flow_with_a_schedule_and_limit():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).is_file() and name == "pipeline"
    assert deployment["schedules"][0]["cron"] == "0 3 * * *"
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert deployment["work_pool"]["name"] == "shortrun"


def test_second_run_on_a_locked_workspace_is_refused_naming_the_holder(tmp_path):
    with workspace_lock(tmp_path, flow_run="first-run"):
        with pytest.raises(WorkspaceBusy) as err:
            with workspace_lock(tmp_path, flow_run="second-run"):
                pytest.fail("the lock was granted twice")
    message = str(err.value)
    assert str(tmp_path / LOCK_FILE) in message and "first-run" in message and "skipped" in message
    with workspace_lock(tmp_path, flow_run="third-run"):  # released after the first run
        pass


def test_waiting_run_says_why_and_proceeds_when_the_holder_finishes(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from flows.lock import workspace_lock
            with workspace_lock({str(tmp_path)!r}, flow_run="other-process"):
                print("held", flush=True)
                time.sleep(1.5)
        """)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        messages: list[str] = []
        start = time.monotonic()
        with workspace_lock(tmp_path, wait_s=30, flow_run="waiting", log=messages.append):
            assert time.monotonic() - start > 1.0  # granted only once the holder let go
            assert "waiting" in describe_owner(tmp_path)
    finally:
        holder.wait(timeout=30)
    assert len(messages) == 1 and "other-process" in messages[0] and "waiting up to 30 s" in messages[0]


def test_wait_that_runs_out_is_refused(tmp_path):
    with workspace_lock(tmp_path, flow_run="long-run"):
        with pytest.raises(WorkspaceBusy, match="still held after waiting 0.2 s .*long-run"):
            with workspace_lock(tmp_path, wait_s=0.2, log=lambda _: None):
                pass
