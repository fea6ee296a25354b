"""What keeping freed memory in the process (shortrun.allocator) saves in the SRI training step.

malloc's settings hold for a whole process, so the two cases run as child processes, one with glibc's
defaults (SHORTRUN_KEEP_FREED_MEMORY=0) and one as shortrun runs, taken in turn for ROUNDS rounds so that
both see the same machine load. Each child builds a trainer at a preset's size (bench.train_throughput's
random batches), takes one warm-up step, then STEPS timed steps, and reports its best step, the page
faults and system time per step, and its peak resident memory.

    python -m bench allocator
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch

from bench.train_throughput import SIZES, print_per_size_and_path, random_batches, ready_trainer, timed_step
from shortrun.allocator import OPT_OUT_ENV, keep_freed_memory
from shortrun.params import build_config

ROUNDS = 3
STEPS = 3


@dataclass(frozen=True)
class StepCost:
    """One child's SRI training steps: whether freed memory was kept, and what a step cost."""

    kept: bool
    best_ms: float
    faults_per_step: float
    system_s_per_step: float
    peak_mib: float


def measure_steps(preset: str, precision: str, steps: int) -> StepCost:
    """In this process: STEPS timed SRI training steps at the preset's size, after one warm-up step."""
    vocab, mean_len = SIZES[preset]
    cfg = build_config(preset, {"train": {"device": "cpu", "precision": precision}})
    batches = random_batches(cfg, vocab, mean_len, count=4)
    trainer = ready_trainer(cfg, "sri", vocab, batches[0])
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = [timed_step(trainer, batches[i % len(batches)], i, cfg.langevin.temperature, torch.device("cpu"))
               for i in range(steps)]
    after = resource.getrusage(resource.RUSAGE_SELF)
    return StepCost(kept=keep_freed_memory(), best_ms=1e3 * min(seconds),
                    faults_per_step=(after.ru_minflt - before.ru_minflt) / steps,
                    system_s_per_step=(after.ru_stime - before.ru_stime) / steps, peak_mib=after.ru_maxrss / 1024)


def measure_in_child(preset: str, precision: str, steps: int, keep: bool) -> StepCost:
    """measure_steps in a fresh Python process, with freed memory kept or glibc's defaults."""
    env = {**os.environ, OPT_OUT_ENV: "1" if keep else "0"}
    command = [sys.executable, "-m", "bench.allocator", "--child", preset, precision, str(steps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return StepCost(**json.loads(done.stdout.splitlines()[-1]))


def compare(preset: str, precision: str) -> str:
    """One line: glibc's defaults against kept memory, the best of ROUNDS children each, taken in turn."""
    runs: dict[bool, list[StepCost]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for keep in runs:
            runs[keep].append(measure_in_child(preset, precision, STEPS, keep))
    best = {keep: min(costs, key=lambda cost: cost.best_ms) for keep, costs in runs.items()}

    def described(cost: StepCost) -> str:
        return (f"{cost.best_ms:.0f} ms ({cost.faults_per_step:,.0f} page faults, {cost.system_s_per_step:.2f} s "
                f"system per step; peak {cost.peak_mib:.0f} MiB)")

    return (f"{preset:5} {precision:9} SRI step: glibc defaults {described(best[False])} -> kept {described(best[True])}; "
            f"x{best[False].best_ms / best[True].best_ms:.2f}")


def main() -> None:
    print_per_size_and_path("freed memory kept in the process against glibc's defaults",
                            f"best step of {STEPS} in each of {ROUNDS} child processes per case, cases in turn",
                            lambda preset, path: [compare(preset, path.precision)])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        preset, precision, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(asdict(measure_steps(preset, precision, steps))))
    else:
        main()
