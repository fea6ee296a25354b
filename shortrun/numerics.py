"""Where the torch code runs and in which precision: one policy for training, export, evaluation and serving.

bfloat16 pays only where the hardware multiplies it natively: CUDA devices that support it, and CPUs with
AMX tiles (`amx_bf16`), where a bfloat16 matrix product runs about four times the float32 rate. Elsewhere
(e.g. an AMD EPYC without such units) bfloat16 products are emulated and far slower than float32, so
`auto` picks float32 there. bfloat16 is autocast only: weights, optimizer state, gradients' accumulation
and every reported likelihood stay float32 (see shortrun.model.TokenNLL and shortrun.evaluation).
Work resolved to the CPU also keeps the memory it frees for reuse (shortrun.allocator).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from shortrun.allocator import keep_freed_memory
from shortrun.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")


def resolve_device(name: str) -> torch.device:
    """A device setting (auto, cpu, cuda): auto picks CUDA when present, else CPU.

    On the CPU, freed memory is kept in the process from here on (shortrun.allocator): the trainer, the
    export and evaluation stages and the served model all resolve their device before they compute.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cpu":
        keep_freed_memory()
    return device


def _cpuinfo_lines() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:  # not Linux: no flags or model name to read
        return []


@lru_cache(maxsize=1)
def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU has bfloat16 matrix units (Intel AMX: the `amx_bf16` flag of /proc/cpuinfo)."""
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in _cpuinfo_lines())


def cpu_model_name() -> str:
    """The CPU's model name (figures depend on it: AMX or not), as /proc/cpuinfo gives it."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")),
                "unknown CPU")


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 products run faster than float32 ones on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bfloat16_units()


@dataclass(frozen=True)
class NumericPath:
    """A device and the precision of its matrix products (float32, or bfloat16 under autocast)."""

    device: torch.device
    precision: str  # "float32" or "bfloat16"

    @property
    def bfloat16(self) -> bool:
        return self.precision == "bfloat16"

    def autocast(self) -> AbstractContextManager:
        """The context the forward passes run in: bfloat16 autocast on this device, or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16)


FLOAT32_CPU = NumericPath(torch.device("cpu"), "float32")


def numeric_path(device: str = "auto", precision: str = "auto") -> NumericPath:
    """The path for the settings train.device and train.precision (auto: bfloat16 where it is fast)."""
    resolved = resolve_device(device)
    if precision == "bfloat16" and resolved.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision: bfloat16 requested but this CUDA device does not support it; use auto or float32")
    if precision == "auto":
        precision = "bfloat16" if bfloat16_is_fast(resolved) else "float32"
    return NumericPath(resolved, precision)
