"""Functions the cross-version tests run on remote Pythons 3.6 to 3.13. They are shipped by the
source strategy when the remote minor version differs: module imports, aliased imports, helpers,
constants, classes of this module and closures must all travel."""

import json as _json
import math
import sys
from collections import Counter
from os import path as osp

SCALE = 3
WORDS = ("alpha", "beta", "alpha")
LIMITS = {"low": 1, "high": 10}


class Box:
    def __init__(self, value):
        self.value = value

    def doubled(self):
        return self.value * 2


def _root(x):
    return math.sqrt(x) * SCALE


def _clamp(x):
    return max(LIMITS["low"], min(LIMITS["high"], x))


def compute(values, *, label="run"):
    counts = Counter(WORDS)
    return {
        "python": list(sys.version_info[:2]),
        "roots": [round(_root(v), 6) for v in values],
        "clamped": [_clamp(v) for v in values],
        "json": _json.dumps(sorted(counts.items())),
        "base": osp.basename("/data/input.txt"),
        "box": Box(len(values)).doubled(),
        "label": label,
    }


def make_scaler(factor):
    offset = 0.5

    def scale(x):
        return _root(x) * factor + offset

    return scale


def fails(x):
    raise ValueError("bad value %r on Python %d.%d" % (x, sys.version_info[0], sys.version_info[1]))  # noqa: UP031


def versions_of(*names):
    out = {}
    for name in names:
        module = __import__(name)
        out[name] = getattr(module, "__version__", "?")
    return out


def module_file(name):
    return __import__(name).__file__
