"""The core's own backends, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Iterator

from .hookspecs import hookimpl
from .specs import SchedulerSpec, SerializerSpec, TransportSpec


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import ProcessScheduler

    yield SchedulerSpec(
        name="local",
        cls=ProcessScheduler,
        summary="detached process groups on the submit host (no batch system)",
    )


@hookimpl
def clustrix_transports() -> Iterator[TransportSpec]:
    from .transport import LocalTransport

    yield TransportSpec(
        name="local", cls=LocalTransport, summary="this machine: subprocesses and local files"
    )


@hookimpl
def clustrix_serializers() -> Iterator[SerializerSpec]:
    from .serialization import CloudpickleSerializer, DillSerializer, SourceSerializer

    yield SerializerSpec(
        name="cloudpickle",
        cls=CloudpickleSerializer,
        priority=10,
        summary="cloudpickle; remote Python of the same minor version with cloudpickle",
    )
    yield SerializerSpec(
        name="dill",
        cls=DillSerializer,
        priority=20,
        summary="dill; same minor version, dill installed on both sides",
    )
    yield SerializerSpec(
        name="source",
        cls=SourceSerializer,
        priority=30,
        summary="function source plus what it needs; any remote Python 3.6+",
    )
