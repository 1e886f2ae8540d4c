"""The job registry trusts only a state directory and database of the user's own (issue 14
item 5, issue 9 defect 4); the attacks by another user are in tests/security."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.registry import JobRecord, Registry, RegistryError, check_state_dir

ROOT = Path(__file__).resolve().parents[2]


def _record(job_id: str) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        profile="local",
        profile_values={},
        scheduler="local",
        transport="local",
        job_dir=f"/nonexistent/{job_id}",
        key="00",
        function="f",
        ncalls=1,
        ntasks=1,
        tasks=[[0, 1]],
    )


def test_missing_state_dir_is_created_private(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    Registry(state / "jobs.sqlite3").add(_record("j1"))
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct((state / "jobs.sqlite3").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o770, 0o1777])
def test_state_dir_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(RegistryError, match=rf"{state}.*mode.*chmod 700.*CLUSTRIX_STATE_DIR"):
        Registry(state / "jobs.sqlite3").list()
    assert state.stat().st_mode & 0o7777 == mode  # never changed
    assert not (state / "jobs.sqlite3").exists()


def test_state_dir_under_a_group_writable_parent_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "project"
    parent.mkdir()
    parent.chmod(0o2775)
    with pytest.raises(RegistryError, match=r"project.*2775"):
        check_state_dir(parent / "state")
    assert not (parent / "state").exists()


def test_symlinked_database_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    check_state_dir(state)
    target = tmp_path / "precious"
    target.write_text("keep me")
    target.chmod(0o644)
    (state / "jobs.sqlite3").symlink_to(target)
    with pytest.raises(RegistryError, match="symbolic link"):
        Registry(state / "jobs.sqlite3").list()
    assert target.read_text() == "keep me"
    assert target.stat().st_mode & 0o777 == 0o644


def test_symlinked_state_dir_of_your_own_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    check_state_dir(real)
    (tmp_path / "link").symlink_to(real)
    Registry(tmp_path / "link" / "jobs.sqlite3").add(_record("j1"))
    assert (real / "jobs.sqlite3").exists()


def test_prefix_lookup_escapes_like_wildcards(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "state" / "jobs.sqlite3")
    for job_id in ("20240101-aaaa", "20240101-abcd", "x_y-1", "x%y-2", "xzy-3"):
        reg.add(_record(job_id))
    assert reg.get("x_y").job_id == "x_y-1"  # '_' is not "any character"
    assert reg.get("x%").job_id == "x%y-2"  # '%' is not "anything"
    with pytest.raises(Exception, match="no job"):
        reg.get("%")
    with pytest.raises(Exception, match="ambiguous"):
        reg.get("20240101-a")


_OLD_SCHEMA = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, profile, profile_values, scheduler, "
             "transport, job_dir, key, function, ncalls, ntasks, tasks, submissions, state, "
             "reason, submitted_at, finished_at)")
conn.commit()
"""

_OPEN = """
import sys
from pathlib import Path
from clustrix_core.registry import Registry
sys.stdin.readline()  # start together
Registry(Path(sys.argv[1])).list()
print("ok")
"""


def _old_registry(state: Path) -> Path:
    check_state_dir(state)
    db = state / "jobs.sqlite3"
    subprocess.run([sys.executable, "-c", _OLD_SCHEMA, str(db)], check=True)
    db.chmod(0o600)
    return db


def test_another_process_adding_the_column_first_is_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic form of the race: another process adds the column between this one's look
    at the schema and its own ALTER TABLE (if the registry lets it: it may hold the lock)."""
    db = _old_registry(tmp_path / "state")
    real_connect = sqlite3.connect
    raced: list[str] = []

    class Racing(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if sql.startswith("ALTER TABLE") and not raced:
                other = real_connect(str(db), timeout=0.2)
                try:
                    other.execute(sql)
                    other.commit()
                    raced.append("other process added it first")
                except sqlite3.OperationalError as exc:  # the registry holds the write lock
                    raced.append(str(exc))
                finally:
                    other.close()
            return super().execute(sql, *args)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, factory=Racing, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    Registry(db).add(_record("j1"))
    assert raced
    monkeypatch.undo()
    assert Registry(db).get("j1").python == ""


def test_processes_upgrading_an_old_schema_at_once_do_not_fail(tmp_path: Path) -> None:
    for attempt in range(2):
        db = _old_registry(tmp_path / f"state{attempt}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN, str(db)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            for _ in range(4)
        ]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert out.strip() == "ok"
