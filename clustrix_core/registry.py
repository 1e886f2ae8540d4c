"""The local job registry: every job is recorded (SQLite) before its submission returns, so a
job outlives the process that started it and can be found, cancelled and collected later."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from .errors import ClustrixError, TransportError
from .transport import local_makedirs, local_walk


def state_dir() -> Path:
    explicit = os.environ.get("CLUSTRIX_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "clustrix"


@attrs.define(kw_only=True)
class JobRecord:
    """Everything needed to find, cancel and collect a job from any process."""

    job_id: str
    profile: str
    profile_values: dict[str, Any]
    scheduler: str
    transport: str
    job_dir: str
    key: str  # hex HMAC key
    function: str
    ncalls: int
    ntasks: int
    tasks: list[list[int]]
    submissions: list[dict[str, Any]] = attrs.field(factory=list)
    python: str = ""
    """The interpreter the job runs with (a prepared environment's, when the profile has one)."""
    state: str = "STAGED"
    reason: str = ""
    client: str = attrs.field(factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    """``host:pid`` of the process that staged and submitted it (to tell a submission in
    progress from one whose process died before the scheduler accepted the job)."""
    submitted_at: float = attrs.field(factory=time.time)
    finished_at: float | None = None

    @property
    def native_ids(self) -> list[str]:
        return [s["native_id"] for s in self.submissions]


_COLUMNS = [f.name for f in attrs.fields(JobRecord)]
_JSON = {"profile_values", "tasks", "submissions"}


class RegistryError(ClustrixError):
    """The state directory or the registry database cannot be trusted (or opened)."""


def check_state_dir(path: Path) -> Path:
    """Make sure ``path`` is a directory only the user can use: created 0700 (parents checked as
    :meth:`Transport.makedirs` does) when missing; else it must be owned by the user, not a
    symlink, with no group/other permissions. Its mode is never changed."""
    text = os.path.abspath(str(path))
    try:
        walk = local_walk(text)
        if walk.missing:
            local_makedirs(text, mode=0o700)
            walk = local_walk(text)
    except TransportError as exc:
        raise RegistryError(f"clustrix's state directory {text} cannot be trusted: {exc}") from exc
    info = walk.info
    assert info is not None
    problem = ""
    if info.is_link or not info.is_dir:
        problem = "is not a directory"
    elif info.uid != os.geteuid():
        problem = f"belongs to uid {info.uid}, not to you (uid {os.geteuid()})"
    elif stat.S_IMODE(info.mode) & 0o077:
        problem = f"has mode {stat.S_IMODE(info.mode):04o}: others could read or replace the job registry (which holds job keys)"
    if problem:
        raise RegistryError(
            f"clustrix's state directory {walk.real} {problem}. Use a directory that only you "
            f"can use: `chmod 700 {walk.real}` if it is yours, or set CLUSTRIX_STATE_DIR to "
            "another path (it is created with mode 0700)"
        )
    return Path(walk.real)


def private_state_dir() -> Path:
    """:func:`state_dir`, checked (and created) by :func:`check_state_dir`: where clustrix may keep
    local files of its own (registry, log tails)."""
    return check_state_dir(state_dir())


class Registry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "jobs.sqlite3"
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        """Open the database, trusting it only if it is a regular file of the user's, mode 0600
        or stricter, in a checked state directory; never through a symlink."""
        directory = check_state_dir(self.path.parent)
        path = directory / self.path.name
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise RegistryError(
                f"cannot open the job registry {path} (a symbolic link is refused): {exc}"
            ) from exc
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or before.st_uid != os.geteuid():
                raise RegistryError(
                    f"the job registry {path} is not a regular file of yours (uid "
                    f"{before.st_uid}); move it away and clustrix starts a new one"
                )
            if stat.S_IMODE(before.st_mode) & 0o077:
                os.fchmod(fd, 0o600)  # ours, through the descriptor: never another file
            if before.st_size == 0:  # new, or made again after it was deleted: create the table
                self._ready = False
            conn = sqlite3.connect(str(path), timeout=30)
            try:
                after = os.lstat(path)
            except OSError as exc:
                conn.close()
                raise RegistryError(f"the job registry {path} vanished while opening") from exc
            if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                conn.close()
                raise RegistryError(f"the job registry {path} was replaced while opening")
            return conn
        finally:
            os.close(fd)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            try:
                if not self._ready:
                    _migrate(conn)
                    self._ready = True
                yield conn
                conn.commit()
            finally:
                conn.close()

    def add(self, record: JobRecord) -> None:
        values = [_encode(c, getattr(record, c)) for c in _COLUMNS]
        with self._db() as db:
            db.execute(
                f"INSERT OR REPLACE INTO jobs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                values,
            )

    def update(self, job_id: str, **changes: Any) -> int:
        """Change the record of ``job_id``; how many records changed (0: it is not there)."""
        if not changes:
            return 1
        cols = ", ".join(f"{k} = ?" for k in changes)
        with self._db() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {cols} WHERE job_id = ?",
                [*(_encode(k, v) for k, v in changes.items()), job_id],
            )
            return cursor.rowcount

    def get(self, job_id: str) -> JobRecord:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE job_id = ? OR job_id LIKE ? ESCAPE '\\'",
                (job_id, _like_prefix(job_id)),
            ).fetchall()
        if not rows:
            raise ClustrixError(f"no job {job_id!r} in the registry {self.path}")
        if len(rows) > 1:
            found = sorted((_decode(r) for r in rows), key=lambda r: r.submitted_at)
            lines = "".join(
                f"\n  {r.job_id}  {r.function}  {r.state}  "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.submitted_at))}"
                for r in found
            )
            raise ClustrixError(
                f"job id prefix {job_id!r} is ambiguous: it matches {len(rows)} jobs; "
                f"give more of the id:{lines}"
            )
        return _decode(rows[0])

    def list(self, limit: int = 50) -> list[JobRecord]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM jobs ORDER BY submitted_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_decode(r) for r in rows]


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the table, or add the columns a registry of an older clustrix lacks. Processes
    doing this at once are serialized by the write lock; a column added meanwhile is fine."""
    others = ", ".join(_COLUMNS[1:])
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, {others})")
        present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        for column in _COLUMNS:
            if column not in present:
                try:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc).lower():
                        raise
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _like_prefix(text: str) -> str:
    """A LIKE pattern (``ESCAPE '\\'``) matching the strings that start with ``text``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _encode(column: str, value: Any) -> Any:
    return json.dumps(value) if column in _JSON else value


def _decode(row: tuple[Any, ...]) -> JobRecord:
    data = {c: (json.loads(v) if c in _JSON else v) for c, v in zip(_COLUMNS, row)}
    return JobRecord(**data)


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    global _registry
    with _registry_lock:
        if _registry is None or _registry.path != state_dir() / "jobs.sqlite3":
            _registry = Registry()
        return _registry
