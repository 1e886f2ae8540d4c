"""Schedulers: submit, watch and cancel jobs.

:class:`Scheduler` is the interface. :class:`BatchScheduler` does the command-line dance once for
every batch system (render the script, submit, parse the id, one status query for many jobs, the
final state once a job left the queue, cancel, arrays); a plugin supplies directives, argv
builders, output parsers and a state map. :class:`ProcessScheduler` runs jobs as detached process
groups through any transport (the ``local`` backend, and the ``ssh`` backend of clustrix-ssh).
"""

from __future__ import annotations

import enum
import logging
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from .errors import ConfigError, SubmissionError
from .transport import CommandResult, Transport

if TYPE_CHECKING:
    from .config import Profile

logger = logging.getLogger(__name__)


class JobState(enum.Enum):
    """The core's job states; ``final`` says whether a job in this state will never run again."""

    PENDING = ("PENDING", False)
    HELD = ("HELD", False)
    RUNNING = ("RUNNING", False)
    SUSPENDED = ("SUSPENDED", False)
    COMPLETING = ("COMPLETING", False)
    REQUEUED = ("REQUEUED", False)
    UNKNOWN = ("UNKNOWN", False)
    COMPLETED = ("COMPLETED", True)
    FAILED = ("FAILED", True)
    CANCELLED = ("CANCELLED", True)
    TIMEOUT = ("TIMEOUT", True)
    OUT_OF_MEMORY = ("OUT_OF_MEMORY", True)
    NODE_FAIL = ("NODE_FAIL", True)
    PREEMPTED = ("PREEMPTED", True)
    BOOT_FAIL = ("BOOT_FAIL", True)
    DEADLINE = ("DEADLINE", True)
    ERROR = ("ERROR", True)
    """The scheduler holds the job in an error state (e.g. SGE ``Eqw``); it will not run."""
    LOST = ("LOST", True)
    """The job left the queue and neither the scheduler nor the job directory says how it ended."""

    def __init__(self, label: str, final: bool) -> None:
        self.label = label
        self.final = final

    def __str__(self) -> str:
        return self.label


RETRYABLE = frozenset({JobState.NODE_FAIL, JobState.PREEMPTED, JobState.BOOT_FAIL})


@attrs.frozen(kw_only=True)
class JobStatus:
    state: JobState
    reason: str = ""
    exit_code: int | None = None
    tasks: Mapping[int, JobState] = attrs.field(factory=dict)
    """Per-task states, where the scheduler told them (task numbers are the job's own, from 0)."""


@attrs.frozen(kw_only=True)
class JobSpec:
    """What the executor asks a scheduler to run: ``ntasks`` runner tasks in ``job_dir``."""

    job_id: str
    name: str
    job_dir: str
    ntasks: int
    python: str
    profile: Profile


@attrs.frozen(kw_only=True)
class Submission:
    """One accepted submission: a job, or an array covering tasks ``first .. first+count-1``."""

    native_id: str
    job_dir: str
    first: int = 0
    count: int = 1


@attrs.frozen(kw_only=True)
class QueueEntry:
    """One line of a scheduler's queue listing."""

    job_id: str
    task: int | None
    state: str
    reason: str = ""


def task_body(job: JobSpec, task_var: str = "TASK") -> str:
    """The shell lines every backend runs for one task: environment, modules, setup, runner."""
    p = job.profile
    q = shlex.quote
    lines = [f"cd {q(job.job_dir)} || exit 97"]
    for key, value in p.env.items():
        lines.append(f"export {key}={q(value)}")
    for module in p.modules:
        lines.append(f"module load {q(module)}")
    lines.extend(p.setup)
    lines.append(
        f'exec {q(job.python)} {q(job.job_dir + "/runner.py")} {q(job.job_dir)} "${task_var}"'
    )
    return "\n".join(lines) + "\n"


