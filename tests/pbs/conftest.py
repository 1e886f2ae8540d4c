"""Paths and fixtures shared by the PBS tests. Parsers and golden scripts need no cluster; the
real-job suites use tests/clusters/pbs/up (profiles ``pbs``: real OpenPBS as root, ``pbs-ssh``:
the same server as ``pbsuser`` through the ssh test server, ``torque``: the slurm-wlm-torque
wrappers over the real SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.config import reset_configuration
from clustrix_core.executor import ClusterExecutor, ClusterFuture
from clustrix_core.scheduler import JobState

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
TIMEOUT = 120.0
PBS_BIN = "/opt/pbs/bin"


def read(name: str) -> str:
    return (DATA / name).read_text()


def need_transport(profile: str) -> None:
    """Skip (fail under CI) when the profile's transport plugin is not installed."""
    if profile.endswith("-ssh"):
        from clustrix_core.plugins import get_plugin_manager

        if get_plugin_manager().find("transport", "ssh") is None:
            message = "the ssh transport (pip install -e plugins/clustrix_ssh) is not installed"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message)
            pytest.skip(message)


def pbs_config() -> Path:
    """The test clusters' config (tests/clusters/pbs/up, once per session)."""
    from tests.conftest import cluster_config

    return cluster_config("pbs")


def need_profile(path: Path, profile: str) -> None:
    if f"[profiles.{profile}]" not in path.read_text():
        pytest.skip(f"the PBS test clusters have no {profile!r} profile (see tests/clusters/pbs)")
    need_transport(profile)


def qstat_job(native_id: str) -> dict[str, Any]:
    """The real server's record of a job (``qstat -f -F json -x``, as root), {} if unknown."""
    out = subprocess.run(
        [f"{PBS_BIN}/qstat", "-f", "-F", "json", "-x", native_id], capture_output=True, text=True
    ).stdout
    try:
        jobs = json.loads(out).get("Jobs", {})
    except ValueError:
        return {}
    return next(iter(jobs.values()), {})


def running(fut: ClusterFuture) -> bool:
    return any(s.state is JobState.RUNNING for s in fut.job.last_status.values())


@pytest.fixture(scope="session")
def config_path() -> Path:
    return pbs_config()


@pytest.fixture
def make_executor(
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executors: Callable[..., ClusterExecutor],
) -> Callable[..., ClusterExecutor]:
    """``make_executor("pbs", **overrides)``; every executor is shut down (jobs cancelled) after
    the test. Job directories are kept (tests read scripts and logs) unless overridden."""
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config_path))
    reset_configuration()

    def make(profile: str = "pbs", **overrides: Any) -> ClusterExecutor:
        need_profile(config_path, profile)
        return executors(profile, **{"cleanup": "never", **overrides})

    return make
