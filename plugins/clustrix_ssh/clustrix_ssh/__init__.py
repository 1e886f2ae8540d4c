"""clustrix-ssh: the ``ssh`` transport (paramiko) and the ``ssh`` scheduler for clustrix.

Install it next to ``clustrix-core``; the core finds it through the ``clustrix`` entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["ConnectError", "HostKeyError", "SshScheduler", "SshTransport"]

if TYPE_CHECKING:
    from .errors import ConnectError, HostKeyError
    from .scheduler import SshScheduler
    from .transport import SshTransport

_LAZY = {
    "SshTransport": "transport",
    "SshScheduler": "scheduler",
    "ConnectError": "errors",
    "HostKeyError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clustrix_ssh' has no attribute {name!r}")
