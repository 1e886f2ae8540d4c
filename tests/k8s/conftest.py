"""Fixtures for the clustrix-k8s tests: the Kubernetes API server emulator (tests/clusters/k8s/up,
profile ``k8s``), executors on it, and the official client bound to its kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib

from clustrix_core.config import reset_configuration
from tests.conftest import cluster_config

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s_client  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

TIMEOUT = 120.0


@pytest.fixture(scope="session")
def k8s_toml() -> Path:
    return cluster_config("k8s")


@pytest.fixture(scope="session")
def k8s_profile(k8s_toml: Path) -> dict[str, Any]:
    with open(k8s_toml, "rb") as f:
        return dict(tomllib.load(f)["profiles"]["k8s"])


@pytest.fixture
def use_k8s(k8s_toml: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(k8s_toml))
    reset_configuration()
    return k8s_toml


@pytest.fixture(scope="session")
def api_client(k8s_profile: dict[str, Any]) -> Iterator[Any]:
    api = k8s_config.new_client_from_config(config_file=k8s_profile["kubeconfig"])
    yield api
    api.close()


@pytest.fixture(scope="session")
def core(api_client: Any) -> Any:
    return k8s_client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: Any) -> Any:
    return k8s_client.BatchV1Api(api_client)


@pytest.fixture(scope="session")
def namespace(k8s_profile: dict[str, Any]) -> str:
    return str(k8s_profile["namespace"])
