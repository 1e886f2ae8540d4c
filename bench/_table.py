"""Shared helpers for the benchmark scripts: timing and a plain-text table."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def median_time(fn: Callable[[], Any], runs: int, *, gaps: bool = False) -> float:
    """Median wall time of ``fn`` over ``runs`` runs (with random 0-50 ms gaps when asked)."""
    times = []
    for _ in range(runs):
        if gaps:
            time.sleep(random.uniform(0, 0.05))
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    headers = ("measurement", "value", "note")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(3)]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
