"""Parsers for the output of PBS commands (PBS Professional / OpenPBS and Torque).

Pure functions over text, tested on real captured output (``tests/pbs/data``); nothing here
imports the core. Parsers skip what they do not understand rather than fail, except where a
caller must know that nothing could be read (:func:`parse_qsub`, :func:`load_qstat_json`).

Job ids, as the commands print them::

    123.server            a job (PBS Pro, Torque)
    123[].server          an array (PBS Pro ``-J``, Torque ``-t``)
    123[4].server         one of its tasks ("subjob")
    123                   the same job, printed without its server (Torque wrappers, old outputs)
    123.server.domain     ... or with another form of the server name
    1006[0].pbs-serv*     cut to the column width in a ``qstat`` table (PBS Pro marks it with ``*``)

:func:`normalize_id` reduces all of these to ``123``, ``123[]``, ``123[4]`` so that ids match
whatever form a command prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

# ------------------------------------------------------------------ states and exit statuses

#: Every one-letter job state of PBS Pro/OpenPBS and Torque, with what it means.
STATE_NAMES: Mapping[str, str] = {
    "Q": "queued",
    "H": "held",
    "W": "waiting for its start time",
    "T": "being moved (transit)",
    "R": "running",
    "E": "exiting after having run",
    "B": "array begun: at least one subjob has started",
    "S": "suspended",
    "U": "suspended: the node is busy with interactive use",
    "X": "subjob finished (expired)",
    "F": "finished (job history)",
    "M": "moved to another server",
    "C": "completed (Torque)",
}

#: States after which a job never runs again.
FINISHED_STATES = frozenset({"F", "X", "C", "M"})

#: PBS Pro substates that tell how a finished job ended (``job.h``: JOB_SUBSTATE_*).
SUBSTATE_TERMINATED = 91  # deleted (qdel), whether or not it had started
SUBSTATE_FINISHED = 92
SUBSTATE_FAILED = 93
SUBSTATE_MOVED = 94
SUBSTATE_EXPIRED = 69  # a subjob that is gone

#: PBS Pro / OpenPBS negative exit statuses (``src/include/job.h``: JOB_EXEC_*), with the kind of
#: ending each one is (see :func:`exit_meaning`).
PBSPRO_EXEC_CODES: Mapping[int, tuple[str, str]] = {
    -1: ("exec", "job exec failed before files, no retry (JOB_EXEC_FAIL1)"),
    -2: ("exec", "job exec failed after files, no retry (JOB_EXEC_FAIL2)"),
    -3: ("rerun", "job exec failed, retried (JOB_EXEC_RETRY)"),
    -4: ("exec", "job aborted on MOM initialisation (JOB_EXEC_INITABT)"),
    -5: ("exec", "job aborted on MOM initialisation, checkpoint, no migrate (JOB_EXEC_INITRST)"),
    -6: ("exec", "job aborted on MOM initialisation, checkpoint, migrate (JOB_EXEC_INITRMG)"),
    -7: ("exec", "job restart failed (JOB_EXEC_BADRESRT)"),
    -10: ("exec", "invalid uid/gid for the job (JOB_EXEC_FAILUID)"),
    -11: ("rerun", "job rerun (JOB_EXEC_RERUN)"),
    -12: ("exec", "job checkpointed and killed (JOB_EXEC_CHKP)"),
    -13: ("exec", "bad password (JOB_EXEC_FAIL_PASSWORD)"),
    -14: ("rerun", "job rerun after a sister failed (JOB_EXEC_RERUN_ON_SIS_FAIL)"),
    -15: ("rerun", "requeued for restart from checkpoint (JOB_EXEC_QUERST)"),
    -16: ("rerun", "a hook rejected the job, requeued (JOB_EXEC_FAILHOOK_RERUN)"),
    -17: ("exec", "a hook rejected the job, deleted (JOB_EXEC_FAILHOOK_DELETE)"),
    -18: ("rerun", "a hook requeued the job (JOB_EXEC_HOOK_RERUN)"),
    -19: ("exec", "a hook deleted the job (JOB_EXEC_HOOK_DELETE)"),
    -20: ("rerun", "mother superior connection failed, rerun (JOB_EXEC_RERUN_MS_FAIL)"),
    -21: ("exec", "security breach in the PBS directory (JOB_EXEC_FAIL_SECURITY)"),
    -22: ("exec", "hook error or hook timeout (JOB_EXEC_HOOKERROR)"),
    -23: ("exec", "no kerberos credentials (JOB_EXEC_FAIL_KRB5)"),
    -24: ("limit", "ncpus (burst) limit exceeded (JOB_EXEC_KILL_NCPUS_BURST)"),
    -25: ("limit", "ncpus (sum) limit exceeded (JOB_EXEC_KILL_NCPUS_SUM)"),
    -26: ("memory", "vmem limit exceeded (JOB_EXEC_KILL_VMEM)"),
    -27: ("memory", "mem limit exceeded (JOB_EXEC_KILL_MEM)"),
    -28: ("limit", "cput limit exceeded (JOB_EXEC_KILL_CPUT)"),
    -29: ("walltime", "walltime exceeded (JOB_EXEC_KILL_WALLTIME)"),
    -30: ("exec", "join job error (JOB_EXEC_JOINJOB)"),
}

#: Torque's negative exit statuses (``src/include/job.h`` of Torque: JOB_EXEC_*).
TORQUE_EXEC_CODES: Mapping[int, tuple[str, str]] = {
    -1: ("exec", "job exec failed before files, no retry (JOB_EXEC_FAIL1)"),
    -2: ("exec", "job exec failed after files, no retry (JOB_EXEC_FAIL2)"),
    -3: ("rerun", "job exec failed, retried (JOB_EXEC_RETRY)"),
    -4: ("exec", "job aborted on MOM initialisation (JOB_EXEC_INITABT)"),
    -5: ("exec", "job aborted on MOM initialisation, checkpoint, no migrate (JOB_EXEC_INITRST)"),
    -6: ("exec", "job aborted on MOM initialisation, checkpoint, migrate (JOB_EXEC_INITRMG)"),
    -7: ("exec", "job restart failed (JOB_EXEC_BADRESRT)"),
    -8: ("exec", "exec() of the user command failed (JOB_EXEC_CMDFAIL)"),
    -9: ("exec", "could not create/open the stdout/stderr files (JOB_EXEC_STDOUTFAIL)"),
    -10: ("memory", "memory limit exceeded (JOB_EXEC_OVERLIMIT_MEM)"),
    -11: ("walltime", "walltime exceeded (JOB_EXEC_OVERLIMIT_WT)"),
    -12: ("limit", "cpu time limit exceeded (JOB_EXEC_OVERLIMIT_CPUT)"),
}

_SIGNALS = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    24: "SIGXCPU",
    25: "SIGXFSZ",
}


@attrs.frozen
class ExitMeaning:
    """What an exit status says. ``kind`` is one of ``ok``, ``exit`` (the script's own nonzero
    exit), ``signal`` (killed by signal ``signal``), ``walltime``, ``memory``, ``limit`` (another
    resource limit), ``rerun`` (PBS requeues the job: not over), ``exec`` (PBS could not run it)."""

    kind: str
    text: str
    signal: int | None = None


def signal_name(number: int) -> str:
    name = _SIGNALS.get(number)
    return f"signal {number} ({name})" if name else f"signal {number}"


def exit_meaning(code: int, dialect: str = "pbspro") -> ExitMeaning:
    """The meaning of a job's ``Exit_status`` (PBS Pro) or ``exit_status`` (Torque).

    Negative: PBS's own codes (which differ between PBS Pro and Torque). Above 256: the job's
    shell was killed by signal ``code - 256`` (``qdel`` of a running job: 271 = SIGTERM). 129 to
    255: the script's last command was killed by signal ``code - 128`` (the shell's convention)."""
    if code == 0:
        return ExitMeaning("ok", "exit status 0")
    if code < 0:
        table = TORQUE_EXEC_CODES if dialect == "torque" else PBSPRO_EXEC_CODES
        kind, text = table.get(code, ("exec", "PBS could not run the job"))
        return ExitMeaning(kind, f"Exit_status {code}: {text}")
    if code > 256:
        sig = code - 256
        return ExitMeaning("signal", f"Exit_status {code}: killed by {signal_name(sig)}", sig)
    if 128 < code < 256:
        sig = code - 128
        return ExitMeaning(
            "signal", f"exit status {code}: its command was killed by {signal_name(sig)}", sig
        )
    return ExitMeaning("exit", f"exit status {code}")


# ------------------------------------------------------------------ ids

_ID_RE = re.compile(r"^(\d+)(?:\[(\d*)\])?(?:\.(\S*))?$")


@attrs.frozen
class JobId:
    """A job id taken apart: ``123[4].server`` is sequence ``123``, index ``4``, array ``True``."""

    seq: str
    index: int | None
    array: bool
    server: str

    @property
    def key(self) -> str:
        """The id without its server: ``123``, ``123[]`` or ``123[4]``."""
        if not self.array:
            return self.seq
        return f"{self.seq}[{'' if self.index is None else self.index}]"

    @property
    def array_key(self) -> str:
        """The key of the job this one belongs to: ``123[]`` for ``123[4]``."""
        return f"{self.seq}[]" if self.array else self.seq


def split_id(job_id: str) -> JobId | None:
    """Take a job id apart; ``None`` when it is not a PBS job id. A trailing ``*`` (an id cut to
    the column width of a ``qstat`` table) is dropped with whatever it cut."""
    text = job_id.strip().rstrip("*")
    m = _ID_RE.match(text)
    if m is None:
        # a table may cut an id inside the brackets: "2596901[10].pbsse" is fine, "12345678[1*" not
        return None
    seq, index, server = m.group(1), m.group(2), m.group(3) or ""
    array = "[" in text
    return JobId(seq=seq, index=int(index) if index else None, array=array, server=server)


def normalize_id(job_id: str) -> str:
    """``123.pbs-server.example.org``, ``123.pbs-server`` and ``123`` all give ``123``;
    ``123[].x`` gives ``123[]`` and ``123[4].x`` gives ``123[4]``. Anything else is returned
    stripped, unchanged."""
    parts = split_id(job_id)
    return parts.key if parts else job_id.strip()


def same_job(a: str, b: str) -> bool:
    """Whether two printed ids name the same job (ignoring the server suffix)."""
    return normalize_id(a) == normalize_id(b)


# ------------------------------------------------------------------ qsub


def parse_qsub(text: str) -> str:
    """The job id ``qsub`` printed (``123.server``, ``123[].server``, or a bare ``123`` from the
    SLURM Torque wrappers): the last line that is a job id. Raises ``ValueError`` otherwise."""
    for line in reversed(text.strip().splitlines()):
        token = line.strip()
        if token and split_id(token) is not None:
            return token
    raise ValueError(f"qsub printed no job id: {text.strip()[:300]!r}")


# ------------------------------------------------------------------ rows


@attrs.frozen(kw_only=True)
class JobRow:
    """One job, array or subjob of a ``qstat`` output.

    ``job_id`` is the id as printed; ``array_id`` the id of the array a subjob belongs to (for
    a job or an array itself: its own id); ``task`` the subjob index, else ``None``."""

    job_id: str
    array_id: str
    task: int | None
    state: str
    exit_status: int | None = None
    substate: int | None = None
    comment: str = ""
    is_array: bool = False
    """True for an array itself (PBS Pro ``array = True``, Torque ``123[]``)."""

    @property
    def deleted(self) -> bool:
        """PBS Pro's substate 91 (terminated by ``qdel``), whatever the exit status."""
        return self.substate == SUBSTATE_TERMINATED


