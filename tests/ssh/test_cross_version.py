"""Local Python (3.11 to 3.13) to remote Pythons 3.6 to 3.13 over the real sshd."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from clustrix_core.serialization import (
    CloudpickleSerializer,
    RemoteInfo,
    SourceSerializer,
    choose_strategies,
)

from . import remote_funcs
from .conftest import interpreter

MATRIX = ["3.6", "3.8", "3.10", "3.12", "3.13"]


@pytest.mark.parametrize("minor", MATRIX)
def test_functions_with_imports_helpers_constants_closures(minor: str, make_executor) -> None:
    ex = make_executor(python=interpreter(minor), cleanup="always")
    _, remote = ex.backend.remote()
    assert remote.python.startswith(minor + ".")
    strategies = [s.name for s in choose_strategies(remote, "auto", ex.backend.serializers)]
    if remote.minor != sys.version_info[:2]:
        assert strategies[0] == "source", strategies

    values = [1, 4, 9, 16, 25]
    result = ex.submit(remote_funcs.compute, values, label=f"py{minor}").result(timeout=120)
    assert result == {
        "python": [int(p) for p in minor.split(".")],
        "roots": [3.0, 6.0, 9.0, 12.0, 15.0],
        "clamped": [1, 4, 9, 10, 10],
        "json": '[["alpha", 2], ["beta", 1]]',
        "base": "input.txt",
        "box": 10,
        "label": f"py{minor}",
    }

    scale = remote_funcs.make_scaler(2)
    assert list(ex.map(scale, [1, 4, 9])) == [6.5, 12.5, 18.5]

    with pytest.raises(ValueError, match=f"bad value 7 on Python {minor}") as info:
        ex.submit(remote_funcs.fails, 7).result(timeout=120)
    assert "fails" in info.value.remote_traceback  # type: ignore[attr-defined]


def test_same_version_closure_defined_in_a_test(make_executor) -> None:
    """A closure defined in a test: cloudpickle when the remote has the same Python minor and
    cloudpickle major version, another strategy otherwise (a 3.x pickle fails on 2.x)."""
    ex = make_executor(cleanup="always")  # profile python: the interpreter behind local python3
    _, remote = ex.backend.remote()
    strategies = [s.name for s in choose_strategies(remote, "auto", ex.backend.serializers)]
    local_cp = cloudpickle.__version__.split(".")[0]
    if (
        remote.minor == sys.version_info[:2]
        and (remote.cloudpickle or "").split(".")[0] == local_cp
    ):
        assert strategies[0] == "cloudpickle"
    else:
        assert "cloudpickle" not in strategies, (remote, strategies)  # dill or source ship it

    factor = 3

    def local_closure(x: int) -> int:  # a closure defined in a test: cloudpickle ships it by value
        return x * factor

    assert ex.submit(local_closure, 5).result(timeout=120) == 15


@pytest.mark.parametrize("remote_cloudpickle", ["1.6.0", "9.0.0", None])
def test_cloudpickle_of_another_major_version_falls_back_to_source(remote_cloudpickle) -> None:
    local = RemoteInfo.local()
    remote = RemoteInfo(python=local.python, pickle_protocol=5, cloudpickle=remote_cloudpickle)
    assert [
        s.name
        for s in choose_strategies(remote, "auto", [CloudpickleSerializer(), SourceSerializer()])
    ] == ["source"]
