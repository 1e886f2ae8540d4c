"""The hooks a clustrix plugin can implement.

A plugin is a module (named by an entry point in the ``clustrix`` group) whose functions are
decorated with :data:`clustrix_core.hookimpl`. Collection hooks return descriptors (classes, not
configured instances); lifecycle hooks observe or adjust jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .config import Profile
    from .registry import JobRecord
    from .specs import JobScript, SchedulerSpec, SerializerSpec, TransportSpec

PROJECT = "clustrix"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ClustrixSpecs:
    """Hook specifications. Every hook name starts with ``clustrix_``."""

    @hookspec
    def clustrix_schedulers(self) -> Iterable[SchedulerSpec]:
        """Return the schedulers this plugin provides. Called once when the plugin manager
        collects backends; every implementation is called and the results are merged.

        Example::

            @hookimpl
            def clustrix_schedulers():
                yield SchedulerSpec(name="lsf", cls=LsfScheduler, summary="IBM Spectrum LSF via bsub",
                                    options={"project": "LSF project (-P)"})
        """

    @hookspec
    def clustrix_transports(self) -> Iterable[TransportSpec]:
        """Return the transports this plugin provides (how commands and files reach the submit host).

        Example::

            @hookimpl
            def clustrix_transports():
                yield TransportSpec(name="ssh", cls=SshTransport, summary="OpenSSH via paramiko")
        """

    @hookspec
    def clustrix_serializers(self) -> Iterable[SerializerSpec]:
        """Return the serialization strategies this plugin provides, tried in ``priority`` order.

        Example::

            @hookimpl
            def clustrix_serializers():
                yield SerializerSpec(name="cloudpickle", cls=CloudpickleSerializer,
                                     summary="cloudpickle, same Python minor version", priority=10)
        """

    @hookspec
    def clustrix_job_script(self, profile: Profile, job_name: str, script: JobScript) -> str | None:
        """Adjust a rendered job script before it is submitted. Change ``script.text`` in place
        (implementations that run later see the change), or return the new text (returned texts
        are applied after every implementation ran, in call order), or return ``None``. A
        ``wrapper=True`` implementation sees the script before and after the others.

        Example::

            @hookimpl
            def clustrix_job_script(profile, job_name, script):
                if profile.name == "gpu":
                    first, rest = script.text.split("\\n", 1)
                    script.text = f"{first}\\nnvidia-smi\\n{rest}"
        """

    @hookspec
    def clustrix_job_submitted(self, record: JobRecord) -> None:
        """Observe a job right after the scheduler accepted it (``record.native_ids`` holds the
        scheduler's ids, one per submission). The return value is ignored.

        Example::

            @hookimpl
            def clustrix_job_submitted(record):
                print("submitted", record.job_id, "as", ",".join(record.native_ids))
        """

    @hookspec
    def clustrix_job_finished(self, record: JobRecord, state: str) -> None:
        """Observe a job that reached a final state (``state`` is a :class:`JobState` name such as
        ``"COMPLETED"`` or ``"FAILED"``). The return value is ignored.

        Example::

            @hookimpl
            def clustrix_job_finished(record, state):
                if state != "COMPLETED":
                    notify(f"job {record.job_id} ended {state}")
        """
