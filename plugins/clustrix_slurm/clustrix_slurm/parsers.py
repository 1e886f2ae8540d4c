"""Parsers for the output of SLURM's commands, and SLURM's job states.

Pure functions over text, tested on captured real output (``tests/slurm/data``). Every parser
skips lines it does not understand rather than failing: SLURM prints warnings on stdout at times
(``sbatch: warning: ...``), and sites wrap the commands."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import attrs
from clustrix_core.scheduler import JobState

#: Every SLURM job state (long names as ``squeue %T``, ``sacct`` and ``scontrol`` print them,
#: and the compact codes of ``squeue %t``) mapped onto the core's states.
STATES: Mapping[str, JobState] = {
    # waiting to start
    "PENDING": JobState.PENDING,
    "PD": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "CF": JobState.PENDING,  # allocated, nodes still booting
    # held: will not start until released
    "REQUEUE_HOLD": JobState.HELD,
    "RH": JobState.HELD,
    "SPECIAL_EXIT": JobState.HELD,
    "SE": JobState.HELD,
    "RESV_DEL_HOLD": JobState.HELD,
    "RD": JobState.HELD,
    # running
    "RUNNING": JobState.RUNNING,
    "R": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "RS": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "SI": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED,
    "S": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED,
    "ST": JobState.SUSPENDED,
    # ending
    "COMPLETING": JobState.COMPLETING,
    "CG": JobState.COMPLETING,
    "STAGE_OUT": JobState.COMPLETING,
    "SO": JobState.COMPLETING,
    # back in the queue (node failure, preemption with requeue, scontrol requeue)
    "REQUEUED": JobState.REQUEUED,
    "RQ": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED,
    "RF": JobState.REQUEUED,
    # final
    "COMPLETED": JobState.COMPLETED,
    "CD": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "F": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "CA": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "RV": JobState.CANCELLED,  # federation: runs on another cluster
    "TIMEOUT": JobState.TIMEOUT,
    "TO": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "OOM": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "NF": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
    "PR": JobState.PREEMPTED,
    "BOOT_FAIL": JobState.BOOT_FAIL,
    "BF": JobState.BOOT_FAIL,
    "DEADLINE": JobState.DEADLINE,
    "DL": JobState.DEADLINE,
}

#: ``squeue --format`` of the status query: the id as printed (``123``, ``123_4``,
#: ``123_[5-9%2]``), the job's own id, the array job id (the job id for plain jobs), the task
#: index (``N/A``, a number, or a still pending range such as ``2-24%4``), state, reason.
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r"
SACCT_FIELDS = "JobID,State,ExitCode,Reason"

_ID_RE = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?(?:\+\d+)?$")


@attrs.frozen(kw_only=True)
class JobRow:
    """One job, or one array task, or one still pending range of array tasks, as SLURM lists it."""

    job_id: str
    """The id clustrix tracks: the array job id for array tasks, the job id otherwise."""
    task: int | None
    """The array task index, ``None`` for a plain job or a pending range of tasks."""
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    raw: str = ""
    """The id as SLURM printed it (``123``, ``123_4``, ``123_[5-9%2]``)."""


def native_state(text: str) -> str:
    """``CANCELLED by 1000`` (sacct), ``CANCELLED+`` (truncated) -> ``CANCELLED``."""
    word = text.strip().split(" ", 1)[0] if text.strip() else ""
    return word.rstrip("+")


def clean_reason(text: str) -> str:
    text = text.strip()
    return "" if text in ("None", "(null)", "") else text


def parse_sbatch(text: str) -> str:
    """The job id from ``sbatch --parsable`` output (``ID`` or ``ID;CLUSTER``), or from the plain
    ``Submitted batch job ID`` of an sbatch wrapper that drops ``--parsable``."""
    for line in reversed(text.strip().splitlines()):
        m = re.match(r"^(?:Submitted batch job )?(\d+)(?:;\S*)?$", line.strip())
        if m:
            return m.group(1)
    raise ValueError(f"sbatch printed no job id: {text!r}")


def _split_id(raw: str) -> tuple[str, int | None] | None:
    m = _ID_RE.match(raw.strip())
    if not m:
        return None
    task = m.group(2)
    return m.group(1), (int(task) if task and task.isdigit() else None)


def parse_squeue(text: str) -> list[JobRow]:
    """Rows of ``squeue --noheader --format=%i|%A|%F|%K|%T|%r`` (the status query), or of the
    shorter ``--format=%i|%T|%r`` (ids taken apart from ``%i``)."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip().split("|", 5)]
        if len(parts) == 6 and parts[2].isdigit():
            raw, _own, job_id, task, state, reason = parts
            task_no = int(task) if task.isdigit() else None
        elif len(parts) == 3 and _split_id(parts[0]) is not None:
            raw, state, reason = parts
            job_id, task_no = _split_id(raw)  # type: ignore[misc]
        else:
            continue
        rows.append(
            JobRow(
                job_id=job_id,
                task=task_no,
                state=native_state(state),
                reason=clean_reason(reason),
                raw=raw,
            )
        )
    return rows


