"""Entry point of the ``clustrix-slurm`` distribution (group ``clustrix``, name ``slurm``).

Cheap to import: the scheduler module loads only when the plugin manager asks for the specs."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import OPTIONS, SlurmScheduler

    yield SchedulerSpec(
        name="slurm",
        cls=SlurmScheduler,
        options=dict(OPTIONS),
        summary="SLURM: sbatch --parsable, one squeue per poll, sacct/scontrol, scancel, arrays",
    )
