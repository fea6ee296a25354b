"""A stop signal that arrives inside an MLflow write stops the stage after the write, not inside it, and the
stage's run ends KILLED.

The signal is sent from the SQLite driver call of a metrics insert, just after the insert ran and before its
commit: the moment that once left the write lock held, so that ending the MLflow run failed with "database is
locked" (tests/test_failures.py met it under load, a SIGTERM to a real `shortrun stage train`).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Iterator

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from shortrun.ops.stop_signals import HOLD_LIMIT_S, STOP_SIGNALS, StopSignals
from shortrun.ops.tracking import stage_run
from shortrun.params import build_config

METRICS = {"valid_nll": 1.5, "valid_ppl": 4.5}  # two or more: one insert of several rows, as an epoch logs them


@pytest.fixture
def stop_signals() -> Iterator[StopSignals]:
    saved = {signum: signal.getsignal(signum) for signum in (*STOP_SIGNALS, signal.SIGALRM)}
    handlers = StopSignals()
    handlers.install()
    try:
        yield handlers
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.fixture
def signal_after_metrics_insert(monkeypatch) -> list[int]:
    """Send the next signal put in the returned list to this process right after MLflow's next metrics insert."""
    pending: list[int] = []
    original = SQLiteDialect_pysqlite.do_executemany

    def insert_then_signal(self, cursor, statement, parameters, context=None):
        original(self, cursor, statement, parameters, context)
        if pending and "INSERT INTO metrics" in statement:
            os.kill(os.getpid(), pending.pop())

    monkeypatch.setattr(SQLiteDialect_pysqlite, "do_executemany", insert_then_signal)
    return pending


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_stop_signal_inside_a_metrics_write_interrupts_after_it(stage_workspace, stop_signals,
                                                                   signal_after_metrics_insert, signum):
    signal_after_metrics_insert.append(signum)
    with pytest.raises(KeyboardInterrupt):
        with stage_run("train-sri", build_config("tiny")) as run:
            mlflow.log_metrics(METRICS, step=1)
            assert not signal_after_metrics_insert  # the signal was sent inside the write ...
            time.sleep(HOLD_LIMIT_S)  # ... and arrives here, once the write has returned
    ended = MlflowClient().get_run(run.info.run_id)
    assert ended.data.metrics == METRICS
    assert ended.info.status == "KILLED" and ended.info.end_time is not None  # stopped, not failed
    assert stop_signals.held_since is None


def test_a_stop_signal_outside_tracking_interrupts_at_once(stop_signals):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(HOLD_LIMIT_S / 10)  # a held-back signal would come only after HOLD_LIMIT_S
    assert stop_signals.held_since is None

