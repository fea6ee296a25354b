"""Training throughput of SRI, VAE and LM at the yelp and ptb model sizes, per precision path the machine
has (float32; bfloat16 autocast where it multiplies bfloat16 natively, shortrun.numerics), how close the SRI
step comes to the same-precision matrix-multiply rate, and the speed-up of train.precision auto over float32.

FLOPs of one SRI training step (a multiply-add is 2 FLOPs). B sentences, T padded length,
M = B(T-1) LSTM positions, N = predicted (non-padding) tokens, E = emb_dim, d = latent_dim,
H = hidden_dim, V = vocabulary size, K = Langevin steps:

    F     = M * 8H(E + d + H) + N * 2HV    one decoder forward: LSTM gates ([x;z] and h) + output layer
    chain = K * 2F                         each step: forward + backward w.r.t. the inputs (not the weights)
    train = 3F                             forward + backward w.r.t. inputs and weights
    step  = (2K + 3) F                     the end-point rule; (3K + 3) F under the authors' rule (below)

Left out (small against these): embedding lookups, gate nonlinearities, softmax, h0 = Linear(z), Adam.
The reference rate is a plain [N, H] x [H, V] matmul (the output layer's shape) in the same precision,
timed in the same run. Each preset trains with its own SRI rule (yelp: the authors'). The precision paths'
steps are taken in turn on the same batches, so their ratio sees one machine load.
The batches are random token ids of realistic length (bucketed: lengths within +-1 of the corpus mean).
Every figure is the best of several timed steps, so load from other processes shows up as little as possible.

The two SRI training rules side by side: the reference rule (train.chain_gradients=chain with
langevin.chain_dropout, the authors' code) also computes each chain step's weight gradients, about one
more F per step: (3K + 3) F against (2K + 3) F, 1.43x at K = 10 (target <= 1.5x). Their steps are timed
in turn on the same batches, so both see the same machine load.
"""
from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from shortrun.config import PipelineConfig
from shortrun.data.batching import Batch, collate
from shortrun.numerics import NumericPath, bfloat16_is_fast, cpu_model_name, numeric_path, resolve_device
from shortrun.objectives import StepContext
from shortrun.params import build_config
from shortrun.training import Trainer

# vocabulary size and mean sentence length (words) of the corpora the presets train on
SIZES = {"yelp": (8411, 9), "ptb": (10002, 21)}
KINDS = ("sri", "vae", "lm")
MIN_SECONDS = 3.0
MIN_STEPS = 3
MATMUL_SECONDS = 1.0
FIRST_ID = 4  # ids 0..3 are the special tokens
# SRI training rules: (train settings, langevin settings)
RULES = {
    "endpoint": ({"chain_gradients": "endpoint"}, {}),
    "chain": ({"chain_gradients": "chain"}, {}),
    "chain+dropout": ({"chain_gradients": "chain"}, {"chain_dropout": True}),
}
REFERENCE_RULE = "chain+dropout"


@dataclass
class Measured:
    """Timed steps as (batch, seconds), and the peak memory."""

    steps: list[tuple[Batch, float]]
    peak_mib: float

    def best(self, work: Callable[[Batch], float]) -> float:
        """The highest rate work(batch) / seconds over the steps: the best of several steps is what the
        code achieves, the others carry the noise of whatever else runs on the machine."""
        return max(work(batch) / seconds for batch, seconds in self.steps)


def random_batches(cfg: PipelineConfig, vocab: int, mean_len: int, count: int, seed: int = 0) -> list[Batch]:
    rng = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = torch.randint(mean_len - 1, mean_len + 2, (cfg.train.batch_size,), generator=rng)
        batches.append(collate([torch.randint(FIRST_ID, vocab, (int(n),), generator=rng).tolist() for n in lengths]))
    return batches


