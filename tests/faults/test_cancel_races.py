"""Fault 8 (issue 13): cancel races on the real SLURM and SGE test clusters. Cancel while the
job is being submitted, while it finishes, and twice; cancel of a map while some tasks have
finished: finished results stay available, the rest are CANCELLED on the scheduler."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import clustrix_core
from clustrix_core.errors import JobFailedError
from clustrix_core.executor import FINAL_RECORD_STATES, ClusterExecutor
from clustrix_core.registry import get_registry
from tests.faults.conftest import clustrix, records, wait_for

pytestmark = [pytest.mark.faults]


def sleepy(seconds: float, value: Any) -> Any:
    import time

    time.sleep(seconds)
    return value


def squeue_states(native_id: str) -> dict[str, str]:
    """Array task (or job) id -> SLURM state, for every state squeue still remembers."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-r", "-j", native_id, "-o", "%i %T"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def in_qstat(native_id: str) -> bool:
    out = subprocess.run(["qstat"], capture_output=True, text=True, timeout=30).stdout
    return any(line.split()[:1] == [native_id] for line in out.splitlines())


def test_cancel_while_being_submitted(
    profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    """`clustrix cancel` (another process) while the submitting process is inside the
    scheduler's submit: the job the scheduler then accepts is cancelled at once."""
    profiles("slurm")
    ex = make("slurm")
    scheduler = ex.backend.scheduler
    real_submit = scheduler.submit
    release = threading.Event()

    def slow_submit(job: Any) -> Any:
        assert release.wait(60)
        return real_submit(job)

    scheduler.submit = slow_submit  # type: ignore[method-assign]
    with cf.ThreadPoolExecutor(1) as pool:
        submitting = pool.submit(ex.submit, sleepy, 120, "never")
        job_id = wait_for(lambda: next(iter(records()), None), timeout=30)
        done = clustrix("cancel", job_id)
        assert done.returncode == 0 and "cancelled" in done.stdout, done
        release.set()
        fut = submitting.result(timeout=60)
    assert fut.cancelled()
    native = fut.job.submissions[0].native_id
    wait_for(lambda: squeue_states(native).get(native) == "CANCELLED", timeout=30)
    wait_for(lambda: get_registry().get(job_id).state == "CANCELLED", timeout=30)
    assert ex.submit(sleepy, 0, "monitor fine").result(timeout=60) == "monitor fine"


@pytest.mark.parametrize("cluster", ["slurm", "sge"])
def test_cancel_twice(
    cluster: str, profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    profiles(cluster)
    ex = make(cluster)
    fut = ex.submit(sleepy, 120, "never")
    wait_for(lambda: fut.job.last_status, timeout=60)
    assert fut.cancel() and fut.cancel()
    assert fut.cancelled()
    assert clustrix_core.attach(fut.job_id).cancel() is False  # recorded CANCELLED: nothing sent
    again = clustrix("cancel", fut.job_id)
    assert again.returncode == 0 and "already finished (CANCELLED)" in again.stdout, again
    native = fut.job.submissions[0].native_id
    if cluster == "slurm":
        wait_for(lambda: squeue_states(native).get(native) == "CANCELLED", timeout=30)
    else:
        wait_for(lambda: not in_qstat(native), timeout=30)
    wait_for(lambda: fut.job.finished, timeout=60)
    assert get_registry().get(fut.job_id).state == "CANCELLED"


def test_cancel_while_it_finishes(
    profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    """Cancel the moment the result file appears, before the monitor delivered it: the future
    is either cancelled or has its value, the record ends in a final state, and the monitor
    goes on serving other jobs."""
    profiles("slurm")
    ex = make("slurm", poll_min=0.5, poll_max=0.5)
    outcomes = []
    for i in range(3):
        fut = ex.submit(sleepy, 0.3, i)
        result_file = Path(fut.job.location, "result.0")
        wait_for(result_file.exists, timeout=60, every=0.01)
        fut.cancel()
        if fut.cancelled():
            outcomes.append("cancelled")
        else:
            assert fut.result(timeout=60) == i
            outcomes.append("value")
        wait_for(
            lambda f=fut: get_registry().get(f.job_id).state in FINAL_RECORD_STATES, timeout=60
        )
    assert ex.submit(sleepy, 0, "after").result(timeout=60) == "after"
    print("cancel as it finishes:", outcomes)


@pytest.mark.parametrize("cluster", ["slurm", "sge"])
def test_cancel_map_with_finished_tasks(
    cluster: str, profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    profiles(cluster)
    ex = make(cluster, chunksize=1)
    futs = ex.map_futures(sleepy, [0.2, 0.2, 120, 120], [0, 1, 2, 3])
    cf.wait(futs[:2], timeout=120)
    assert [f.result(timeout=0) for f in futs[:2]] == [0, 1]
    cancelled = [f.cancel() for f in futs]
    assert cancelled == [False, False, True, True]
    native = futs[0].job.submissions[0].native_id
    if cluster == "slurm":
        seen: list[dict[str, str]] = []

        def tasks_cancelled() -> bool:
            states = squeue_states(native)
            seen.append(states)
            return (
                states.get(f"{native}_2") == states.get(f"{native}_3") == "CANCELLED"
                and states.get(f"{native}_0") == states.get(f"{native}_1") == "COMPLETED"
            )

        try:
            wait_for(tasks_cancelled, timeout=60)
        except BaseException:
            print("squeue states, first and last:", seen[:1], seen[-1:])
            raise
    else:
        wait_for(lambda: not in_qstat(native), timeout=60)
    job = futs[0].job
    wait_for(lambda: job.finished, timeout=120)
    assert get_registry().get(job.record.job_id).state == "CANCELLED"
    # the finished results stay available to a re-attach
    handle = clustrix_core.attach(job.record.job_id)
    assert [f.result(timeout=120) for f in handle.futures[:2]] == [0, 1]
    for f in handle.futures[2:]:
        with pytest.raises((JobFailedError, cf.CancelledError)):
            f.result(timeout=120)
    time.sleep(0)
