"""Fault 6: local state. The registry's SQLite file locked by another process for 10 s, deleted
mid-run, or on a read-only directory: jobs still run, results arrive, and the user is told (a
warning naming the registry) what was not recorded; ``database is locked`` never reaches them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clustrix_core.executor import ClusterExecutor
from clustrix_core.registry import get_registry, state_dir

from .conftest import TIMEOUT, jobs_listing, records, wait_for

pytestmark = pytest.mark.faults


def nap(x: float) -> float:
    import time as t

    t.sleep(x)
    return x


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def lock_registry(seconds: float) -> subprocess.Popen[str]:
    """Another process holding ``BEGIN EXCLUSIVE`` on the registry for ``seconds``."""
    get_registry().list()  # the file exists
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(state_dir() / "jobs.sqlite3"), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def local(profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]) -> ClusterExecutor:
    profiles("local")
    return make("local", poll_max=0.5)


def _no_locked_text(caplog: pytest.LogCaptureFixture) -> None:
    for r in caplog.records:
        assert "database is locked" not in r.getMessage(), r.getMessage()


def test_registry_locked_10s_at_submit(
    local: ClusterExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    locker = lock_registry(10)
    try:
        start = time.monotonic()
        fut = local.submit(nap, 0.1)  # waits for the lock (sqlite's busy timeout), no error
        assert fut.result(timeout=TIMEOUT) == 0.1
        assert time.monotonic() - start >= 5
    finally:
        locker.wait(30)
    _no_locked_text(caplog)
    assert records()[fut.job_id].state == "COMPLETED"
    assert jobs_listing()[fut.job_id] == "COMPLETED"


def test_registry_locked_10s_while_jobs_finish(
    local: ClusterExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    futs = [local.submit(nap, 1.0) for _ in range(3)] + local.map_futures(nap, [0.5] * 4)
    locker = lock_registry(10)
    try:
        assert [f.result(timeout=TIMEOUT) for f in futs] == [1.0] * 3 + [0.5] * 4
    finally:
        locker.wait(30)
    _no_locked_text(caplog)
    listing = jobs_listing()
    for f in futs:
        assert records()[f.job_id].state == "COMPLETED"
        assert listing[f.job_id] == "COMPLETED"


def test_registry_deleted_mid_run(local: ClusterExecutor, caplog: pytest.LogCaptureFixture) -> None:
    """The file vanishes while jobs run: their results arrive, and the executor writes their
    records again into the new registry (nothing lost; no 'no such table')."""
    futs = [local.submit(nap, 2.0)] + local.map_futures(nap, [2.0, 2.0])
    wait_for(lambda: all(f.running() or f.job.last_status for f in futs), 30)
    db = state_dir() / "jobs.sqlite3"
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING):
        assert [f.result(timeout=TIMEOUT) for f in futs] == [2.0] * 3
    got = records()
    for f in futs:
        assert got[f.job_id].state == "COMPLETED", got
        assert got[f.job_id].native_ids == f.job.record.native_ids
    assert any(str(db) in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    # a new job after that is recorded normally
    fut = local.submit(nap, 0.0)
    assert fut.result(timeout=TIMEOUT) == 0.0
    assert jobs_listing()[fut.job_id] == "COMPLETED"


@pytest.fixture
def readonly_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """CLUSTRIX_STATE_DIR on a read-only file system (a private tmpfs mounted ro)."""
    path = tmp_path / "ro-state"
    path.mkdir(mode=0o700)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr}")
    monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_registry_on_readonly_directory(
    readonly_state: Path, local: ClusterExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing can be recorded: the calls still run and return; the user is warned, naming the
    registry and each job that is not recorded (so it cannot be re-attached later)."""
    with caplog.at_level(logging.WARNING):
        fut = local.submit(nap, 0.2)
        values = list(local.map(nap, [0.1, 0.2, 0.3]))
        assert fut.result(timeout=TIMEOUT) == 0.2
    assert values == [0.1, 0.2, 0.3]
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    registry = str(readonly_state / "jobs.sqlite3")
    assert any(registry in m and fut.job_id in m and "not recorded" in m for m in messages), (
        messages
    )
    assert not os.listdir(readonly_state)
