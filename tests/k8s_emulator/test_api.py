"""API semantics through the official client: metadata, selectors, watches, deletes, errors."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiException

from .conftest import conditions, finished, job_body, wait_for


def error_body(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def test_metadata_uid_resource_version_generate_name(core: Any, ns: str) -> None:
    a = core.create_namespaced_config_map(
        namespace=ns, body={"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    b = core.create_namespaced_config_map(
        namespace=ns, body={"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    assert a.metadata.name.startswith("cfg-") and len(a.metadata.name) == len("cfg-") + 5
    assert a.metadata.name != b.metadata.name and a.metadata.uid != b.metadata.uid
    assert a.metadata.creation_timestamp is not None
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    a.data["a"] = "2"
    updated = core.replace_namespaced_config_map(name=a.metadata.name, namespace=ns, body=a)
    assert int(updated.metadata.resource_version) > int(b.metadata.resource_version)
    assert updated.metadata.uid == a.metadata.uid
    listed = core.list_namespaced_config_map(namespace=ns)
    assert int(listed.metadata.resource_version) >= int(updated.metadata.resource_version)


def test_label_selectors(core: Any, ns: str) -> None:
    for name, labels in {
        "a": {"app": "x", "tier": "web"},
        "b": {"app": "y", "tier": "db"},
        "c": {"app": "z"},
    }.items():
        core.create_namespaced_config_map(
            namespace=ns, body={"metadata": {"name": name, "labels": labels}}
        )

    def names(selector: str) -> list[str]:
        items = core.list_namespaced_config_map(namespace=ns, label_selector=selector).items
        return sorted(i.metadata.name for i in items)

    assert names("app=x") == ["a"]
    assert names("app==x") == ["a"]
    assert names("app!=x") == ["b", "c"]
    assert names("app in (x, y)") == ["a", "b"]
    assert names("app notin (x,y)") == ["c"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    assert names("app in (x,y),tier=db") == ["b"]
    assert names("nosuch=label") == []
    with pytest.raises(ApiException) as ei:
        names("app in x")
    assert ei.value.status == 400 and error_body(ei.value)["reason"] == "BadRequest"


def test_field_selector_and_pagination(core: Any, ns: str) -> None:
    for i in range(5):
        core.create_namespaced_config_map(namespace=ns, body={"metadata": {"name": f"m{i}"}})
    items = core.list_namespaced_config_map(namespace=ns, field_selector="metadata.name=m3").items
    assert [i.metadata.name for i in items] == ["m3"]
    page = core.list_namespaced_config_map(namespace=ns, limit=2)
    assert [i.metadata.name for i in page.items] == ["m0", "m1"]
    assert page.metadata.remaining_item_count == 3
    page2 = core.list_namespaced_config_map(
        namespace=ns, limit=2, _continue=page.metadata._continue
    )
    assert [i.metadata.name for i in page2.items] == ["m2", "m3"]


def test_watch_sees_added_modified_deleted(core: Any, batch: Any, ns: str) -> None:
    events: list[tuple[str, str, str]] = []

    def watcher() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, namespace=ns, timeout_seconds=20):
            pod = ev["object"]
            events.append((ev["type"], pod.metadata.name, pod.status.phase or ""))
            if ev["type"] == "MODIFIED" and pod.status.phase == "Succeeded":
                w.stop()

    # ADDED (synthetic for what exists when the watch starts, or real), then MODIFIED
    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    batch.create_namespaced_job(namespace=ns, body=job_body("w", ["python", "-c", "print(1)"]))
    t.join(30)
    assert not t.is_alive(), events
    types = [e[0] for e in events]
    assert types[0] == "ADDED" and "MODIFIED" in types
    assert events[-1][2] == "Succeeded"

    # a watch from a resourceVersion sees DELETED
    cm = core.create_namespaced_config_map(namespace=ns, body={"metadata": {"name": "gone"}})
    core.delete_namespaced_config_map(name="gone", namespace=ns)
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_namespaced_config_map,
        namespace=ns,
        resource_version=cm.metadata.resource_version,
        timeout_seconds=2,
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == [("DELETED", "gone")]


def test_watch_with_label_selector_raw_lines(core: Any, ns: str) -> None:
    core.create_namespaced_config_map(
        namespace=ns, body={"metadata": {"name": "x", "labels": {"k": "v"}}}
    )
    core.create_namespaced_config_map(namespace=ns, body={"metadata": {"name": "y"}})
    resp = core.list_namespaced_config_map(
        namespace=ns, label_selector="k=v", watch=True, timeout_seconds=1, _preload_content=False
    )
    lines = [json.loads(line) for line in resp.read().splitlines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "x")]
    assert e_kind(lines[0]) == ("ConfigMap", "v1")


def e_kind(event: dict[str, Any]) -> tuple[str, str]:
    return event["object"]["kind"], event["object"]["apiVersion"]


def _long_job(batch: Any, ns: str, name: str, parallelism: int = 2) -> None:
    body = job_body(
        name,
        ["python", "-c", "import time; time.sleep(60)"],
        parallelism=parallelism,
        completions=4,
    )
    batch.create_namespaced_job(namespace=ns, body=body)


def _running(core: Any, ns: str, name: str, n: int) -> Any:
    def check() -> Any:
        pods = core.list_namespaced_pod(namespace=ns, label_selector=f"job-name={name}").items
        return len([p for p in pods if p.status.phase == "Running"]) == n and pods

    return wait_for(check, 20, f"{n} running pods of {name}")


def test_foreground_delete_removes_pods_first(core: Any, batch: Any, ns: str) -> None:
    _long_job(batch, ns, "fg")
    _running(core, ns, "fg", 2)
    resp = batch.delete_namespaced_job(
        name="fg", namespace=ns, body={"propagationPolicy": "Foreground"}
    )
    # the answer is the Job object, still there (the client has no model for it: a dict)
    md = resp["metadata"] if isinstance(resp, dict) else resp.metadata.to_dict()
    assert md.get("deletionTimestamp") or md.get("deletion_timestamp")
    assert "foregroundDeletion" in md["finalizers"]
    wait_for(lambda: not core.list_namespaced_pod(namespace=ns).items, 20, "the pods to go")
    wait_for(lambda: not batch.list_namespaced_job(namespace=ns).items, 20, "the job to go")


def test_background_and_orphan_delete(core: Any, batch: Any, ns: str) -> None:
    _long_job(batch, ns, "bg", parallelism=1)
    _running(core, ns, "bg", 1)
    batch.delete_namespaced_job(name="bg", namespace=ns, propagation_policy="Background")
    assert not batch.list_namespaced_job(namespace=ns).items
    wait_for(lambda: not core.list_namespaced_pod(namespace=ns).items, 20, "the pods to go")

    _long_job(batch, ns, "orph", parallelism=1)
    (pod,) = _running(core, ns, "orph", 1)
    batch.delete_namespaced_job(name="orph", namespace=ns, body={"propagationPolicy": "Orphan"})
    left = core.read_namespaced_pod(name=pod.metadata.name, namespace=ns)
    assert left.status.phase == "Running" and not left.metadata.owner_references
    core.delete_namespaced_pod(name=pod.metadata.name, namespace=ns, grace_period_seconds=0)
    wait_for(lambda: not core.list_namespaced_pod(namespace=ns).items, 20, "the pod to go")


def test_pod_delete_kills_the_process_group(core: Any, ns: str, tmp_path: Any) -> None:
    marker = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {marker}; trap 'exit 143' TERM; wait"
    core.create_namespaced_pod(
        namespace=ns,
        body={
            "metadata": {"name": "sleeper"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}],
            },
        },
    )
    wait_for(lambda: marker.exists() and marker.read_text().strip(), 20, "the child's pid")
    child = int(marker.read_text())
    resp = core.delete_namespaced_pod(name="sleeper", namespace=ns)
    assert (
        resp.metadata.deletion_timestamp is not None
        and resp.metadata.deletion_grace_period_seconds == 2
    )
    wait_for(lambda: not core.list_namespaced_pod(namespace=ns).items, 20, "the pod to go")
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def test_not_found(core: Any, batch: Any, ns: str) -> None:
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_secret(name="nope", namespace=ns)
    body = error_body(ei.value)
    assert ei.value.status == 404 and ei.value.reason == "Not Found"
    assert body["reason"] == "NotFound" and body["message"] == 'secrets "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "secrets"}
    with pytest.raises(ApiException) as ei:
        batch.read_namespaced_job(name="nope", namespace=ns)
    body = error_body(ei.value)
    assert body["message"] == 'jobs.batch "nope" not found'
    assert body["details"] == {"name": "nope", "group": "batch", "kind": "jobs"}
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_secret(namespace="no-such-ns", body={"metadata": {"name": "s"}})
    assert (
        ei.value.status == 404
        and error_body(ei.value)["message"] == 'namespaces "no-such-ns" not found'
    )


def test_already_exists_and_conflict(core: Any, ns: str) -> None:
    s = core.create_namespaced_secret(namespace=ns, body={"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_secret(namespace=ns, body={"metadata": {"name": "dup"}})
    body = error_body(ei.value)
    assert ei.value.status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'secrets "dup" already exists'
    core.patch_namespaced_secret(
        name="dup", namespace=ns, body={"metadata": {"labels": {"a": "b"}}}
    )
    s.metadata.labels = {"c": "d"}  # s carries the old resourceVersion
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_secret(name="dup", namespace=ns, body=s)
    body = error_body(ei.value)
    assert ei.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on secrets "dup": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def _invalid(fn: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as ei:
        fn()
    assert ei.value.status == 422, ei.value.body
    body = error_body(ei.value)
    assert body["reason"] == "Invalid"
    return body


def test_invalid_names_labels_quantities(core: Any, batch: Any, ns: str) -> None:
    body = _invalid(
        lambda: core.create_namespaced_secret(namespace=ns, body={"metadata": {"name": "Upper"}})
    )
    assert body["message"].startswith(
        'Secret "Upper" is invalid: metadata.name: Invalid value: "Upper": a lowercase RFC 1123 subdomain'
    )
    assert body["details"]["kind"] == "Secret"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["details"]["causes"][0]["reason"] == "FieldValueInvalid"

    long_name = "a" * 254
    body = _invalid(
        lambda: core.create_namespaced_config_map(
            namespace=ns, body={"metadata": {"name": long_name}}
        )
    )
    assert "must be no more than 253 characters" in body["message"]

    body = _invalid(lambda: core.create_namespace(body={"metadata": {"name": "n" * 64}}))
    assert "must be no more than 63 characters" in body["message"]

    body = _invalid(
        lambda: core.create_namespaced_config_map(
            namespace=ns, body={"metadata": {"name": "ok", "labels": {"app": "bad value!"}}}
        )
    )
    assert (
        'metadata.labels: Invalid value: "bad value!": a valid label must be an empty string'
        in body["message"]
    )
    body = _invalid(
        lambda: core.create_namespaced_config_map(
            namespace=ns, body={"metadata": {"name": "ok", "labels": {"app": "v" * 64}}}
        )
    )
    assert "must be no more than 63 characters" in body["message"]
    body = _invalid(
        lambda: core.create_namespaced_config_map(
            namespace=ns, body={"metadata": {"name": "ok", "labels": {"Example.COM/app": "v"}}}
        )
    )
    assert "prefix part a lowercase RFC 1123 subdomain" in body["message"]

    # a Job name over 63 characters: its pods' job-name label would be invalid
    job_name = "j" * 64
    body = _invalid(
        lambda: batch.create_namespaced_job(namespace=ns, body=job_body(job_name, ["true"]))
    )
    assert body["message"].startswith(
        f'Job.batch "{job_name}" is invalid: spec.template.labels: Invalid value: "{job_name}": must be no more than 63 characters'
    )
    assert body["details"]["group"] == "batch" and body["details"]["kind"] == "Job"

    # restartPolicy Always is not allowed in a Job; a negative quantity is invalid
    body = _invalid(
        lambda: batch.create_namespaced_job(
            namespace=ns, body=job_body("rp", ["true"], pod={"restartPolicy": "Always"})
        )
    )
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'
        in body["message"]
    )
    body = _invalid(
        lambda: batch.create_namespaced_job(
            namespace=ns,
            body=job_body("neg", ["true"], container={"resources": {"limits": {"memory": "-1"}}}),
        )
    )
    assert (
        'spec.template.spec.containers[0].resources.limits[memory]: Invalid value: "-1": must be greater than or equal to 0'
        in body["message"]
    )


def test_unparseable_quantity_is_a_bad_request(batch: Any, ns: str) -> None:
    """Like kube-apiserver: a quantity that does not parse fails decoding (400), not validation."""
    with pytest.raises(ApiException) as ei:
        batch.create_namespaced_job(
            namespace=ns,
            body=job_body("q", ["true"], container={"resources": {"limits": {"memory": "8GB"}}}),
        )
    body = error_body(ei.value)
    assert ei.value.status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'Job in version "v1" cannot be handled as a Job: quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


def test_unschedulable(core: Any, batch: Any, ns: str) -> None:
    body = job_body("big", ["true"], container={"resources": {"requests": {"cpu": "1000"}}})
    batch.create_namespaced_job(namespace=ns, body=body)

    def scheduled_false() -> Any:
        for p in core.list_namespaced_pod(namespace=ns, label_selector="job-name=big").items:
            for c in p.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False":
                    return p, c
        return None

    pod, cond = wait_for(scheduled_false, 20, "PodScheduled=False")
    assert pod.status.phase == "Pending"
    assert cond.reason == "Unschedulable"
    assert cond.message.startswith("0/1 nodes are available: 1 Insufficient cpu.")
    events = core.list_namespaced_event(
        namespace=ns, field_selector=f"involvedObject.name={pod.metadata.name}"
    ).items
    assert any(e.reason == "FailedScheduling" for e in events)


def test_simulated_unschedulable_and_image_pull(core: Any, batch: Any, ns: str) -> None:
    annotated = job_body("sim", ["true"])
    annotated["spec"]["template"]["metadata"] = {
        "annotations": {"emulator.clustrix.test/simulate": "Unschedulable"}
    }
    batch.create_namespaced_job(namespace=ns, body=annotated)
    batch.create_namespaced_job(
        namespace=ns,
        body=job_body("pull", ["true"], container={"image": "registry.invalid/nope:1"}),
    )

    def waiting(job: str, reason: str) -> Any:
        def check() -> Any:
            for p in core.list_namespaced_pod(namespace=ns, label_selector=f"job-name={job}").items:
                for cs in p.status.container_statuses or []:
                    if cs.state.waiting and cs.state.waiting.reason == reason:
                        return cs.state.waiting
            return None

        return wait_for(check, 20, f"{job}: {reason}")

    assert "registry.invalid/nope:1" in waiting("pull", "ErrImagePull").message
    assert (
        waiting("pull", "ImagePullBackOff").message
        == 'Back-off pulling image "registry.invalid/nope:1"'
    )
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=sim").items
    wait_for(
        lambda: any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for c in core.read_namespaced_pod(
                name=pod.metadata.name, namespace=ns
            ).status.conditions
            or []
        ),
        20,
        "simulated Unschedulable",
    )
    (pulling,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=pull").items
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod_log(name=pulling.metadata.name, namespace=ns)
    assert ei.value.status == 400
    assert (
        "is waiting to start: trying and failing to pull image" in error_body(ei.value)["message"]
    )


def test_create_container_config_error_then_recovers(core: Any, batch: Any, ns: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    body = job_body(
        "cfg", ["python", "-c", "import os; print(os.environ['TOKEN'])"], container={"env": env}
    )
    core.create_namespaced_secret(
        namespace=ns, body={"metadata": {"name": "creds"}, "stringData": {"other": "x"}}
    )
    batch.create_namespaced_job(namespace=ns, body=body)

    def waiting() -> Any:
        for p in core.list_namespaced_pod(namespace=ns, label_selector="job-name=cfg").items:
            for cs in p.status.container_statuses or []:
                if cs.state.waiting and cs.state.waiting.reason == "CreateContainerConfigError":
                    return cs.state.waiting
        return None

    w = wait_for(waiting, 20, "CreateContainerConfigError")
    assert w.message == f"couldn't find key token in Secret {ns}/creds"
    core.patch_namespaced_secret(name="creds", namespace=ns, body={"stringData": {"token": "t0k"}})
    job = finished(batch, ns, "cfg")
    assert "Complete" in conditions(job)
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=cfg").items
    assert core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns) == "t0k\n"


def test_env_from_config_map_and_mount_path_rewrite(core: Any, batch: Any, ns: str) -> None:
    core.create_namespaced_config_map(
        namespace=ns, body={"metadata": {"name": "cm"}, "data": {"A": "1", "f.txt": "hello"}}
    )
    script = "import os; print(os.environ['CFG_A'], os.environ['WHERE'].startswith(os.environ['KUBE_EMULATOR_ROOTFS'] + '/'), open('/etc/cfg/f.txt').read())"
    body = job_body(
        "envs",
        ["python", "-c", script],
        container={
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "cm"}}],
            "env": [{"name": "WHERE", "value": "/etc/cfg/f.txt"}],
            "volumeMounts": [{"name": "cm", "mountPath": "/etc/cfg"}],
        },
        pod={"volumes": [{"name": "cm", "configMap": {"name": "cm"}}]},
    )
    batch.create_namespaced_job(namespace=ns, body=body)
    assert "Complete" in conditions(finished(batch, ns, "envs"))
    (pod,) = core.list_namespaced_pod(namespace=ns, label_selector="job-name=envs").items
    assert core.read_namespaced_pod_log(name=pod.metadata.name, namespace=ns) == "1 True hello\n"
