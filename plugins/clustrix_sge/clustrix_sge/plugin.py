"""Entry point of the ``clustrix-sge`` distribution (cheap to import: the scheduler loads on use)."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core import hookimpl
from clustrix_core.plugins import SchedulerSpec


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import OPTIONS, SgeScheduler

    yield SchedulerSpec(
        name="sge",
        cls=SgeScheduler,
        options=OPTIONS,
        summary="Grid Engine (SGE, Son of/Univa/Altair GE) via qsub, qstat -xml, qacct, qdel",
    )
