"""``@cluster``: a thin layer over :class:`ClusterExecutor`."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .executor import ClusterExecutor, ClusterFuture


class ClusterFunction:
    __qualname__: str
    __wrapped__: Callable[..., Any]

    """A function that runs on a cluster when called. ``f(x)`` blocks and returns the value;
    ``f.submit(x)`` returns a future; ``f.map(xs)`` runs many calls as one array job;
    ``f.local(x)`` runs in this process."""

    def __init__(
        self, fn: Callable[..., Any], profile: str | None, overrides: dict[str, Any]
    ) -> None:
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.submit(*args, **kwargs).result()

    def submit(self, *args: Any, **kwargs: Any) -> ClusterFuture:
        return self.executor.submit(self.__clustrix_function__, *args, **kwargs)

    def map(
        self, *iterables: Iterable[Any], chunksize: int | None = None, timeout: float | None = None
    ) -> list[Any]:
        return list(
            self.executor.map(
                self.__clustrix_function__, *iterables, chunksize=chunksize, timeout=timeout
            )
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        return self.__clustrix_function__(*args, **kwargs)

    def __reduce__(self) -> Any:
        # Pickled (e.g. referenced from another shipped function): the plain function travels.
        return (_identity, (self.__clustrix_function__,))

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __repr__(self) -> str:
        return f"<cluster function {self.__qualname__} profile={self._profile or 'default'}>"


def _identity(fn: Any) -> Any:
    return fn


def cluster(
    fn: Callable[..., Any] | None = None, *, profile: str | None = None, **overrides: Any
) -> Any:
    """Run a function on a cluster: ``@cluster`` or ``@cluster(profile="hpc", cores=4)``."""
    if fn is not None:
        return ClusterFunction(fn, profile, overrides)

    def wrap(inner: Callable[..., Any]) -> ClusterFunction:
        return ClusterFunction(inner, profile, overrides)

    return wrap
