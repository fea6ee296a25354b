"""Keep the memory that CPU work frees inside the process, so that the next training step reuses its pages.

A training step allocates and frees dozens of [tokens x vocabulary] arrays of several MiB each. glibc's
malloc serves blocks that large with fresh pages (mmap, or a heap top that it trims when they are freed),
and the kernel zero-fills every fresh page on its first touch. Measured on ptb's bfloat16 SRI step (2 cores
of an Intel Xeon, bench/allocator.py): about 100,000 page faults and a quarter of a second of system time
per step, every step. With blocks up to glibc's ceiling of 32 MiB taken from the heap, and the heap
trimmed only once 2 GiB at its top are free, the pages stay mapped and faults drop to a few thousand per
step. The cost: the process keeps its peak memory until it exits, a peak that training, export and
evaluation reach again in every batch anyway.

SHORTRUN_KEEP_FREED_MEMORY=0 keeps glibc's defaults (for a process that must hand memory back while it
runs). Other C libraries (macOS, Windows, musl) are left as they are.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache

OPT_OUT_ENV = "SHORTRUN_KEEP_FREED_MEMORY"
# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # the largest C int mallopt takes: trim only once 2 GiB at the heap's top are free


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks in the process (module docstring); whether it took effect.

    Once per process: later calls return the first answer.
    """
    if os.environ.get(OPT_OUT_ENV, "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no C library to load this way, or one without mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
