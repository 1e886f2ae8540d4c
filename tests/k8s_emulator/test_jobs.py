"""Jobs, pods and logs through the official client."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Emulator, conditions, finished, job_body, wait_for


def test_secret_job_completes_and_logs_tail(core: Any, batch: Any, ns: str) -> None:
    core.create_namespaced_secret(
        namespace=ns,
        body={"metadata": {"name": "payload"}, "stringData": {"key": "s3cret", "other": "x"}},
    )
    script = (
        "import os, stat\n"
        "p = '/var/run/clustrix/key'\n"
        "print('mode', oct(stat.S_IMODE(os.stat(p).st_mode)))\n"
        "for i in range(5): print('line', i)\n"
        "print('secret', open(p).read())\n"
    )
    body = job_body(
        "reader",
        ["python", "-c", script],
        container={
            "volumeMounts": [
                {"name": "payload", "mountPath": "/var/run/clustrix", "readOnly": True}
            ]
        },
        pod={
            "volumes": [
                {"name": "payload", "secret": {"secretName": "payload", "defaultMode": 0o400}}
            ]
        },
        backoffLimit=0,
    )
    created = batch.create_namespaced_job(namespace=ns, body=body)
    assert (
        created.metadata.uid
        and created.metadata.resource_version
        and created.metadata.creation_timestamp
    )
    assert created.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid
    }
    job = finished(batch, ns, "reader")
    conds = conditions(job)
    assert "Complete" in conds and "Failed" not in conds, job.status
    assert job.status.succeeded == 1 and not job.status.failed and job.status.completion_time
    pods = core.list_namespaced_pod(namespace=ns, label_selector="job-name=reader").items
    assert len(pods) == 1
    pod = pods[0]
    assert (
        pod.metadata.name.startswith("reader-")
        and pod.metadata.labels["controller-uid"] == created.metadata.uid
    )
    assert (
        pod.metadata.owner_references[0].kind == "Job"
        and pod.metadata.owner_references[0].controller
    )
    assert pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    full = core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns)
    assert full.splitlines()[0] == "mode 0o400"
    assert "line 0" in full
    tail = core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns, tail_lines=2)
    assert tail == "line 4\nsecret s3cret\n"


def test_indexed_job_three_completions(core: Any, batch: Any, ns: str) -> None:
    body = job_body(
        "idx",
        ["python", "-c", "import os; print('index', os.environ['JOB_COMPLETION_INDEX'])"],
        completionMode="Indexed",
        completions=3,
        parallelism=3,
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    job = finished(batch, ns, "idx")
    assert "Complete" in conditions(job), job.status
    assert job.status.completed_indexes == "0-2"
    assert job.status.succeeded == 3
    pods = core.list_namespaced_pod(namespace=ns, label_selector="job-name=idx").items
    assert len(pods) == 3
    seen = set()
    for pod in pods:
        index = pod.metadata.labels["batch.kubernetes.io/job-completion-index"]
        assert pod.metadata.annotations["batch.kubernetes.io/job-completion-index"] == index
        assert pod.metadata.name.startswith(f"idx-{index}-")
        log = core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns)
        assert log == f"index {index}\n"
        seen.add(index)
    assert seen == {"0", "1", "2"}


def test_backoff_limit_exceeded(core: Any, batch: Any, ns: str) -> None:
    body = job_body(
        "fails", ["python", "-c", "import sys; print('boom'); sys.exit(3)"], backoffLimit=1
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    job = finished(batch, ns, "fails")
    failed = conditions(job)["Failed"]
    assert failed.reason == "BackoffLimitExceeded"
    assert failed.message == "Job has reached the specified backoff limit"
    assert job.status.failed == 2 and not job.status.succeeded and not job.status.active
    pods = core.list_namespaced_pod(namespace=ns, label_selector="job-name=fails").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed"
        term = pod.status.container_statuses[0].state.terminated
        assert (term.exit_code, term.reason) == (3, "Error")


def test_backoff_limit_per_index(core: Any, batch: Any, ns: str) -> None:
    script = "import os, sys; sys.exit(1 if os.environ['JOB_COMPLETION_INDEX'] == '1' else 0)"
    body = job_body(
        "perindex",
        ["python", "-c", script],
        completionMode="Indexed",
        completions=3,
        parallelism=3,
        backoffLimitPerIndex=1,
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    job = finished(batch, ns, "perindex")
    assert conditions(job)["Failed"].reason == "FailedIndexes"
    assert job.status.completed_indexes == "0,2"
    assert job.status.failed_indexes == "1"
    assert job.status.failed == 2  # index 1 ran twice


def test_active_deadline_exceeded(core: Any, batch: Any, ns: str) -> None:
    body = job_body(
        "slow", ["python", "-c", "import time; time.sleep(60)"], activeDeadlineSeconds=1
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    job = finished(batch, ns, "slow", timeout=20)
    failed = conditions(job)["Failed"]
    assert failed.reason == "DeadlineExceeded"
    assert failed.message == "Job was active longer than specified deadline"
    assert not job.status.active
    # the running pod was killed (and, being deleted, is gone)
    assert wait_for(
        lambda: (
            not [
                p
                for p in core.list_namespaced_pod(
                    namespace=ns, label_selector="job-name=slow"
                ).items
                if p.status.phase == "Running"
            ]
        ),
        10,
        "the pod to stop",
    )


def test_memory_limit_oom_killed(core: Any, batch: Any, ns: str) -> None:
    script = "b = b'x' * (400 * 1024 * 1024); print(len(b))"
    body = job_body(
        "hog",
        ["python", "-c", script],
        container={"resources": {"limits": {"memory": "64Mi", "cpu": "1"}}},
        backoffLimit=0,
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    job = finished(batch, ns, "hog")
    assert conditions(job)["Failed"].reason == "BackoffLimitExceeded"
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=hog").items
    term = pod.status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("OOMKilled", 137)
    assert pod.status.qos_class == "Guaranteed"


def test_ttl_after_finished_deletes_job_and_pods(core: Any, batch: Any, ns: str) -> None:
    body = job_body("short", ["python", "-c", "pass"], ttlSecondsAfterFinished=0)
    batch.create_namespaced_job(namespace=ns, body=body)
    wait_for(lambda: not batch.list_namespaced_job(namespace=ns).items, 20, "the job to go")
    wait_for(lambda: not core.list_namespaced_pod(namespace=ns).items, 20, "its pods to go")


def test_logs_follow_streams_until_exit(core: Any, batch: Any, ns: str) -> None:
    script = (
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.3)\n"
    )
    batch.create_namespaced_job(namespace=ns, body=job_body("ticker", ["python", "-c", script]))

    def running_pod() -> Any:
        pods = core.list_namespaced_pod(namespace=ns, label_selector="job-name=ticker").items
        return pods and pods[0].status.phase == "Running" and pods[0]

    pod = wait_for(running_pod, 20, "a running pod")
    resp = core.read_namespaced_pod_log(
        name=pod.metadata.name, namespace=ns, follow=True, _preload_content=False
    )
    lines = [line.decode() for line in resp.stream() if line]
    text = "".join(lines)
    assert text == "tick 0\ntick 1\ntick 2\n"
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_cross_version_image_map(core: Any, batch: Any, ns: str, emulator: Emulator) -> None:
    emu_config = emulator.admin("GET", "config")
    mapped = [m for m in emu_config["images"] if m[0] == "python:3.6-*"]
    if not mapped:
        pytest.skip("no local Python 3.6 (pyenv) mapped to python:3.6-* images")
    body = job_body(
        "py36",
        ["python", "-c", "import sys; print(sys.version_info[:2])"],
        container={"image": "python:3.6-slim"},
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    assert "Complete" in conditions(finished(batch, ns, "py36"))
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=py36").items
    assert core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns) == "(3, 6)\n"
    assert pod.status.container_statuses[0].image == "docker.io/library/python:3.6-slim"


def test_missing_executable_is_a_start_error(core: Any, batch: Any, ns: str) -> None:
    batch.create_namespaced_job(
        namespace=ns, body=job_body("noexe", ["no-such-program-here"], backoffLimit=0)
    )
    assert conditions(finished(batch, ns, "noexe"))["Failed"].reason == "BackoffLimitExceeded"
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=noexe").items
    term = pod.status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("StartError", 128)
    assert 'exec: "no-such-program-here": executable file not found in $PATH' in term.message
