"""The SLURM scheduler: the SLURM-specific pieces of :class:`~clustrix_core.scheduler.BatchScheduler`.

- submit: ``sbatch --parsable JOB_DIR/job.N.sh`` with ``#SBATCH`` directives from the profile;
  a ``map`` is one job array ``--array=0-N[%max_parallel]``, split into several arrays when it
  is larger than the cluster's ``MaxArraySize`` (read once from ``scontrol show config``);
- watch: one ``squeue --states=all --jobs=ID,ID,...`` per poll for every watched job. While
  slurmctld remembers a finished job (``MinJobAge``, 300 s by default) that same call gives
  its final state;
- a job squeue no longer lists: one ``sacct`` call for all of them where accounting works, else
  ``scontrol show job`` (which knows what slurmctld still remembers); a job neither knows is
  ``LOST`` (after the executor's grace);
- cancel: ``scancel ID ...`` (an array id cancels every task);
- sizing: ``parallelism()`` is the partition's CPUs (times N with ``OverSubscribe=FORCE:N``)
  divided by the CPUs one task asks for, or the profile's ``max_parallel``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from clustrix_core.errors import ConfigError, SubmissionError
from clustrix_core.resources import format_dhms, mebibytes
from clustrix_core.scheduler import (
    BatchScheduler,
    JobSpec,
    JobStatus,
    QueueEntry,
    Submission,
    index_spans,
)
from clustrix_core.transport import CommandResult

from . import parsers
from .parsers import JobRow

logger = logging.getLogger(__name__)

OPTIONS = {
    "slurm_bin": "directory of the SLURM commands on the submit host, for sites where a "
    "non-interactive shell does not have them on PATH (default: found on PATH)",
    "lost_grace": "seconds a finished job without a result file (shared file systems lag) or a job "
    "neither squeue nor the accounting knows is looked for before it fails as LOST; default 30",
    "sacct": "how to learn the end of a job squeue no longer lists: 'auto' (default: sacct when "
    "accounting works, else scontrol show job), true (always sacct), false (never sacct)",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.,:+@=-]+$")
_UNKNOWN_JOB = "Invalid job id specified"


def _sacct_mode(value: Any) -> str:
    if value is None or value == "auto":
        return "auto"
    if value in (True, "true", "yes", "on", 1):
        return "on"
    if value in (False, "false", "no", "off", 0):
        return "off"
    raise ConfigError(f"sacct={value!r} must be true, false or 'auto'")


def _lost_grace(value: Any) -> float:
    if value is None:
        return 30.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"lost_grace={value!r} must be a number of seconds >= 0")
    return float(value)


def _directive_value(value: str) -> str:
    """A value as sbatch reads it from an ``#SBATCH`` line: double-quoted when it has spaces."""
    if any(c in value for c in '"\n\r'):
        raise ConfigError(f"{value!r} cannot be written into an #SBATCH line (quote or newline)")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _pattern(path: str) -> str:
    """A literal path inside an sbatch filename pattern (``%`` starts a replacement)."""
    return path.replace("%", "%%")


