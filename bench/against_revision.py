"""SRI training tokens/s of this working tree against an earlier revision's code, on the same batches.

Issue 16 asks for SRI training at 2.5 times "today's float32 figure": the float32 rate of the code as it was
when the issue was filed (BASELINE). Figures taken on different days differ by up to 2x on these shared
machines, so the baseline runs here, in the same run: its tree is extracted with `git archive` into a
temporary folder (removed after), and child processes time the SRI step with each tree's own code, with this
tree's installed dependencies. Three cases, taken in turn for ROUNDS rounds so that they see the same load:
the revision in float32, this tree in float32, and this tree with train.precision auto. Every tree trains
with this tree's preset rule (its settings are passed to each, since a preset's rule may have changed since
the revision), so all do the same work. Each child builds a trainer at a preset's size (bench.train_throughput's
random batches, the same in every tree: checked), takes one warm-up step, then STEPS timed steps; a case's
figure is its best step over all its children.

    python -m bench against_revision                    # this tree against BASELINE
    python -m bench.against_revision --rev HEAD~3       # against any revision, e.g. before a change
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.train_throughput import SIZES
from shortrun.numerics import cpu_model_name
from shortrun.params import build_config

BASELINE = "62192b3"  # the last commit before the precision work of issue 16
ROUNDS = 3
STEPS = 4
TARGET = 2.5
TREE = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_revision_child.py")


@dataclass(frozen=True)
class Case:
    """One way of running the SRI step: whose code (named, and where it lies), and which precision setting."""

    name: str
    tree: Path
    precision: str

    def describe(self, timed: Timed) -> str:
        """e.g. 'this tree auto=bfloat16': the setting, and the path it took where they differ."""
        taken = "" if timed.precision == self.precision else f"={timed.precision}"
        return f"{self.name} {self.precision}{taken}"


@dataclass(frozen=True)
class Timed:
    """What one child reported."""

    rule: str
    precision: str
    batches: str
    steps: list[tuple[int, float]]

    def best_rate(self) -> float:
        return max(tokens / seconds for tokens, seconds in self.steps)


def extract(rev: str, dest: Path) -> Path:
    """The files of `rev` in this repository, written under dest."""
    done = subprocess.run(["git", "archive", "--format=tar", rev], cwd=TREE, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"git archive {rev} failed: {done.stderr.decode().strip()} (a shallow clone may lack it: "
                         "git fetch --unshallow)")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest


def training_rule(preset: str) -> dict:
    """This tree's training rule for the preset, as params sections that any revision since BASELINE reads."""
    cfg = build_config(preset)
    return {"train": {"chain_gradients": cfg.train.chain_gradients}, "langevin": {"chain_dropout": cfg.langevin.chain_dropout}}


def run_child(case: Case, preset: str, steps: int, rule: dict) -> Timed:
    command = [sys.executable, str(CHILD), str(case.tree), preset, case.precision, str(steps), json.dumps(rule)]
    done = subprocess.run(command, cwd=case.tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{case.name}: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return Timed(**json.loads(done.stdout.splitlines()[-1]))


def compare(cases: list[Case], preset: str, rounds: int = ROUNDS, steps: int = STEPS) -> dict[Case, Timed]:
    """Each case's children taken in turn for `rounds` rounds; per case, the child with the best step."""
    runs: dict[Case, list[Timed]] = {case: [] for case in cases}
    rule = training_rule(preset)
    for _ in range(rounds):
        for case in cases:
            runs[case].append(run_child(case, preset, steps, rule))
    work = {(timed.rule, timed.batches) for timed_runs in runs.values() for timed in timed_runs}
    if len(work) != 1:
        raise SystemExit(f"{preset}: the trees ran different rules or drew different batches ({sorted(work)}): "
                         "their timings would not compare")
    return {case: max(timed_runs, key=Timed.best_rate) for case, timed_runs in runs.items()}


def cases_for(rev: str, revision_tree: Path) -> list[Case]:
    return [Case(rev, revision_tree, "float32"), Case("this tree", TREE, "float32"), Case("this tree", TREE, "auto")]


def report(preset: str, best: dict[Case, Timed]) -> str:
    """One line per preset: each case's tokens/s and its ratio to the first (the revision in float32)."""
    reference = next(iter(best.values())).best_rate()
    parts = [f"{case.describe(timed)} {timed.best_rate():,.0f} tokens/s x{timed.best_rate() / reference:.2f}"
             for case, timed in best.items()]
    rule = next(iter(best.values())).rule
    return f"{preset:5} SRI ({rule} rule): " + " | ".join(parts) + f" (target auto >= x{TARGET} of the first)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=BASELINE, help=f"the revision to compare against (default {BASELINE})")
    parser.add_argument("--presets", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(f"SRI training against revision {args.rev} ({cpu_model_name()}, {torch.get_num_threads()} threads; best "
          f"step of {STEPS} in each of {args.rounds} child processes per case, cases in turn, same batches)", flush=True)
    with tempfile.TemporaryDirectory(prefix="shortrun-revision-") as folder:
        cases = cases_for(args.rev, extract(args.rev, Path(folder)))
        for preset in args.presets:
            print(report(preset, compare(cases, preset, args.rounds)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
