"""``@cluster``: a thin layer over :class:`ClusterExecutor`.

The decorated function keeps its signature for type checkers: ``f(x)`` has ``f``'s return type
``R``, ``f.submit(x)`` is a ``ClusterFuture[R]``, ``f.map(xs)`` a ``list[R]``, and
``await f.asubmit(x)`` an ``R``."""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, cast, overload

from ._typing import P, R, off_the_loop
from .executor import ClusterExecutor, ClusterFuture


class ClusterFunction(Generic[P, R]):
    """A function that runs on a cluster when called. ``f(x)`` blocks and returns the value;
    ``f.submit(x)`` returns a future; ``f.map(xs)`` runs many calls as one array job;
    ``f.local(x)`` runs in this process; ``await f.asubmit(x)`` and ``await f.amap(xs)`` do the
    same from a coroutine without blocking the event loop."""

    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(self, fn: Callable[P, R], profile: str | None, overrides: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.__clustrix_function__ = fn
        self._profile = profile
        self._overrides = overrides
        self._executor: ClusterExecutor | None = None
        self._lock = threading.Lock()
        if overrides or profile:  # validate the call-site values at decoration time
            from .config import load_profile

            load_profile(profile, **overrides)

    @property
    def executor(self) -> ClusterExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ClusterExecutor(self._profile, **self._overrides)
            return self._executor

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one call as a job and wait: its output shows here as it arrives (unless
        ``stream_output=False``); Ctrl-C cancels the job (``on_interrupt="detach"``: leaves it
        running and says how to get its result) and raises KeyboardInterrupt."""
        return self.executor.call(self.__clustrix_function__, *args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> ClusterFuture[R]:
        """Run one call as a job; a future of its value (``await`` it in a coroutine)."""
        return cast(
            "ClusterFuture[R]", self.executor.submit(self.__clustrix_function__, *args, **kwargs)
        )

    def map(
        self, *iterables: Iterable[Any], chunksize: int | None = None, timeout: float | None = None
    ) -> list[R]:
        """One call per item of ``iterables`` (zipped), as one array job; the values in order.
        Progress moves per call; the tasks' output shows here as it arrives, each line prefixed
        ``[JOB task N]`` (unless ``stream_output=False``); Ctrl-C as for a single call."""
        executor = self.executor
        return list(
            executor.map(
                self.__clustrix_function__,
                *iterables,
                chunksize=chunksize,
                timeout=timeout,
                stream_output=executor.profile.stream_output is not False,
            )
        )

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, in this process."""
        return self.__clustrix_function__(*args, **kwargs)

    async def asubmit(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await f.asubmit(x)``: the value of one call, from a coroutine. Staging and
        submitting run in a worker thread, so the event loop is never blocked; cancelling the
        awaiting task cancels the job."""
        future = await off_the_loop(functools.partial(self.submit, *args, **kwargs))
        return await future

    async def amap(self, *iterables: Iterable[Any], chunksize: int | None = None) -> list[R]:
        """``await f.amap(xs)``: like :meth:`map` (one array job), from a coroutine."""
        import asyncio

        futures = await off_the_loop(
            functools.partial(
                self.executor.map_futures,
                self.__clustrix_function__,
                *iterables,
                chunksize=chunksize,
            )
        )
        values = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return cast("list[R]", list(values))

    def __reduce__(self) -> Any:
        # Pickled (e.g. referenced from another shipped function): the plain function travels.
        return (_identity, (self.__clustrix_function__,))

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return BoundClusterFunction(self, obj)

    def __repr__(self) -> str:
        return f"<cluster function {_describe(self.__clustrix_function__)} profile={self._profile or 'default'}>"


class BoundClusterFunction:
    """``obj.method`` of a ``@cluster`` method: the instance is the first argument of every call
    (it travels with the job), and ``submit``/``map``/``local``/``asubmit``/``amap`` stay."""

    def __init__(self, function: ClusterFunction[Any, Any], obj: Any) -> None:
        self.__func__ = function
        self.__self__ = obj
        functools.update_wrapper(self, function.__clustrix_function__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> ClusterFuture[Any]:
        return self.__func__.submit(self.__self__, *args, **kwargs)

    def map(
        self, *iterables: Iterable[Any], chunksize: int | None = None, timeout: float | None = None
    ) -> list[Any]:
        if not iterables:
            return []
        return self.__func__.map(
            itertools.repeat(self.__self__), *iterables, chunksize=chunksize, timeout=timeout
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__.local(self.__self__, *args, **kwargs)

    async def asubmit(self, *args: Any, **kwargs: Any) -> Any:
        return await self.__func__.asubmit(self.__self__, *args, **kwargs)

    async def amap(self, *iterables: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        if not iterables:
            return []
        return await self.__func__.amap(
            itertools.repeat(self.__self__), *iterables, chunksize=chunksize
        )

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


def _describe(fn: Any) -> str:
    """A function's qualified name; for anything else (``functools.partial``...) its repr."""
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


def _identity(fn: Any) -> Any:
    return fn


@overload
def cluster(
    fn: Callable[P, R], *, profile: str | None = None, **overrides: Any
) -> ClusterFunction[P, R]: ...


@overload
def cluster(
    fn: None = None, *, profile: str | None = None, **overrides: Any
) -> Callable[[Callable[P, R]], ClusterFunction[P, R]]: ...


def cluster(
    fn: Callable[P, R] | None = None, *, profile: str | None = None, **overrides: Any
) -> ClusterFunction[P, R] | Callable[[Callable[P, R]], ClusterFunction[P, R]]:
    """Run a function on a cluster: ``@cluster`` or ``@cluster(profile="hpc", cores=4)``."""
    if fn is not None:
        return ClusterFunction(fn, profile, overrides)

    def wrap(inner: Callable[P, R]) -> ClusterFunction[P, R]:
        return ClusterFunction(inner, profile, overrides)

    return wrap