class SlurmScheduler(BatchScheduler):
    """SLURM 17.11 and later (tested on 22.05) through its commands, locally or over SSH."""

    name = "slurm"
    directive_prefix = "#SBATCH"
    task_var = "SLURM_ARRAY_TASK_ID"
    task_base = 0
    STATES = parsers.STATES
    bin_option = "slurm_bin"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sacct = _sacct_mode(self.profile.options.get("sacct"))
        self.accounting_lag = _lost_grace(self.profile.options.get("lost_grace"))

    # ------------------------------------------------------------ validation
    def validate(self, profile: Any) -> None:
        _sacct_mode(profile.options.get("sacct"))
        _lost_grace(profile.options.get("lost_grace"))
        if profile.partition and profile.queue and profile.partition != profile.queue:
            raise ConfigError(
                f"partition={profile.partition!r} and queue={profile.queue!r} disagree: "
                "SLURM calls queues partitions; set one of them"
            )
        for key in ("partition", "queue", "account", "qos"):
            value = getattr(profile, key)
            if value is not None and not _NAME_RE.fullmatch(value):
                raise ConfigError(
                    f"{key}={value!r} is not a SLURM name (letters, digits and _.,:+@=- only)"
                )
        super().validate(profile)

    @property
    def partition(self) -> str | None:
        return self.profile.partition or self.profile.queue

    # ------------------------------------------------------------ cluster facts (read once)
    def max_array_size(self) -> int | None:
        """``MaxArraySize`` of ``scontrol show config`` (an array's indices are 0 .. MaxArraySize-1),
        read once per cluster."""
        value = self.cluster_fact("MaxArraySize", self._read_max_array_size)
        if value == 0:  # job arrays disabled on this cluster: one job per task
            self.supports_arrays = False
        return value or 1

    def _read_max_array_size(self) -> int:
        result = self.run([self.command("scontrol"), "show", "config"])
        value = parsers.parse_config_value(result.stdout, "MaxArraySize") if result.ok else None
        if value is None or not value.isdigit():
            logger.warning(
                "slurm: cannot read MaxArraySize (scontrol show config: exit %s); assuming 1001",
                result.returncode,
            )
            value = "1001"
        return int(value)

    def parallelism(self) -> int:
        """``max_parallel``, else how many of these jobs the partition runs at once: its CPUs
        (times N with ``OverSubscribe=FORCE:N``) over the CPUs one job asks for."""
        if self.profile.max_parallel:
            return self.profile.max_parallel
        argv = [self.command("scontrol"), "--oneliner", "show", "partition"]
        if self.partition:
            argv.append(self.partition.split(",")[0])
        part = self.cluster_fact(f"partition:{self.partition or ''}", lambda: self._partition(argv))
        if part is None:
            return 1
        per_job = max(1, self.profile.cores) * max(1, self.profile.nodes)
        return max(1, part.total_cpus * part.jobs_per_cpu // per_job)

    def _partition(self, argv: list[str]) -> Any:
        result = self.run(argv)
        parts = parsers.parse_partitions(result.stdout) if result.ok else []
        chosen = [p for p in parts if p.default] or parts
        if not chosen:
            logger.warning(
                "slurm: cannot read the partition (%s: exit %s %s); map runs 1 task",
                " ".join(argv),
                result.returncode,
                result.stderr.strip(),
            )
            return None
        return chosen[0]

    # ------------------------------------------------------------ submission
    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        return self.chunk_directives(job, first=0, count=count, array=array)

    def chunk_directives(self, job: JobSpec, *, first: int, count: int, array: bool) -> list[str]:
        """``#SBATCH`` lines for tasks ``first .. first+count-1`` of ``job``. SLURM's own output
        (time limit and OOM messages) goes to the task's ``out.N``/``err.N`` where ``%a`` is the
        task number, i.e. for a plain job and for the first array of a split one."""
        p = job.profile
        d = _pattern(job.job_dir)
        if not array:
            out, err = f"{d}/out.{first}", f"{d}/err.{first}"
        elif first == 0:  # SLURM's own messages (time limit, OOM) land in the task's own files
            out, err = f"{d}/out.%a", f"{d}/err.%a"
        else:  # a later chunk of a split array: SLURM cannot add the offset to %a
            out, err = f"{d}/slurm-%A_%a.out", f"{d}/slurm-%A_%a.err"
        lines = [
            f"--job-name={job.name}",
            f"--chdir={_directive_value(job.job_dir)}",
            f"--output={_directive_value(out)}",
            f"--error={_directive_value(err)}",
            "--open-mode=append",
            f"--cpus-per-task={p.cores}",
        ]
        if p.nodes > 1:
            lines.append(f"--nodes={p.nodes}")
        if p.memory:
            lines.append(f"--mem={mebibytes(p.memory)}M")
        if p.time:
            lines.append(f"--time={format_dhms(p.time)}")
        if p.gpus:
            lines.append(f"--gres=gpu:{p.gpus}")
        if self.partition:
            lines.append(f"--partition={self.partition}")
        if p.account:
            lines.append(f"--account={p.account}")
        if p.qos:
            lines.append(f"--qos={p.qos}")
        if array:
            spec = f"0-{count - 1}"
            if p.max_parallel and p.max_parallel < count:
                spec += f"%{p.max_parallel}"
            lines.append(f"--array={spec}")
        return self.prefixed(lines)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return [self.command("sbatch"), "--parsable", script_path]

    def parse_submit(self, result: CommandResult) -> str:
        result.assert_success()
        try:
            return parsers.parse_sbatch(result.stdout)
        except ValueError as exc:
            raise SubmissionError(f"slurm: {exc} (stderr: {result.stderr.strip()!r})") from None

    # ------------------------------------------------------------ watching
    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        return [
            self.command("squeue"),
            "--noheader",
            "--states=all",
            f"--jobs={','.join(native_ids)}",
            f"--format={parsers.SQUEUE_FORMAT}",
        ]

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        if result.returncode != 0 and _UNKNOWN_JOB in result.stderr:
            return []  # squeue -j with one id that slurmctld no longer knows: exit 1
        result.assert_success()
        return [
            QueueEntry(job_id=r.job_id, task=r.task, state=r.state, reason=r.reason)
            for r in parsers.parse_squeue(result.stdout)
        ]

    def final_status(self, submission: Submission) -> JobStatus | None:
        return self.final_statuses([submission]).get(submission.native_id)

    def final_statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """How jobs that squeue no longer lists ended: one ``sacct`` call for all of them, or
        ``scontrol show job`` per job where there is no accounting. Jobs neither knows are left out."""
        if not submissions:
            return {}
        rows: list[JobRow] | None = None
        if self._sacct != "off":
            rows = self._sacct_rows([s.native_id for s in submissions])
        if rows is None:
            rows = []
            for sub in submissions:
                result = self.run(
                    [self.command("scontrol"), "--oneliner", "show", "job", sub.native_id]
                )
                if result.ok:
                    rows.extend(parsers.parse_scontrol_jobs(result.stdout))
        by_job: dict[str, list[JobRow]] = {}
        for row in rows:
            by_job.setdefault(row.job_id, []).append(row)
        out = {}
        for sub in submissions:
            entries = [
                QueueEntry(
                    job_id=r.job_id,
                    task=r.task,
                    state=r.state,
                    reason=_reason(r),
                    exit_code=r.exit_code,
                )
                for r in by_job.get(sub.native_id, [])
            ]
            status = self.summarize(sub, entries, complete=True)
            if status is not None:
                out[sub.native_id] = status
        return out

    def accounting_may_lag(self) -> bool:
        """sacct lags behind squeue; ``scontrol show job`` (no accounting) does not."""
        return self._sacct != "off"

    def _sacct_rows(self, ids: Sequence[str]) -> list[JobRow] | None:
        """sacct's rows, or ``None`` when accounting does not work here (then: scontrol)."""
        result = self.run(
            [
                self.command("sacct"),
                "--noheader",
                "--parsable2",
                "--allocations",
                f"--jobs={','.join(ids)}",
                f"--format={parsers.SACCT_FIELDS}",
            ]
        )
        if result.ok:
            return parsers.parse_sacct(result.stdout)
        message = (result.stderr or result.stdout).strip()
        if self._sacct == "auto":
            logger.info(
                "slurm: sacct does not work here (%s); using scontrol show job from now on", message
            )
            self._sacct = "off"
        else:
            logger.warning("slurm: sacct failed (exit %s): %s", result.returncode, message)
        return None

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return [self.command("scancel"), *native_ids]

    def cancel_tasks_argv(self, native_id: str, indices: Sequence[int]) -> list[str]:
        return [self.command("scancel"), f"{native_id}_[{','.join(index_spans(indices))}]"]


def _reason(row: JobRow) -> str:
    parts = [row.reason] if row.reason else []
    if row.raw and row.task is not None:
        parts.append(f"array task {row.raw}")
    if row.signal:
        parts.append(f"killed by signal {row.signal}")
    elif row.exit_code:
        parts.append(f"exit code {row.exit_code}")
    return ", ".join(parts)