def sri_step_flops(cfg: PipelineConfig, vocab: int, batch: Batch) -> float:
    """(2K + 3) F for one batch under the end-point rule, (3K + 3) F under the authors' (module docstring)."""
    e, d, h = cfg.model.emb_dim, cfg.model.latent_dim, cfg.model.hidden_dim
    positions = batch.tokens.shape[0] * (batch.tokens.shape[1] - 1)
    tokens = int(batch.lengths.sum())
    forward = positions * 8 * h * (e + d + h) + tokens * 2 * h * vocab
    per_chain_step = 3 if cfg.train.chain_gradients == "chain" else 2
    return (per_chain_step * cfg.langevin.steps + 3) * forward


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mib(device: torch.device) -> float:
    """GPU: peak allocated since the last reset; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ready_trainer(cfg: PipelineConfig, kind: str, vocab: int, batch: Batch) -> Trainer:
    """A trainer in train mode after one warm-up step."""
    trainer = Trainer(kind, vocab, cfg.model, cfg.langevin, cfg.train, progress=False)
    trainer.model.train()
    trainer.step(batch, StepContext(temperature=cfg.langevin.temperature, global_step=0))
    return trainer


def timed_step(trainer: Trainer, batch: Batch, step: int, temperature: float, device: torch.device) -> float:
    """Seconds of one Trainer.step (the trainer's own optimizer step)."""
    sync(device)
    tic = time.perf_counter()
    trainer.step(batch, StepContext(temperature=temperature, global_step=step))
    sync(device)
    return time.perf_counter() - tic


def time_in_turn(trainers: dict[str, Trainer], batches: list[Batch], device: torch.device, temperature: float) -> dict[str, Measured]:
    """Each trainer's steps on the same batches, the trainers taken in turn until each has MIN_STEPS steps and
    MIN_SECONDS per trainer have passed, so that all of them see the same machine load."""
    batches = [b.to(device) for b in batches]
    steps: dict[str, list[tuple[Batch, float]]] = {name: [] for name in trainers}
    peaks = dict.fromkeys(trainers, 0.0)
    rounds, start = 0, time.perf_counter()
    while rounds < MIN_STEPS or time.perf_counter() - start < MIN_SECONDS * len(trainers):
        batch = batches[rounds % len(batches)]
        rounds += 1
        for name, trainer in trainers.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            steps[name].append((batch, timed_step(trainer, batch, rounds, temperature, device)))
            peaks[name] = max(peaks[name], peak_mib(device))
    return {name: Measured(steps[name], peaks[name]) for name in trainers}


def time_training(cfg: PipelineConfig, kind: str, vocab: int, batches: list[Batch], device: torch.device) -> Measured:
    """Trainer.step of one model kind on the batches, each step timed, after one warm-up step."""
    trainer = ready_trainer(cfg, kind, vocab, batches[0].to(device))
    return time_in_turn({kind: trainer}, batches, device, cfg.langevin.temperature)[kind]


def time_rules(cfg: PipelineConfig, vocab: int, batches: list[Batch], device: torch.device) -> dict[str, float]:
    """The best SRI step time (s) under each training rule (RULES), the rules' steps taken in turn."""
    trainers = {}
    for name, (train, langevin) in RULES.items():
        rule_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=train),
                                          "langevin": cfg.langevin.model_copy(update=langevin)})
        trainers[name] = ready_trainer(rule_cfg, "sri", vocab, batches[0].to(device))
    measured = time_in_turn(trainers, batches, device, cfg.langevin.temperature)
    return {name: 1.0 / m.best(lambda batch: 1.0) for name, m in measured.items()}


def bench_rules(preset: str, device: torch.device) -> str:
    """One line: the SRI step under each training rule and the reference rule's cost against the end point's."""
    vocab, mean_len = SIZES[preset]
    cfg = build_config(preset, {"train": {"device": device.type}})
    best = time_rules(cfg, vocab, random_batches(cfg, vocab, mean_len, count=4), device)
    times = ", ".join(f"{name} {1e3 * seconds:.1f} ms" for name, seconds in best.items())
    ratio = best[REFERENCE_RULE] / best["endpoint"]
    return (f"{preset:6} SRI step, K = {cfg.langevin.steps}: {times}; reference rule ({REFERENCE_RULE}) / endpoint "
            f"= {ratio:.2f} (target <= 1.5)")


