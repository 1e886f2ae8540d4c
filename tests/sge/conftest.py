"""Fixtures for the SGE tests: the real test cluster (tests/clusters/sge/up) with its profiles
``sge`` (local transport) and ``sge-ssh`` (through the ssh test server), and executors on them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.config import reset_configuration
from clustrix_core.executor import ClusterExecutor, ClusterFuture
from clustrix_core.scheduler import JobState
from tests.conftest import cluster_config

TIMEOUT = 120.0
HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
PROFILES = ["sge", "sge-ssh"]


def in_qstat(native_id: str) -> bool:
    """Whether ``qstat`` (all users) still lists the job."""
    out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True).stdout
    return any(line.split()[:1] == [native_id] for line in out.splitlines())


def qacct(native_id: str) -> str:
    return subprocess.run(["qacct", "-j", native_id], capture_output=True, text=True).stdout


def running(fut: ClusterFuture) -> bool:
    return any(s.state is JobState.RUNNING for s in fut.job.last_status.values())


def need_transport(profile: str) -> None:
    """Skip (fail under CI) when the profile's transport plugin is not installed."""
    if profile.endswith("-ssh"):
        from clustrix_core.plugins import get_plugin_manager

        if get_plugin_manager().find("transport", "ssh") is None:
            import os

            message = "the ssh transport (pip install -e plugins/clustrix_ssh) is not installed"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message)
            pytest.skip(message)


@pytest.fixture(scope="session")
def sge_config() -> Path:
    return cluster_config("sge")


@pytest.fixture
def use_config(sge_config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(sge_config))
    reset_configuration()
    return sge_config


@pytest.fixture
def make_executor(
    use_config: Path, executors: Callable[..., ClusterExecutor]
) -> Callable[..., ClusterExecutor]:
    """``make_executor("sge", **overrides)``; every executor is shut down (jobs cancelled) after
    the test. Job directories are kept (tests read scripts and logs) unless overridden."""

    def make(profile: str = "sge", **overrides: Any) -> ClusterExecutor:
        need_transport(profile)
        return executors(profile, **{"cleanup": "never", **overrides})

    return make


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    """Each SGE profile in turn: local transport, then ssh."""
    return str(request.param)
