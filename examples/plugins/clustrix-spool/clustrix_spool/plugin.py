"""The module the ``clustrix`` entry point names. Keep it cheap to import: clustrix imports every
installed plugin's module when it first needs a backend, so heavy imports go inside the hooks."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import OPTIONS, SpoolScheduler

    yield SchedulerSpec(
        name="spool",
        cls=SpoolScheduler,
        options=OPTIONS,
        summary="spool, the example batch system (spool-submit/-status/-cancel)",
    )
