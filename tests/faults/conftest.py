"""Fixtures for the fault suite (issue 13): the real test clusters, profiles layered over their
config files, and the "nothing is lost" checks (the registry and ``clustrix jobs``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.config import reset_configuration
from clustrix_core.executor import ClusterExecutor
from clustrix_core.registry import JobRecord, get_registry
from clustrix_core.testing import write_config
from tests.conftest import ROOT, cluster_config

pytestmark = pytest.mark.faults

TIMEOUT = 180.0


def wait_for(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; that value (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {check}")
        time.sleep(every)


def slurm_up(timeout: float = 90.0) -> None:
    """Wait until slurmctld answers (another suite restarts it at times)."""
    wait_for(
        lambda: subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True).returncode == 0,
        timeout,
        0.5,
    )


def sge_up(timeout: float = 90.0) -> None:
    wait_for(lambda: subprocess.run(["qstat"], capture_output=True).returncode == 0, timeout, 0.5)


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``profiles(*clusters, **extra)``: make the config files of the named test clusters (plus
    a file with the ``extra`` profiles, NAME -> values) the active clustrix configuration."""

    def use(*clusters: str, **extra: dict[str, Any]) -> Path:
        files = [cluster_config(name) for name in clusters]
        if "slurm" in clusters:
            slurm_up()
        if "sge" in clusters:
            sge_up()
        mine = write_config(tmp_path / f"faults-{len(list(tmp_path.glob('faults-*')))}.toml", extra)
        files.append(mine)
        monkeypatch.setenv("CLUSTRIX_CONFIG", os.pathsep.join(map(str, files)))
        reset_configuration()
        return mine

    return use


def cluster_values(cluster: str, profile: str | None = None) -> dict[str, Any]:
    """The values of a test cluster's profile, to build variants of it."""
    import tomllib

    data = tomllib.loads(cluster_config(cluster).read_text())
    return dict(data["profiles"][profile or cluster])


def records() -> dict[str, JobRecord]:
    """Every job of the registry, by id."""
    return {r.job_id: r for r in get_registry().list(limit=1_000_000)}


def clustrix(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``clustrix`` command in a new process (same config and state directory)."""
    return subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def jobs_listing() -> dict[str, str]:
    """``clustrix jobs``: job id -> STATE as another process sees them."""
    done = clustrix("jobs", "--limit", "100000")
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6:
            out[parts[0]] = parts[5]
    return out


@pytest.fixture
def make(executors: Callable[..., ClusterExecutor]) -> Callable[..., ClusterExecutor]:
    return executors


@pytest.fixture(autouse=True)
def _no_stray_monitors() -> Iterator[None]:
    """Each test gets fresh shared monitors (one per profile of its own config)."""
    from clustrix_core import executor

    yield
    with executor._monitors_lock:
        executor._monitors.clear()
