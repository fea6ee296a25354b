"""Wall-clock of a four-trial `tiny` sweep on a Prefect work pool with one worker, then with two, in one run.

Everything is real and on loopback: `prefect server start`, a process work pool, `prefect worker start
--limit 1` processes (one, then two), an `mlflow server` with SQLite, and a DVC remote in a folder. Each
sweep runs this checkout's committed HEAD (`shortrun sweep --pool ... --dvc-remote ...`, default trial
command `shortrun run`), under a name of its own, so nothing is resumed. Printed per worker count: the
sweep's wall-clock, and per trial the trial's own compute (its `shortrun run`) beside the overhead around
it: its workspace (git clone, params), its DVC transfer (pull of the shared data, push of its outputs),
and the rest (the server, scheduling, the sweep's own preparing of the shared data, pickup latency),
i.e. worker-seconds not spent in a trial's phases. Then the speed-up of two workers over one.

    .venv/bin/python -m bench sweep_scaling      # about 10 minutes on 2 cores
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from flows.trial import read_phases
from shortrun.numerics import cpu_model_name
from shortrun.params import DATA_ENV, PARAMS_FILE, corpus_root, load_config
from tests.processes import Processes, start_mlflow_server, start_prefect_server

BIN = Path(sys.executable).parent
CHECKOUT = Path(__file__).resolve().parents[1]
POOL = "bench"
GRID = "langevin.steps=2,3,4,5"
METRIC = "train.sri.best_valid_nll"


@dataclass
class SweepTiming:
    workers: int
    wall_s: float
    phases: list[dict[str, float]]  # one per trial: workspace, dvc_pull, command, dvc_push

    def per_trial(self, *names: str) -> float:
        return mean(sum(p.get(name, 0.0) for name in names) for p in self.phases)

    def rest_per_trial(self) -> float:
        busy = sum(sum(p.values()) for p in self.phases)
        return (self.wall_s * self.workers - busy) / len(self.phases)


def start_prefect(processes: Processes, root: Path) -> dict[str, str]:
    """A Prefect server and the process pool; the environment every command of the bench runs with."""
    env, _ = start_prefect_server(processes, root, root)
    subprocess.run([str(BIN / "prefect"), "--no-prompt", "work-pool", "create", POOL, "--type", "process"],
                   env=env, cwd=root, check=True, capture_output=True)
    return env


def timed_sweep(processes: Processes, root: Path, env: dict[str, str], workers: int) -> SweepTiming:
    """Start `workers` workers, run the sweep to its end, stop them; the wall-clock and each trial's phases."""
    folders = [root / f"{workers}w-worker-{i}" for i in range(workers)]
    started = []
    for folder in folders:
        folder.mkdir()
        started.append(processes.start(folder.name, [str(BIN / "prefect"), "worker", "start", "--pool", POOL,
                                                     "--limit", "1"], folder,
                                       {**env, "SHORTRUN_TRIALS_DIR": str(folder / "trials")}))
    name = f"scaling-{workers}w-{int(time.time())}"
    args = [str(BIN / "shortrun"), "sweep", "--name", name, "--preset", "tiny", "--grid", GRID, "--metric", METRIC,
            "--pool", POOL, "--dvc-remote", str(root / f"{workers}w-remote"), "--trials-dir", str(root / name)]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=CHECKOUT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    for proc in started:
        processes.stop(proc)
    if done.returncode:
        raise SystemExit(f"sweep with {workers} worker(s) failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    logs = [log for folder in folders for log in (folder / "trials" / name).glob("trial-*.log")]
    return SweepTiming(workers, wall, [read_phases(log) for log in logs])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="shortrun-sweep-bench-"))
    processes = Processes(root)
    try:
        corpora = corpus_root(load_config(CHECKOUT / PARAMS_FILE).data, CHECKOUT)
        env = {**start_prefect(processes, root), DATA_ENV: str(corpora)}  # workers find the sweep's corpora
        tracking = start_mlflow_server(processes, root)
        env.update(MLFLOW_TRACKING_URI=tracking, MLFLOW_REGISTRY_URI=tracking)
        print(f"CPU: {cpu_model_name()}, {os.cpu_count()} cores; sweep of 4 tiny trials ({GRID}) on a process pool")
        timings = [timed_sweep(processes, root, env, workers) for workers in (1, 2)]
    finally:
        processes.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'workers':>7} {'wall s':>8} {'trials':>6} | per trial, s: {'compute':>8} {'workspace':>9} "
          f"{'dvc pull+push':>13} {'server, scheduling, rest':>24}")
    for t in timings:
        print(f"{t.workers:>7} {t.wall_s:>8.1f} {len(t.phases):>6} |               {t.per_trial('command'):>8.1f} "
              f"{t.per_trial('workspace'):>9.2f} {t.per_trial('dvc_pull', 'dvc_push'):>13.2f} "
              f"{t.rest_per_trial():>24.1f}")
    print(f"two workers over one: x{timings[0].wall_s / timings[1].wall_s:.2f} wall-clock")
