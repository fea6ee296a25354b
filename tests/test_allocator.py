"""Freed memory stays in the process: CPU training steps stop page-faulting their large arrays in again."""
from __future__ import annotations

import platform

import pytest

from bench.allocator import measure_in_child

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc malloc's")


def test_training_steps_reuse_the_memory_they_freed():
    # yelp's sizes in float32 (any CPU): each step frees [tokens x 8411] arrays of about 10 MiB
    default = measure_in_child("yelp", "float32", steps=2, keep=False)
    kept = measure_in_child("yelp", "float32", steps=2, keep=True)
    assert (default.kept, kept.kept) == (False, True)  # the opt-out is honoured; the product's setting took
    assert kept.faults_per_step < default.faults_per_step / 3, (default, kept)