class Scheduler:
    """The interface every scheduler implements."""

    name = ""
    supports_arrays = True
    poll_min = 0.05
    """Seconds between status queries while jobs change (a profile's ``poll_min`` wins)."""
    lost_grace = 0.0
    """Seconds a job that left the queue may stay unknown to the scheduler's accounting (which
    can lag behind) before the executor calls it lost; it keeps looking meanwhile."""

    def __init__(self, *, profile: Profile, transport: Transport) -> None:
        self.profile = profile
        self.transport = transport

    def validate(self, profile: Profile) -> None:
        """Raise :class:`ConfigError` for resource requests this scheduler cannot express."""

    def parallelism(self) -> int:
        """How many tasks can run at once; ``map`` sizes its array by it."""
        return self.profile.max_parallel or 1

    def submit(self, job: JobSpec) -> list[Submission]:
        raise NotImplementedError

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """The status of many submissions with one query (keyed by native id)."""
        raise NotImplementedError

    def cancel(self, submissions: Sequence[Submission]) -> None:
        raise NotImplementedError

    def render_script(self, job: JobSpec) -> str:
        raise NotImplementedError


# ---------------------------------------------------------------- batch systems


class BatchScheduler(Scheduler):
    """Template for command-line batch systems. Subclasses set the class attributes and
    implement the argv builders and parsers; see docs/writing-a-plugin.md."""

    directive_prefix = "#BATCH"
    task_var = "ARRAY_TASK_ID"
    """Environment variable holding the array index inside a job."""
    task_base = 0
    """The first array index the scheduler uses (SGE: 1)."""
    STATES: Mapping[str, JobState] = {}
    shell = "/bin/bash"
    lost_reason = "not in the queue, and the scheduler has no record of it"
    """The reason given for a job that is neither in the queue nor in the accounting."""

    def __init__(self, *, profile: Profile, transport: Transport) -> None:
        super().__init__(profile=profile, transport=transport)
        self._finals: dict[str, JobStatus] = {}

    def validate(self, profile: Profile) -> None:
        """Passthrough directives: one per item, and either bare options or this scheduler's
        prefix. Subclasses extend this (``super().validate(profile)``)."""
        for line in profile.directives:
            if "\n" in line or "\r" in line:
                raise ConfigError(
                    f"directives: {line!r} spans several lines; give one directive per item"
                )
            if line.startswith("#") and not line.startswith(self.directive_prefix):
                raise ConfigError(
                    f"directives: {line!r} starts with '#' but not {self.directive_prefix!r}; "
                    f"write the bare option or '{self.directive_prefix} option'"
                )

    def prefixed(self, options: Sequence[str]) -> list[str]:
        """Directive lines: each option behind ``directive_prefix``."""
        return [f"{self.directive_prefix} {option}" for option in options]

    # ---- what plugins implement
    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        """The directive lines (with prefix) for ``job``; ``array`` says whether it's an array."""
        raise NotImplementedError

    def chunk_directives(self, job: JobSpec, *, first: int, count: int, array: bool) -> list[str]:
        """The directive lines for the submission of tasks ``first .. first+count-1``. Default:
        :meth:`directives`; override when a directive depends on the chunk (SLURM sends the
        scheduler's own output of the first chunk to ``out.%a``, of later ones elsewhere)."""
        return self.directives(job, count=count, array=array)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        raise NotImplementedError

    def submit_stdin(self, script_path: str, script: str) -> bytes | None:
        """What the submit command reads on its standard input. Default ``None``; a scheduler that
        reads directives only from a script on stdin (LSF: ``bsub < job.sh``) returns the script."""
        return None

    def parse_submit(self, result: CommandResult) -> str:
        result.assert_success()
        return result.stdout.strip().splitlines()[-1].strip()

    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, result: CommandResult) -> list[QueueEntry]:
        raise NotImplementedError

    def final_status(self, submission: Submission) -> JobStatus | None:
        """How a job that left the queue ended, or ``None`` when the scheduler no longer knows."""
        return None

    def final_statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """How the jobs that left the queue since the last poll ended, keyed by native id; jobs
        the scheduler no longer knows are left out. Default: :meth:`final_status` for each;
        override to ask the accounting once for all of them (``sacct --jobs=A,B,C``)."""
        out: dict[str, JobStatus] = {}
        for sub in submissions:
            status = self.final_status(sub)
            if status is not None:
                out[sub.native_id] = status
        return out

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def error_reason(self, submission: Submission) -> str:
        """Why the scheduler holds ``submission`` in an error state (``JobState.ERROR``) when the
        queue listing does not say (SGE ``Eqw``: ``qstat -j``); "" keeps the listing's reason."""
        return ""

    def max_array_size(self) -> int | None:
        return None

    # ---- the shared dance
    def map_state(self, native: str) -> JobState:
        state = self.STATES.get(native)
        if state is None:
            logger.debug("%s: unknown native state %r", self.name, native)
            return JobState.UNKNOWN
        return state

    def render_script(
        self, job: JobSpec, *, first: int = 0, count: int | None = None, array: bool | None = None
    ) -> str:
        count = job.ntasks if count is None else count
        array = count > 1 if array is None else array
        offset = first - self.task_base
        if array:
            task = (
                f"TASK=$(( ${{{self.task_var}}} + {offset} ))"
                if offset
                else f'TASK="${{{self.task_var}}}"'
            )
        else:
            task = f"TASK={first}"
        q = shlex.quote
        passthrough = [
            d if d.startswith("#") else f"{self.directive_prefix} {d}"
            for d in self.profile.directives
        ]
        lines = [
            f"#!{self.shell}",
            *self.chunk_directives(job, first=first, count=count, array=array),
            *passthrough,
            f"# clustrix job {job.job_id}",
            task,
            f'exec >>{q(job.job_dir)}/out."$TASK" 2>>{q(job.job_dir)}/err."$TASK"',
        ]
        return "\n".join(lines) + "\n" + task_body(job)

    def array_chunks(self, ntasks: int) -> list[tuple[int, int]]:
        """``(first, count)`` of each submission: arrays of at most ``max_array_size()`` tasks,
        or one submission per task when the scheduler (or this cluster) has no arrays."""
        limit = self.max_array_size() or ntasks  # may learn that arrays are off: ask it first
        if not self.supports_arrays:
            limit = 1
        limit = max(1, limit)
        return [(first, min(limit, ntasks - first)) for first in range(0, ntasks, limit)]

    def submit(self, job: JobSpec) -> list[Submission]:
        from .plugins import get_plugin_manager

        submissions: list[Submission] = []
        for index, (first, count) in enumerate(self.array_chunks(job.ntasks)):
            array = job.ntasks > 1 and self.supports_arrays
            script = self.render_script(job, first=first, count=count, array=array)
            script = get_plugin_manager().adjust_job_script(job.profile, job.name, script)
            path = f"{job.job_dir}/job.{index}.sh"
            self.transport.put_bytes(path, script.encode(), mode=0o700)
            result = self.transport.run(
                self.submit_argv(path, job, first=first, count=count, array=array),
                stdin=self.submit_stdin(path, script),
            )
            if result.returncode != 0:
                if submissions:
                    self.cancel(submissions)
                raise SubmissionError(
                    f"{self.name}: {' '.join(result.argv)} failed (exit {result.returncode}): "
                    f"{(result.stderr or result.stdout).strip()}"
                )
            native = self.parse_submit(result)
            submissions.append(
                Submission(native_id=native, job_dir=job.job_dir, first=first, count=count)
            )
        return submissions

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """One status query for the submissions not known to be final yet (final states are
        remembered). A job held in an error state gets its reason (:meth:`error_reason`) and is
        deleted, since it would otherwise sit in the queue forever."""
        out = {
            s.native_id: self._finals[s.native_id]
            for s in submissions
            if s.native_id in self._finals
        }
        ask = [s for s in submissions if s.native_id not in out]
        if not ask:
            return out
        entries = self.parse_status(
            self.transport.run(self.status_argv([s.native_id for s in ask]))
        )
        by_job: dict[str, list[QueueEntry]] = {}
        for entry in entries:
            by_job.setdefault(entry.job_id, []).append(entry)
        gone = [sub for sub in ask if not by_job.get(sub.native_id)]
        finals = self.final_statuses(gone) if gone else {}  # one accounting query for all of them
        for sub in ask:
            listed = by_job.get(sub.native_id)
            if listed:
                status = self._aggregate(sub, listed)
                if status.state is JobState.ERROR:
                    reason = (
                        self.error_reason(sub)
                        or status.reason
                        or "the scheduler holds the job in an error state"
                    )
                    status = attrs.evolve(status, reason=reason)
                    self.cancel([sub])
            else:
                status = finals.get(sub.native_id) or JobStatus(
                    state=JobState.LOST, reason=self.lost_reason
                )
            if status.state.final and status.state is not JobState.LOST:
                self._finals[sub.native_id] = status
            out[sub.native_id] = status
        return out

    def _aggregate(self, sub: Submission, entries: list[QueueEntry]) -> JobStatus:
        states = [(e, self.map_state(e.state)) for e in entries]
        tasks = {sub.first + e.task - self.task_base: s for e, s in states if e.task is not None}
        live = [(e, s) for e, s in states if not s.final]
        if not live:
            failed = [(e, s) for e, s in states if s is not JobState.COMPLETED]
            e, s = failed[0] if failed else states[0]
            return JobStatus(state=s, reason=e.reason, tasks=tasks)
        for wanted in (JobState.RUNNING, JobState.COMPLETING, JobState.PENDING):
            for e, s in live:
                if s is wanted:
                    return JobStatus(state=s, reason=e.reason, tasks=tasks)
        e, s = live[0]
        return JobStatus(state=s, reason=e.reason, tasks=tasks)

    def cancel(self, submissions: Sequence[Submission]) -> None:
        if submissions:
            self.transport.run(self.cancel_argv([s.native_id for s in submissions]))


