"""Mistakes a type checker must catch on ``@cluster`` functions (checked by mypy --strict in
test_typing.py, never imported): each E comment names the error code expected on its line,
and no other line may have one."""

from __future__ import annotations

from clustrix_core import ClusterExecutor, cluster


@cluster
def plain(x: int, scale: float = 1.0) -> str:
    return str(x * scale)


@cluster(cores=2)
def configured(items: list[int], *, label: str) -> dict[str, int]:
    return {label: sum(items)}


plain("one")  # E: arg-type
plain.sumbit(1)  # E: attr-defined
plain.submit(1, 2.0, 3)  # E: call-arg
plain.local(scale=2.0)  # E: call-arg
configured([1])  # E: call-arg
configured.submit([1], label=2)  # E: arg-type
wrong: int = plain(1)  # E: assignment
also_wrong: int = plain.submit(1).result()  # E: assignment
plain.map([1], chunksize="2")  # E: arg-type


async def from_a_coroutine() -> int:
    return await plain.asubmit(1)  # E: return-value


ClusterExecutor("local").submit(plain.local, "one")  # E: arg-type
