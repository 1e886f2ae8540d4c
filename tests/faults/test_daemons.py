"""Faults 2 and 3 (issue 13): the scheduler's controller restarted or stopped for 30 s, and a
compute daemon killed while a job runs, on the real SLURM and SGE test clusters.

Controller down: status commands fail or hang meanwhile; the monitor reports each failure and
retries (every command bounded by ``command_timeout``); the result is collected once the
controller is back; with a short ``status_patience`` the future fails with a StatusError that
names the command, and the job is re-attached and collected afterwards.

Compute daemon killed: SLURM marks the node DOWN after ``SlurmdTimeout`` (10 s on the test
cluster) and the job ends NODE_FAIL: retried with ``retries > 0``, a JobFailedError naming
NODE_FAIL otherwise. Every outage is as short as the test needs; the daemon is brought back by
the cluster's up script in a ``finally`` (others share these daemons)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import clustrix_core
from clustrix_core.errors import JobFailedError, StatusError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.registry import get_registry
from tests.faults import daemons
from tests.faults.conftest import jobs_listing, wait_for

pytestmark = [pytest.mark.faults]


def sleepy(seconds: float, value: Any) -> Any:
    import time

    time.sleep(seconds)
    return value


def status_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "status query failed" in r.getMessage()]


def running(fut: Any) -> bool:
    return bool(fut.job.last_status) and all(
        str(st.state) == "RUNNING" for st in fut.job.last_status.values()
    )


# ---------------------------------------------------------------------------- fault 2: SLURM
def test_slurmctld_restarted_mid_job(
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    profiles("slurm")
    caplog.set_level(logging.WARNING, logger="clustrix_core")
    ex = make("slurm", command_timeout=5, status_patience=300, poll_max=1)
    fut = ex.submit(sleepy, 8, "after the restart")
    wait_for(lambda: running(fut), timeout=60)
    t0 = time.monotonic()
    with daemons.down("slurm", daemons.SLURMCTLD):
        wait_for(lambda: status_failures(caplog), timeout=30, every=0.1)  # reported, retried
    outage = time.monotonic() - t0
    assert fut.result(timeout=120) == "after the restart"
    assert get_registry().get(fut.job_id).state == "COMPLETED"
    print(f"slurmctld restart: outage {outage:.1f} s, {len(status_failures(caplog))} failed polls")


def test_slurmctld_stopped_30s(
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """30 s without a controller. The patient executor (status_patience 300 s) waits and
    collects; the impatient one (8 s) fails its future with a StatusError naming squeue, and the
    job is re-attached and collected once the controller is back. Every failed status query
    ended within its command_timeout (5 s), so the monitor polled on."""
    profiles("slurm")
    caplog.set_level(logging.WARNING, logger="clustrix_core")
    patient = make("slurm", command_timeout=5, status_patience=300, poll_max=1)
    impatient = make("slurm", command_timeout=4, status_patience=8, poll_max=1)
    assert patient.monitor is not impatient.monitor
    fut = patient.submit(sleepy, 5, "patient")
    other = impatient.submit(sleepy, 5, "re-attached")
    wait_for(lambda: running(fut) and running(other), timeout=60)
    with daemons.down("slurm", daemons.SLURMCTLD):
        t0 = time.monotonic()
        probe = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0 and "slurm" in probe.stderr.lower(), probe
        with pytest.raises(StatusError, match=r"squeue") as info:
            other.result(timeout=60)
        assert other.job_id in str(info.value) and "attach" in str(info.value)
        assert not fut.done()
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    failed = status_failures(caplog)
    assert len(failed) >= 4, failed
    assert fut.result(timeout=120) == "patient"
    # nothing lost: the impatient job ran to its end meanwhile and is still collected
    assert clustrix_core.attach(other.job_id).result(timeout=120) == "re-attached"
    listed = jobs_listing()
    assert listed[fut.job_id] == "COMPLETED" and listed[other.job_id] == "COMPLETED"


# ---------------------------------------------------------------------------- fault 2: SGE
def test_sge_qmaster_restarted_mid_job(
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    profiles("sge")
    caplog.set_level(logging.WARNING, logger="clustrix_core")
    ex = make("sge", command_timeout=5, status_patience=300, poll_max=1)
    fut = ex.submit(sleepy, 6, "after the qmaster restart")
    wait_for(lambda: running(fut), timeout=60)
    t0 = time.monotonic()
    try:
        daemons.stop_qmaster()
        wait_for(lambda: status_failures(caplog), timeout=30, every=0.1)
    finally:
        daemons.up("sge")  # waits for port 6444 to be released (~10 s after qconf -km)
    outage = time.monotonic() - t0
    assert fut.result(timeout=180) == "after the qmaster restart"
    assert get_registry().get(fut.job_id).state == "COMPLETED"
    print(f"qmaster restart: outage {outage:.1f} s, {len(status_failures(caplog))} failed polls")


# ---------------------------------------------------------------------------- fault 3: SLURM
def first_then_fast(marker: str) -> str:
    """Hangs on its first run (which the test breaks), returns at once on a later one."""
    import os
    import time

    first = not os.path.exists(marker)
    with open(marker, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if first:
        time.sleep(300)
    return "ran again"


def slurm_job_state(native_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-j", native_id, "-o", "%T"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def _kill_slurmd_until_node_fail(native_id: str) -> float:
    """SIGKILL slurmd (a crashed compute daemon) and keep it dead until the job is NODE_FAIL;
    then bring it back. The seconds the node was without its daemon."""
    t0 = time.monotonic()
    with daemons.down("slurm", daemons.SLURMD, signal.SIGKILL):
        wait_for(lambda: slurm_job_state(native_id) == "NODE_FAIL", timeout=90, every=0.5)
    wait_for(lambda: daemons.node_state() in ("idle", "mixed", "allocated"), timeout=60, every=0.5)
    return time.monotonic() - t0


@pytest.mark.parametrize("retries", [1, 0])
def test_slurmd_killed_node_fail(
    retries: int,
    tmp_path: Path,
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
) -> None:
    profiles("slurm")
    # --no-requeue: SLURM would requeue the job itself (JobRequeue=1), hiding the NODE_FAIL
    ex = make("slurm", retries=retries, directives=("--no-requeue",), command_timeout=10)
    marker = tmp_path / "runs"
    fut = ex.submit(first_then_fast, str(marker))
    wait_for(marker.exists, timeout=60)
    native = fut.job.submissions[0].native_id
    down_for = _kill_slurmd_until_node_fail(native)
    if retries:
        assert fut.result(timeout=120) == "ran again"
        assert fut.job.submissions[0].native_id != native  # a new submission
        assert get_registry().get(fut.job_id).state == "COMPLETED"
    else:
        with pytest.raises(JobFailedError, match="NODE_FAIL") as info:
            fut.result(timeout=120)
        assert info.value.state == "NODE_FAIL"
        assert get_registry().get(fut.job_id).state == "FAILED"
    print(f"slurmd dead for {down_for:.1f} s (retries={retries})")


# ---------------------------------------------------------------------------- fault 3: SGE
def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(") ")[2].split()[1])


@pytest.mark.parametrize("retries", [1, 0])
def test_sge_execd_killed_with_its_job(
    retries: int,
    tmp_path: Path,
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
) -> None:
    """The execution host crashes: sge_execd and the job's shepherd are SIGKILLed while the job
    runs; the execd comes back (up script). Grid Engine then reports how the job ended, and the
    user gets a JobFailedError carrying that state and reason; the registry knows."""
    profiles("sge")
    ex = make("sge", command_timeout=10, status_patience=300, retries=retries)
    marker = tmp_path / "runs"
    fut = ex.submit(first_then_fast, str(marker))
    wait_for(lambda: marker.exists() and marker.read_text().strip(), timeout=60)
    runner_pid = int(marker.read_text().split()[0])
    shepherd = _parent(runner_pid)
    while daemons.alive(shepherd, "bash") or not daemons.alive(shepherd, "sge_shepherd"):
        shepherd = _parent(shepherd)
        assert shepherd > 1, "no sge_shepherd above the job"
    t0 = time.monotonic()
    try:
        daemons.stop(daemons.execd(), signal.SIGKILL)
        os.kill(shepherd, signal.SIGKILL)
        os.kill(runner_pid, signal.SIGKILL)
    finally:
        daemons.up("sge")
    if retries:  # NODE_FAIL is retryable: run again on the restarted host
        assert fut.result(timeout=240) == "ran again"
        assert get_registry().get(fut.job_id).state == "COMPLETED"
        print(f"execd crash: {time.monotonic() - t0:.1f} s to the retried result")
        return
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=240)
    print(f"execd crash: {time.monotonic() - t0:.1f} s to the error: {info.value}")
    assert info.value.state == "NODE_FAIL" and "execution host lost the job" in str(info.value)
    assert get_registry().get(fut.job_id).state == "FAILED"
