"""Each failure reason a Kubernetes job can end with reaches the user as the right
``JobFailedError`` (state and message), against the API server emulator: OOMKilled (a real
memory limit, enforced by a cgroup), DeadlineExceeded, BackoffLimitExceeded, and pods stuck
pending (Unschedulable on a request larger than the node, ErrImagePull/ImagePullBackOff of an
image that does not exist, CreateContainerConfigError) that fail after ``pending_timeout`` with
their Job deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clustrix_core.errors import JobFailedError
from clustrix_core.executor import ClusterExecutor
from tests.k8s.conftest import TIMEOUT
from tests.k8s.test_k8s import wait_for

pytestmark = pytest.mark.usefixtures("use_k8s")


def hog(mb: int) -> int:
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def die(code: int) -> None:
    import os

    os._exit(code)


def failure(fut: Any) -> JobFailedError:
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    return info.value


def jobs_of(batch: Any, namespace: str, job_id: str) -> list[Any]:
    return list(
        batch.list_namespaced_job(namespace, label_selector=f"clustrix.io/job-id={job_id}").items
    )


def test_oom_killed(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors("k8s", memory="64MiB")
    err = failure(ex.submit(hog, 512))
    assert err.state == "OUT_OF_MEMORY", err
    assert "OOMKilled (exit status 137)" in str(err)
    assert "BackoffLimitExceeded" in str(err)


def test_deadline_exceeded_is_a_timeout(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors("k8s", time=2)
    err = failure(ex.submit(nap, 60))
    assert err.state == "TIMEOUT", err
    assert "DeadlineExceeded" in str(err)


def test_backoff_limit_exceeded_names_the_exit_status(
    executors: Callable[..., ClusterExecutor],
) -> None:
    ex = executors("k8s", retries=1)
    err = failure(ex.submit(die, 3))
    assert err.state == "FAILED", err
    assert "BackoffLimitExceeded" in str(err) and "exit status 3" in str(err), err


def test_map_fails_only_the_index_that_ran_out_of_memory(
    executors: Callable[..., ClusterExecutor],
) -> None:
    ex = executors("k8s", memory="64MiB")
    futures = ex.map_futures(hog, [1, 512, 2], chunksize=1)
    assert futures[0].result(timeout=TIMEOUT) == 1024 * 1024
    assert futures[2].result(timeout=TIMEOUT) == 2 * 1024 * 1024
    err = failure(futures[1])
    assert err.state == "OUT_OF_MEMORY", err
    assert "task 1" in str(err) and "OOMKilled (exit status 137)" in str(err), err


def test_map_time_limit_is_per_task(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors("k8s", time=3)
    futures = ex.map_futures(nap, [0.1, 60], chunksize=1)
    assert futures[0].result(timeout=TIMEOUT) == 0.1
    err = failure(futures[1])
    assert err.state == "TIMEOUT", err
    assert "DeadlineExceeded" in str(err), err


def test_unschedulable_fails_after_pending_timeout_with_the_schedulers_message(
    executors: Callable[..., ClusterExecutor], batch: Any, namespace: str
) -> None:
    ex = executors("k8s", cores=64, pending_timeout=2)  # the node has 16 cpus
    fut = ex.submit(abs, -1)
    err = failure(fut)
    assert err.state == "FAILED", err
    assert "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu." in str(err), err
    assert "pending_timeout" in str(err)
    wait_for(lambda: not jobs_of(batch, namespace, fut.job_id), what="the Job to be deleted")


def test_stuck_pending_is_not_failed_while_a_task_runs(
    executors: Callable[..., ClusterExecutor],
) -> None:
    """Pods of a map waiting for room that its own running pods hold are not stuck."""
    ex = executors("k8s", cores=8, pending_timeout=1.5)  # two fit on the 16-cpu node
    futures = ex.map_futures(nap, [2.5, 2.5, 2.5], chunksize=1)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [2.5, 2.5, 2.5]


@pytest.mark.parametrize("image", ["registry.invalid/clustrix/nosuch:1.0"])
def test_image_pull_error_names_the_image(
    executors: Callable[..., ClusterExecutor], batch: Any, namespace: str, image: str
) -> None:
    ex = executors("k8s", image=image, remote_python="3.11", pending_timeout=2)
    fut = ex.submit(abs, -1)
    err = failure(fut)
    assert err.state == "FAILED", err
    assert "ErrImagePull" in str(err) or "ImagePullBackOff" in str(err), err
    assert image in str(err), err
    wait_for(lambda: not jobs_of(batch, namespace, fut.job_id), what="the Job to be deleted")


def test_create_container_config_error(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors(
        "k8s",
        pending_timeout=2,
        annotations={
            "emulator.clustrix.test/simulate": "CreateContainerConfigError",
            "emulator.clustrix.test/message": 'secret "creds" not found',
        },
    )
    err = failure(ex.submit(abs, -1))
    assert err.state == "FAILED", err
    assert "CreateContainerConfigError" in str(err) and 'secret "creds" not found' in str(err)


def test_simulated_unschedulable_while_pending_is_in_the_status(
    executors: Callable[..., ClusterExecutor],
) -> None:
    """Before pending_timeout the job is PENDING with the reason (what `clustrix status` shows);
    another process re-attaching after clustrix gave up reads why from the Secret."""
    ex = executors(
        "k8s",
        pending_timeout=3,
        annotations={"emulator.clustrix.test/simulate": "Unschedulable"},
    )
    fut = ex.submit(abs, -1)
    sched = ex.backend.scheduler

    def pending_reason() -> str:
        [status] = sched.statuses(fut.job.submissions).values()
        return status.reason if status.state.name == "PENDING" else ""

    assert "Unschedulable: 0/1 nodes are available" in wait_for(pending_reason, what="PENDING")
    err = failure(fut)
    assert "Unschedulable" in str(err)
    from clustrix_k8s.scheduler import K8sScheduler

    other = K8sScheduler(profile=ex.profile, transport=ex.backend.transport)
    [status] = other.statuses(fut.job.submissions).values()
    assert status.state.name == "FAILED" and "Unschedulable" in status.reason, status
