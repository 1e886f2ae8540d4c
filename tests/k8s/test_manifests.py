"""The manifests clustrix-k8s creates, without a server: golden Jobs for a call and for a map
with a complete profile, resource quantities, pod-level reasons read from pod objects, and the
profile's validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clustrix_k8s.plugin import OPTIONS
from clustrix_k8s.scheduler import K8sScheduler, cpu_quantity, describe_pod, memory_quantity

from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError
from clustrix_core.scheduler import JobSpec, JobState
from clustrix_core.testing import assert_golden
from clustrix_core.transport import LocalTransport

GOLDEN = Path(__file__).parent / "golden"

FULL = {
    "scheduler": "k8s",
    "namespace": "science",
    "image": "python:3.12-slim",
    "image_pull_policy": "IfNotPresent",
    "service_account": "runner",
    "node_selector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "labels": {"team": "physics"},
    "annotations": {"owner": "ada@example.org"},
    "cpu": 0.5,
    "memory": "1.5GiB",
    "gpus": 1,
    "time": "1h",
    "retries": 2,
    "ttl_seconds_after_finished": 3600,
    "env": {"OMP_NUM_THREADS": "1"},
    "max_parallel": 4,
}


def scheduler(**values: Any) -> K8sScheduler:
    profile = build_profile("golden", {**FULL, **values}, plugin_options=OPTIONS)
    sched = K8sScheduler(profile=profile, transport=LocalTransport(profile=profile))
    sched.validate(profile)
    return sched


def manifest(sched: K8sScheduler, ntasks: int) -> str:
    job = JobSpec(
        job_id="20250101-120000-fit-abc123",
        name="fit",
        location="clustrix-20250101-120000-fit-abc123",
        ntasks=ntasks,
        python="python",
        profile=sched.profile,
    )
    body = sched.job_manifest(
        job, name="clustrix-20250101-120000-fit-abc123", first=0, count=ntasks
    )
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def test_golden_call() -> None:
    assert_golden(manifest(scheduler(), 1), GOLDEN / "call.json")


def test_golden_map() -> None:
    assert_golden(manifest(scheduler(), 10), GOLDEN / "map.json")


def test_call_and_map_differ_where_they_should() -> None:
    call = json.loads(manifest(scheduler(), 1))["spec"]
    mapped = json.loads(manifest(scheduler(), 10))["spec"]
    assert call["backoffLimit"] == 2 and call["activeDeadlineSeconds"] == 3600
    assert "completionMode" not in call
    assert mapped["completionMode"] == "Indexed" and mapped["completions"] == 10
    assert mapped["parallelism"] == 4 and mapped["backoffLimitPerIndex"] == 2
    # a map's time limit is per task (each pod's), not the whole Job's
    assert "activeDeadlineSeconds" not in mapped
    assert mapped["template"]["spec"]["activeDeadlineSeconds"] == 3600
    assert mapped["ttlSecondsAfterFinished"] == 3600


@pytest.mark.parametrize(
    ("memory", "quantity"),
    [
        ("1.5GiB", "1536Mi"),
        ("8GB", "8G"),
        ("512M", "512Mi"),
        ("2G", "2Gi"),
        (1000, "1k"),
        (1001, "1001"),
        ("4KiB", "4Ki"),
    ],
)
def test_memory_quantity(memory: str | int, quantity: str) -> None:
    sched = scheduler(memory=memory)
    assert memory_quantity(sched.profile.memory or 0) == quantity
    res = sched._resources()
    assert res["requests"]["memory"] == res["limits"]["memory"] == quantity


@pytest.mark.parametrize(
    ("cpu", "quantity"),
    [
        (0.5, "500m"),
        (0.25, "250m"),
        (2, "2"),
        (1.5, "1500m"),
        ("250m", "250m"),
        ("0.1", "100m"),
        (3.0, "3"),
    ],
)
def test_cpu_quantity(cpu: Any, quantity: str) -> None:
    assert cpu_quantity(cpu) == quantity


@pytest.mark.parametrize("cpu", [0, -1, "lots", "0.0001", True, "0m"])
def test_bad_cpu_is_a_config_error(cpu: Any) -> None:
    with pytest.raises(ConfigError, match="cpu="):
        scheduler(cpu=cpu)


def test_cores_without_cpu_and_a_named_gpu_resource() -> None:
    values = {k: v for k, v in FULL.items() if k != "cpu"}
    profile = build_profile(
        "g",
        {**values, "cores": 4, "gpu_resource": "amd.com/gpu", "gpus": 2},
        plugin_options=OPTIONS,
    )
    res = K8sScheduler(profile=profile, transport=LocalTransport(profile=profile))._resources()
    assert res["requests"] == {"cpu": "4", "memory": "1536Mi"}
    assert res["limits"] == {"cpu": "4", "memory": "1536Mi", "amd.com/gpu": "2"}


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("node_selector", ["a"], "node_selector"),
        ("node_selector", {"zone": "not valid!"}, "node_selector"),
        ("tolerations", [{"key": "a", "bogus": 1}], "tolerations"),
        ("tolerations", "gpu", "tolerations"),
        ("pending_timeout", 0, "pending_timeout"),
        ("pending_timeout", "soon", "pending_timeout"),
        ("ttl_seconds_after_finished", -1, "ttl_seconds_after_finished"),
        ("image_pull_policy", "Sometimes", "image_pull_policy"),
        ("gpu_resource", "gpu", "gpu_resource"),
        ("in_cluster", "yes", "in_cluster"),
        ("environment", ["no-such-requirements.txt"], "environment"),
        ("environment_pvc", "Not_A_Name", "environment_pvc"),
        ("environment_pvc", "cache", "environment_pvc"),  # and no environment
        ("inputs_pvc", "big", "inputs_local_path"),
        ("inputs_local_path", "/mnt/x", "inputs_pvc"),
        ("partition", "short", "partition"),
    ],
)
def test_bad_profile_values_fail_before_submission(key: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        scheduler(**{key: value})


def pod(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": {}},
        "spec": {"containers": [{"name": "clustrix", "image": "nosuch:1"}]},
        "status": {"phase": phase, **status},
    }


def test_describe_pod_reasons() -> None:
    """Pod objects as kube-apiserver reports them (field names from the API reference)."""
    oom = pod(
        "Failed",
        containerStatuses=[
            {"name": "clustrix", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
        ],
    )
    assert describe_pod(oom)[:3] == (
        "failed",
        JobState.OUT_OF_MEMORY,
        "OOMKilled (exit status 137)",
    )
    deadline = pod(
        "Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
    )
    assert describe_pod(deadline)[1] is JobState.TIMEOUT
    err = pod(
        "Failed",
        containerStatuses=[
            {"name": "clustrix", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
        ],
    )
    assert describe_pod(err)[:3] == ("failed", JobState.FAILED, "Error (exit status 3)")
    unsched = pod(
        "Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }
        ],
    )
    assert describe_pod(unsched)[0] == "stuck"
    assert "0/1 nodes are available: 1 Insufficient cpu." in describe_pod(unsched)[2]
    pull = pod(
        "Pending",
        containerStatuses=[
            {
                "name": "clustrix",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "nosuch:1"',
                    }
                },
            }
        ],
    )
    kind, _, text, _ = describe_pod(pull)
    assert kind == "stuck" and text.startswith("ImagePullBackOff (image 'nosuch:1')")
    creating = pod(
        "Pending",
        containerStatuses=[
            {"name": "clustrix", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ],
    )
    assert describe_pod(creating)[0] == "pending"
    assert describe_pod(pod("Running"))[0] == "running"
    assert describe_pod(pod("Succeeded"))[0] == "succeeded"