def _row(job_id: str, attrs_: Mapping[str, Any]) -> JobRow:
    def num(*keys: str) -> int | None:
        for key in keys:
            value = attrs_.get(key)
            if value is None or value == "":
                continue
            try:
                return int(str(value).strip())
            except ValueError:
                continue
        return None

    parts = split_id(job_id)
    is_array = str(attrs_.get("array", "")).strip().lower() == "true"
    task: int | None = None
    array_id = job_id
    if parts is not None and parts.array:
        if parts.index is not None:
            task = parts.index
            suffix = f".{parts.server}" if parts.server else ""
            array_id = f"{parts.seq}[]{suffix}"
        else:
            is_array = True
    if task is None and "job_array_id" in attrs_ and parts is not None and parts.array:
        task = num("job_array_id")
    comment = str(attrs_.get("comment") or "").strip()
    return JobRow(
        job_id=job_id,
        array_id=array_id,
        task=task,
        state=str(attrs_.get("job_state") or "").strip()[:1],
        exit_status=num("Exit_status", "exit_status"),
        substate=num("substate"),
        comment=comment,
        is_array=is_array,
    )


# ------------------------------------------------------------------ qstat -f -F json


class QstatJsonError(ValueError):
    """Neither JSON, nor repaired JSON, nor its lines could be read."""


