"""Functions the edge tests ship: the user's own exception and value classes of a local module
that travels with the job, exits of every kind, and a slow call for throttling."""

from __future__ import annotations

import math
import os
import sys
import time


class EdgeError(ValueError):
    """A user's own exception class."""


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def norm(self) -> float:
        return math.hypot(self.x, self.y)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.x, self.y) == (other.x, other.y)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


class Unrelated:
    """Only ever passed as an argument: nothing the shipped function names."""

    def __init__(self, value: int) -> None:
        self.value = value

    def doubled(self) -> int:
        return self.value * 2


def fails(n: int) -> int:
    raise EdgeError(f"bad {n}")


def make_point(x: float, y: float) -> Point:
    return Point(x, y)


def shift(p: Point, dx: float) -> object:
    """Receives a Point, checks it is the module's own class, returns a new one."""
    return Point(p.x + dx, p.y), isinstance(p, Point), type(p).__module__


def use_unrelated(u: object) -> tuple[int, str, str]:
    """Names no class: the argument's class must travel with the call."""
    return u.doubled(), type(u).__module__, type(u).__qualname__  # type: ignore[attr-defined]


def echo(value: object) -> object:
    return value


def exits(code: object) -> None:
    sys.exit(code)


def interrupted() -> None:
    raise KeyboardInterrupt


def hard_exit(status: int) -> None:
    sys.stdout.flush()
    os._exit(status)


def exit_on_two(i: int) -> int:
    if i == 2:
        sys.exit(3)
    return i * 10


def window(i: int, seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def twice(x):
    return 2 * x
