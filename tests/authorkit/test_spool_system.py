"""The example's batch system itself (spool.py), run directly: the thing the plugin drives must
really behave like a batch system, or the conformance run proves nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clustrix_spool.scheduler import Row, parse_rows

from .conftest import spool


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def wait_rows(
    spool_dir: Path, job: str, done: Callable[[list[Row]], bool], timeout: float = 30.0
) -> list[Row]:
    deadline = time.monotonic() + timeout
    while True:
        rows = parse_rows(spool("status", "--all", "--parsable", job, spool_dir=spool_dir).stdout)
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def finished(rows: list[Row]) -> bool:
    return bool(rows) and all(r.state not in ("queued", "running") for r in rows)


def test_array_with_slots_directives_and_exit_codes(tmp_path: Path) -> None:
    sd = tmp_path / "spool"
    script = write(
        tmp_path / "job.sh",
        "#!/bin/sh\n#SPOOL --array=0-3 --slots=2\n# a comment\n"
        'echo "task=$SPOOL_ARRAY_TASK_ID of $SPOOL_ARRAY_TASK_COUNT job=$SPOOL_JOB_ID"\n'
        "sleep 0.5\n"
        '[ "$SPOOL_ARRAY_TASK_ID" = 2 ] && exit 3\nexit 0\n',
    )
    job = spool("submit", "--parsable", str(script), spool_dir=sd).stdout.strip()
    assert job.isdigit()
    first = parse_rows(spool("status", "--parsable", job, spool_dir=sd).stdout)
    assert [r.state for r in first].count("queued") >= 2  # two slots: tasks 2 and 3 wait
    rows = wait_rows(sd, job, finished)
    assert [(r.task, r.state, r.exit_code) for r in rows] == [
        (0, "done", 0),
        (1, "done", 0),
        (2, "failed", 3),
        (3, "done", 0),
    ]
    assert spool("status", "--parsable", job, spool_dir=sd).stdout == ""  # left the active listing
    out = (sd / "jobs" / job / "output.1").read_text()
    assert out == f"task=1 of 4 job={job}\n"


def test_time_limit_kills_the_task(tmp_path: Path) -> None:
    sd = tmp_path / "spool"
    script = write(tmp_path / "job.sh", "#!/bin/sh\nsleep 60\n")
    job = spool("submit", "--parsable", "--time=1", str(script), spool_dir=sd).stdout.strip()
    [row] = wait_rows(sd, job, finished)
    assert (row.task, row.state, row.reason) == (None, "timeout", "time limit reached")


def test_cancel_running_and_queued_tasks(tmp_path: Path) -> None:
    sd = tmp_path / "spool"
    script = write(tmp_path / "job.sh", "#!/bin/sh\nsleep 60\n")
    job = spool(
        "submit", "--parsable", "--array=0-2", "--slots=1", str(script), spool_dir=sd
    ).stdout.strip()
    wait_rows(sd, job, lambda rows: any(r.state == "running" for r in rows))
    spool("cancel", job, spool_dir=sd)
    rows = wait_rows(sd, job, finished)
    assert [r.state for r in rows] == ["cancelled"] * 3
    assert (
        rows[0].reason == "cancelled while running"
        and rows[1].reason == "cancelled before it started"
    )


def test_dead_supervisor_is_node_fail(tmp_path: Path) -> None:
    import os
    import signal

    sd = tmp_path / "spool"
    script = write(tmp_path / "job.sh", "#!/bin/sh\nsleep 60\n")
    job = spool("submit", "--parsable", str(script), spool_dir=sd).stdout.strip()
    [row] = wait_rows(sd, job, lambda rows: rows[0].state == "running")
    os.kill(int((sd / "jobs" / job / "supervisor.pid").read_text()), signal.SIGKILL)
    [row] = wait_rows(sd, job, finished)
    assert row.state == "node_fail"
    spool("cancel", job, spool_dir=sd)  # kills the orphaned task too
    [row] = wait_rows(sd, job, finished)
    assert row.state == "cancelled"


def test_killed_task_reports_the_signal(tmp_path: Path) -> None:
    sd = tmp_path / "spool"
    script = write(tmp_path / "job.sh", "#!/bin/sh\nkill -9 $$\n")
    job = spool("submit", "--parsable", str(script), spool_dir=sd).stdout.strip()
    [row] = wait_rows(sd, job, finished)
    assert (row.state, row.exit_code, row.reason) == ("failed", 137, "killed by signal SIGKILL")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--array=3-1"], "expected A-B"),
        (["--array=0-1000"], "maximum array size 1000"),
        (["--time=0"], "must be positive"),
        (["--slots=none"], "whole number"),
    ],
)
def test_bad_submissions_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    script = write(tmp_path / "job.sh", "#!/bin/sh\ntrue\n")
    proc = spool("submit", *args, str(script), spool_dir=tmp_path / "spool", check=False)
    assert proc.returncode == 1 and message in proc.stderr


def test_bad_directive_is_refused(tmp_path: Path) -> None:
    script = write(tmp_path / "job.sh", "#!/bin/sh\n#SPOOL --colour=red\ntrue\n")
    proc = spool("submit", str(script), spool_dir=tmp_path / "spool", check=False)
    assert proc.returncode == 1 and "bad directive '--colour=red'" in proc.stderr


def test_unknown_jobs(tmp_path: Path) -> None:
    sd = tmp_path / "spool"
    status = spool("status", "--parsable", "42", spool_dir=sd)
    assert status.stdout == "" and "unknown job 42" in status.stderr
    assert spool("cancel", "42", spool_dir=sd, check=False).returncode == 1