# ---------------------------------------------------------------- detached processes


class ProcessScheduler(Scheduler):
    """Runs a job as a detached process group on the submit host itself (no batch system).

    ``job.sh`` starts every task in the background (``exit.N`` holds each task's exit status),
    waits, and writes ``done``. The native id is the process group's PID. Cancelling writes
    ``cancelled`` and kills the group."""

    name = "local"
    poll_min = 0.02  # a status query is one `sh` on the host: cheap

    def parallelism(self) -> int:
        if self.profile.max_parallel:
            return self.profile.max_parallel
        result = self.transport.run(["sh", "-c", "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN"])
        try:
            return max(1, int(result.stdout.split()[0]))
        except (IndexError, ValueError):
            return 1

    def validate(self, profile: Profile) -> None:
        for field in ("partition", "queue", "account", "qos"):
            if getattr(profile, field):
                raise ConfigError(
                    f"{field}={getattr(profile, field)!r} has no meaning for the "
                    f"{self.name!r} scheduler (it runs processes directly)"
                )

    def render_script(self, job: JobSpec) -> str:
        q = shlex.quote
        d = q(job.job_dir)
        return (
            "#!/bin/sh\n"
            f"# clustrix job {job.job_id}\n"
            "run_task() {\n"
            "  TASK=$1\n"
            "  (\n"
            f"{task_body(job)}"  # real newlines: values and setup lines may span several lines
            f"  ) >>{d}/out.$TASK 2>>{d}/err.$TASK\n"
            f"  echo $? >{d}/exit.$TASK.tmp && mv {d}/exit.$TASK.tmp {d}/exit.$TASK\n"
            "}\n"
            f"i=0; while [ $i -lt {job.ntasks} ]; do run_task $i & i=$((i + 1)); done\n"
            "wait\n"
            f"touch {d}/done\n"
        )

    def submit(self, job: JobSpec) -> list[Submission]:
        from .plugins import get_plugin_manager

        script = get_plugin_manager().adjust_job_script(
            job.profile, job.name, self.render_script(job)
        )
        path = f"{job.job_dir}/job.sh"
        self.transport.put_bytes(path, script.encode(), mode=0o700)
        q = shlex.quote
        launch = (
            f"cd {q(job.job_dir)} && "
            f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
            f"$S nohup /bin/sh {q(path)} </dev/null >{q(job.job_dir)}/sched.out 2>&1 & "
            f"echo $! >{q(job.job_dir)}/pid; echo $!"
        )
        result = self.transport.run(["sh", "-c", launch])
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise SubmissionError(
                f"{self.name}: starting the job failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return [
            Submission(
                native_id=result.stdout.strip(), job_dir=job.job_dir, first=0, count=job.ntasks
            )
        ]

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        if not submissions:
            return {}
        script = [
            "while read -r pid dir; do",
            '  if [ -e "$dir/cancelled" ]; then s=CANCELLED',
            '  elif [ -e "$dir/done" ]; then s=DONE',
            '  elif kill -0 "$pid" 2>/dev/null; then s=RUNNING',
            '  elif [ -e "$dir/done" ]; then s=DONE',
            "  else s=GONE; fi",
            '  printf "%s %s" "$pid" "$s"',
            '  for f in "$dir"/exit.*; do [ -e "$f" ] && printf " %s=%s" "${f##*.}" "$(cat "$f")"; done',
            "  echo",
            "done",
        ]
        stdin = "".join(f"{s.native_id} {s.job_dir}\n" for s in submissions).encode()
        result = self.transport.run(["sh", "-c", "\n".join(script)], stdin=stdin).assert_success()
        return {pid: status for pid, status in parse_process_status(result.stdout).items()}

    def cancel(self, submissions: Sequence[Submission]) -> None:
        if not submissions:
            return
        q = shlex.quote
        cmds = []
        for s in submissions:
            cmds.append(
                f"touch {q(s.job_dir)}/cancelled; kill -TERM -{int(s.native_id)} 2>/dev/null"
            )  # dash: no "--"
        cmds.append("sleep 0.5")
        cmds.extend(f"kill -KILL -{int(s.native_id)} 2>/dev/null" for s in submissions)
        self.transport.run(["sh", "-c", "; ".join(cmds) + "; true"])


