"""Fault 1 (issue 13): the client process is SIGKILLed after submitting a map, or inside the
scheduler's submit. A new process finds the job (``clustrix jobs``, ``attach``) and collects
every result, in order, including those of tasks that finished while no client ran; a job
killed before its submission is recorded as such and nothing runs without a record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import clustrix_core
from clustrix_core.registry import get_registry
from tests.conftest import ROOT
from tests.faults.conftest import clustrix, jobs_listing, wait_for

pytestmark = [pytest.mark.faults]

CHILD = textwrap.dedent(
    """
    import sys, time
    from clustrix_core import ClusterExecutor

    def work(i):
        import time
        time.sleep(1 + 0.7 * i)  # tasks end one after the other, long after the kill
        return i * i

    ex = ClusterExecutor(sys.argv[1], chunksize=1)
    futures = ex.map_futures(work, range(int(sys.argv[2])))
    print("JOB", futures[0].job_id, flush=True)
    time.sleep(3600)
    """
)


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """``code`` run as a script file (so its functions have source, whatever the strategy)."""
    script = Path(os.environ["CLUSTRIX_STATE_DIR"]).parent / f"child-{time.monotonic_ns()}.py"
    script.write_text(code)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def read_marker(proc: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    """The rest of the child's first stdout line that starts with ``marker``."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(marker):
            return line[len(marker) :].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"the child never printed {marker!r}; stderr:\n{proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


@pytest.mark.parametrize("cluster", ["slurm", "sge", "ssh"])
def test_client_killed_mid_map(cluster: str, profiles: Callable[..., Path]) -> None:
    profiles(cluster)
    n = 6
    child = spawn(CHILD, cluster, str(n))
    job_id = read_marker(child, "JOB ")
    sigkill(child)  # right after submission: no client watches the job any more
    started = time.monotonic()

    listed = jobs_listing()  # another process finds it
    assert listed.get(job_id) == "SUBMITTED", listed
    record = get_registry().get(job_id)
    assert record.ncalls == n and record.native_ids

    # some tasks finish while no client runs
    handle = clustrix_core.attach(job_id)
    wait_for(lambda: handle.executor.results_ready(record), timeout=120, every=0.3)
    assert handle.result(timeout=180) == [i * i for i in range(n)]
    assert time.monotonic() - started < 200
    assert get_registry().get(job_id).state == "COMPLETED"
    assert jobs_listing()[job_id] == "COMPLETED"


SLOW_SUBMIT = textwrap.dedent(
    """
    import os, signal, sys, time
    from clustrix_core import ClusterExecutor

    where = sys.argv[2]
    ex = ClusterExecutor(sys.argv[1])
    scheduler = ex.backend.scheduler
    real_submit, real_run = scheduler.submit, scheduler.run

    def submit(job):
        print("STAGED", job.job_id, job.location, flush=True)
        if where == "before":
            time.sleep(3600)  # killed here: inside submit, before the scheduler heard of it
        return real_submit(job)

    def run(argv, **kw):
        result = real_run(argv, **kw)
        if where == "after" and os.path.basename(argv[0]) in ("sbatch", "qsub"):
            print("ACCEPTED", result.stdout.strip(), flush=True)
            time.sleep(3600)  # killed here: the scheduler accepted it, the record lacks its id
        return result

    scheduler.submit, scheduler.run = submit, run

    def work():
        return 42

    ex.submit(work)
    """
)


def _scheduler_jobs_in(cluster: str, location: str) -> list[str]:
    """Native ids of the scheduler's jobs (any state) whose working directory is ``location``."""
    if cluster == "slurm":
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i %Z %T"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return [line.split()[0] for line in out.splitlines() if f" {location} " in f"{line} "]
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=60).stdout
    ids = []
    import re

    for number in re.findall(r"<JB_job_number>(\d+)</JB_job_number>", out):
        info = subprocess.run(["qstat", "-j", number], capture_output=True, text=True).stdout
        if location in info:
            ids.append(number)
    return ids


@pytest.mark.parametrize("cluster", ["slurm", "sge"])
def test_client_killed_inside_submit(cluster: str, profiles: Callable[..., Path]) -> None:
    """Killed after the registry insert, before the scheduler heard of the job: the record
    says STAGED and `clustrix status` explains it; no job of that directory exists."""
    profiles(cluster)
    child = spawn(SLOW_SUBMIT, cluster, "before")
    job_id, location = read_marker(child, "STAGED ").split()
    status = clustrix("status", job_id)  # while the submitting process still lives
    assert status.returncode == 0, status.stderr
    assert "STAGED" in status.stdout and "being submitted" in status.stdout, status.stdout
    sigkill(child)

    assert jobs_listing()[job_id] == "STAGED"
    record = get_registry().get(job_id)
    assert record.state == "STAGED" and not record.submissions
    status = clustrix("status", job_id)
    assert status.returncode == 0, status.stderr
    text = status.stdout
    assert "STAGED" in text and "never submitted" in text and "ended" in text, text
    assert _scheduler_jobs_in(cluster, location) == []
    with pytest.raises(clustrix_core.ClustrixError, match="never accepted by the scheduler"):
        clustrix_core.attach(job_id).result(timeout=5)


@pytest.mark.parametrize("cluster", ["slurm", "sge"])
def test_client_killed_after_scheduler_accepted(
    cluster: str, profiles: Callable[..., Path]
) -> None:
    """Killed between the scheduler's acceptance and the registry update: the job ran without
    its native id on record; `clustrix status` says what its job directory shows."""
    profiles(cluster)
    child = spawn(SLOW_SUBMIT, cluster, "after")
    job_id, location = read_marker(child, "STAGED ").split()
    accepted = read_marker(child, "ACCEPTED ")
    sigkill(child)
    try:
        record = get_registry().get(job_id)
        assert record.state == "STAGED" and not record.submissions
        # the job runs anyway: its result appears in the job directory the record names
        wait_for(lambda: Path(location, "result.0").exists(), timeout=120, every=0.3)
        text = clustrix("status", job_id).stdout
        assert "STAGED" in text and "task(s) 0" in text and location in text, text
    finally:
        subprocess.run(
            ["scancel" if cluster == "slurm" else "qdel", accepted.split(".")[0].split(";")[0]],
            capture_output=True,
        )
