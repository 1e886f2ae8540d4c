"""clustrix: run ordinary Python functions on compute clusters as if they were local."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ClustrixError,
    ConfigError,
    JobFailedError,
    PluginError,
    RemoteError,
    SerializationError,
)

__version__ = "0.2.0"
__all__ = [
    "ClusterExecutor",
    "ClustrixError",
    "ConfigError",
    "JobFailedError",
    "PluginError",
    "RemoteError",
    "SerializationError",
    "attach",
    "cluster",
    "configure",
    "hookimpl",
]

if TYPE_CHECKING:
    from .config import configure
    from .decorator import cluster
    from .executor import ClusterExecutor
    from .hookspecs import hookimpl
    from .jobhandle import attach

_LAZY = {
    "cluster": ("decorator", "cluster"),
    "ClusterExecutor": ("executor", "ClusterExecutor"),
    "configure": ("config", "configure"),
    "attach": ("jobhandle", "attach"),
    "hookimpl": ("hookspecs", "hookimpl"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clustrix_core' has no attribute {name!r}")
