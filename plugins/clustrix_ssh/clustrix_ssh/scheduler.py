"""The ``ssh`` scheduler: detached process groups on the remote host, no batch system.

It is the core's :class:`~clustrix_core.scheduler.ProcessScheduler` (which works through any
transport): each job runs as ``setsid nohup sh job.sh`` in its job directory, in its own session
and process group, so it survives the SSH connection; the group's PID is the native id; status
comes from ``kill -0`` and the per-task ``exit.N`` files the job script writes; cancelling kills
the whole group. ``map`` runs as many tasks at once as ``max_parallel`` says, else one per CPU
of the remote host. Works on any POSIX host with ``sh`` and Python >= 3.6.
"""

from __future__ import annotations

from clustrix_core.scheduler import ProcessScheduler


class SshScheduler(ProcessScheduler):
    """Detached process groups on an SSH host."""

    name = "ssh"
    _cpus: int | None = None

    def parallelism(self) -> int:
        if self.profile.max_parallel:
            return self.profile.max_parallel
        if self._cpus is None:  # ask the host once per executor
            self._cpus = super().parallelism()
        return self._cpus
