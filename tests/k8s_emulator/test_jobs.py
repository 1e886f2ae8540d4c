"""Jobs, pods and logs through the official client."""

from __future__ import annotations

from typing import Any

from .conftest import conditions, finished, job_body


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
