"""Re-attach to a Kubernetes job from other processes, through the registry and the labels on
what clustrix created: a process submits and is SIGKILLed; a second Python process collects the
result with ``clustrix_core.attach(job_id).result()``, and the ``clustrix status``, ``logs`` and
``cancel`` commands (real subprocesses, same CLUSTRIX_CONFIG and CLUSTRIX_STATE_DIR) work on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.k8s.conftest import TIMEOUT

pytestmark = pytest.mark.usefixtures("use_k8s")

SUBMITTER = textwrap.dedent(
    """
    import sys, time
    from clustrix_core import ClusterExecutor

    def work(x, pause):
        import time
        print("hello from the pod", x, flush=True)
        time.sleep(pause)
        return x * 2

    ex = ClusterExecutor("k8s")
    fut = ex.submit(work, int(sys.argv[1]), float(sys.argv[2]))
    print("JOB", fut.job_id, flush=True)
    time.sleep(3600)
    """
)

ATTACHER = textwrap.dedent(
    """
    import sys
    import clustrix_core

    print("RESULT", repr(clustrix_core.attach(sys.argv[1]).result(timeout=float(sys.argv[2]))))
    """
)


def run_script(tmp_path: Path, code: str, *args: str, wait: bool = True) -> Any:
    """``code`` as a script file in a new Python process (same environment: config, state)."""
    script = tmp_path / f"script-{time.monotonic_ns()}.py"
    script.write_text(code)
    argv = [sys.executable, str(script), *args]
    if wait:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT + 60, cwd=ROOT, env=os.environ
        )
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def clustrix(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``clustrix`` command in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def submit_and_kill(tmp_path: Path, x: int, pause: float) -> str:
    """A process submits ``work(x, pause)``, prints the job id and is SIGKILLed."""
    proc = run_script(tmp_path, SUBMITTER, str(x), str(pause), wait=False)
    assert proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    job_id = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("JOB "):
            job_id = line.split()[1]
            break
        if not line and proc.poll() is not None:
            break
    if not job_id:
        proc.kill()
        pytest.fail(f"the submitter printed no job id: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    return job_id


def until(fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_attach_result_status_and_logs_from_other_processes(
    tmp_path: Path, batch: Any, namespace: str
) -> None:
    job_id = submit_and_kill(tmp_path, 21, 3.0)
    selector = f"app.kubernetes.io/managed-by=clustrix,clustrix.io/job-id={job_id}"
    assert batch.list_namespaced_job(namespace, label_selector=selector).items  # still there

    status = clustrix("status", job_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{job_id}: "), status.stdout
    assert any(s in status.stdout for s in ("PENDING", "RUNNING", "COMPLETED")), status.stdout

    # the pod's output while it runs (or once it ended), read through the labels
    def printed() -> str:
        logs = clustrix("logs", job_id)
        assert logs.returncode == 0, logs.stderr
        return logs.stdout if "hello from the pod 21" in logs.stdout else ""

    assert until(printed), clustrix("logs", job_id)

    done = run_script(tmp_path, ATTACHER, job_id, str(TIMEOUT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT 42" in done.stdout, done.stdout + done.stderr

    status = clustrix("status", job_id)
    assert status.returncode == 0 and "COMPLETED" in status.stdout, status.stdout + status.stderr
    logs = clustrix("logs", job_id)  # after cleanup: the tail the collecting process kept
    assert logs.returncode == 0 and "hello from the pod 21" in logs.stdout, logs.stdout
    assert "clustrix-result" not in logs.stdout.lower()  # the framed outcome is not output


def test_cli_cancel_from_another_process(
    tmp_path: Path, batch: Any, core: Any, namespace: str
) -> None:
    job_id = submit_and_kill(tmp_path, 1, 300.0)
    selector = f"app.kubernetes.io/managed-by=clustrix,clustrix.io/job-id={job_id}"
    assert until(
        lambda: [
            p
            for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if p.status.phase == "Running"
        ]
    ), "the job's pod never ran"

    cancelled = clustrix("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled {job_id}" in cancelled.stdout, cancelled.stdout
    # the Job and its pods go (foreground deletion)
    assert until(
        lambda: (
            not batch.list_namespaced_job(namespace, label_selector=selector).items
            and not core.list_namespaced_pod(namespace, label_selector=selector).items
        )
    ), "the Job or its pods are still there"

    status = clustrix("status", job_id)
    assert status.returncode == 0 and "CANCELLED" in status.stdout, status.stdout + status.stderr
    again = clustrix("cancel", job_id)
    assert again.returncode == 0 and "nothing to cancel" in again.stdout, again.stdout
    # a process attaching now learns that it was cancelled rather than waiting for ever
    done = run_script(tmp_path, ATTACHER, job_id, "60")
    assert done.returncode != 0
    assert "Cancel" in done.stderr or "CANCELLED" in done.stderr, done.stderr[-2000:]