def parse_process_status(text: str) -> dict[str, JobStatus]:
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        pid, state, codes = parts[0], parts[1], parts[2:]
        exits: dict[int, int] = {}
        for item in codes:
            task, _, code = item.partition("=")
            if task.isdigit() and code.lstrip("-").isdigit():
                exits[int(task)] = int(code)
        tasks = {t: (JobState.COMPLETED if c == 0 else JobState.FAILED) for t, c in exits.items()}
        if state == "RUNNING":
            out[pid] = JobStatus(state=JobState.RUNNING, tasks=tasks)
        elif state == "CANCELLED":
            out[pid] = JobStatus(state=JobState.CANCELLED, reason="cancelled", tasks=tasks)
        elif state == "DONE":
            bad = {t: c for t, c in exits.items() if c != 0}
            if not bad:
                out[pid] = JobStatus(state=JobState.COMPLETED, exit_code=0, tasks=tasks)
            else:
                t, c = sorted(bad.items())[0]
                reason = f"task {t} exited {c}" + (
                    f" (killed by signal {c - 128})" if c > 128 else ""
                )
                out[pid] = JobStatus(state=JobState.FAILED, exit_code=c, reason=reason, tasks=tasks)
        else:
            out[pid] = JobStatus(
                state=JobState.FAILED,
                tasks=tasks,
                reason="the job's process group ended without finishing (killed from outside?)",
            )
    return out