def matmul_gflops(rows: int, hidden: int, vocab: int, device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a plain [rows, hidden] x [hidden, vocab] product in `dtype`: the best of repeated timings."""
    a, b = torch.randn(rows, hidden, device=device, dtype=dtype), torch.randn(hidden, vocab, device=device, dtype=dtype)
    torch.mm(a, b)
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < MATMUL_SECONDS:
        sync(device)
        tic = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - tic)
    return 2 * rows * hidden * vocab / best / 1e9


def precision_paths(device: torch.device) -> list[str]:
    """float32, and bfloat16 where the device multiplies it natively (elsewhere it is emulated: not worth timing)."""
    return ["float32", "bfloat16"] if bfloat16_is_fast(device) else ["float32"]


def print_per_size_and_path(title: str, method: str, lines: Callable[[str, NumericPath], Iterable[str]]) -> None:
    """On the CPU: `title` with the CPU, its threads and `method`, then lines(preset, path) for each
    (preset size, precision path) pair, printed as they come."""
    device = resolve_device("cpu")
    print(f"{title} ({cpu_model_name()}, {torch.get_num_threads()} threads; {method})", flush=True)
    for preset in SIZES:
        for path in precision_paths(device):
            for line in lines(preset, NumericPath(device, path)):
                print(line, flush=True)


def bench_preset(preset: str, device: torch.device) -> list[str]:
    """Per precision path: one row per model kind, then the SRI step's rate against the same-precision matmul;
    last, the speed-up of the automatic choice over float32 for each kind.

    The paths' steps are taken in turn; each matmul is timed just before and just after the steps (the best
    of both counts), so a machine whose load changes during the run compares like with like.
    """
    vocab, mean_len = SIZES[preset]
    paths = precision_paths(device)
    configs = {path: build_config(preset, {"train": {"device": device.type, "precision": path}}) for path in paths}
    cfg = configs["float32"]
    batches = random_batches(cfg, vocab, mean_len, count=4)
    tokens = int(sum(int(b.lengths.sum()) for b in batches) / len(batches))
    hidden = cfg.model.hidden_dim
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    reference = {path: matmul_gflops(tokens, hidden, vocab, device, dtypes[path]) for path in paths}
    rows: dict[str, dict[str, Measured]] = {}
    for kind in KINDS:
        trainers = {path: ready_trainer(configs[path], kind, vocab, batches[0].to(device)) for path in paths}
        rows[kind] = time_in_turn(trainers, batches, device, cfg.langevin.temperature)
    reference = {path: max(rate, matmul_gflops(tokens, hidden, vocab, device, dtypes[path])) for path, rate in reference.items()}
    lines = []
    for path in paths:
        for kind in KINDS:
            measured = rows[kind][path]
            gflops = ""
            if kind == "sri":
                gflops = f"{measured.best(lambda batch: sri_step_flops(configs[path], vocab, batch)) / 1e9:9.1f}"
            lines.append(f"{preset:6} {path:9} {kind:4} {measured.best(lambda batch: float(batch.lengths.sum())):11.0f} "
                         f"{1e3 / measured.best(lambda batch: 1.0):10.1f} {gflops:>9} {measured.peak_mib:9.0f}")
        sri = rows["sri"][path].best(lambda batch: sri_step_flops(configs[path], vocab, batch)) / 1e9
        lines.append(f"{preset:6} {path:9} matmul [{tokens}x{hidden}]x[{hidden}x{vocab}]: {reference[path]:.1f} GFLOP/s; "
                     f"SRI step ({cfg.train.chain_gradients} rule) / matmul = {sri / reference[path]:.2f} (target >= 0.75)")
    auto = numeric_path(device.type, "auto").precision
    speedups = ", ".join(f"{kind} x{rows[kind][auto].best(lambda b: 1.0) / rows[kind]['float32'].best(lambda b: 1.0):.2f}"
                         for kind in KINDS)
    lines.append(f"{preset:6} auto = {auto}: tokens/s over float32: {speedups}")
    return lines


def main() -> None:
    device = resolve_device("auto")
    threads = torch.get_num_threads() if device.type == "cpu" else None
    where = f"{cpu_model_name()}, {threads} threads" if threads else torch.cuda.get_device_name()
    print(f"training throughput ({where}; precision paths {', '.join(precision_paths(device))}; best of >= "
          f"{MIN_STEPS} timed steps, paths in turn; random ids of realistic lengths)", flush=True)
    print(f"{'preset':6} {'precision':9} {'model':4} {'tokens/s':>11} {'step ms':>10} {'GFLOP/s':>9} {'peak MiB':>9}", flush=True)
    for preset in SIZES:
        for line in bench_preset(preset, device):
            print(line, flush=True)
    print("SRI training rules side by side (train.precision auto; best of >= 3 steps each, taken in turn)", flush=True)
    for preset in SIZES:
        print(bench_rules(preset, device), flush=True)
