"""Type variables of the public API, and running blocking submission off an event loop."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # typeshed always has typing_extensions; at run time it is not a dependency
    from typing_extensions import ParamSpec

    P = ParamSpec("P")
elif sys.version_info >= (3, 10):
    from typing import ParamSpec

    P = ParamSpec("P")
else:  # Python 3.9 at run time: a stand-in, as the annotations are never evaluated
    P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")


async def off_the_loop(start: Callable[[], T]) -> T:
    """``start()`` in the event loop's worker threads. When the awaiting task is cancelled while
    it runs, whatever it submitted is cancelled once it returns."""
    import asyncio

    task = asyncio.get_running_loop().run_in_executor(None, start)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_cancel_started)
        raise


def _cancel_started(task: Any) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    started = task.result()
    for fut in started if isinstance(started, list) else [started]:
        fut.cancel()
