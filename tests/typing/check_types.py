"""What a type checker sees of ``@cluster`` (checked by mypy --strict in test_typing.py, never
imported): every line must type-check, and each N comment is the note mypy prints there."""

from __future__ import annotations

from typing_extensions import assert_type, reveal_type

from clustrix_core import ClusterExecutor, cluster
from clustrix_core.executor import ClusterFuture


@cluster
def plain(x: int, scale: float = 1.0) -> str:
    return str(x * scale)


@cluster(cores=2)
def configured(items: list[int], *, label: str) -> dict[str, int]:
    return {label: sum(items)}


@cluster(profile="hpc", memory="8GB")
def nothing() -> None:
    pass


assert_type(plain(1), str)
assert_type(plain(1, 2.0), str)
assert_type(plain.submit(1), ClusterFuture[str])
assert_type(plain.submit(1, scale=3.0).result(), str)
assert_type(plain.map([1, 2]), list[str])
assert_type(plain.local(1), str)
assert_type(configured([1, 2], label="sum"), dict[str, int])
assert_type(configured.submit([1], label="a"), ClusterFuture[dict[str, int]])
assert_type(configured.map([[1], [2]], ["a", "b"], chunksize=1), list[dict[str, int]])
assert_type(nothing(), None)


def with_an_executor(ex: ClusterExecutor) -> None:
    assert_type(ex.submit(plain.local, 1), ClusterFuture[str])
    assert_type(ex.submit(plain.local, 1, scale=2.0).result(), str)
    assert_type(list(ex.map(plain.local, [1, 2])), list[str])
    assert_type(ex.map_futures(plain.local, [1, 2]), list[ClusterFuture[str]])


# fmt: off
reveal_type(plain)  # N: Revealed type is "clustrix_core.decorator.ClusterFunction[[x: int, scale: float =], str]"
reveal_type(plain.submit)  # N: Revealed type is "def (x: int, scale: float =) -> clustrix_core.executor.ClusterFuture[str]"
reveal_type(configured.local)  # N: Revealed type is "def (items: list[int], *, label: str) -> dict[str, int]"
# fmt: on


async def from_a_coroutine() -> None:
    assert_type(await plain.asubmit(1), str)
    assert_type(await plain.amap([1, 2]), list[str])
    assert_type(await plain.submit(1), str)
    assert_type(await configured.asubmit([1], label="a"), dict[str, int])
    ex = ClusterExecutor("local")
    assert_type(await ex.asubmit(plain.local, 1), str)
    assert_type(await ex.amap(plain.local, [1, 2]), list[str])