def _exit(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.strip().partition(":")
    return (int(code) if code.isdigit() else None), (int(sig) if sig.isdigit() else None)


def parse_sacct(text: str) -> list[JobRow]:
    """Rows of ``sacct --noheader --parsable2 --allocations --format=JobID,State,ExitCode,Reason``.
    Job steps (``123.batch``), should any be listed, are skipped."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 3:
            continue
        split = _split_id(parts[0])
        if split is None:  # a step such as 123.batch, a header, a warning
            continue
        job_id, task = split
        code, sig = _exit(parts[2])
        rows.append(
            JobRow(
                job_id=job_id,
                task=task,
                state=native_state(parts[1]),
                reason=clean_reason(parts[3]) if len(parts) > 3 else "",
                exit_code=code,
                signal=sig,
                raw=parts[0].strip(),
            )
        )
    return rows


_KV_RE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=(\S*)")


def scontrol_records(text: str) -> Iterator[dict[str, str]]:
    """``KEY=VALUE`` records of ``scontrol show ...``, in the one-line (``--oneliner``) or the
    block form (indented continuation lines; records separated by blank lines). A value is
    taken up to the next space."""
    block: list[str] = []
    for line in text.splitlines():
        starts = bool(_RECORD_START.match(line))
        if (starts or not line.strip()) and block:
            yield dict(_KV_RE.findall(" ".join(block)))
            block = []
        if line.strip():
            block.append(line.strip())
    if block:
        yield dict(_KV_RE.findall(" ".join(block)))


_RECORD_START = re.compile(r"^(JobId|PartitionName|NodeName)=")


def parse_scontrol_jobs(text: str) -> list[JobRow]:
    """Rows of ``scontrol --oneliner show job ID`` (every task of an array; either form)."""
    rows = []
    for rec in scontrol_records(text):
        if "JobId" not in rec or "JobState" not in rec:
            continue
        array_id, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
        if array_id and array_id.isdigit():
            job_id, task_no = array_id, (int(task) if task and task.isdigit() else None)
            raw = f"{array_id}_{task}"
        else:
            job_id, task_no, raw = rec["JobId"], None, rec["JobId"]
        code, sig = _exit(rec.get("ExitCode", ""))
        rows.append(
            JobRow(
                job_id=job_id,
                task=task_no,
                state=native_state(rec["JobState"]),
                reason=clean_reason(rec.get("Reason", "")),
                exit_code=code,
                signal=sig,
                raw=raw,
            )
        )
    return rows


def parse_config_value(text: str, key: str) -> str | None:
    """A value of ``scontrol show config`` (``MaxArraySize           = 1001``)."""
    m = re.search(rf"^\s*{re.escape(key)}\s*=\s*(.*?)\s*$", text, re.M)
    return m.group(1) if m else None


@attrs.frozen(kw_only=True)
class Partition:
    name: str
    default: bool
    state: str
    total_cpus: int
    total_nodes: int
    oversubscribe: str
    max_time: str

    @property
    def jobs_per_cpu(self) -> int:
        """How many of our jobs may share one CPU: ``N`` for ``OverSubscribe=FORCE:N`` (jobs
        share whether they ask or not); 1 otherwise (``YES:N`` shares only jobs that ask)."""
        m = re.match(r"FORCE(?::(\d+))?$", self.oversubscribe)
        if m:
            return int(m.group(1) or 4)
        return 1


def _number(rec: Mapping[str, str], key: str) -> int:
    value = rec.get(key, "")
    return int(value) if value.isdigit() else 0


def parse_partitions(text: str) -> list[Partition]:
    """Partitions of ``scontrol --oneliner show partition [NAME]``."""
    out = []
    for rec in scontrol_records(text):
        if "PartitionName" not in rec:
            continue
        out.append(
            Partition(
                name=rec["PartitionName"],
                default=rec.get("Default") == "YES",
                state=rec.get("State", ""),
                total_cpus=_number(rec, "TotalCPUs"),
                total_nodes=_number(rec, "TotalNodes"),
                oversubscribe=rec.get("OverSubscribe", "NO"),
                max_time=rec.get("MaxTime", ""),
            )
        )
    return out
