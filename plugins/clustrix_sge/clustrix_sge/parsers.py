"""Parsers for Grid Engine output: ``qsub -terse``, ``qstat -xml``, ``qstat -j`` and ``qacct -j``.

Pure functions on text, tested on real captured output (tests/sge/data/)."""

from __future__ import annotations

import re
import signal
import xml.etree.ElementTree as ET

import attrs
from clustrix_core.scheduler import JobState, QueueEntry

_SUBMIT_RE = re.compile(r"^(\d+)(?:\.\d+-\d+:\d+)?$")


def parse_qsub_terse(text: str) -> str:
    """The job number from ``qsub -terse`` (``123`` or, for an array, ``123.1-4:1``)."""
    for line in reversed(text.strip().splitlines()):
        m = _SUBMIT_RE.match(line.strip())
        if m:
            return m.group(1)
    raise ValueError(f"no job id in qsub output: {text.strip()!r}")


def expand_tasks(text: str) -> list[int]:
    """Task ids from qstat's ``<tasks>``: ``7``, ``3,4``, ``5-100:1``, ``2-10:2,13``."""
    out: list[int] = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", item)
        if not m:
            raise ValueError(f"unexpected task range {item!r} in {text!r}")
        first = int(m.group(1))
        last = int(m.group(2) or first)
        step = int(m.group(3) or 1)
        out.extend(range(first, last + 1, step))
    return out


def parse_qstat_xml(text: str) -> list[QueueEntry]:
    """One entry per job (or per array task) in ``qstat -xml``; task ``None`` for plain jobs."""
    text = text.strip()
    if not text:
        return []
    root = ET.fromstring(text)
    entries: list[QueueEntry] = []
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        state = (job.findtext("state") or "").strip()
        tasks = (job.findtext("tasks") or "").strip()
        if not number:
            continue
        if tasks:
            entries.extend(
                QueueEntry(job_id=number, task=t, state=state) for t in expand_tasks(tasks)
            )
        else:
            entries.append(QueueEntry(job_id=number, task=None, state=state))
    return entries


_ERROR_REASON_RE = re.compile(r"^error reason\s+(\d+):\s*(.*)$")


def parse_error_reasons(text: str) -> dict[int, str]:
    """The ``error reason`` lines of ``qstat -j ID``, by task id (1 for a job that is no array):

    ``error reason    1:      11/28/2026 20:52:00 [0:374]: error: can't open output file ...``"""
    reasons: dict[int, str] = {}
    for line in text.splitlines():
        m = _ERROR_REASON_RE.match(line.strip())
        if m:
            # drop the "MM/DD/YYYY HH:MM:SS [uid:pid]: " prefix before the message
            reasons[int(m.group(1))] = re.sub(
                r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d \[[\d:]+\]:\s*", "", m.group(2).strip()
            )
    return reasons


@attrs.frozen(kw_only=True)
class AccountingRecord:
    """The parts of one ``qacct -j`` record that tell how a job (or array task) ended."""

    job_id: str
    task: int | None
    failed: int
    failed_text: str
    exit_status: int
    fields: dict[str, str] = attrs.field(factory=dict, eq=False, repr=False)


def parse_qacct(text: str) -> list[AccountingRecord]:
    """Every record of ``qacct -j ID`` in file order (a later record of a task supersedes an
    earlier one: job numbers are reused after a reinstall or a wrap-around)."""
    records = []
    for block in re.split(r"^=+\s*$", text, flags=re.M):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                fields[key] = value.strip()
        if "jobnumber" not in fields:
            continue
        failed_raw = fields.get("failed", "0")
        code, _, failed_text = failed_raw.partition(":")
        task = fields.get("taskid", "undefined")
        exit_raw = fields.get("exit_status", "0").split()
        records.append(
            AccountingRecord(
                job_id=fields["jobnumber"],
                task=int(task) if task.isdigit() else None,
                failed=int(code.strip() or 0),
                failed_text=failed_text.strip(),
                exit_status=int(exit_raw[0])
                if exit_raw and exit_raw[0].lstrip("-").isdigit()
                else 0,
                fields=fields,
            )
        )
    return records


# ``failed`` codes of the shepherd/qmaster (sge_reportP.h / "qacct failed" in the man pages).
FAILED_TIMEOUT = 37  # qmaster enforced h_rt, h_cpu, or h_vmem limit
FAILED_KILLED = 100  # assumedly after job: killed by qdel or a signal
FAILED_HOST_LOST = {
    19: "its shepherd ended without writing the exit status",  # before writing exit_status
    21: "the execution daemon no longer knew the job",  # in recognizing job
}
"""The job ran, and its execution host lost it (execd or host crash): Grid Engine's NODE_FAIL."""
_FAILED_BEFORE_START = {
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    20,
    26,
    27,
    28,
    29,
    36,
    38,
}


def record_state(rec: AccountingRecord) -> tuple[JobState, str]:
    """The core state and a reason for one accounting record."""
    if rec.failed == 0 and rec.exit_status == 0:
        return JobState.COMPLETED, ""
    detail = (
        f"qacct: failed {rec.failed}"
        + (f" ({rec.failed_text})" if rec.failed_text else "")
        + f", exit_status {rec.exit_status}"
    )
    if rec.failed == FAILED_TIMEOUT:
        return JobState.TIMEOUT, f"time limit (h_rt) exceeded; {detail}"
    if rec.failed == FAILED_KILLED:
        return (
            JobState.CANCELLED,
            f"killed by qdel or a signal{_signal_name(rec.exit_status)}; {detail}",
        )
    if rec.failed in FAILED_HOST_LOST:
        return (
            JobState.NODE_FAIL,
            f"the execution host lost the job ({FAILED_HOST_LOST[rec.failed]}: sge_execd or the "
            f"host crashed?); {detail}",
        )
    if rec.failed in _FAILED_BEFORE_START:
        return JobState.FAILED, f"Grid Engine could not start the job; {detail}"
    if rec.failed:
        return JobState.FAILED, detail
    if rec.exit_status > 128:
        return JobState.FAILED, f"killed by a signal{_signal_name(rec.exit_status)}; {detail}"
    return JobState.FAILED, f"exit status {rec.exit_status}"


def _signal_name(exit_status: int) -> str:
    try:
        return f" ({signal.Signals(exit_status - 128).name})" if exit_status > 128 else ""
    except ValueError:
        return f" (signal {exit_status - 128})"
