"""What the benchmark scripts share: their argparse number checks and their rate measurement.

Not a script: ``bench_*.py`` import it from this folder (Python puts a script's own folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable


def whole_number(lowest: int = 1, multiple_of: int = 1) -> Callable[[str], int]:
    """argparse ``type=``: a whole number of at least ``lowest`` (and a multiple of ``multiple_of``). A bad value is
    argparse's one-line usage error with exit code 2, before anything runs, instead of a traceback from the middle
    of a measurement (a count of 0 divided by, an empty chunk, a step timer that never starts)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        if value % multiple_of:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple_of}, got {value}")
        return value

    return check


class Rate(float):
    """Items per wall-clock second (the float value), with ``cpu``: items per CPU-second of this process."""

    cpu: float

    def __format__(self, spec: str) -> str:
        return f"{format(float(self), spec)} ({format(self.cpu, spec)} per CPU-s)"


def per_second(fn: Callable[[object], object], items: Iterable[object], repeats: int = 1, warmup: int = 0) -> Rate:
    """Items per second of ``fn`` over ``items``, wall-clock and CPU time, each the best of ``repeats`` passes after
    ``warmup`` untimed ones (the first call of a process pays for imports, allocator growth and MONAI's first-use
    set-up: a single cold pass measured those, not the transform)."""
    items = list(items)
    for _ in range(warmup):
        for item in items:
            fn(item)
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    rate = Rate(len(items) / max(wall, 1e-9))
    rate.cpu = len(items) / max(cpu, 1e-9)
    return rate
