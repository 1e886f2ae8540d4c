"""Local Python (3.11 to 3.13) to remote Pythons 3.6 to 3.13 over the real sshd."""

from __future__ import annotations

import sys

import pytest

from clustrix_core.serialization import choose_strategies

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


def test_same_version_uses_cloudpickle_when_the_remote_has_it(make_executor) -> None:
    ex = make_executor(cleanup="always")  # profile python: the same interpreter as the local one
    _, remote = ex.backend.remote()
    if remote.minor != sys.version_info[:2] or remote.cloudpickle is None:
        pytest.skip(f"the test sshd's Python is {remote.python}, cloudpickle {remote.cloudpickle}")
    strategies = [s.name for s in choose_strategies(remote, "auto", ex.backend.serializers)]
    assert strategies[0] == "cloudpickle"

    factor = 3

    def local_closure(x: int) -> int:  # a closure defined in a test: cloudpickle ships it by value
        return x * factor

    assert ex.submit(local_closure, 5).result(timeout=120) == 15
