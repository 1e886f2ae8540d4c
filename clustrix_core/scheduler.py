"""Schedulers: submit, watch and cancel jobs.

:class:`Scheduler` is the interface. :class:`BatchScheduler` does the command-line dance once for
every batch system (render the script, submit, parse the id, one status query for many jobs, the
final state once a job left the queue, cancel, arrays); a plugin supplies directives, argv
builders, output parsers and a state map. :class:`ProcessScheduler` runs jobs as detached process
groups through any transport (the ``local`` backend, and the ``ssh`` backend of clustrix-ssh).
"""

from __future__ import annotations

import enum
import json
import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .errors import ConfigError, SubmissionError, TransportError
from .specs import JobScript
from .store import FileStore, JobStore
from .transport import CommandResult, Transport

if TYPE_CHECKING:
    from .config import Profile
    from .serialization import RemoteInfo

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    """The job left the queue and neither the scheduler nor the job store says how it ended."""

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
    """What the executor asks a scheduler to run: tasks of a job staged at ``location`` (for a
    :class:`FileStore`, the job directory: ``job_dir``)."""

    job_id: str
    name: str
    location: str
    ntasks: int
    python: str
    profile: Profile
    only: tuple[int, ...] | None = None
    """Run only these tasks (a retry of the tasks without a result); None: every task."""

    @property
    def job_dir(self) -> str:
        return self.location

    @property
    def tasks(self) -> list[int]:
        return list(self.only) if self.only is not None else list(range(self.ntasks))


@attrs.frozen(kw_only=True)
class Submission:
    """One accepted submission: a job, or an array covering tasks ``first .. first+count-1``."""

    native_id: str
    location: str
    first: int = 0
    count: int = 1

    @property
    def job_dir(self) -> str:
        return self.location


@attrs.frozen(kw_only=True)
class QueueEntry:
    """One row of a scheduler's listing (queue or accounting): its native state, the exit status
    where the scheduler reports one, and its own reason text. ``state`` may also be an already
    mapped :class:`JobState` (for accounting records a plugin classifies itself)."""

    job_id: str
    task: int | None
    state: str | JobState
    reason: str = ""
    exit_code: int | None = None


def index_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges of ``indices``: [2, 3, 5] -> [(2, 3), (5, 5)]."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def index_spans(indices: Iterable[int]) -> list[str]:
    """:func:`index_ranges` as text: [2, 3, 5] -> ["2-3", "5"]."""
    return [str(a) if a == b else f"{a}-{b}" for a, b in index_ranges(indices)]


def env_script(job: JobSpec) -> str:
    """``env.sh`` of a job directory (mode 0600, sourced by every task): the profile's
    environment variables, module loads and setup lines. Kept out of the batch script, where a
    value spanning lines could form a directive and where schedulers keep readable copies."""
    p = job.profile
    q = shlex.quote
    lines = ["# clustrix: environment of the job (sourced by the job script)"]
    lines.extend(f"export {key}={q(value)}" for key, value in p.env.items())
    lines.extend(f"module load {q(module)}" for module in p.modules)
    lines.extend(p.setup)
    return "\n".join(lines) + "\n"


def task_body(job: JobSpec, task_var: str = "TASK") -> str:
    """The shell lines every file-store backend runs for one task: enter the job directory,
    check that it is still this user's private directory (someone who could rename a parent
    might have swapped it since it was staged), then, by relative paths only, source its
    environment file and run the runner."""
    q = shlex.quote
    d = q(job.job_dir)
    return (
        f"cd {d} || exit 97\n"
        'case "$(ls -ld .)" in d????w*|d???????w*) private=no;; *) private=yes;; esac\n'
        'if [ ! -O . ] || [ "$private" = no ]; then\n'
        "  echo \"clustrix: refusing to run: the job directory $PWD is not this user's private"
        ' directory (replaced since it was staged?)" >&2; exit 95\n'
        "fi\n"
        ". ./env.sh || exit 96\n"
        f'exec {q(job.python)} ./runner.py . "${task_var}"\n'
    )


