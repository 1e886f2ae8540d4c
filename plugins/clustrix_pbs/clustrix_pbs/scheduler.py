"""The PBS schedulers: the PBS-specific pieces of :class:`~clustrix_core.scheduler.BatchScheduler`.

One class, two dialects, registered as two schedulers:

- ``pbs`` (:class:`PbsScheduler`, dialect ``pbspro``): PBS Professional and OpenPBS.
  ``qsub`` with ``#PBS`` directives (``-l select=1:ncpus=N:mem=Mmb[:ngpus=G]``,
  ``-l walltime=``, ``-J 0-N -r y`` arrays with ``-W max_run_subjobs=M``); one
  ``qstat -f -x -t`` per poll for every watched job (``-F json`` when one job is asked: OpenPBS
  builds since the cJSON port print only the FIRST job of ``qstat -f -F json ID ID ...``, so
  several ids are asked in text form); ``Exit_status`` and ``substate`` tell how a job ended
  (job history must be on: ``qmgr -c 'set server job_history_enable=True'``).
- ``torque`` (:class:`TorqueScheduler`, dialect ``torque``): Torque, and the Torque-compatible
  commands of SLURM's ``slurm-wlm-torque``. ``-l nodes=1:ppn=N``, ``-l mem=``, ``-t 0-N%M``
  arrays (``PBS_ARRAYID``), ``-o``/``-e`` on the ``qsub`` command line (the SLURM wrappers
  ignore them in the script); text ``qstat -f -t`` (``job_state = C`` with ``exit_status``).
  The SLURM wrappers have no ``qstat -t`` (found out once per cluster, from
  ``qstat --version``): there every task is submitted as a job of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import attrs
from clustrix_core.errors import ConfigError, SubmissionError
from clustrix_core.resources import format_hms, mebibytes
from clustrix_core.scheduler import (
    BatchScheduler,
    JobSpec,
    JobState,
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
    "pbs_bin": "directory of the PBS commands (qsub, qstat, qdel) on the submit host, for sites "
    "where a non-interactive shell does not have them on PATH, or where another qsub comes "
    "first (Grid Engine's); default: found on PATH",
    "status_format": "how qstat is asked: 'auto' (default: -F json for one job, text qstat -f "
    "for several), 'json' (always -F json; for PBS Pro versions that list every id asked), "
    "'text' (never JSON); PBS Pro only",
}

#: Native states onto the core's states (a finished job's ending comes from :meth:`classify`).
STATES = {
    "Q": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "H": JobState.HELD,
    "R": JobState.RUNNING,
    "B": JobState.RUNNING,
    "E": JobState.COMPLETING,
    "S": JobState.SUSPENDED,
    "U": JobState.SUSPENDED,
    "F": JobState.COMPLETED,
    "X": JobState.COMPLETED,
    "C": JobState.COMPLETED,
    "M": JobState.FAILED,
}

DELETED = "deleted (qdel)"
"""Start of the reason of a job PBS Pro reports as terminated (substate 91)."""

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.+-]")
_VALUE_BAD = re.compile(r"[\s#'\"\\,:;]")
_PATH_BAD = re.compile(r"[\s'\"\\,:#]")
_FORMATS = ("auto", "json", "text")
_SPLIT_LOG = re.compile(r"pbs\.err\.(?:chunk)?(\d+)[+-](\d+)")


def _has_field(cls: type, name: str) -> bool:
    try:
        return name in attrs.fields_dict(cls)
    except (TypeError, attrs.exceptions.NotAnAttrsClassError):
        return False


_ENTRY_HAS_EXIT = _has_field(QueueEntry, "exit_code")


class PbsScheduler(BatchScheduler):
    """PBS Professional / OpenPBS (tested on OpenPBS 23.06), locally or over SSH."""

    name = "pbs"
    dialect = "pbspro"
    directive_prefix = "#PBS"
    task_var = "PBS_ARRAY_INDEX"
    task_base = 0
    STATES = STATES
    single_task_arrays = False  # PBS Pro rejects -J N-N: a one-task chunk is a plain job
    bin_option = "pbs_bin"
    accounting_lag = 5.0  # with job history a finished job stays listed; without, it is gone
    max_name = 236

    # ------------------------------------------------------------ options and facts
    def option(self, key: str, default: Any = None) -> Any:
        value = self.profile.options.get(key)
        return default if value is None or value == "" else value

    # ------------------------------------------------------------ validation
    def validate(self, profile: Any) -> None:
        opts = profile.options
        pbs_bin = opts.get("pbs_bin")
        if pbs_bin not in (None, "") and (
            not isinstance(pbs_bin, str) or not pbs_bin.strip() or _PATH_BAD.search(pbs_bin)
        ):
            raise ConfigError(f"pbs_bin={pbs_bin!r} must be a directory path (no spaces or quotes)")
        fmt = opts.get("status_format")
        if fmt not in (None, "") and fmt not in _FORMATS:
            raise ConfigError(f"status_format={fmt!r} must be one of {', '.join(_FORMATS)}")
        if profile.partition:
            raise ConfigError(
                f"partition={profile.partition!r}: PBS has queues, not partitions; set queue= instead"
            )
        if profile.qos:
            raise ConfigError(
                f"qos={profile.qos!r} has no meaning for PBS; use directives= for site-specific "
                "requests"
            )
        for key in ("queue", "account"):
            value = getattr(profile, key)
            if value is not None and (not value or _VALUE_BAD.search(value)):
                raise ConfigError(
                    f"{key}={value!r} is not a PBS {key} name (no spaces, quotes, '#', ',' or ':')"
                )
        if _PATH_BAD.search(profile.work_dir):
            raise ConfigError(
                f"work_dir={profile.work_dir!r}: PBS's -o/-e paths cannot contain spaces, quotes, "
                "'#', ',' or ':'"
            )
        super().validate(profile)

    # ------------------------------------------------------------ cluster facts
    def max_array_size(self) -> int | None:
        """The server's ``max_array_size`` (``qstat -Bf``; PBS Pro's default is 10000)."""

        def read() -> int:
            result = self.run([self.command("qstat"), "-Bf"])
            m = re.search(r"^\s*max_(?:job_)?array_size\s*=\s*(\d+)", result.stdout, re.M)
            return int(m.group(1)) if result.ok and m else 10000

        return self.cluster_fact("pbs.max_array_size", read) or None

    def parallelism(self) -> int:
        """``max_parallel``, else the cluster's CPUs (``pbsnodes -a``) over the cores a task asks."""
        if self.profile.max_parallel:
            return self.profile.max_parallel

        def read() -> int:
            result = self.run([self.command("pbsnodes"), "-a"])
            return parse_node_cpus(result.stdout) if result.ok else 0

        cpus = self.cluster_fact("pbs.cpus", read) or 1
        return max(1, cpus // max(1, self.profile.cores))

    # ------------------------------------------------------------ submission
    def job_name(self, job: JobSpec) -> str:
        """``-N``: letters, digits and ``_.+-`` only, starting with a letter, cut to the limit."""
        name = _NAME_BAD.sub("_", job.name) or "clustrix"
        if not name[0].isalpha():
            name = "j" + name
        return name[: self.max_name]

    def output_paths(self, job: JobSpec, *, first: int, array: bool) -> tuple[str, str]:
        """Where PBS puts the job's own stdout/stderr (its messages, e.g. ``=>> PBS: job killed:
        walltime 10 exceeded limit 5``): ``pbs.out.N``/``pbs.err.N`` for task N (PBS copies
        them at the end of the job, so they cannot be the runner's ``out.N``/``err.N``)."""
        d = job.job_dir
        if not array:
            return f"{d}/pbs.out.{first}", f"{d}/pbs.err.{first}"
        index = "^array_index^" if first == 0 else f"{first}+^array_index^"
        return f"{d}/pbs.out.{index}", f"{d}/pbs.err.{index}"

    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        return self.chunk_directives(job, first=0, count=count, array=array)

    def chunk_directives(self, job: JobSpec, *, first: int, count: int, array: bool) -> list[str]:
        p = job.profile
        select = f"select={max(1, p.nodes)}:ncpus={p.cores}"
        if p.memory:
            select += f":mem={mebibytes(p.memory)}mb"
        if p.gpus:
            select += f":ngpus={p.gpus}"
        out, err = self.output_paths(job, first=first, array=array)
        lines = [f"-N {self.job_name(job)}", f"-S {self.shell}", f"-l {select}"]
        if p.nodes > 1:
            lines.append("-l place=scatter")
        if p.time:
            lines.append(f"-l walltime={format_hms(p.time)}")
        if p.queue:
            lines.append(f"-q {p.queue}")
        if p.account:
            lines.append(f"-A {p.account}")
        lines += [f"-o {out}", f"-e {err}"]
        if array:
            lines += [f"-J 0-{count - 1}", "-r y"]
            if p.max_parallel and p.max_parallel < count:
                lines.append(f"-W max_run_subjobs={p.max_parallel}")
        return self.prefixed(lines)

    def render_script(
        self, job: JobSpec, *, first: int = 0, count: int | None = None, array: bool | None = None
    ) -> str:
        count = job.ntasks if count is None else count
        if array is None:
            array = count > 1
        if array and count == 1 and not self.single_task_arrays:
            array = False  # -J 0-0 is refused ("qsub: illegal -J value"): a plain job
        return super().render_script(job, first=first, count=count, array=array)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return [self.command("qsub"), script_path]

    def parse_submit(self, result: CommandResult) -> str:
        result.assert_success()
        try:
            return parsers.parse_qsub(result.stdout)
        except ValueError as exc:
            raise SubmissionError(
                f"{self.name}: {exc} (stderr: {result.stderr.strip()!r})"
            ) from None

    # ------------------------------------------------------------ watching
    def normalize_id(self, native_id: str) -> str:
        return parsers.normalize_id(native_id)

    def status_format(self, count: int) -> str:
        fmt = self.option("status_format", "auto")
        if fmt == "auto":
            return "json" if count == 1 else "text"
        return str(fmt)

    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        if self.status_format(len(native_ids)) == "json":
            return [self.command("qstat"), "-f", "-F", "json", "-x", "-t", *native_ids]
        return [self.command("qstat"), "-f", "-x", "-t", *native_ids]

    def parse_rows(self, result: CommandResult) -> list[JobRow]:
        """The rows of a status query's output (JSON or text); a query that failed for another
        reason than unknown or finished ids raises."""
        text = result.stdout
        rows: list[JobRow] = []
        if text.lstrip().startswith("{"):
            try:
                rows = parsers.parse_qstat_json(text)
            except parsers.QstatJsonError:
                rows = []
        else:
            rows = parsers.parse_qstat_full(text)
        if result.returncode != 0 and not rows:
            messages = parsers.parse_messages(result.stderr)
            if not messages or any(m.kind not in ("unknown", "finished") for m in messages):
                result.assert_success()
        return rows

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        rows = self.parse_rows(result)
        with_tasks = {parsers.normalize_id(r.array_id) for r in rows if r.task is not None}
        entries = []
        for row in rows:
            if row.is_array and parsers.normalize_id(row.job_id) in with_tasks:
                continue  # the array's own row only sums up its subjobs (Exit_status 0/1/2)
            entries.append(self.entry(row))
        return entries

    def entry(self, row: JobRow) -> QueueEntry:
        reason = row.comment
        if row.deleted:
            reason = f"{DELETED}: {row.comment}" if row.comment else DELETED
        kwargs: dict[str, Any] = {
            "job_id": row.array_id,
            "task": row.task,
            "state": row.state,
            "reason": reason,
        }
        if _ENTRY_HAS_EXIT:
            kwargs["exit_code"] = row.exit_status
        return QueueEntry(**kwargs)

    def classify(self, state: str | JobState, exit_code: int | None, reason: str) -> JobStatus:
        """How a native state, exit status and reason end up as a :class:`JobStatus`."""
        if isinstance(state, JobState):
            return super().classify(state, exit_code, reason)
        return classify(state, exit_code, reason, dialect=self.dialect)

    def failure_details(self, location: str, task: int) -> str:
        """The tail of PBS's own stderr of ``task`` (``pbs.err.N``, see :meth:`output_paths`):
        where PBS writes ``=>> PBS: job killed: walltime 10 exceeded limit 5``."""
        text = self.store().log(location, "pbs.err", task, tail=3000)
        if text.strip():
            return text
        name = self._split_log_name(location, task)  # a later chunk of a split array
        if name is None:
            return ""
        return self.transport.get_text(f"{location}/{name}", tail=3000)

    def _split_log_name(self, location: str, task: int) -> str | None:
        """``pbs.err.FIRST+INDEX`` (PBS Pro) or ``pbs.err.chunkFIRST-INDEX`` (Torque) of task
        ``task`` = FIRST + INDEX, if the job directory has it."""
        try:
            names = self.transport.listdir(location)
        except Exception:  # noqa: BLE001 - a log is a nicety; never fail the error report on it
            return None
        for name in names:
            m = _SPLIT_LOG.fullmatch(name)
            if m and int(m.group(1)) + int(m.group(2)) == task:
                return name
        return None

    def lost_reason(self, submission: Submission) -> str:
        return (
            f"{submission.native_id} is no longer known to PBS (qstat -x): without job history "
            "a finished job vanishes at once; enable job history "
            "(qmgr -c 'set server job_history_enable=True')"
        )

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return [self.command("qdel"), *native_ids]

    def cancel_tasks_argv(self, native_id: str, indices: Sequence[int]) -> list[str] | None:
        parts = parsers.split_id(native_id)
        if self.dialect != "pbspro" or parts is None or not parts.array:
            return None  # Torque: the whole array
        suffix = f".{parts.server}" if parts.server else ""
        spans = index_spans(indices)
        return [self.command("qdel"), *(f"{parts.seq}[{s}]{suffix}" for s in spans)]


class TorqueScheduler(PbsScheduler):
    """Torque (and the Torque-compatible commands of SLURM's ``slurm-wlm-torque``)."""

    name = "torque"
    dialect = "torque"
    task_var = "PBS_ARRAYID"
    single_task_arrays = True  # -t 0-0 is accepted
    max_name = 15  # older Torque servers cut or refuse longer names

    def validate(self, profile: Any) -> None:
        fmt = profile.options.get("status_format")
        if fmt not in (None, "", "auto", "text"):
            raise ConfigError(f"status_format={fmt!r}: Torque's qstat has no JSON; use 'text'")
        super().validate(profile)

    def wrappers(self) -> bool:
        """Whether this cluster's commands are SLURM's Torque wrappers (their ``qstat`` has no
        ``--version``, no ``-t``, and never reports an exit status); read once."""

        def probe() -> bool:
            result = self.run([self.command("qstat"), "--version"])
            return not result.ok and "Unknown option" in (result.stderr + result.stdout)

        return bool(self.cluster_fact("torque.wrappers", probe))

    def max_array_size(self) -> int | None:
        if self.wrappers():
            self.supports_arrays = False  # qstat cannot list an array's tasks: one job per task
            return 1
        return super().max_array_size()

    def output_paths(self, job: JobSpec, *, first: int, array: bool) -> tuple[str, str]:
        d = job.job_dir
        if not array:
            return f"{d}/pbs.out.{first}", f"{d}/pbs.err.{first}"
        return f"{d}/pbs.out.chunk{first}", f"{d}/pbs.err.chunk{first}"  # Torque adds -INDEX

    def chunk_directives(self, job: JobSpec, *, first: int, count: int, array: bool) -> list[str]:
        p = job.profile
        nodes = f"nodes={max(1, p.nodes)}:ppn={p.cores}"
        if p.gpus:
            nodes += f":gpus={p.gpus}"
        lines = [f"-N {self.job_name(job)}", f"-S {self.shell}", f"-l {nodes}"]
        if p.memory:
            lines.append(f"-l mem={mebibytes(p.memory)}mb")
        if p.time:
            lines.append(f"-l walltime={format_hms(p.time)}")
        if p.queue:
            lines.append(f"-q {p.queue}")
        if p.account:
            lines.append(f"-A {p.account}")
        if array:
            spec = f"0-{count - 1}"
            if p.max_parallel and p.max_parallel < count:
                spec += f"%{p.max_parallel}"
            lines.append(f"-t {spec}")
        return self.prefixed(lines)

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        out, err = self.output_paths(job, first=first, array=array)
        # on the command line: the SLURM wrappers ignore #PBS -o/-e in the script
        return [self.command("qsub"), "-o", out, "-e", err, script_path]

    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        if self.wrappers():
            return [self.command("qstat"), "-f", *native_ids]
        return [self.command("qstat"), "-f", "-t", *native_ids]

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        """As PBS Pro's; with the SLURM wrappers (whose ``C`` never carries an exit status) the
        jobs that are ``C`` are looked up once in SLURM's accounting (``sacct``, one command
        for all of them, only in the poll where they finish) for how they really ended."""
        entries = super().parse_status(result, asked)
        if not self.wrappers():
            return entries
        done = [e for e in entries if e.state == "C" and e.exit_code is None]
        if not done:
            return entries
        ended = self.slurm_endings([e.job_id for e in done])
        out = []
        for entry in entries:
            found = ended.get(parsers.normalize_id(entry.job_id)) if entry in done else None
            if found is not None:
                state, exit_code, reason = found
                entry = attrs.evolve(
                    entry, state=state, exit_code=exit_code, reason=_join(reason, entry.reason)
                )
            out.append(entry)
        return out

    def slurm_endings(self, job_ids: Sequence[str]) -> dict[str, tuple[str, int | None, str]]:
        """``{id: (Torque state, exit status, reason)}`` from ``sacct`` for jobs the wrappers
        list as ``C``; jobs the accounting does not know (or no accounting) are left out."""
        result = self.run(
            [self.command("sacct"), "-X", "-n", "-P", "-o", "JobIDRaw,State,ExitCode",
             "-j", ",".join(job_ids)]
        )  # fmt: skip
        return parse_sacct_endings(result.stdout) if result.ok else {}

    def classify(self, state: str | JobState, exit_code: int | None, reason: str) -> JobStatus:
        if isinstance(state, JobState):
            return super().classify(state, exit_code, reason)
        if state == "C" and exit_code is None and self.wrappers():
            reason = reason or "completed (the SLURM Torque wrappers report no exit status)"
        return classify(state, exit_code, reason, dialect="torque")

    def lost_reason(self, submission: Submission) -> str:
        return (
            f"{submission.native_id} is no longer known to Torque (qstat): completed jobs stay "
            "listed only for keep_completed seconds; raise it "
            "(qmgr -c 'set server keep_completed=300')"
        )


# ---------------------------------------------------------------- shared logic


def classify(state: str, exit_code: int | None, reason: str, *, dialect: str) -> JobStatus:
    """A PBS state letter, exit status and reason as a :class:`JobStatus`.

    - not finished: the state letter decides (a queued job with a rerun exit status is
      ``REQUEUED``);
    - deleted (PBS Pro substate 91, see :data:`DELETED`): ``CANCELLED`` whatever the exit status
      (root's jobs report ``Exit_status 0`` after ``qdel``);
    - finished: the exit status decides (:func:`~clustrix_pbs.parsers.exit_meaning`): 0
      ``COMPLETED``; walltime ``TIMEOUT``; memory ``OUT_OF_MEMORY``; 256+15 (``qdel`` of a
      running job) ``CANCELLED``; a rerun code ``NODE_FAIL`` (retryable); anything else
      ``FAILED``. No exit status (Torque wrappers, old subjobs): ``COMPLETED``, and the job's
      result file tells the rest."""
    letter = state[:1]
    if letter not in parsers.FINISHED_STATES:
        mapped = STATES.get(letter, JobState.UNKNOWN)
        if exit_code is not None and exit_code < 0:
            meaning = parsers.exit_meaning(exit_code, dialect)
            if meaning.kind == "rerun" and mapped in (JobState.PENDING, JobState.HELD):
                return JobStatus(
                    state=JobState.REQUEUED, reason=_join(meaning.text, reason), exit_code=exit_code
                )
        return JobStatus(state=mapped, reason=reason)
    if letter == "M":
        return JobStatus(
            state=JobState.FAILED,
            reason=_join(
                "moved to another PBS server (state M); clustrix cannot follow it", reason
            ),
            exit_code=exit_code,
        )
    if reason.startswith(DELETED):
        return JobStatus(state=JobState.CANCELLED, reason=reason, exit_code=exit_code)
    if exit_code is None:
        return JobStatus(state=JobState.COMPLETED, reason=reason)
    meaning = parsers.exit_meaning(exit_code, dialect)
    kinds = {
        "ok": JobState.COMPLETED,
        "walltime": JobState.TIMEOUT,
        "memory": JobState.OUT_OF_MEMORY,
        "rerun": JobState.NODE_FAIL,
    }
    mapped = kinds.get(meaning.kind, JobState.FAILED)
    if meaning.kind == "signal" and meaning.signal == 15 and exit_code > 256:
        mapped = JobState.CANCELLED  # the job's shell got SIGTERM: qdel (PBS Pro 271, Torque 271)
    text = "" if mapped is JobState.COMPLETED else meaning.text
    return JobStatus(state=mapped, reason=_join(text, reason), exit_code=exit_code)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def parse_node_cpus(text: str) -> int:
    """Total CPUs of a ``pbsnodes -a`` listing (PBS Pro ``resources_available.ncpus``, Torque
    ``np``), over nodes that are not down or offline."""
    total = 0
    cpus = 0
    usable = True
    for line in [*text.splitlines(), ""]:
        if line and not line[:1].isspace():  # a new node
            if usable:
                total += cpus
            cpus, usable = 0, True
            continue
        key, _, value = line.strip().partition(" = ")
        if key in ("resources_available.ncpus", "np") and value.strip().isdigit():
            cpus = int(value)
        elif key == "state" and any(s in value for s in ("down", "offline", "unknown")):
            usable = False
    if usable:
        total += cpus
    return total


#: SLURM's final states (``sacct``) as Torque exit statuses, for the wrappers' ``C``.
_SLURM_ENDINGS: dict[str, tuple[int | None, str]] = {
    "TIMEOUT": (-11, "SLURM: TIMEOUT"),
    "OUT_OF_MEMORY": (-10, "SLURM: OUT_OF_MEMORY"),
    "NODE_FAIL": (-3, "SLURM: NODE_FAIL"),
}


def parse_sacct_endings(text: str) -> dict[str, tuple[str, int | None, str]]:
    """``sacct -X -n -P -o JobIDRaw,State,ExitCode`` as ``{id: (state, exit status, reason)}``
    in Torque's terms: a finished job is ``C`` with its exit status (Torque's -11 walltime,
    -10 memory), a cancelled one ``C`` with the :data:`DELETED` reason; a job SLURM has not
    finished yet (accounting lag) is ``E`` (exiting), so that it is asked again."""
    out: dict[str, tuple[str, int | None, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        job_id, state, code = parts[0], parts[1].split()[0] if parts[1] else "", parts[2]
        exit_text, _, signal_text = code.partition(":")
        exit_code = int(exit_text) if exit_text.isdigit() else None
        signal = int(signal_text) if signal_text.isdigit() else 0
        if state == "CANCELLED":
            out[job_id] = ("C", exit_code, f"{DELETED}: SLURM: CANCELLED")
        elif state in _SLURM_ENDINGS:
            out[job_id] = ("C", *_SLURM_ENDINGS[state])
        elif state in ("COMPLETED", "FAILED", "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
            if signal:
                out[job_id] = ("C", 256 + signal, f"SLURM: {state}")
            else:
                out[job_id] = ("C", exit_code, "" if state == "COMPLETED" else f"SLURM: {state}")
        elif state:
            out[job_id] = ("E", None, f"SLURM still says {state}")
    return out
