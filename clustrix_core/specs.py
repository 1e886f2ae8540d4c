"""Descriptor types at the bottom of the import graph: what plugins return from the collection
hooks, and the job script a lifecycle hook adjusts. This module imports nothing of clustrix."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen(kw_only=True)
class _Spec:
    name: str
    cls: type
    summary: str
    options: Mapping[str, str] = attrs.field(factory=dict)
    """Extra profile keys this plugin accepts, with a one-line description each. The plugin reads
    them with ``profile.option(key, default)``."""


@attrs.frozen(kw_only=True)
class SchedulerSpec(_Spec):
    """A scheduler class: submits, watches and cancels jobs."""

    kind = "scheduler"


@attrs.frozen(kw_only=True)
class TransportSpec(_Spec):
    """A transport class: runs commands and moves bytes on the submit host."""

    kind = "transport"


@attrs.frozen(kw_only=True)
class SerializerSpec(_Spec):
    """A serialization strategy class; lower ``priority`` is tried first."""

    priority: int = 50
    kind = "serializer"


@attrs.define(kw_only=True)
class JobScript:
    """A rendered batch script on its way to the scheduler (``clustrix_job_script``).

    ``text`` is the script; an implementation changes it in place (the next implementation sees
    the change) or returns the new text. ``job_id`` and ``task`` say what it runs: the first task
    of the submission and how many (``count``)."""

    text: str
    job_id: str
    first: int = 0
    count: int = 1

    def __str__(self) -> str:
        return self.text


__all__ = ["JobScript", "SchedulerSpec", "SerializerSpec", "TransportSpec"]
