"""The Grid Engine scheduler: the SGE-specific pieces of :class:`BatchScheduler`.

``qsub -terse`` with ``#$`` directives, one ``qstat -xml`` per poll for every watched job,
``qacct -j`` for how a job that left the queue ended, ``qstat -j`` for the reason of an ``Eqw``
job, ``qdel`` to cancel. Array jobs (``-t 1-N``) number their tasks from 1."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from clustrix_core.errors import ConfigError
from clustrix_core.resources import format_hms, mebibytes
from clustrix_core.scheduler import (
    BatchScheduler,
    JobSpec,
    JobState,
    JobStatus,
    QueueEntry,
    Submission,
    index_ranges,
)
from clustrix_core.transport import CommandResult

from .parsers import (
    parse_error_reasons,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub_terse,
    record_state,
)

logger = logging.getLogger(__name__)

OPTIONS = {
    "pe": "parallel environment for cores > 1 (-pe PE CORES); default 'smp'",
    "memory_resource": "complex that takes the memory request, per slot (-l NAME=...); default 'h_vmem'",
    "gpu_resource": "complex that takes the GPU request (-l NAME=GPUS), e.g. 'gpu'; no default",
    "verify": "qsub -w level: 'e' (default) rejects a job no queue could ever run (too many cores, "
    "an unknown queue or complex) at submission; 'w' only warns, 'n' skips the check",
    "accounting_wait": "seconds a job that left qstat may be missing from qacct before it counts as lost; default 60",
}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_PATH_BAD = re.compile(r"[\s,:]")


class SgeScheduler(BatchScheduler):
    """Son of Grid Engine, Sun/Oracle Grid Engine, Univa/Altair Grid Engine."""

    name = "sge"
    directive_prefix = "#$"
    task_var = "SGE_TASK_ID"
    task_base = 1
    STATES = {
        "qw": JobState.PENDING,
        "Rq": JobState.PENDING,
        "Rqw": JobState.PENDING,
        "hqw": JobState.HELD,
        "hRwq": JobState.HELD,
        "hRqw": JobState.HELD,
        "t": JobState.RUNNING,
        "r": JobState.RUNNING,
        "Rr": JobState.RUNNING,
        "Rt": JobState.RUNNING,
        "s": JobState.SUSPENDED,
        "S": JobState.SUSPENDED,
        "T": JobState.SUSPENDED,
        "ts": JobState.SUSPENDED,
        "Rs": JobState.SUSPENDED,
        "St": JobState.SUSPENDED,
        "dr": JobState.COMPLETING,
        "dt": JobState.COMPLETING,
        "dRr": JobState.COMPLETING,
        "ds": JobState.COMPLETING,
        "dqw": JobState.COMPLETING,
        "dhqw": JobState.COMPLETING,
        "Eqw": JobState.ERROR,
        "Ehqw": JobState.ERROR,
        "EhRqw": JobState.ERROR,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounting_lag = _accounting_wait(self.profile.options.get("accounting_wait"))

    def option(self, key: str, default: Any) -> Any:
        return self.profile.option(key, default)

    def lost_reason(self, submission: Submission) -> str:
        return (
            "neither in qstat nor in qacct: deleted (qdel) before it started, which leaves no "
            "accounting record, or qacct cannot read this cluster's accounting file"
        )

    # ------------------------------------------------------------ validation
    def validate(self, profile: Any) -> None:
        opts = profile.options
        for key in ("pe", "memory_resource", "gpu_resource"):
            value = opts.get(key)
            if value is not None and (not isinstance(value, str) or not _NAME_RE.fullmatch(value)):
                raise ConfigError(f"{key}={value!r} is not a Grid Engine object name")
        _accounting_wait(opts.get("accounting_wait"))
        if opts.get("verify", "e") not in ("e", "w", "n", "v", "p"):
            raise ConfigError(
                f"verify={opts.get('verify')!r} is not a qsub -w level (e, w, n, v or p)"
            )
        if profile.partition:
            raise ConfigError(
                f"partition={profile.partition!r}: Grid Engine has queues, not partitions; "
                "set queue= instead"
            )
        if profile.qos:
            raise ConfigError(
                f"qos={profile.qos!r} has no meaning for Grid Engine; use directives= for "
                "site-specific requests"
            )
        if profile.gpus and not opts.get("gpu_resource"):
            raise ConfigError(
                f"gpus={profile.gpus}: Grid Engine has no standard GPU request; set the "
                "site's GPU complex with gpu_resource= (e.g. 'gpu')"
            )
        if profile.nodes > 1:
            raise ConfigError(
                f"nodes={profile.nodes}: Grid Engine places slots by the parallel "
                "environment's allocation rule; set pe= to a PE that spans hosts and "
                "cores= to the total number of slots"
            )
        for key in ("queue", "account"):
            value = getattr(profile, key)
            if value is not None and (not value or re.search(r"[\s#]", value)):
                raise ConfigError(
                    f"{key}={value!r} is not a Grid Engine {key} name (no spaces or '#')"
                )
        super().validate(profile)
        if _PATH_BAD.search(profile.work_dir):
            raise ConfigError(
                f"work_dir={profile.work_dir!r}: Grid Engine's -o/-e/-wd paths cannot "
                "contain spaces, commas or colons"
            )

    # ------------------------------------------------------------ sizing
    def parallelism(self) -> int:
        """profile ``max_parallel``, else the queue's slots (``qstat -g c``) divided by ``cores``."""
        if self.profile.max_parallel:
            return self.profile.max_parallel
        argv = ["qstat", "-g", "c"] + (["-q", self.profile.queue] if self.profile.queue else [])
        slots = self.cluster_fact(
            f"slots:{self.profile.queue or ''}",
            lambda: parse_cluster_queue_slots(self.run(argv).stdout) or 1,
        )
        return max(1, slots // max(1, self.profile.cores))

    def max_array_size(self) -> int | None:
        """The cluster's ``max_aj_tasks`` (``qconf -sconf``); 0 there means no limit."""

        def read() -> int:
            result = self.run(["qconf", "-sconf"])
            m = re.search(r"^max_aj_tasks\s+(\d+)", result.stdout, re.M)
            return int(m.group(1)) if m else 75000

        return self.cluster_fact("max_aj_tasks", read) or None

    def array_chunks(self, ntasks: int) -> list[tuple[int, int]]:
        return [(0, 1)] if ntasks == 1 else super().array_chunks(ntasks)

    # ------------------------------------------------------------ submission
    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        p = self.profile
        name = job.name if job.name[:1].isalpha() else f"j{job.name}"
        lines = [
            f"-N {name}",
            f"-S {self.shell}",
            f"-wd {job.job_dir}",
            f"-o {job.job_dir}/sge.out",
            f"-e {job.job_dir}/sge.err",
            f"-w {self.option('verify', 'e')}",
        ]
        if p.cores > 1:
            lines.append(f"-pe {self.option('pe', 'smp')} {p.cores}")
        if p.time:
            lines.append(f"-l h_rt={format_hms(p.time)}")
        if p.memory:
            per_slot = mebibytes(-(-p.memory // p.cores))
            lines.append(f"-l {self.option('memory_resource', 'h_vmem')}={per_slot}M")
        if p.gpus:
            lines.append(f"-l {self.option('gpu_resource', 'gpu')}={p.gpus}")
        if p.queue:
            lines.append(f"-q {p.queue}")
        if p.account:
            lines.append(f"-P {p.account}")
        if array:
            lines.append(f"-t 1-{count}")
            if p.max_parallel:
                lines.append(f"-tc {p.max_parallel}")
        return self.prefixed(lines)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return ["qsub", "-terse", script_path]

    def parse_submit(self, result: CommandResult) -> str:
        result.assert_success()
        return parse_qsub_terse(result.stdout)

    # ------------------------------------------------------------ watching
    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        return ["qstat", "-xml"]  # every job of the user, in one call; filtered by id in the base

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        result.assert_success()
        return parse_qstat_xml(result.stdout)

    def map_state(self, native: str) -> JobState:
        state = self.STATES.get(native)
        if state is not None:
            return state
        # combinations not in the table, by letter: E(rror) d(eleting) s/S/T(suspended) r/t h(old) w
        for letters, mapped in (
            ("E", JobState.ERROR),
            ("d", JobState.COMPLETING),
            ("sST", JobState.SUSPENDED),
            ("rt", JobState.RUNNING),
            ("h", JobState.HELD),
            ("qw", JobState.PENDING),
        ):
            if any(ch in native for ch in letters):
                return mapped
        return super().map_state(native)

    def error_reason(self, submission: Submission) -> str:
        """SGE's reason for an ``Eqw`` job, from ``qstat -j``."""
        result = self.run(["qstat", "-j", submission.native_id])
        reasons = parse_error_reasons(result.stdout)
        if not reasons:
            return ""
        texts = sorted(set(reasons.values()))
        return "Grid Engine error state (Eqw): " + "; ".join(texts)

    def final_status(self, submission: Submission) -> JobStatus | None:
        """How a job that left ``qstat`` ended, from ``qacct -j``; ``None`` while it is not there."""
        result = self.run(["qacct", "-j", submission.native_id])
        if result.returncode != 0:
            return None
        latest: dict[int | None, Any] = {}
        for rec in parse_qacct(result.stdout):
            if rec.job_id == submission.native_id:
                latest[rec.task] = rec  # a requeued task is recorded again: the last one counts
        entries = []
        for task, rec in sorted(latest.items(), key=lambda kv: kv[0] or 0):
            state, reason = record_state(rec)
            entries.append(
                QueueEntry(
                    job_id=rec.job_id,
                    task=task,
                    state=state,
                    reason=reason,
                    exit_code=rec.exit_status,
                )
            )
        # tasks of a deleted array that never started leave no record: a task that did not
        # complete settles the job; only an all-completed array waits for every task's record
        settled = any(e.state is not JobState.COMPLETED for e in entries)
        return self.summarize(submission, entries, complete=not settled)

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return ["qdel", *native_ids]

    def cancel_tasks_argv(self, native_id: str, indices: Sequence[int]) -> list[str]:
        return ["qdel", *(f"{native_id}.{a}-{b}" for a, b in index_ranges(indices))]  # 123.3-4


def _accounting_wait(value: Any) -> float:
    if value is None:
        return 60.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not seconds >= 0:
        raise ConfigError(f"accounting_wait={value!r} must be a number of seconds >= 0")
    return seconds


def parse_cluster_queue_slots(text: str) -> int:
    """Total slots (TOTAL column) of ``qstat -g c``, summed over the queues listed."""
    total = 0
    header: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["CLUSTER", "QUEUE"]:
            header = ["CLUSTER QUEUE", *parts[2:]]
            continue
        if not header or not parts or set(line.strip()) <= {"-"}:
            continue
        if "TOTAL" in header and len(parts) >= len(header):
            value = parts[header.index("TOTAL")]
            if value.isdigit():
                total += int(value)
    return total
