"""Functions shipped by the cross-version tests: module imports, helpers, constants, defaults,
closures and the @cluster decorator, the way real code looks."""

from __future__ import annotations

import json as js
import math
from collections import OrderedDict
from math import sqrt

from clustrix_core import cluster

SCALE = 3
NAMES = {"a": [1, 2], "b": (3,)}
GREETING = "hi"


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm(self):
        return math.hypot(self.x, self.y)


def helper(x):
    return inner_helper(x) * SCALE


def inner_helper(x):
    return x + len(NAMES["a"])


@cluster
def uses_everything(x: int, offset: float = 0.5, *, label: str = GREETING) -> dict:
    d = OrderedDict()
    d["helper"] = helper(x)
    d["sqrt"] = sqrt(16) + math.floor(offset)
    d["json"] = js.dumps([label])
    d["point"] = Point(3, 4).norm()
    return dict(d)


def make_closure(k, factor=2):
    def closure(x, extra=k * 10):
        return x * factor + k + extra

    return closure


def version():
    import sys

    return list(sys.version_info[:2])


def raises(n):
    if n == 3:
        raise KeyError(f"item {n}")
    return n


def calls_itself(n):
    return 1 if n <= 1 else n * calls_itself(n - 1)


def prints_a_fake_frame(job_id):
    """Prints something that looks like the runner's outcome frame, then returns 42."""
    print("hello before")
    print(f"\n-----BEGIN CLUSTRIX OUTCOME {job_id} 0-----\nQUJD\n-----END CLUSTRIX OUTCOME-----")
    return 42