def runs_of(tasks: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous ``(first, count)`` runs of sorted task numbers."""
    out: list[tuple[int, int]] = []
    for t in sorted(set(tasks)):
        if out and out[-1][0] + out[-1][1] == t:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


_facts: dict[tuple[Any, ...], Any] = {}
_facts_lock = threading.Lock()


class Scheduler:
    """The interface every scheduler implements."""

    name = ""
    supports_arrays = True
    poll_min = 0.05
    """Seconds between status queries while jobs change (a profile's ``poll_min`` wins)."""
    accounting_lag = 0.0
    """Seconds a job that left the queue may stay unknown to the scheduler's accounting, or
    without a result in the store (both can lag behind), before it counts as LOST; the executor
    keeps looking meanwhile."""

    def __init__(self, *, profile: Profile, transport: Transport, hooks: Any | None = None) -> None:
        self.profile = profile
        self.transport = transport
        self.hooks = hooks
        """The plugin manager's hook relay (``pm.hook``), given by the executor; None: no hooks."""
        self._store: JobStore | None = None

    # ---- the job store and the remote Python
    def store(self) -> JobStore:
        """Where this scheduler's jobs keep inputs, results and logs. Default: a private job
        directory under ``work_dir`` through the transport."""
        if self._store is None:
            self._store = FileStore(self.transport, self.profile.work_dir)
        return self._store

    def default_python(self) -> str:
        """The interpreter jobs run with when the profile names none."""
        return sys.executable if self.profile.transport == "local" else "python3"

    def probe(self, python: str) -> RemoteInfo:
        """What ``python`` on the compute side is and can load (cached per cluster). Default:
        run the probe snippet through the transport; a scheduler whose jobs run elsewhere (a
        container image) overrides it."""
        from .serialization import PROBE_SNIPPET, RemoteInfo

        def ask() -> RemoteInfo:
            result = self.run([python, "-c", PROBE_SNIPPET], timeout=120)
            if result.returncode != 0:
                raise TransportError(
                    f"the remote Python {python!r} did not run (exit {result.returncode}): "
                    f"{(result.stderr or result.stdout).strip()[-1000:]}"
                )
            for line in reversed(result.stdout.strip().splitlines()):
                try:
                    return RemoteInfo(**json.loads(line))
                except (ValueError, TypeError):
                    continue
            if not result.stdout.strip():
                self.transport.uid()  # a transport that can tell why nothing runs raises it
            raise TransportError(
                f"unexpected answer from the remote Python {python!r}: {result.stdout[-1000:]!r}"
            )

        return self.cluster_fact(f"probe:{python}", ask)

    def prepare_environment(self, python: str, info: RemoteInfo, requirements: list[str]) -> str:
        """The interpreter of an environment with ``requirements`` built from ``python``.
        Default: a virtual environment under the user's private work directory, built once."""
        from . import environment

        base = f"{FileStore(self.transport, self.profile.work_dir).root()}/.envs"
        return self.cluster_fact(
            f"env:{python}:{','.join(requirements)}",
            lambda: environment.prepare(self.transport, python, info.minor, requirements, base),
        )

    # ---- cluster facts, commands, hooks
    def cluster_fact(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per process for this cluster (scheduler, transport endpoint and
        ``name``): MaxArraySize, a dialect, CPU counts, the remote Python. Errors are not kept."""
        key = (self.name, type(self.transport), *self.transport.connection_key(self.profile), name)
        with _facts_lock:
            if key in _facts:
                return _facts[key]  # type: ignore[no-any-return]
        value = compute()
        with _facts_lock:
            return _facts.setdefault(key, value)  # type: ignore[no-any-return]

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """A command on the submit host, ended after ``timeout`` (default: the profile's
        ``command_timeout``); a timeout raises :class:`TransportError` naming the command."""
        return self.transport.run(
            argv, stdin=stdin, timeout=timeout or self.profile.command_timeout
        )

    def adjust_script(self, job: JobSpec, script: str, *, first: int = 0, count: int = 1) -> str:
        """``script`` after the ``clustrix_job_script`` hooks."""
        if self.hooks is None:
            return script
        holder = JobScript(text=script, job_id=job.job_id, first=first, count=count)
        results = self.hooks.clustrix_job_script(
            profile=job.profile, job_name=job.name, script=holder
        )
        for new in results or []:  # in call order; in-place changes were seen by later ones
            holder.text = str(new)
        return holder.text

    def write_job_file(self, job: JobSpec, name: str, text: str, *, mode: int = 0o600) -> str:
        """Write ``name`` into a file-store job's directory; its path."""
        path = f"{job.location}/{name}"
        self.transport.put_bytes(path, text.encode(), mode=mode)
        return path

    def failure_details(self, location: str, task: int) -> str:
        """Text of the scheduler's own about a task that ended without a result, shown with the
        job's stderr in the error (PBS: its ``=>> PBS: job killed: walltime ...`` lines in a log
        of its own). Default: nothing."""
        return ""

    # ---- what every scheduler implements
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

    def cancel_tasks(self, submission: Submission, tasks: Sequence[int]) -> bool:
        """Cancel only ``tasks`` (the job's task numbers, inside the submission's range) of an
        array submission whose other tasks finished: they keep their record (SLURM would
        otherwise mark a task that was still completing CANCELLED). False when this scheduler
        cannot; the executor then cancels the whole submission. Default: False."""
        return False

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
    single_task_arrays = True
    """Whether a one-task chunk of a map may be a one-element array; False submits it as a plain
    job (PBS Pro rejects ``-J N-N``)."""
    bin_option: str | None = None
    """The plugin option naming the directory of the scheduler's commands (``slurm_bin``), for
    sites where a non-interactive shell lacks them or another ``qsub`` comes first on PATH."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._finals: dict[str, JobStatus] = {}
        self._cancelled: set[str] = set()
        self._exit_wait: dict[str, float] = {}

    def validate(self, profile: Profile) -> None:
        """Passthrough directives: one per item, and either bare options or this scheduler's
        prefix; a ``work_dir`` batch systems can take. Subclasses extend this
        (``super().validate(profile)``)."""
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
        directory = profile.option(self.bin_option) if self.bin_option else None
        if directory is not None and (
            not isinstance(directory, str) or not directory.strip() or "\n" in directory
        ):
            raise ConfigError(f"{self.bin_option}={directory!r} must be a directory path")
        bad = sorted({c for c in profile.work_dir if c in _WORK_DIR_BAD or ord(c) < 32})
        if bad:
            raise ConfigError(
                f"work_dir={profile.work_dir!r}: batch systems interpret "
                f"{' '.join(map(repr, bad))} in the paths of their directives; choose a path "
                "without them"
            )

    def command(self, program: str) -> str:
        """``program`` (``sbatch``, ``qsub``, ...) in the :attr:`bin_option` directory when the
        profile names one, else as found on PATH."""
        directory = self.profile.option(self.bin_option) if self.bin_option else None
        return f"{str(directory).rstrip('/')}/{program}" if directory else program

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

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        """The rows of a status query for the native ids ``asked`` (rows of other jobs may be
        returned too; the base matches rows to jobs through :meth:`normalize_id`)."""
        raise NotImplementedError

    def normalize_id(self, native_id: str) -> str:
        """The form of a native id under which the queue's rows and the submissions are matched
        (PBS: ``123.server`` and ``123.server.domain`` are one job). Default: unchanged."""
        return native_id

    def classify(self, state: str | JobState, exit_code: int | None, reason: str) -> JobStatus:
        """A row's native state, exit status and reason as the core's status. Default: the
        :attr:`STATES` map (:meth:`map_state`); a finished job with a nonzero exit is FAILED."""
        mapped = state if isinstance(state, JobState) else self.map_state(state)
        if mapped is JobState.COMPLETED and exit_code not in (None, 0):
            mapped = JobState.FAILED
            reason = reason or f"exit status {exit_code}"
        return JobStatus(state=mapped, reason=reason, exit_code=exit_code)

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

    def cancel_tasks_argv(self, native_id: str, indices: Sequence[int]) -> list[str] | None:
        """The command that cancels only the array elements ``indices`` (the scheduler's own
        numbering, from :attr:`task_base`) of array ``native_id``; None: not supported (the
        default), then the whole array is cancelled. See :meth:`Scheduler.cancel_tasks`."""
        return None

    def error_reason(self, submission: Submission) -> str:
        """Why the scheduler holds ``submission`` in an error state (``JobState.ERROR``) when the
        queue listing does not say (SGE ``Eqw``: ``qstat -j``); "" keeps the listing's reason."""
        return ""

    def accounting_may_lag(self) -> bool:
        """Whether :meth:`final_statuses` asks an accounting that records a job some time after
        the queue shows it ended (``sacct``); then such a job waits up to 10 s (and at most
        :attr:`accounting_lag`) for the record's exit status. Default: True."""
        return True

    def lost_reason(self, submission: Submission) -> str:
        """The reason given for a job that is neither in the queue nor in the accounting."""
        return "not in the queue, and the scheduler has no record of it"

    def max_array_size(self) -> int | None:
        return None

    # ---- the shared dance
    def map_state(self, native: str) -> JobState:
        state = self.STATES.get(native)
        if state is None:
            logger.debug("%s: unknown native state %r", self.name, native)
            return JobState.UNKNOWN
        return state

    def summarize(
        self, sub: Submission, entries: Sequence[QueueEntry], *, complete: bool = False
    ) -> JobStatus | None:
        """One status for a submission from its rows (an array has one per task or range):
        live while any row is live (running first), else the first row that did not complete.
        With ``complete`` (accounting records), None until every task of an array is recorded."""
        rows = [(e, self.classify(e.state, e.exit_code, e.reason)) for e in entries]
        if not rows:
            return None
        tasks = {
            sub.first + e.task - self.task_base: st.state for e, st in rows if e.task is not None
        }
        live = [st for _, st in rows if not st.state.final]
        if live:
            order = (JobState.RUNNING, JobState.COMPLETING, JobState.PENDING)
            chosen = next((st for w in order for st in live if st.state is w), live[0])
            return attrs.evolve(chosen, tasks=tasks)
        if complete and sub.count > 1 and len(tasks) < sub.count:
            return None  # the accounting has not caught up with every task yet
        chosen = next((st for _, st in rows if st.state is not JobState.COMPLETED), rows[0][1])
        if self.cancelled_here(sub) and chosen.state is not JobState.CANCELLED:
            # a job deleted as it started may end "completed", "killed by signal 9" or an exit
            # status: it was cancelled all the same (results it wrote are still collected)
            said = f"{chosen.state}: {chosen.reason}" if chosen.reason else str(chosen.state)
            chosen = attrs.evolve(
                chosen,
                state=JobState.CANCELLED,
                reason=f"cancelled by clustrix; {self.name} then reported {said}",
            )
        return attrs.evolve(chosen, tasks=tasks)

    def cancelled_here(self, submission: Submission) -> bool:
        """Whether this scheduler object cancelled ``submission``."""
        return submission.native_id in self._cancelled

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
        """Write the environment file and one script per chunk, submit each (tasks ``job.only``
        when given: contiguous runs of them). A refused chunk cancels the chunks before it."""
        submissions: list[Submission] = []
        self.write_job_file(job, "env.sh", env_script(job))
        chunks = [
            (start + first, count)
            for start, length in runs_of(job.tasks)
            for first, count in self.array_chunks(length)
        ]
        for first, count in chunks:
            array = job.ntasks > 1 and self.supports_arrays
            if count == 1 and not self.single_task_arrays:
                array = False
            script = self.render_script(job, first=first, count=count, array=array)
            script = self.adjust_script(job, script, first=first, count=count)
            path = self.write_job_file(job, f"job.{first}.sh", script, mode=0o700)
            result = self.run(
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
                Submission(native_id=native, location=job.location, first=first, count=count)
            )
        return submissions

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """One status query for the submissions not known to be final yet (final states are
        remembered). A job held in an error state gets its reason (:meth:`error_reason`) and is
        deleted, since it would otherwise sit in the queue forever. A job that left the queue is
        looked up in the accounting (:meth:`final_statuses`); one nobody knows is CANCELLED when
        this scheduler cancelled it, else LOST (:meth:`lost_reason`)."""
        out = {
            s.native_id: self._finals[s.native_id]
            for s in submissions
            if s.native_id in self._finals
        }
        ask = [s for s in submissions if s.native_id not in out]
        if not ask:
            return out
        ids = [s.native_id for s in ask]
        entries = self.parse_status(self.run(self.status_argv(ids)), ids)
        by_job: dict[str, list[QueueEntry]] = {}
        for entry in entries:
            by_job.setdefault(self.normalize_id(entry.job_id), []).append(entry)
        listed = {s.native_id: by_job.get(self.normalize_id(s.native_id), []) for s in ask}
        summary = {s.native_id: self.summarize(s, listed[s.native_id]) for s in ask}
        # gone from the listing, or listed as ended but without an exit status (squeue): ask
        # the accounting once for all of them
        look_up = [
            sub
            for sub in ask
            if (st := summary[sub.native_id]) is None
            or (st.state.final and st.state is not JobState.ERROR and st.exit_code is None)
        ]  # an ERROR (SGE Eqw) is the scheduler's own final word: its reason, then deleted
        finals = self.final_statuses(look_up) if look_up else {}
        for sub in ask:
            status = summary[sub.native_id]
            known = finals.get(sub.native_id)
            if status is not None and status.state.final and known and known.state.final:
                # the accounting's own view of the end, exit status included; the queue's reason
                # where the accounting gives none (sacct: "None" where squeue said "TimeLimit")
                status = attrs.evolve(known, reason=known.reason or status.reason)
                self._exit_wait.pop(sub.native_id, None)
            elif (
                sub in look_up
                and status is not None
                and status.exit_code is None
                and self.accounting_may_lag()
            ):
                # ended, but the accounting has not recorded how yet: how it ended (its exit
                # status says why a job had no result) is worth a few seconds' wait
                since = self._exit_wait.setdefault(sub.native_id, time.monotonic())
                if time.monotonic() - since < min(self.accounting_lag, _EXIT_WAIT):
                    status = attrs.evolve(status, state=JobState.COMPLETING)
            if status is not None and status.state is JobState.ERROR:
                reason = (
                    self.error_reason(sub)
                    or status.reason
                    or "the scheduler holds the job in an error state"
                )
                status = attrs.evolve(status, reason=reason)
                self.cancel([sub])
            if status is None:
                status = finals.get(sub.native_id)
            if status is None and self.cancelled_here(sub):
                status = JobStatus(
                    state=JobState.CANCELLED, reason="cancelled before it ran to the end"
                )
            if status is None:
                status = JobStatus(state=JobState.LOST, reason=self.lost_reason(sub))
            if status.state.final and status.state is not JobState.LOST:
                if (
                    status.exit_code is not None
                    or not listed[sub.native_id]
                    or status.state is JobState.ERROR  # deleted above: never ask (or qdel) again
                ):
                    self._finals[sub.native_id] = status  # else: ask the accounting next time
            out[sub.native_id] = status
        return out

    def cancel(self, submissions: Sequence[Submission]) -> None:
        if submissions:
            self._cancelled.update(s.native_id for s in submissions)
            self._run_cancel(self.cancel_argv([s.native_id for s in submissions]))

    def cancel_tasks(self, submission: Submission, tasks: Sequence[int]) -> bool:
        indices = [t - submission.first + self.task_base for t in tasks]
        argv = self.cancel_tasks_argv(submission.native_id, indices)
        if argv is None:
            return False
        self._cancelled.add(submission.native_id)
        self._run_cancel(argv)
        return True

    def _run_cancel(self, argv: list[str]) -> None:
        result = self.run(argv)
        if not result.ok:  # the jobs may still run: say so (they stay watched and recorded)
            logger.warning(
                "clustrix: %s exited %s: %s",
                " ".join(result.argv),
                result.returncode,
                (result.stderr or result.stdout).strip()[-1000:],
            )


_EXIT_WAIT = 10.0
"""Most seconds a job the queue lists as ended waits for the accounting's exit status."""

_WORK_DIR_BAD = set("\\\"'`$#")
"""Characters of a work_dir that some batch system interprets in directive paths (SLURM drops
``\\``; Grid Engine expands ``$VAR`` and chokes on quotes and ``#``)."""


# ---------------------------------------------------------------- detached processes

# ``owns PID DIR``: the process PID is the job's own script (its command line names DIR/job.sh):
# proof needed before a PID from a file is signalled or trusted to be the job (PIDs get reused).
_OWNS = (
    'owns() { if [ -r "/proc/$1/cmdline" ]; then tr "\\000" " " <"/proc/$1/cmdline"; '
    'else ps -o args= -p "$1" 2>/dev/null; fi | grep -qF -- "$2/job.sh"; }'
)


class ProcessScheduler(Scheduler):
    """Runs a job as a detached process group on the submit host itself (no batch system).

    ``job.sh`` starts every task in the background (``exit.N`` holds each task's exit status),
    at most ``max_parallel`` at once when the profile sets it, waits, and writes ``done``. The
    native id is the process group's PID. A PID is trusted (as running, or to be signalled)
    only while that process's command line is the job's own script. Cancelling writes
    ``cancelled`` and kills the group."""

    name = "local"
    poll_min = 0.02  # a status query is one `sh` on the host: cheap

    def parallelism(self) -> int:
        if self.profile.max_parallel:
            return self.profile.max_parallel

        def cpus() -> int:
            result = self.run(["sh", "-c", "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN"])
            try:
                return max(1, int(result.stdout.split()[0]))
            except (IndexError, ValueError):
                return 1

        return self.cluster_fact("cpus", cpus)

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
        limit = self.profile.max_parallel
        # at most max_parallel at once, in batches (POSIX sh has no `wait -n`)
        throttle = (
            f"  n=$((n + 1)); if [ $n -ge {int(limit)} ]; then wait; n=0; fi\n" if limit else ""
        )
        return (
            "#!/bin/sh\n"
            f"# clustrix job {job.job_id}\n"
            "run_task() {\n"
            "  TASK=$1\n"
            "  (\n"
            f"{task_body(job)}"
            f"  ) >>{d}/out.$TASK 2>>{d}/err.$TASK\n"
            f"  echo $? >{d}/exit.$TASK.tmp && mv {d}/exit.$TASK.tmp {d}/exit.$TASK\n"
            "}\n"
            f"n=0; for i in {' '.join(map(str, job.tasks))}; do\n"
            "  run_task $i &\n"
            f"{throttle}"
            "done\n"
            "wait\n"
            f"touch {d}/done\n"
        )

    def submit(self, job: JobSpec) -> list[Submission]:
        self.write_job_file(job, "env.sh", env_script(job))
        script = self.adjust_script(job, self.render_script(job), count=job.ntasks)
        path = self.write_job_file(job, "job.sh", script, mode=0o700)
        q = shlex.quote
        launch = (
            f"cd {q(job.job_dir)} && "
            f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
            f"$S nohup /bin/sh {q(path)} </dev/null >{q(job.job_dir)}/sched.out 2>&1 & "
            f"echo $! >{q(job.job_dir)}/pid; echo $!"
        )
        result = self.run(["sh", "-c", launch])
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise SubmissionError(
                f"{self.name}: starting the job failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return [
            Submission(
                native_id=result.stdout.strip(), location=job.location, first=0, count=job.ntasks
            )
        ]

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        if not submissions:
            return {}
        script = [
            _OWNS,
            "while read -r pid dir; do",
            '  if [ ! -d "$dir" ]; then s=NODIR',
            '  elif [ -e "$dir/cancelled" ]; then s=CANCELLED',
            '  elif [ -e "$dir/done" ]; then s=DONE',
            '  elif kill -0 "$pid" 2>/dev/null && owns "$pid" "$dir"; then s=RUNNING',
            '  elif [ -e "$dir/done" ]; then s=DONE',
            "  else s=GONE; fi",
            '  printf "%s %s" "$pid" "$s"',
            '  for f in "$dir"/exit.*; do [ -e "$f" ] && printf " %s=%s" "${f##*.}" "$(cat "$f")"; done',
            "  echo",
            "done",
        ]
        stdin = "".join(f"{s.native_id} {s.location}\n" for s in submissions).encode()
        result = self.run(["sh", "-c", "\n".join(script)], stdin=stdin).assert_success()
        return parse_process_status(result.stdout)

    def cancel(self, submissions: Sequence[Submission]) -> None:
        """Signal each job's process group, only while the job is unfinished and its PID is
        still the job's own script; a finished job is left alone."""
        if not submissions:
            return
        script = [
            _OWNS,
            "signalled=",
            "while read -r pid dir; do",
            '  if [ ! -e "$dir/done" ] && kill -0 "$pid" 2>/dev/null && owns "$pid" "$dir"; then',
            '    touch "$dir/cancelled"; kill -TERM -"$pid" 2>/dev/null; signalled="$signalled $pid"',
            "  fi",
            "done",
            'if [ -n "$signalled" ]; then sleep 0.5; for p in $signalled; do kill -KILL -"$p" 2>/dev/null; done; fi',
            "true",
        ]
        stdin = "".join(f"{int(s.native_id)} {s.location}\n" for s in submissions).encode()
        self.run(["sh", "-c", "\n".join(script)], stdin=stdin)


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
        elif state == "NODIR":
            out[pid] = JobStatus(
                state=JobState.LOST,
                tasks=tasks,
                reason="the job directory no longer exists (cleaned up?)",
            )
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
