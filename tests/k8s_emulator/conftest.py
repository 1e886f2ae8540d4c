"""Fixtures for the Kubernetes API server emulator's own tests: the emulator started by
tests/clusters/k8s/up (once per session), the official client bound to its kubeconfig, and a
fresh namespace per test."""

from __future__ import annotations

import json
import os
import secrets
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tomllib

from tests.conftest import cluster_config

T = TypeVar("T")

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s_client  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402


@pytest.fixture(scope="session")
def k8s_toml() -> Path:
    return cluster_config("k8s")


@pytest.fixture(scope="session")
def kubeconfig(k8s_toml: Path) -> str:
    with open(k8s_toml, "rb") as f:
        profile = tomllib.load(f)["profiles"]["k8s"]
    assert profile["scheduler"] == "k8s" and profile["transport"] == "local"
    assert profile["namespace"] == "clustrix-test" and profile["image"] == "python:3.11-slim"
    assert os.path.isfile(profile["kubeconfig"])
    return str(profile["kubeconfig"])


class Emulator:
    """The running emulator's facts (server.json) and its admin endpoint (/emulator/...)."""

    def __init__(self, state_dir: Path) -> None:
        with open(state_dir / "server.json") as f:
            self.info = json.load(f)
        self.state_dir = state_dir
        self.url: str = self.info["url"]
        self.ssl = ssl.create_default_context(cafile=self.info["ca"]) if self.info["ca"] else None

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/emulator/{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ssl, timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture(scope="session")
def emulator(k8s_toml: Path) -> Emulator:
    return Emulator(k8s_toml.parent)


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> Iterator[Any]:
    api = k8s_config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def core(api_client: Any) -> Any:
    return k8s_client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: Any) -> Any:
    return k8s_client.BatchV1Api(api_client)


@pytest.fixture
def ns(core: Any) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    name = "emu-" + secrets.token_hex(4)
    core.create_namespace(body={"metadata": {"name": name}})
    yield name
    core.delete_namespace(name=name)


def wait_for(fn: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``fn`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def finished(batch: Any, ns: str, name: str, timeout: float = 30.0) -> Any:
    """The Job once it has a Complete or Failed condition."""

    def check() -> Any:
        job = batch.read_namespaced_job(name=name, namespace=ns)
        for c in job.status.conditions or []:
            if c.type in ("Complete", "Failed") and c.status == "True":
                return job
        return None

    return wait_for(check, timeout, f"job {ns}/{name} to finish")


def conditions(obj: Any) -> dict[str, Any]:
    return {c.type: c for c in obj.status.conditions or [] if c.status == "True"}


def job_body(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A batch/v1 Job with one container running ``command`` in python:3.11-slim."""
    container = {"name": "main", "image": "python:3.11-slim", "command": command}
    container.update(spec.pop("container", {}))
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))
    template: dict[str, Any] = {"spec": pod_spec}
    if "labels" in spec:
        template["metadata"] = {"labels": spec["labels"]}
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": template},
    }
    if "labels" in spec:
        body["metadata"]["labels"] = spec.pop("labels")
    body["spec"].update(spec)
    return body
