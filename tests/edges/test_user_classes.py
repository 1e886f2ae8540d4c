"""Issue 12 item 1: the user's own exception and value classes (of ``__main__`` or of a local
module that travels with the job) come back as themselves under every strategy, including a
Python 3.6 remote; what cannot be carried fails before submission, naming the class."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import ClusterExecutor, RemoteError, SerializationError
from clustrix_core.executor import rebuild_exception
from tests.edges import edgefuncs
from tests.edges.conftest import run_script


def test_own_exception_of_a_local_module_is_raised_as_itself(executor: ClusterExecutor) -> None:
    with pytest.raises(edgefuncs.EdgeError, match="bad 7") as info:
        executor.submit(edgefuncs.fails, 7).result(timeout=120)
    assert type(info.value) is edgefuncs.EdgeError
    tb = info.value.remote_traceback  # type: ignore[attr-defined]
    assert "in fails" in tb and "EdgeError: bad 7" in tb
    assert str(info.value.__cause__).endswith(tb)


def test_values_of_a_local_module_arrive_as_the_users_class(executor: ClusterExecutor) -> None:
    point = executor.submit(edgefuncs.make_point, 3, 4).result(timeout=120)
    assert type(point) is edgefuncs.Point and point == edgefuncs.Point(3, 4)
    moved, was_point, module = executor.submit(edgefuncs.shift, edgefuncs.Point(1, 2), 1).result(
        timeout=120
    )
    assert type(moved) is edgefuncs.Point and moved == edgefuncs.Point(2, 2)
    assert was_point and module == "tests.edges.edgefuncs"
    # a class the function never names, only its argument is an instance of
    assert executor.submit(edgefuncs.use_unrelated, edgefuncs.Unrelated(21)).result(
        timeout=120
    ) == (42, "tests.edges.edgefuncs", "Unrelated")
    assert type(executor.submit(edgefuncs.echo, edgefuncs.Unrelated(1)).result(120)) is (
        edgefuncs.Unrelated
    )


MAIN_SCRIPT = """
import json, sys
from clustrix_core import RemoteError, SerializationError, cluster

PROFILE, OVERRIDES = sys.argv[1], json.loads(sys.argv[2])


class MyError(Exception):
    pass


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Box:  # only ever an argument
    def __init__(self, v):
        self.v = v


@cluster(profile=PROFILE, **OVERRIDES)
def boom(n):
    raise MyError("bad %d" % n)


@cluster(profile=PROFILE, **OVERRIDES)
def move(p, dx):
    return Point(p.x + dx, p.y), isinstance(p, Point), type(p).__module__


@cluster(profile=PROFILE, **OVERRIDES)
def unbox(b):
    return b.v, type(b).__module__, type(b).__name__


out = {}
try:
    boom(7)
except MyError as exc:
    out["boom"] = [type(exc) is MyError, str(exc), "in boom" in exc.remote_traceback]
except Exception as exc:
    out["boom"] = repr(exc)
p, same, module = move(Point(1, 2), 3)
out["move"] = [type(p) is Point, p.x, p.y, same, module]
out["unbox"] = list(unbox(Box(5)))
out["back"] = type(unbox.submit(Box(6)).result()).__name__
Dyn = type("Dyn", (Box,), {})  # a class of __main__ without source
try:
    out["dyn"] = list(unbox(Dyn(9)))
except SerializationError as exc:
    out["dyn"] = "SerializationError: " + str(exc)
print("RESULT " + json.dumps(out))
"""


def test_classes_of_main_come_back_as_themselves(
    strategy: tuple[str, dict[str, Any], str], tmp_path: Path
) -> None:
    profile, overrides, kind = strategy
    done = run_script(MAIN_SCRIPT, tmp_path, profile, json.dumps(overrides))
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["boom"] == [True, "bad 7", True]
    assert out["move"] == [True, 4, 2, True, "__main__"]
    assert out["unbox"] == [5, "__main__", "Box"]
    assert out["back"] == "tuple"
    if kind == "source":  # no source to ship: refused locally, naming the class
        assert out["dyn"].startswith("SerializationError: "), out["dyn"]
        assert "Dyn" in out["dyn"]
    else:  # cloudpickle carries it by value
        assert out["dyn"] == [9, "__main__", "Dyn"]


def test_an_exception_class_that_does_not_exist_here_is_a_remote_error() -> None:
    outcome = {
        "type": "Gone",
        "qualname": "Gone",
        "module": "no_such_module_here",
        "message": "m",
        "traceback": "tb",
        "exc": None,
    }
    err = rebuild_exception(outcome)
    assert isinstance(err, RemoteError) and err.type_name == "no_such_module_here.Gone"


def test_an_exception_that_could_not_be_pickled_is_rebuilt_by_name() -> None:
    outcome = {
        "type": "EdgeError",
        "qualname": "EdgeError",
        "module": "tests.edges.edgefuncs",
        "message": "bad 3",
        "traceback": "remote tb",
        "exc": None,
    }
    err = rebuild_exception(outcome)
    assert type(err) is edgefuncs.EdgeError and str(err) == "bad 3"
    assert err.remote_traceback == "remote tb"  # type: ignore[attr-defined]


def test_a_local_class_argument_fails_before_submission_naming_it(local: Path) -> None:
    class Inner:
        pass

    ex = ClusterExecutor("local")
    with pytest.raises(SerializationError, match="Inner"):
        ex.submit(edgefuncs.echo, Inner())
    assert not ex._jobs


def test_source_for_arguments_is_added_not_replacing(local: Path) -> None:
    # the remote side defines the argument's classes under their module, keeping what the
    # function's own code defined (identity inside the job: isinstance(p, Point) is True)
    code = textwrap.dedent(
        """
        from clustrix_core.serialization import SourceSerializer
        import pickle
        from tests.edges import edgefuncs
        data = SourceSerializer().encode_calls(edgefuncs.shift, [((edgefuncs.Point(1, 2), 1), {})], 2)
        shipped = pickle.loads(data)
        print(sorted(name for name, _ in shipped["namespaces"]), "class Point" in shipped["namespaces"][0][1]["source"])
        """
    )
    import subprocess
    import sys

    from tests.edges.conftest import ROOT  # noqa: F401

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['tests.edges.edgefuncs']", "True"]
