"""Re-attach to a job by id from any process: status, logs, cancel, result.

A job the registry records as finished is answered from the registry: nothing is signalled, and
its record is never rewritten by looking at it again."""

from __future__ import annotations

import os
import socket
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
                partial = self.record.state in ("CANCELLED", "FAILED")  # the others never ran
                if not ready or (len(ready) < self.record.ntasks and not partial):
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
        if not self.record.submissions:
            return self._unsubmitted()
        statuses = self.executor.job_statuses(self.record)
        return ", ".join(
            f"{sid}: {st.state}" + (f" ({st.reason})" if st.reason else "")
            for sid, st in statuses.items()
        )

    def _unsubmitted(self) -> str:
        """A job the scheduler never acknowledged: still being submitted, refused, or abandoned
        by a process that died on the way (then what its job directory shows)."""
        record = self.record
        if record.state != "STAGED":
            return f"{record.state}: never accepted by the scheduler" + _reason(record)
        host, _, pid = record.client.rpartition(":")
        who = f"process {pid} on {host}" if pid else "the process that staged it"
        if host == socket.gethostname() and pid.isdigit() and _pid_alive(int(pid)):
            return f"STAGED: being submitted by {who} (staged {_when(record.submitted_at)})"
        try:
            ready = sorted(self.executor.results_ready(record))
        except Exception:  # the directory is gone or unreachable: no evidence that it ran
            ready = []
        if ready:
            tasks = ", ".join(map(str, ready))
            return (
                f"STAGED: {who} ended during the submission, before the scheduler's job id was "
                f"recorded; the job ran all the same: its directory {record.job_dir} holds the "
                f"results of task(s) {tasks} of {record.ntasks}, but clustrix cannot watch or "
                "cancel it (look for it with the scheduler's own commands)"
            )
        return (
            f"STAGED: never submitted: {who} ended (killed?) after staging it "
            f"{_when(record.submitted_at)} and before the scheduler accepted it; its job "
            f"directory {record.job_dir} shows no results. Submit the call again"
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(at: float | None) -> str:
    return time.strftime("at %Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "earlier"


def _reason(record: JobRecord) -> str:
    return f": {record.reason}" if record.reason else ""


def attach(job_id: str) -> JobHandle:
    """The job ``job_id`` (or a unique prefix of it) from the registry."""
    return JobHandle(get_registry().get(job_id))
