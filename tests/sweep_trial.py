"""A cheap stand-in for `shortrun run` as a sweep's trial command: seconds instead of minutes.

It reads the trial workspace's params.yaml, opens its MLflow run the way the pipeline does (a child of
the sweep's parent run through shortrun.sweep.sweep_tags), logs a validation metric that depends on the
searched settings (best at langevin.steps = 7) and a test metric, and writes a file into its workspace.
`langevin.steps: 13` makes it fail, as a broken trial would; `langevin.steps: 11` makes it hang (a trial
whose worker is then killed). $SWEEP_TRIAL_HOLD_S keeps every trial running that many seconds longer (so that
a pool's second worker takes the second trial even on a loaded machine).
"""
import os
import sys
import time
from pathlib import Path

import mlflow

from shortrun.ops.tracking import connect
from shortrun.params import load_config
from shortrun.sweep import sweep_tags

cfg = load_config("params.yaml")
connect()
with mlflow.start_run(run_name=f"pipeline-{cfg.preset}", tags=sweep_tags(os.environ)):
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/trial.txt").write_text(f"{cfg.langevin.steps} {cfg.langevin.step_size}\n")
    if cfg.langevin.steps == 11:
        time.sleep(600)
    time.sleep(float(os.environ.get("SWEEP_TRIAL_HOLD_S", "0")))
    if cfg.langevin.steps == 13:
        print("shortrun: error: stage train@sri: the chain diverged", file=sys.stderr)
        sys.exit(2)
    valid = abs(cfg.langevin.steps - 7) + cfg.langevin.step_size
    mlflow.log_metrics({"train.sri.best_valid_nll": valid, "evaluate.sri.nll": 100 + valid,
                        "classify.budgets.100.test_acc_mean": 0.5})
