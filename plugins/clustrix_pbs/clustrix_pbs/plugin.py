"""Entry point of the ``clustrix-pbs`` distribution (group ``clustrix``, name ``pbs``).

Cheap to import: the scheduler module loads only when the plugin manager asks for the specs."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import OPTIONS, PbsScheduler, TorqueScheduler

    yield SchedulerSpec(
        name="pbs",
        cls=PbsScheduler,
        options=dict(OPTIONS),
        summary="PBS Professional / OpenPBS: qsub -J arrays, one qstat -f -x per poll, qdel",
    )
    yield SchedulerSpec(
        name="torque",
        cls=TorqueScheduler,
        options=dict(OPTIONS),
        summary="Torque (and SLURM's Torque wrappers): qsub -t arrays, one qstat -f per poll, qdel",
    )
