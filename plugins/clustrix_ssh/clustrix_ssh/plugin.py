"""Entry point of clustrix-ssh (group ``clustrix``, name ``ssh``). Cheap to import: paramiko is
loaded only when a connection opens."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec, TransportSpec


@hookimpl
def clustrix_transports() -> Iterator[TransportSpec]:
    from .endpoint import OPTIONS
    from .transport import SshTransport

    yield TransportSpec(
        name="ssh",
        cls=SshTransport,
        options=dict(OPTIONS),
        summary="OpenSSH server via paramiko: one shared connection per host, strict host keys",
    )


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import SshScheduler

    yield SchedulerSpec(
        name="ssh",
        cls=SshScheduler,
        summary="detached process groups on the SSH host (no batch system)",
    )
