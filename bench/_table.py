"""Shared helpers for the benchmark scripts: timing and a plain-text table."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
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


ROOT = Path(__file__).resolve().parent.parent


def cluster_config(name: str) -> str:
    """Start (or find) the test cluster tests/clusters/NAME/up and return its config file; the
    environment variable CLUSTRIX_<NAME>_CONFIG names an existing one instead."""
    given = os.environ.get(f"CLUSTRIX_{name.upper()}_CONFIG")
    if given:
        return given
    proc = subprocess.run(
        [str(ROOT / "tests" / "clusters" / name / "up")], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"tests/clusters/{name}/up failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]
