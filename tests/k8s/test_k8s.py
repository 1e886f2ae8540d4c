"""clustrix-k8s end to end against the Kubernetes API server emulator: values, exceptions, map
order, labels on what clustrix creates (seen through the official client), cancel, and a plugin
entry point that does not import ``kubernetes``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.executor import ClusterExecutor
from clustrix_core.scheduler import JobState
from tests.k8s.conftest import TIMEOUT

pytestmark = pytest.mark.usefixtures("use_k8s")


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Boom(ValueError):
    pass


def test_trivial_call_returns_value(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors("k8s")
    assert ex.submit(pow, 2, 10).result(timeout=TIMEOUT) == 1024


def test_remote_exception_keeps_its_type(executors: Callable[..., ClusterExecutor]) -> None:
    def fail(x: int) -> None:
        raise KeyError(f"no {x}")

    ex = executors("k8s")
    with pytest.raises(KeyError, match="no 7"):
        ex.submit(fail, 7).result(timeout=TIMEOUT)


def test_map_keeps_order(executors: Callable[..., ClusterExecutor]) -> None:
    def square(x: int) -> int:
        return x * x

    ex = executors("k8s")
    futures = ex.map_futures(square, range(5), chunksize=2)
    assert len({f.job_id for f in futures}) == 1 and futures[0].job.record.ntasks == 3
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 4, 9, 16]


def test_secret_and_job_carry_the_labels(
    executors: Callable[..., ClusterExecutor], core: Any, batch: Any, namespace: str
) -> None:
    ex = executors("k8s", cleanup="never")
    fut = ex.submit(abs, -3)
    assert fut.result(timeout=TIMEOUT) == 3
    job_id = fut.job_id
    selector = f"app.kubernetes.io/managed-by=clustrix,clustrix.io/job-id={job_id}"
    secrets = core.list_namespaced_secret(namespace, label_selector=selector).items
    jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert [s.metadata.name for s in secrets] == [fut.job.location]
    assert len(jobs) == 1 and len(pods) >= 1
    secret = secrets[0]
    assert set(secret.data) >= {"key", "runner.py", "payload.bin", "calls.0"}
    for obj in (secret, jobs[0], pods[0]):
        assert obj.metadata.labels["app.kubernetes.io/managed-by"] == "clustrix"
        assert obj.metadata.labels["clustrix.io/job-id"] == job_id
    assert jobs[0].spec.template.metadata.labels["clustrix.io/job-id"] == job_id
    volume = jobs[0].spec.template.spec.volumes[0]
    assert volume.secret.secret_name == secret.metadata.name
    assert jobs[0].spec.template.spec.containers[0].volume_mounts[0].read_only
    # cleanup deletes the Job (and its pods) and the Secret
    ex.backend.store.cleanup(fut.job.location)
    wait_for(
        lambda: (
            not batch.list_namespaced_job(namespace, label_selector=selector).items
            and not core.list_namespaced_secret(namespace, label_selector=selector).items
        ),
        what="the Job and Secret to go",
    )


def test_map_is_one_indexed_job(
    executors: Callable[..., ClusterExecutor], batch: Any, namespace: str
) -> None:
    ex = executors("k8s", cleanup="never", max_parallel=2)
    futures = [ex.submit(abs, -1)]  # warm up the probe
    assert futures[0].result(timeout=TIMEOUT) == 1
    results = list(ex.map(abs, [-1, -2, -3], chunksize=1, timeout=TIMEOUT))
    assert results == [1, 2, 3]
    job = batch.list_namespaced_job(
        namespace, label_selector="app.kubernetes.io/managed-by=clustrix"
    ).items
    indexed = [j for j in job if j.spec.completion_mode == "Indexed" and j.spec.completions == 3]
    assert indexed and indexed[-1].spec.parallelism == 2


def test_cancel_deletes_the_job(
    executors: Callable[..., ClusterExecutor], batch: Any, namespace: str
) -> None:
    def sleeper() -> None:
        import time as _time

        _time.sleep(300)

    ex = executors("k8s")
    fut = ex.submit(sleeper)
    name = fut.job.submissions[0].native_id
    wait_for(
        lambda: (
            batch.list_namespaced_job(
                namespace, label_selector=f"clustrix.io/job-id={fut.job_id}"
            ).items
        ),
        what="the Job",
    )
    assert fut.cancel()
    wait_for(
        lambda: (
            not [
                j
                for j in batch.list_namespaced_job(
                    namespace, label_selector="app.kubernetes.io/managed-by=clustrix"
                ).items
                if j.metadata.name == name
            ]
        ),
        what=f"Job {name} to be deleted",
    )
    # another process knows it was cancelled from the mark on the job's Secret
    from clustrix_k8s import scheduler as k8s_scheduler

    k8s_scheduler._cancelled.discard((ex.backend.scheduler.namespace, name))
    other = k8s_scheduler.K8sScheduler(profile=ex.profile, transport=ex.backend.transport)
    [status] = other.statuses(fut.job.submissions).values()
    assert status.state is JobState.CANCELLED, status


def test_plugin_listing_does_not_import_kubernetes(use_k8s: Path) -> None:
    code = (
        "import sys\n"
        "from clustrix_core.cli import main\n"
        "try:\n"
        "    main(['plugins'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('KUBERNETES' if any(m == 'kubernetes' or m.startswith('kubernetes.') "
        "for m in sys.modules) else 'CLEAN')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "k8s" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "CLEAN", out.stdout + out.stderr
