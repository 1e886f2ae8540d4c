"""Job stores: where a job's inputs, results and logs live.

The executor, re-attach, the CLI and ``doctor`` talk only to a :class:`JobStore`, which the
scheduler provides (:meth:`Scheduler.store`). A store hands back an opaque *location* string when
it stages a job; everything later is asked by location. :class:`FileStore` is a private job
directory on the submit host reached through a transport (local, ssh, slurm, sge, pbs); a store
without a shared file system stages through an API and reads results back from the job's log,
where the runner writes them between marker lines (:func:`split_framed_output`).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import runner
from .errors import ClustrixError, TransportError
from .transport import Transport

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES = 64 * 1024
"""How much of each task's stdout and stderr is kept locally when a job's files are cleaned up."""


def new_job_id() -> str:
    """A fresh job id: when (to the second) and 32 random bits, e.g. ``20261201-153012-9f86d081``."""
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)


class JobStore:
    """The contract. ``inputs`` are file names and contents: ``key``, ``runner.py``,
    ``payload.bin`` and ``calls.N`` for every task (a task reads ``payload.bin`` and its own
    ``calls.N``). Results are the sealed bytes the runner wrote for a task; logs are text."""

    max_task_bytes: int | None = None
    """The most input bytes one task may need (its calls, the payload, key and runner), or None.
    The executor refuses larger jobs before anything is created (Kubernetes: a Secret's ~1 MiB)."""

    def stage(self, *, job_id: str, name: str, inputs: Mapping[str, bytes]) -> str:
        """Store a new job's inputs privately; return its location (opaque to the caller)."""
        raise NotImplementedError

    def ready(self, location: str, tasks: Sequence[int]) -> set[int]:
        """Which of ``tasks`` have a result to fetch (one listing, not one call per task)."""
        raise NotImplementedError

    def fetch(self, location: str, task: int) -> bytes | None:
        """The sealed result of ``task``, or None when there is none (yet)."""
        raise NotImplementedError

    def result_name(self, location: str, task: int) -> str:
        """Where the result of ``task`` is kept, for messages (a file, an object, a log)."""
        return f"{location}, task {task}"

    def log(self, location: str, stream: str, task: int, *, tail: int | None = None) -> str:
        """The text ``stream`` (``"out"`` or ``"err"``) of ``task`` so far, its last ``tail``
        bytes when given; "" when there is none."""
        raise NotImplementedError

    def read_from(self, location: str, stream: str, task: int, offset: int) -> bytes:
        """The bytes of ``stream`` of ``task`` from byte ``offset`` on (what arrived since the
        last read); b"" when there is nothing new. Streaming output calls it at most once per
        task and poll. The default reads the whole log (:meth:`log`): stores that can read from
        an offset override it."""
        data = self.log(location, stream, task).encode("utf-8", "surrogateescape")
        return data[offset:]

    def read_new(
        self, location: str, reads: Sequence[tuple[str, int, int]]
    ) -> dict[tuple[str, int], bytes]:
        """:meth:`read_from` for several ``(stream, task, offset)`` of one job at once (one
        round trip where the store can); ``(stream, task) -> new bytes``."""
        return {(s, t): self.read_from(location, s, t, off) for s, t, off in reads}

    def progress(self, location: str, tasks: Sequence[int]) -> dict[int, int]:
        """How many calls each started task of ``tasks`` has finished so far (the runner counts
        them in ``progress.N`` beside its result); tasks not started are absent. The default
        knows nothing ({}): progress then moves per task."""
        return {}

    def cleanup(self, location: str) -> None:
        """Remove what :meth:`stage` and the job created (idempotent)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for ``clustrix doctor``: where jobs are kept."""
        return type(self).__name__

    def check(self) -> str:
        """Stage a probe job and clean it up again (``clustrix doctor``); say what was checked."""
        location = self.stage(job_id=new_job_id(), name="clustrix-doctor", inputs={"probe": b"ok"})
        self.cleanup(location)
        return f"{self.describe()}: staged and removed a probe job"


# ---------------------------------------------------------------- job directories

_JOB_DIR = re.compile(r"[A-Za-z0-9_.-]+-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}-[0-9a-f]{16}")


class FileStore(JobStore):
    """A private directory per job under the profile's ``work_dir`` on the submit host (which the
    compute side sees too): inputs as files, ``result.N``, ``out.N`` and ``err.N`` beside them.

    The work directory is checked at every job (owned by this user, private, no symlinks on the
    way; a shared project directory gets a private per-user directory inside it), job directories
    are created exclusively with unpredictable names, and only such directories are removed."""

    def __init__(self, transport: Transport, work_dir: str) -> None:
        self.transport = transport
        self.work_dir = work_dir

    def root(self) -> str:
        """The private directory job directories go into (checked on every call)."""
        path = self.transport.expand(self.work_dir).rstrip("/") or "/"
        return self.transport.private_dir(path)

    def new_location(self, *, job_id: str, name: str) -> str:
        return f"{self.root()}/{name}-{job_id}-{secrets.token_hex(8)}"

    def stage(self, *, job_id: str, name: str, inputs: Mapping[str, bytes]) -> str:
        location = self.new_location(job_id=job_id, name=name)
        self.transport.mkdir_exclusive(location, mode=0o700)
        try:
            for file, data in inputs.items():
                self.transport.put_bytes(f"{location}/{file}", data, mode=0o600)
        except (OSError, TransportError) as exc:
            self._remove(location)
            raise TransportError(f"staging the job in {location} failed: {exc}") from exc
        return location

    def ready(self, location: str, tasks: Sequence[int]) -> set[int]:
        names = set(self.transport.listdir(location))
        return {t for t in tasks if f"result.{t}" in names}

    def fetch(self, location: str, task: int) -> bytes | None:
        try:
            return self.transport.get_bytes(f"{location}/result.{task}")
        except (FileNotFoundError, OSError, TransportError):
            return None

    def result_name(self, location: str, task: int) -> str:
        return f"{location}/result.{task}"

    def log(self, location: str, stream: str, task: int, *, tail: int | None = None) -> str:
        return self.transport.get_text(f"{location}/{stream}.{task}", tail=tail)

    def read_from(self, location: str, stream: str, task: int, offset: int) -> bytes:
        return self.read_new(location, [(stream, task, offset)]).get((stream, task), b"")

    def read_new(
        self, location: str, reads: Sequence[tuple[str, int, int]]
    ) -> dict[tuple[str, int], bytes]:
        """On this host: a seek and a read per file that grew. Elsewhere: one command for all
        of ``reads`` (at most 64 KiB per file and call)."""
        if not reads:
            return {}
        if self.transport.name == "local":
            out: dict[tuple[str, int], bytes] = {}
            for stream, task, offset in reads:
                path = f"{self.transport.expand(location)}/{_safe_stream(stream)}.{int(task)}"
                data = _read_local(path, offset)
                if data:
                    out[(stream, task)] = data
            return out
        lines = []
        for stream, task, offset in reads:
            name = f"{location}/{_safe_stream(stream)}.{int(task)}"
            lines.append(
                f"printf '%s ' {shlex.quote(f'{stream}.{int(task)}')}; "
                f"tail -c +{int(offset) + 1} {shlex.quote(name)} 2>/dev/null "
                f"| head -c {64 * 1024} | od -An -v -tx1 | tr -d ' \\n'; echo"
            )
        result = self.transport.run(["sh", "-c", "\n".join(lines)])
        got: dict[tuple[str, int], bytes] = {}
        for line in result.stdout.splitlines():
            label, _, hexdata = line.partition(" ")
            stream, _, task_text = label.rpartition(".")
            if hexdata.strip() and task_text.isdigit():
                try:
                    got[(stream, int(task_text))] = bytes.fromhex(hexdata.strip())
                except ValueError:
                    continue
        return got

    def progress(self, location: str, tasks: Sequence[int]) -> dict[int, int]:
        """The sizes of ``progress.N`` (the runner appends one byte per finished call)."""
        if not tasks:
            return {}
        if self.transport.name == "local":
            base = self.transport.expand(location)
            sizes: dict[int, int] = {}
            for t in tasks:
                try:
                    sizes[t] = os.stat(f"{base}/progress.{int(t)}").st_size
                except OSError:
                    continue
            return sizes
        script = (
            f"cd {shlex.quote(location)} 2>/dev/null || exit 0; for t in "
            + " ".join(str(int(t)) for t in tasks)
            + '; do [ -f "progress.$t" ] && printf "%s %s\\n" "$t" "$(wc -c <"progress.$t")"; done; true'
        )
        result = self.transport.run(["sh", "-c", script])
        out: dict[int, int] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                out[int(parts[0])] = int(parts[1])
        return out

    def cleanup(self, location: str) -> None:
        root = self.root()
        parent, _, base = location.rstrip("/").rpartition("/")
        if parent != root or not _JOB_DIR.fullmatch(base):
            raise ClustrixError(
                f"refusing to remove {location!r}: it is not a clustrix job directory directly "
                f"under the work directory {root}"
            )
        self._remove(location)

    def _remove(self, location: str) -> None:
        try:
            self.transport.remove_tree(location)
        except (OSError, TransportError) as exc:
            logger.warning("clustrix: could not remove %s: %s", location, exc)

    def describe(self) -> str:
        return f"job directories in {self.root()}"


STREAM_READ_BYTES = 1024 * 1024
"""The most bytes read from one task's stdout or stderr in one poll (the rest comes next)."""


def _safe_stream(stream: str) -> str:
    if stream not in ("out", "err"):
        raise ValueError(f"unknown log stream {stream!r}")
    return stream


def _read_local(path: str, offset: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return b""
    try:
        if os.fstat(fd).st_size <= offset:
            return b""
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, STREAM_READ_BYTES)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- results in a log


def split_framed_output(text: str, job_id: str, task: int) -> tuple[str, bytes | None]:
    """Split a task's log written by ``runner.py --output -`` into what the function printed and
    the sealed outcome (the last frame for this job and task; None when there is none). The frame
    is authenticated later, so a print that imitates one gains nothing."""
    begin = runner.FRAME_BEGIN % (job_id, task)
    at = text.rfind("\n" + begin + "\n")
    if at < 0:
        return text, None
    end = text.find("\n" + runner.FRAME_END, at + len(begin) + 2)
    if end < 0:
        return text, None
    body = text[at + len(begin) + 2 : end]
    try:
        blob = base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        return text, None
    rest = text[end + len(runner.FRAME_END) + 2 :]
    return text[:at] + rest.lstrip("\n"), blob


# ---------------------------------------------------------------- kept log tails


def _kept_dir(job_id: str) -> Path:
    from .registry import private_state_dir  # checked: the user's own, private

    return private_state_dir() / "logs" / re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)


def keep_log(job_id: str, stream: str, task: int, text: str) -> None:
    """Keep the tail of a task's output locally (before the job's files are cleaned up)."""
    if not text:
        return
    directory = _kept_dir(job_id)
    directory.parent.mkdir(exist_ok=True, mode=0o700)
    directory.mkdir(exist_ok=True, mode=0o700)
    data = text.encode("utf-8", "replace")[-LOG_TAIL_BYTES:]
    path = directory / f"{stream}.{task}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def kept_log(job_id: str, stream: str, task: int) -> str | None:
    """The kept tail of a task's output, or None when nothing was kept."""
    path = _kept_dir(job_id) / f"{stream}.{task}"
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


__all__ = ["FileStore", "JobStore", "keep_log", "kept_log", "split_framed_output"]
