"""The local job registry: every job is recorded (SQLite) before its submission returns, so a
job outlives the process that started it and can be found, cancelled and collected later."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from .errors import ClustrixError


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
    submitted_at: float = attrs.field(factory=time.time)
    finished_at: float | None = None

    @property
    def native_ids(self) -> list[str]:
        return [s["native_id"] for s in self.submissions]


_COLUMNS = [f.name for f in attrs.fields(JobRecord)]
_JSON = {"profile_values", "tasks", "submissions"}


class Registry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "jobs.sqlite3"
        self._lock = threading.Lock()
        self._ready = False

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
                os.chmod(self.path, 0o600)
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                if not self._ready:
                    others = ", ".join(_COLUMNS[1:])
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, {others})"
                    )
                    present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
                    for column in _COLUMNS:  # a registry written by an older clustrix
                        if column not in present:
                            conn.execute(f"ALTER TABLE jobs ADD COLUMN {column}")
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

    def update(self, job_id: str, **changes: Any) -> None:
        if not changes:
            return
        cols = ", ".join(f"{k} = ?" for k in changes)
        with self._db() as db:
            db.execute(
                f"UPDATE jobs SET {cols} WHERE job_id = ?",
                [*(_encode(k, v) for k, v in changes.items()), job_id],
            )

    def get(self, job_id: str) -> JobRecord:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE job_id = ? OR job_id LIKE ?",
                (job_id, job_id + "%"),
            ).fetchall()
        if not rows:
            raise ClustrixError(f"no job {job_id!r} in the registry {self.path}")
        if len(rows) > 1:
            raise ClustrixError(
                f"job id prefix {job_id!r} is ambiguous: {', '.join(r[0] for r in rows)}"
            )
        return _decode(rows[0])

    def list(self, limit: int = 50) -> list[JobRecord]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM jobs ORDER BY submitted_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_decode(r) for r in rows]


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
