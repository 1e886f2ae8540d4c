"""Issue 12 item 6: ``await fut`` on a ClusterFuture, ``await f.asubmit(x)`` and
``await f.amap(xs)``; submitting from a running event loop never blocks it (staging runs in a
worker thread); 1,000 concurrent awaits on one executor keep one status query per poll."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import ClusterExecutor, cluster
from tests.edges import edgefuncs


def test_await_a_future_and_the_async_api(local: Path) -> None:
    square = cluster(profile="local")(edgefuncs.echo)

    async def main() -> tuple[Any, Any, Any]:
        fut = square.submit(5)
        return await fut, await square.asubmit("x"), await square.amap([1, 2, 3])

    assert asyncio.run(main()) == (5, "x", [1, 2, 3])


def test_await_raises_the_remote_exception(local: Path) -> None:
    fails = cluster(profile="local")(edgefuncs.fails)

    async def main() -> None:
        await fails.asubmit(4)

    with pytest.raises(edgefuncs.EdgeError, match="bad 4"):
        asyncio.run(main())


def test_submitting_from_the_loop_never_blocks_it(local: Path) -> None:
    f = cluster(profile="local")(edgefuncs.echo)
    staged_in: list[int] = []
    original = f.executor._start

    def slow_start(*args: Any, **kwargs: Any) -> Any:
        staged_in.append(threading.get_ident())
        time.sleep(0.3)  # a slow file system or an ssh round trip
        return original(*args, **kwargs)

    f.executor._start = slow_start  # type: ignore[method-assign]
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def main() -> list[Any]:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        values = await asyncio.gather(f.asubmit(1), f.asubmit(2), f.amap([3, 4]))
        stop.set()
        await tick
        return values

    loop_thread = threading.get_ident()
    assert asyncio.run(main()) == [1, 2, [3, 4]]
    assert len(staged_in) == 3 and loop_thread not in staged_in
    assert max(gaps) < 0.25, max(gaps)  # each staging took 0.3 s, none of it on the loop


def test_cancelling_the_awaiting_task_cancels_the_job(local: Path) -> None:
    nap = cluster(profile="local")(edgefuncs.window)

    async def main() -> Any:
        task = asyncio.create_task(nap.asubmit(0, 60.0))
        await asyncio.sleep(1.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return nap.executor._jobs[-1]

    job = asyncio.run(main())
    assert job.futures[0].cancelled()
    from clustrix_core.registry import get_registry

    assert get_registry().get(job.record.job_id).state == "CANCELLED"


def test_a_thousand_awaits_keep_one_status_query_per_poll(local: Path) -> None:
    ex = ClusterExecutor("local")
    f = cluster(profile="local")(edgefuncs.window)
    assert f.executor.monitor is ex.monitor
    monitor = ex.monitor
    queries: list[tuple[int, int]] = []
    original = monitor.scheduler.statuses

    def counting(subs: Any) -> Any:
        queries.append((threading.get_ident(), len(subs)))
        return original(subs)

    monitor.scheduler.statuses = counting  # type: ignore[method-assign]

    async def main() -> list[Any]:
        futures = ex.map_futures(edgefuncs.window, range(990), [0.006] * 990, chunksize=330)
        singles = [f.asubmit(i, 1.0) for i in range(10)]
        return await asyncio.gather(*futures, *singles)  # type: ignore[arg-type]

    try:
        polls_before = monitor.polls
        started = time.monotonic()
        values = asyncio.run(main())
        elapsed = time.monotonic() - started
    finally:
        del monitor.scheduler.statuses
    assert len(values) == 1000 and all(end >= start for start, end in values)
    assert len({tid for tid, _ in queries}) <= 2, queries  # the one monitor thread
    assert len(queries) == monitor.polls - polls_before
    assert max(n for _, n in queries) == 11  # the array job and the ten single calls, at once
    assert len(queries) <= elapsed / monitor.poll_min + 5


def test_the_executor_has_the_async_api_too(local: Path) -> None:
    async def main(ex: ClusterExecutor) -> tuple[Any, Any]:
        one = await ex.asubmit(edgefuncs.twice, 21)
        many = await ex.amap(edgefuncs.twice, [1, 2, 3], chunksize=2)
        return one, many

    with ClusterExecutor("local") as ex:
        assert asyncio.run(main(ex)) == (42, [2, 4, 6])
