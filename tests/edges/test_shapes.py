"""Issue 12 item 8 (the shapes of real code): a module variable changed after import holds
remotely under every strategy; ``@cluster`` on a method keeps ``submit``/``map`` through an
instance; ``repr`` of a cluster function of a ``functools.partial``; a decorated function of an
installed package (``numpy.linalg.norm``) travels as an import; an ambiguous job id prefix lists
the candidates one per line."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import cluster
from clustrix_core.registry import JobRecord, Registry
from clustrix_core.serialization import SourceSerializer
from tests.edges.conftest import ROOT, run_script

MYTOOLS = """
OFFSET = 10
SCALE = 2.0
NAMES = ["a"]
LIMIT = None


def add(x):
    return x + OFFSET


def describe():
    return [OFFSET, SCALE, NAMES, LIMIT]
"""

MODULE_SCRIPT = """
import json, sys
import mytools
from clustrix_core import SerializationError, cluster

PROFILE, OVERRIDES = sys.argv[1], json.loads(sys.argv[2])
mytools.OFFSET = 0
mytools.NAMES = ["a", "b"]


@cluster(profile=PROFILE, **OVERRIDES)
def through(x):
    return mytools.add(x), mytools.describe()


out = {"main": list(through(5)), "own": cluster(mytools.add, profile=PROFILE, **OVERRIDES)(5)}
mytools.LIMIT = object()  # not a plain value, where the file has a literal
try:
    out["refused"] = through(5)[0]
except SerializationError as exc:
    out["refused"] = "SerializationError: " + str(exc)
print("RESULT " + json.dumps(out))
"""


def test_module_variable_changed_after_import_holds_remotely(
    strategy: tuple[str, dict[str, Any], str], tmp_path: Path
) -> None:
    profile, overrides, kind = strategy
    (tmp_path / "mytools.py").write_text(MYTOOLS)
    done = run_script(MODULE_SCRIPT, tmp_path, profile, json.dumps(overrides))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert out["main"] == [5, [0, 2.0, ["a", "b"], None]]
    assert out["own"] == 5
    if kind == "source":
        assert out["refused"].startswith("SerializationError: "), out["refused"]
        assert "'LIMIT'" in out["refused"] and "mytools" in out["refused"]
    else:  # cloudpickle carries the object itself
        assert out["refused"] == 5


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    @cluster(profile="local")
    def scale(self, x: int) -> int:
        return self.factor * x


def test_cluster_method_keeps_submit_and_map_through_an_instance(local: Path) -> None:
    s = Scaler(3)
    assert s.scale.submit(2).result(timeout=120) == 6
    assert s.scale.map([1, 2, 3], timeout=120) == [3, 6, 9]
    assert s.scale(4) == 12
    assert s.scale.local(5) == 15
    assert s.scale.map() == []
    assert "Scaler.scale" in repr(s.scale)
    assert Scaler.scale.submit(Scaler(2), 5).result(timeout=120) == 10


def _add(a: int, b: int) -> int:
    return a + b


def test_repr_of_a_cluster_partial() -> None:
    text = repr(cluster(functools.partial(_add, 1)))
    assert text.startswith("<cluster function functools.partial(") and "_add" in text


def test_decorated_function_of_an_installed_package_travels_as_an_import(
    executors: Any, local: Path
) -> None:
    np = pytest.importorskip("numpy")
    spec = SourceSerializer().build(np.linalg.norm)
    assert spec["source"].startswith("from numpy.linalg import norm as __clustrix_ref__\n")
    ex = executors("local")  # Python 3.11 without cloudpickle 3: the source strategy
    assert ex.submit(np.linalg.norm, [3.0, 4.0]).result(timeout=120) == 5.0


def _record(job_id: str, function: str) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        profile="local",
        profile_values={},
        scheduler="local",
        transport="local",
        job_dir=f"/nonexistent/{job_id}",
        key="00",
        function=function,
        ncalls=1,
        ntasks=1,
        tasks=[[0, 1]],
    )


def test_ambiguous_job_id_prefix_lists_candidates_one_per_line(tmp_path: Path) -> None:
    state = tmp_path / "clustrix-state"
    reg = Registry(state / "jobs.sqlite3")
    for job_id, fn in [("20240101-aaaa", "fit"), ("20240101-abcd", "score"), ("2025-x", "z")]:
        reg.add(_record(job_id, fn))
    done = subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", "status", "20240101-a"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CLUSTRIX_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert "ambiguous" in lines[0] and "20240101-a" in lines[0], done.stderr
    listed = [ln.split() for ln in lines[1:]]
    assert [row[:3] for row in listed] == [
        ["20240101-aaaa", "fit", "STAGED"],
        ["20240101-abcd", "score", "STAGED"],
    ], done.stderr
