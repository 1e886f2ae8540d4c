"""Re-attach to a job by id from any process: status, logs, cancel, result.

A job the registry records as finished is answered from the registry: nothing is signalled, and
its record is never rewritten by looking at it again."""

from __future__ import annotations

import time
from typing import Any

from .config import build_profile
from .errors import ClustrixError
from .executor import FINAL_RECORD_STATES, ClusterExecutor, ClusterFuture
from .registry import JobRecord, get_registry


class JobHandle:
    """A job from the registry. ``result()`` returns the value (one call) or the list of values."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        profile = build_profile(record.profile, record.profile_values)
        self.executor = ClusterExecutor(profile)
        self._futures: list[ClusterFuture] | None = None

    @property
    def finished(self) -> bool:
        return self.record.state in FINAL_RECORD_STATES

    @property
    def futures(self) -> list[ClusterFuture]:
        """The job's futures, in call order (watching it from this process)."""
        if self._futures is None:
            if self.finished:
                ready = self.executor.results_ready(self.record)
                if len(ready) < self.record.ntasks:
                    raise ClustrixError(
                        f"job {self.record.job_id} finished {self.record.state} "
                        f"{_when(self.record.finished_at)}{_reason(self.record)}; its results "
                        "are no longer in the job store (collected by the process that ran it, "
                        f"then cleaned up by cleanup={self.executor.profile.cleanup!r}). "
                        "Use cleanup = 'never' to collect results again later"
                    )
            self._futures = self.executor.adopt(self.record)
        return self._futures

    def status(self) -> str:
        if self.finished:
            return f"{self.record.state} (recorded {_when(self.record.finished_at)})" + _reason(
                self.record
            )
        statuses = self.executor.job_statuses(self.record)
        return ", ".join(
            f"{sid}: {st.state}" + (f" ({st.reason})" if st.reason else "")
            for sid, st in statuses.items()
        )

    def result(self, timeout: float | None = None) -> Any:
        values = [f.result(timeout) for f in self.futures]
        return values[0] if self.record.ncalls == 1 else values

    def cancel(self) -> bool:
        """Cancel the job on the scheduler; False (and nothing signalled) when it had finished."""
        if self.finished:
            return False
        self.executor.cancel_record(self.record)
        return True

    def logs(self, task: int = 0) -> tuple[str, str]:
        return (
            self.executor.read_log(self.record, "out", task),
            self.executor.read_log(self.record, "err", task),
        )


def _when(at: float | None) -> str:
    return time.strftime("at %Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "earlier"


def _reason(record: JobRecord) -> str:
    return f": {record.reason}" if record.reason else ""


def attach(job_id: str) -> JobHandle:
    """The job ``job_id`` (or a unique prefix of it) from the registry."""
    return JobHandle(get_registry().get(job_id))
