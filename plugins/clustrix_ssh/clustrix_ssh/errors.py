"""Errors of the ssh transport (all :class:`~clustrix_core.errors.TransportError`)."""

from __future__ import annotations

from clustrix_core.errors import TransportError


class ConnectError(TransportError):
    """Opening the SSH connection failed. ``transient`` says whether trying again may help
    (a refused or dropped TCP connection) or not (authentication failed)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class HostKeyError(ConnectError):
    """The server's host key is unknown or has changed; the connection was refused.

    The message says how to trust the key once it has been checked."""

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        fingerprint: str = "",
        known_hosts: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, transient=False)
        self.host = host
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
