"""Issue 12 item 4: Ctrl-C does what a person expects. A real ``python script.py`` receives a
real SIGINT while it waits: the first Ctrl-C cancels the jobs that call started (really, on the
scheduler), says which on one line of stderr, and KeyboardInterrupt ends the program; with
``on_interrupt = "detach"`` the jobs keep running and the line says how to get their results
(another process re-attaches and gets them). Inside ``with ClusterExecutor()`` the first
Ctrl-C does not wait for the jobs. The registry follows the truth."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustrix_core.registry import get_registry
from tests.edges.conftest import ROOT

HEAD = """
import sys
from clustrix_core import ClusterExecutor, cluster
from tests.edges import streamfuncs

PROFILE, MARK, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
slow = cluster(streamfuncs.started_then_sleep, profile=PROFILE, on_interrupt=MODE)
"""

CASES = {
    "call": "print('RESULT', slow(120, 1, MARK))\n",
    "map": "print('RESULT', slow.map([120, 120], [1, 2], [MARK, MARK], chunksize=1))\n",
    "executor-map": (
        "ex = ClusterExecutor(PROFILE, on_interrupt=MODE, stream_output=True)\n"
        "print('RESULT', list(ex.map(streamfuncs.started_then_sleep, [120, 120], [1, 2],"
        " [MARK, MARK], chunksize=1)))\n"
    ),
    "with": (
        "with ClusterExecutor(PROFILE, on_interrupt=MODE, stream_output=True) as ex:\n"
        "    futs = [ex.submit(streamfuncs.started_then_sleep, 120, i, MARK) for i in range(2)]\n"
        "print('RESULT', [f.result() for f in futs])\n"
    ),
}


def start(tmp_path: Path, case: str, profile: str, mode: str) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / f"{case}.py"
    script.write_text(HEAD + CASES[case])
    mark = tmp_path / "pid"
    proc = subprocess.Popen(
        [sys.executable, str(script), profile, str(mark), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return proc, mark


def wait_started(mark: Path, count: int, timeout: float = 120) -> list[int]:
    """The pids of the ``count`` running calls, once each has recorded itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p.read_text()) for p in mark.parent.glob(f"{mark.name}.*") if p.read_text()]
        if len(pids) >= count:
            return pids
        time.sleep(0.2)
    pytest.fail(f"the calls did not start within {timeout} s")


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str, float]:
    """One real SIGINT; (stdout, stderr, seconds until the process ended)."""
    time.sleep(1.0)  # the call is waiting for the job by now
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return out, err, time.monotonic() - sent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"the job processes {pids} still run after the Ctrl-C")
        time.sleep(0.1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_cancels_the_jobs_of_the_call(local: Path, tmp_path: Path, case: str) -> None:
    ncalls = 1 if case == "call" else 2
    proc, mark = start(tmp_path, case, "local", "cancel")
    pids = wait_started(mark, ncalls)
    out, err, took = interrupt(proc)
    assert proc.returncode in (-signal.SIGINT, 1, 130), (proc.returncode, err)
    assert "KeyboardInterrupt" in err
    assert "RESULT" not in out
    assert took < 20, f"the Ctrl-C waited {took:.0f} s for the jobs"
    lines = [ln for ln in err.splitlines() if ln.startswith("clustrix: ")]
    assert len(lines) == 1, err
    match = re.fullmatch(r"clustrix: interrupted \(Ctrl-C\): cancelled jobs? (.+)", lines[0])
    assert match, lines
    ids = re.findall(r"(\d{8}-\d{6}-[0-9a-f]{8}) \(local job \d+\)", match.group(1))
    records = {r.job_id: r for r in get_registry().list()}
    assert ids and set(ids) == set(records), (ids, list(records))
    assert {records[i].state for i in ids} == {"CANCELLED"}
    wait_gone(pids)


def test_detach_leaves_the_job_running_and_another_process_collects_it(
    local: Path, tmp_path: Path
) -> None:
    script = tmp_path / "detach.py"
    script.write_text(HEAD + "print('RESULT', slow(6, 42, MARK))\n")
    mark = tmp_path / "pid"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "local", str(mark), "detach"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    (pid,) = wait_started(mark, 1)
    out, err, took = interrupt(proc)
    assert took < 10 and "KeyboardInterrupt" in err and "RESULT" not in out
    (line,) = [ln for ln in err.splitlines() if ln.startswith("clustrix: ")]
    match = re.fullmatch(
        r"clustrix: interrupted \(Ctrl-C\): detached from job (\S+) \(local job \d+\), still "
        r"running; get the result later with `clustrix result (\S+)` or "
        r'clustrix_core.attach\("(\S+)"\).result\(\)',
        line,
    )
    assert match, line
    job_id = match.group(1)
    assert match.group(2) == match.group(3) == job_id
    assert alive(pid)
    assert get_registry().get(job_id).state == "SUBMITTED"
    got = subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", "result", job_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "42"
    assert get_registry().get(job_id).state == "COMPLETED"


def test_an_exception_leaving_a_with_block_does_not_wait_for_its_jobs(
    local: Path, tmp_path: Path
) -> None:
    code = (
        HEAD
        + """
import time
t0 = time.monotonic()
try:
    with ClusterExecutor(PROFILE) as ex:
        fut = ex.submit(streamfuncs.started_then_sleep, 120, 1, MARK)
        raise ValueError("boom")
except ValueError:
    pass
print("RESULT", round(time.monotonic() - t0), fut.cancelled())
"""
    )
    script = tmp_path / "exc.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script), "local", str(tmp_path / "pid"), "cancel"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    seconds, cancelled = done.stdout.split()[-2:]
    assert int(seconds) < 20 and cancelled == "True", done.stdout
    assert re.search(
        r"^clustrix: ValueError left the `with ClusterExecutor\(\)` block: cancelled job \S+",
        done.stderr,
        re.M,
    ), done.stderr
    assert [r.state for r in get_registry().list()] == ["CANCELLED"]


def test_ctrl_c_cancels_a_slurm_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import cluster_config
    from tests.faults.conftest import slurm_up, wait_for

    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("slurm")))
    slurm_up()
    proc, mark = start(tmp_path, "map", "slurm", "cancel")
    wait_started(mark, 2, timeout=180)
    out, err, took = interrupt(proc)
    assert "KeyboardInterrupt" in err and took < 30, (took, err)
    (line,) = [ln for ln in err.splitlines() if ln.startswith("clustrix: ")]
    match = re.fullmatch(
        r"clustrix: interrupted \(Ctrl-C\): cancelled job (\S+) \(slurm job (\S+)\)", line
    )
    assert match, line
    job_id, native = match.groups()
    assert get_registry().get(job_id).state == "CANCELLED"

    def gone_or_cancelled() -> bool:
        states = subprocess.run(
            ["squeue", "-h", "--states=all", "-r", "-j", native, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        return all(s in ("CANCELLED", "COMPLETING") for s in states)

    wait_for(gone_or_cancelled, 60)


def test_a_second_ctrl_c_exits_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Ctrl-C starts cancelling, and the cancel command hangs (an scancel that sleeps):
    a second Ctrl-C ends the program at once instead of waiting for it."""
    import shutil

    from tests.conftest import cluster_config
    from tests.faults.conftest import slurm_up

    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("slurm")))
    slurm_up()
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for program in ("sbatch", "squeue", "sacct", "scontrol"):
        (bin_dir / program).symlink_to(shutil.which(program) or f"/usr/bin/{program}")
    (bin_dir / "scancel").write_text("#!/bin/sh\nsleep 60\n")
    (bin_dir / "scancel").chmod(0o755)
    monkeypatch.setenv("CLUSTRIX_SLURM_BIN", str(bin_dir))
    proc, mark = start(tmp_path, "call", "slurm", "cancel")
    wait_started(mark, 1, timeout=180)
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # starts cancelling: scancel hangs
        time.sleep(2.0)
        assert proc.poll() is None, "the first Ctrl-C should still be cancelling"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        assert took < 5, f"the second Ctrl-C took {took:.1f} s"
        assert "KeyboardInterrupt" in err and "RESULT" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
        ours = [n for r in get_registry().list() for n in r.native_ids]  # this test's own
        if ours:
            subprocess.run(["scancel", *ours], check=False)
