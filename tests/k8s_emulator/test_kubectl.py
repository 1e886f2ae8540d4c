"""kubectl (the real binary) against the emulator."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from .conftest import conditions, finished, job_body


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.skip("kubectl is not installed (tests/clusters/k8s/up installs kubernetes-client)")
    proc = subprocess.run(
        [exe, "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_kubectl_get_jobs_pods_by_label(kubeconfig: str, core: Any, batch: Any, ns: str) -> None:
    batch.create_namespaced_job(
        namespace=ns,
        body=job_body("labelled", ["python", "-c", "print('hi')"], labels={"app": "x"}),
    )
    batch.create_namespaced_job(
        namespace=ns, body=job_body("other", ["python", "-c", "pass"], labels={"app": "y"})
    )
    assert "Complete" in conditions(finished(batch, ns, "labelled"))
    out = json.loads(kubectl(kubeconfig, "-n", ns, "get", "jobs,pods", "-l", "app=x", "-o", "json"))
    assert out["kind"] == "List"
    kinds = sorted((i["kind"], i["metadata"]["name"].split("-")[0]) for i in out["items"])
    assert kinds == [("Job", "labelled"), ("Pod", "labelled")]
    job = next(i for i in out["items"] if i["kind"] == "Job")
    assert job["status"]["succeeded"] == 1
    table = kubectl(kubeconfig, "-n", ns, "get", "jobs,pods", "-l", "app=x")
    assert "job.batch/labelled" in table and "Completed" in table
    pod = next(i for i in out["items"] if i["kind"] == "Pod")["metadata"]["name"]
    assert kubectl(kubeconfig, "-n", ns, "logs", pod) == "hi\n"


def test_kubectl_apply_and_delete(kubeconfig: str, core: Any, ns: str) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": ns},
            "data": {"k": "v"},
        }
    )
    kubectl(kubeconfig, "apply", "-f", "-", stdin=manifest)
    assert core.read_namespaced_config_map(name="applied", namespace=ns).data == {"k": "v"}
    kubectl(kubeconfig, "-n", ns, "delete", "configmap", "applied")
    assert not core.list_namespaced_config_map(namespace=ns).items