@attrs.frozen
class QstatJson:
    """What :func:`load_qstat_json` made of an output: the jobs (id -> attributes) and how they
    were read: ``json`` (valid), ``lenient`` (raw control characters in strings), ``repaired``
    (invalid escapes, unescaped quotes, numbers with leading zeros fixed line by line) or
    ``lines`` (read attribute by attribute, without a JSON parser)."""

    jobs: Mapping[str, Mapping[str, Any]]
    method: str


_JSON_LINE = re.compile(r'^(?P<indent>\s*)"(?P<key>[^"]+)"\s*:\s*(?P<value>.*?)\s*$')
_VALID_ESCAPE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')
_NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$")


def _escape_inner(inner: str) -> str:
    """A JSON string body from what PBS meant: valid escapes kept, a backslash before anything
    else dropped (PBS wrote ``\\'`` and ``\\,``), bare quotes and control characters escaped."""
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            m = _VALID_ESCAPE.match(inner, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                continue
            if i + 1 < len(inner):
                i += 1  # drop the stray backslash, keep what it "escaped"
                continue
            out.append("\\\\")
            i += 1
            continue
        if ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20:
            out.append(json.dumps(ch)[1:-1])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _repair_value(value: str) -> str:
    trailing = ""
    if value.endswith(","):
        value, trailing = value[:-1].rstrip(), ","
    if value in ("{", "[", "") or value.startswith("{") or value.startswith("["):
        return value + trailing
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return '"' + _escape_inner(value[1:-1]) + '"' + trailing
    if _NUMBER.match(value) or value in ("true", "false", "null"):
        return value + trailing
    # a number PBS printed bare but JSON does not allow (005, 1e, 0x1f ...), or a bare word
    text = value[1:] if value.startswith('"') else value
    return '"' + _escape_inner(text) + '"' + trailing


def _join_broken_lines(text: str) -> list[str]:
    """Lines of a PBS JSON output, with a value that a raw newline split over several lines
    joined again (the newline kept as ``\\n``)."""
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        starts_item = (
            stripped.startswith('"')
            and _JSON_LINE.match(line) is not None
            or stripped in ("{", "}", "},", "]", "],", "")
            or not lines
        )
        if starts_item or lines[-1].rstrip().endswith(("{", "[", ",")):
            lines.append(line)
        else:
            lines[-1] += "\\n" + line
    return lines


def repair_qstat_json(text: str) -> str:
    """The output of ``qstat -F json`` made valid JSON, line by line (PBS prints one attribute
    per line): invalid escapes, unescaped quotes and control characters inside string values,
    bare numbers JSON does not allow (``"foo":005``), and values split by a raw newline."""
    out = []
    for line in _join_broken_lines(text):
        m = _JSON_LINE.match(line)
        if m is None:
            out.append(line)
            continue
        key = _escape_inner(m.group("key"))
        out.append(f'{m.group("indent")}"{key}":\t{_repair_value(m.group("value"))}')
    return "\n".join(out) + "\n"


def _scan_lines(text: str) -> dict[str, dict[str, Any]]:
    """The last resort: jobs and their top-level attributes read line by line, with no JSON
    parser (a job starts with ``"ID": {`` inside ``"Jobs"``; values are taken as printed)."""
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    depth = 0  # nesting inside the current job (resources_used, Variable_List ...)
    in_jobs = False
    for line in _join_broken_lines(text):
        stripped = line.strip()
        m = _JSON_LINE.match(line)
        if m is not None and m.group("key") == "Jobs":
            in_jobs = True
            continue
        if not in_jobs:
            continue
        if m is not None:
            key, value = m.group("key"), m.group("value").rstrip(",").strip()
            if value.startswith("{"):
                if current is None and split_id(key) is not None:
                    current = jobs.setdefault(key, {})
                    depth = 0
                else:
                    depth += 1
                continue
            if current is not None and depth == 0:
                if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                    value = value[1:-1]
                current[key] = value
            continue
        if stripped.startswith("}"):
            if depth > 0:
                depth -= 1
            elif current is not None:
                current = None
            else:
                in_jobs = False
    return jobs


def load_qstat_json(text: str) -> QstatJson:
    """The jobs of a ``qstat -f -F json`` output (``{}`` when it lists none), read as strictly as
    the text allows. Raises :class:`QstatJsonError` when it is not a qstat JSON output at all."""
    if not text.strip():
        return QstatJson(jobs={}, method="json")
    attempts = (
        ("json", lambda: json.loads(text)),
        ("lenient", lambda: json.loads(text, strict=False)),
        ("repaired", lambda: json.loads(repair_qstat_json(text), strict=False)),
    )
    for method, load in attempts:
        try:
            doc = load()
        except ValueError:
            continue
        if isinstance(doc, dict):
            jobs = doc.get("Jobs") or {}
            if isinstance(jobs, dict):
                return QstatJson(jobs=jobs, method=method)
    scanned = _scan_lines(text)
    if scanned or '"pbs_version"' in text or '"Jobs"' in text:
        return QstatJson(jobs=scanned, method="lines")
    raise QstatJsonError(f"not a qstat JSON output: {text.strip()[:200]!r}")


def parse_qstat_json(text: str) -> list[JobRow]:
    """Rows of ``qstat -f -F json [-x] [-t] ID ...`` (tolerant of PBS's invalid JSON)."""
    return [_row(job_id, fields) for job_id, fields in load_qstat_json(text).jobs.items()]


# ------------------------------------------------------------------ qstat -f (text)

_JOB_HEADER = re.compile(r"^Job Id:\s*(\S+)\s*$")
_ATTR = re.compile(r"^(?P<key>[A-Za-z_][\w.]*)\s=\s?(?P<value>.*)$")


def parse_qstat_full_records(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``(job id, attributes)`` for each record of a text ``qstat -f`` (PBS Pro, Torque, the
    SLURM Torque wrappers). A record starts with ``Job Id: ID``; its attributes are indented
    alike (4 spaces by PBS Pro and Torque, a TAB by the wrappers); a line indented otherwise
    (PBS's TAB continuation, 2 spaces in Torque's documentation) continues the value above, and
    a line not indented at all continues it after a newline (PBS prints a newline inside a value,
    e.g. of an exported variable, as is)."""
    job_id: str | None = None
    fields: dict[str, str] = {}
    indent: str | None = None
    last: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r\n")
        header = _JOB_HEADER.match(line.strip()) if line[:1] not in (" ", "\t") else None
        if header:
            if job_id is not None:
                yield job_id, fields
            job_id, fields, indent, last = header.group(1), {}, None, None
            continue
        if job_id is None or not line.strip():
            continue
        lead = line[: len(line) - len(line.lstrip())]
        body = line.lstrip()
        m = _ATTR.match(body)
        if m and lead and (indent is None or lead == indent):
            indent = lead
            last = m.group("key")
            fields[last] = m.group("value")
            continue
        if last is not None and lead:
            fields[last] += body
        elif last is not None:  # a raw newline inside a value (an environment variable's)
            fields[last] += "\n" + line
    if job_id is not None:
        yield job_id, fields


def parse_qstat_full(text: str) -> list[JobRow]:
    """Rows of a text ``qstat -f [-x] [-t]`` (PBS Pro and Torque: ``job_state = C`` with
    ``exit_status``; Torque subjobs ``123[4].server`` with ``job_array_id``)."""
    return [_row(job_id, fields) for job_id, fields in parse_qstat_full_records(text)]


# ------------------------------------------------------------------ qstat (tables)


def parse_qstat_table(text: str) -> list[JobRow]:
    """Rows of a ``qstat`` listing: the default table (``Job id  Name  User  Time Use S Queue``,
    PBS Pro, Torque and the wrappers, with ``-t``/``-x``/``-J``) and the alternate one of
    ``-a``/``-u``/``-H`` (``... Req'd Time  S Elap Time``). Ids the table cut stay cut (use
    :func:`normalize_id`, which drops a trailing ``*``); rows without a job id are skipped."""
    rows: list[JobRow] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or set(parts[0]) <= {"-"}:
            continue
        parsed = split_id(parts[0])
        if parsed is None:
            continue
        # the state is the second last column in both layouts ("S Queue" and "S Elap Time")
        state = parts[-2]
        if len(state) != 1 or state not in STATE_NAMES:
            candidates = [p for p in parts[1:] if len(p) == 1 and p in STATE_NAMES]
            if not candidates:
                continue
            state = candidates[-1]
        task = parsed.index if parsed.array else None
        array_id = parts[0]
        if task is not None:
            suffix = f".{parsed.server}" if parsed.server else ""
            array_id = f"{parsed.seq}[]{suffix}"
        rows.append(
            JobRow(
                job_id=parts[0],
                array_id=array_id,
                task=task,
                state=state,
                is_array=parsed.array and parsed.index is None,
            )
        )
    return rows


# ------------------------------------------------------------------ error messages


@attrs.frozen
class CommandMessage:
    """One error line of ``qstat``/``qdel``: ``kind`` is ``unknown`` (no such job: never existed,
    or purged from the history), ``finished`` (finished: PBS Pro ``qdel``, or ``qstat`` without
    ``-x``), ``illegal`` (not a job id for this server), ``state`` (request invalid for the job's
    state), ``connect`` (no server), ``other``; ``job_id`` as printed, or ``""``."""

    kind: str
    job_id: str
    text: str


_MESSAGES = (
    # qstat: Unknown Job Id 99999.pbs-server / qdel: Unknown Job Id 9999.sirna1 /
    # Torque: qstat: Unknown Job Id Error 6401.gb-ui-kun.els.sara.nl
    (re.compile(r"^\w+: Unknown Job Id(?: Error)? (\S+)"), "unknown"),
    # qdel: Job has finished 4.pbs-server (23.06) / qdel: Job has finished (PBS Pro 14)
    (re.compile(r"^\w+: Job has finished(?: (\S+))?\s*$"), "finished"),
    # qstat: 2.pbs-server Job has finished, use -x or -H to obtain historical job information
    (re.compile(r"^\w+: (\S+) Job has finished"), "finished"),
    (re.compile(r"^\w+: illegally formed job identifier: (\S+)"), "illegal"),
    (re.compile(r"^\w+: Request invalid for state of job (\S+)"), "state"),
    (re.compile(r"^\w+: cannot connect to server (\S+)"), "connect"),
)


def parse_messages(text: str) -> list[CommandMessage]:
    """The error lines of a ``qstat``/``qdel`` output (its stderr), classified."""
    out: list[CommandMessage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for pattern, kind in _MESSAGES:
            m = pattern.match(line)
            if m:
                job_id = m.group(1) or ""
                if kind == "connect":
                    job_id = ""
                out.append(CommandMessage(kind=kind, job_id=job_id, text=line))
                break
        else:
            if line.startswith(("qstat:", "qdel:", "qsub:")):
                out.append(CommandMessage(kind="other", job_id="", text=line))
    return out


def qdel_outcome(stdout: str, stderr: str, returncode: int) -> dict[str, str]:
    """What ``qdel ID ...`` did: ``{id as printed: kind}`` for every id it complained about
    (``finished`` and ``unknown`` mean the job is already over: nothing left to cancel)."""
    return {m.job_id: m.kind for m in parse_messages(stderr + "\n" + stdout) if m.job_id}


def group_rows(rows: Iterable[JobRow]) -> dict[str, list[JobRow]]:
    """Rows by the normalised id of the job they belong to (an array's subjobs under ``123[]``)."""
    out: dict[str, list[JobRow]] = {}
    for row in rows:
        out.setdefault(normalize_id(row.array_id), []).append(row)
    return out
