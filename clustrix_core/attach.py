"""Re-attach to a job by id from any process: status, logs, cancel, result."""

from __future__ import annotations

from typing import Any

from .config import build_profile
from .executor import ClusterExecutor, _Job
from .registry import JobRecord, get_registry


class JobHandle:
    """A job from the registry. ``result()`` returns the value (one call) or the list of values."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        profile = build_profile(record.profile, record.profile_values)
        self.executor = ClusterExecutor(profile)
        self._job: _Job | None = None

    @property
    def job(self) -> _Job:
        if self._job is None:
            self._job = self.executor._adopt(self.record)
        return self._job

    def status(self) -> str:
        subs = self.job.submissions
        statuses = self.executor.backend.scheduler.statuses(subs)
        return ", ".join(
            f"{sid}: {st.state}" + (f" ({st.reason})" if st.reason else "")
            for sid, st in statuses.items()
        )

    def result(self, timeout: float | None = None) -> Any:
        values = [f.result(timeout) for f in self.job.futures]
        return values[0] if self.record.ncalls == 1 else values

    def cancel(self) -> None:
        self.executor._cancel_job(self.job)

    def logs(self, task: int = 0) -> tuple[str, str]:
        return self.job.read_log("out", task), self.job.read_log("err", task)


def attach(job_id: str) -> JobHandle:
    """The job ``job_id`` (or a unique prefix of it) from the registry."""
    return JobHandle(get_registry().get(job_id))
