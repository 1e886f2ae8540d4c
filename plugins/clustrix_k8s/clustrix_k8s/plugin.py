"""Entry point of the ``clustrix-k8s`` distribution (group ``clustrix``, name ``k8s``).

Cheap to import: neither the scheduler module nor anything of ``kubernetes`` is loaded here."""

from __future__ import annotations

from collections.abc import Iterator

from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec

OPTIONS = {
    "namespace": "namespace of the Jobs, Pods and Secrets (default: 'default')",
    "image": "container image with a Python 3.6+ (default: python:3.11-slim)",
    "kubeconfig": "path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
    "context": "kubeconfig context (default: the current context)",
    "image_pull_policy": "imagePullPolicy of the containers (Always, IfNotPresent, Never)",
    "service_account": "serviceAccountName of the pods",
    "labels": "extra labels (a table) on every Job, Pod and Secret",
    "annotations": "extra annotations (a table) on every Job and Pod",
    "pending_timeout": "seconds a pod may stay unschedulable before the job fails (default 300)",
    "remote_python": "the image's Python version (e.g. '3.11'); default: probed by a short pod",
}


@hookimpl
def clustrix_schedulers() -> Iterator[SchedulerSpec]:
    from .scheduler import K8sScheduler

    yield SchedulerSpec(
        name="k8s",
        cls=K8sScheduler,
        options=dict(OPTIONS),
        summary="Kubernetes: batch/v1 Jobs (maps as Indexed Jobs), inputs in a Secret, results from pod logs",
    )
