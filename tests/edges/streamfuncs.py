"""Functions the output, interrupt and progress tests ship (a local module that travels)."""

from __future__ import annotations

import os
import sys
import time


def chatty(n: int, pause: float) -> int:
    """Prints a line to stdout and one to stderr, then waits ``pause`` seconds, ``n`` times."""
    for i in range(n):
        print(f"out line {i}")
        print(f"err line {i}", file=sys.stderr)
        time.sleep(pause)
    return n * 10


def quiet(x: int) -> int:
    return x + 1


def shout(x: int) -> int:
    print(f"value {x}")
    return x


def started_then_sleep(seconds: float, value: object, mark: str | None = None) -> object:
    """Says ``started`` (with its pid), records its pid in ``mark``, sleeps, returns ``value``."""
    if mark:
        with open(f"{mark}.{os.getpid()}", "w") as fh:
            fh.write(str(os.getpid()))
    print(f"started pid={os.getpid()}", flush=True)
    time.sleep(seconds)
    return value


def tick(x: int) -> int:
    time.sleep(0.002)
    return x * x
