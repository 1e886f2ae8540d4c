"""The clustrix scheduler for spool: only the pieces that are specific to spool.

:class:`~clustrix_core.scheduler.BatchScheduler` renders the job script, writes it, runs the
submit command, batches status queries, handles arrays and cancels. This class tells it which
directives to write, which commands to run, how to read their output and what the states mean.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import attrs
from clustrix_core.config import Profile
from clustrix_core.errors import ConfigError, SubmissionError
from clustrix_core.resources import mebibytes
from clustrix_core.scheduler import (
    BatchScheduler,
    JobSpec,
    JobState,
    JobStatus,
    QueueEntry,
    Submission,
)
from clustrix_core.transport import CommandResult

#: Profile keys this scheduler accepts besides the core's (shown by ``clustrix plugins``).
OPTIONS = {
    "spool_dir": "spool directory on the submit host (default: $SPOOL_DIR there, else ~/.spool)",
    "spool_bin": "directory holding spool-submit, spool-status and spool-cancel (default: found on PATH)",
    "slots": "how many tasks of one job run at once (default: all)",
    "max_array_size": "largest array one submission may hold (default 1000, spool's own limit)",
}


@attrs.frozen(kw_only=True)
class Row:
    """One line of ``spool-status --parsable``: ``JOBID|TASK|STATE|EXIT|REASON``."""

    job_id: str
    task: int | None
    state: str
    exit_code: int | None
    reason: str


def parse_rows(text: str) -> list[Row]:
    """Parse ``spool-status --parsable`` output; lines that are not rows are ignored."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) != 5 or not parts[0].isdigit():
            continue
        job_id, task, state, code, reason = parts
        rows.append(
            Row(
                job_id=job_id,
                task=int(task) if task.isdigit() else None,
                state=state,
                exit_code=int(code) if code.lstrip("-").isdigit() else None,
                reason=reason,
            )
        )
    return rows


def _entries(rows: Sequence[Row]) -> list[QueueEntry]:
    """spool's rows as the base's queue entries (state, exit status and reason)."""
    return [
        QueueEntry(job_id=r.job_id, task=r.task, state=r.state, reason=r.reason, exit_code=r.exit_code)
        for r in rows
    ]


class SpoolScheduler(BatchScheduler):
    """Jobs and job arrays through ``spool-submit``, ``spool-status`` and ``spool-cancel``."""

    name = "spool"
    directive_prefix = "#SPOOL"
    task_var = "SPOOL_ARRAY_TASK_ID"
    task_base = 0
    STATES = {
        "queued": JobState.PENDING,
        "running": JobState.RUNNING,
        "done": JobState.COMPLETED,
        "failed": JobState.FAILED,
        "cancelled": JobState.CANCELLED,
        "timeout": JobState.TIMEOUT,
        "node_fail": JobState.NODE_FAIL,
    }

    # ---------------------------------------------------------------- checks
    def validate(self, profile: Profile) -> None:
        """Reject, before anything is submitted, what spool cannot do."""
        super().validate(profile)  # passthrough directives
        if profile.gpus:
            raise ConfigError(f"gpus={profile.gpus!r}: the spool scheduler has no GPUs")
        if profile.nodes != 1:
            raise ConfigError(f"nodes={profile.nodes!r}: the spool scheduler runs every task on one host")
        for field in ("partition", "queue", "account", "qos"):
            if getattr(profile, field):
                raise ConfigError(
                    f"{field}={getattr(profile, field)!r} has no meaning for the spool scheduler"
                )
        for key in ("slots", "max_array_size"):
            value = profile.options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key}={value!r} must be a whole number >= 1")

    def parallelism(self) -> int:
        return self.profile.max_parallel or int(self.profile.options.get("slots") or 4)

    def max_array_size(self) -> int | None:
        return int(self.profile.options.get("max_array_size") or 1000)

    # ---------------------------------------------------------------- commands
    def _command(self, program: str) -> list[str]:
        """``[<spool_bin>/]program [--spool-dir DIR]``."""
        directory = self.profile.options.get("spool_bin")
        argv = [f"{str(directory).rstrip('/')}/{program}" if directory else program]
        if self.profile.options.get("spool_dir"):
            argv += ["--spool-dir", str(self.profile.options["spool_dir"])]
        return argv

    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        p, q = self.profile, shlex.quote
        lines = [f"--name={q(job.name)}"]
        if array:
            lines.append(f"--array={self.task_base}-{self.task_base + count - 1}")
        if p.time:
            lines.append(f"--time={p.time}")
        if p.cores > 1:
            lines.append(f"--cores={p.cores}")
        if p.memory:
            lines.append(f"--mem={mebibytes(p.memory)}")
        if p.options.get("slots"):
            lines.append(f"--slots={int(p.options['slots'])}")
        return self.prefixed(lines)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return [*self._command("spool-submit"), "--parsable", script_path]

    def parse_submit(self, result: CommandResult) -> str:
        result.assert_success()
        lines = result.stdout.strip().splitlines()
        if not lines or not lines[-1].strip().isdigit():
            raise SubmissionError(f"spool-submit printed no job id: {result.stdout!r} {result.stderr!r}")
        return lines[-1].strip()

    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        return [*self._command("spool-status"), "--parsable", *native_ids]

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        result.assert_success()
        return _entries(parse_rows(result.stdout))

    def final_status(self, submission: Submission) -> JobStatus | None:
        """A job left the active listing: ask spool how it ended (``--all`` is spool's ``sacct``).
        The base sums its rows up (:meth:`summarize`), as it does for the queue's."""
        result = self.run([*self._command("spool-status"), "--parsable", "--all", submission.native_id])
        rows = [r for r in parse_rows(result.assert_success().stdout) if r.job_id == submission.native_id]
        return self.summarize(submission, _entries(rows))

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return [*self._command("spool-cancel"), *native_ids]
