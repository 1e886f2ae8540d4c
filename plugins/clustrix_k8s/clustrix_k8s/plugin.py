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
    "in_cluster": "true: use the pod's service account (default: when $KUBERNETES_SERVICE_HOST is set and no kubeconfig/context is named)",
    "image_pull_policy": "imagePullPolicy of the containers (Always, IfNotPresent, Never)",
    "service_account": "serviceAccountName of the pods",
    "node_selector": "nodeSelector of the pods (a table)",
    "tolerations": "tolerations of the pods (a list of tables: key, operator, value, effect, tolerationSeconds)",
    "cpu": "CPU request and limit as a Kubernetes quantity (0.5, '500m'); default: cores",
    "gpu_resource": "the extended resource that gpus count (default: nvidia.com/gpu)",
    "ttl_seconds_after_finished": "ttlSecondsAfterFinished of the Jobs (default: none; clustrix's cleanup deletes them)",
    "labels": "extra labels (a table) on every Job, Pod and Secret",
    "annotations": "extra annotations (a table) on every Job and Pod",
    "pending_timeout": "seconds a job's pods may stay stuck pending (Unschedulable, ErrImagePull, CreateContainerConfigError) before clustrix deletes the Job and fails it (default 300)",
    "environment_pvc": "a PersistentVolumeClaim (ReadWriteMany) where the profile's environment is installed once per requirement set and reused by later pods (default: none; each pod installs it into a temporary directory)",
    "inputs_pvc": "a PersistentVolumeClaim for inputs above the Secret limit (~1 MiB): each job's inputs in a private directory on it, mounted read-only (with inputs_local_path)",
    "inputs_local_path": "where this host sees the volume of inputs_pvc (e.g. an NFS mount of it), to write the inputs there",
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
