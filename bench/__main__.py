"""Run every benchmark in bench/: each module bench/<name>.py with a `main()` function, in name order.

    .venv/bin/python -m bench            # all benchmarks
    .venv/bin/python -m bench NAME ...   # only these modules
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import shortrun  # noqa: F401  (first: it sets OpenMP's wait policy before any benchmark loads torch)


def discover() -> list[str]:
    """Module names in this folder that define main()."""
    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")]
    return [name for name in sorted(names) if callable(getattr(importlib.import_module(f"bench.{name}"), "main", None))]


def run(selected: list[str]) -> int:
    available = discover()
    unknown = [name for name in selected if name not in available]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; expected one of {', '.join(available)}", file=sys.stderr)
        return 2
    for name in selected or available:
        print(f"== bench.{name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
