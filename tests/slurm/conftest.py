"""Fixtures for the SLURM tests: the real test cluster (tests/clusters/slurm/up), executors on
its profiles, and one slow job (a 1-minute time limit) that runs in the background while the
other tests run and is checked at the end of the session."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
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


def squeue_state(native_id: str) -> str:
    """The state squeue shows for a job (all its tasks' states, sorted and joined)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", native_id, "-o", "%T"], capture_output=True, text=True
    ).stdout.split()
    return ",".join(sorted(set(out)))


@pytest.fixture(scope="session")
def slurm_config() -> Path:
    return cluster_config("slurm")


@pytest.fixture
def use_config(slurm_config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(slurm_config))
    reset_configuration()
    return slurm_config


@pytest.fixture
def make_executor(
    use_config: Path, executors: Callable[..., ClusterExecutor]
) -> Callable[..., ClusterExecutor]:
    """``make_executor("slurm", **overrides)``; every executor is shut down (jobs cancelled) after the test."""

    def make(profile: str = "slurm", **overrides: Any) -> ClusterExecutor:
        return executors(profile, **overrides)

    return make


@pytest.fixture
def executor(make_executor: Callable[..., ClusterExecutor]) -> ClusterExecutor:
    """The ``slurm`` profile, keeping job directories (tests read scripts and logs)."""
    return make_executor("slurm", cleanup="never")


def running(fut: ClusterFuture) -> bool:
    return any(s.state is JobState.RUNNING for s in fut.job.last_status.values())


# ------------------------------------------------------------------ the background TIMEOUT job

_early: dict[str, Any] = {}


def _sleep_forever() -> None:
    import time as _time

    _time.sleep(3600)


@pytest.fixture(scope="session")
def timeout_job(slurm_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A call with a 1-minute time limit that sleeps for an hour, submitted once per session
    (at its start when a test asks for it, see ``_start_slow_jobs_first``)."""
    if "timeout" not in _early:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CLUSTRIX_CONFIG", str(slurm_config))
            mp.setenv("CLUSTRIX_STATE_DIR", str(tmp_path_factory.mktemp("timeout-state")))
            reset_configuration()
            # lost_grace (the default, spelled out) gives the job a monitor of its own: tests
            # that count the status queries of the "slurm" profile's monitor count only theirs
            ex = ClusterExecutor("slurm", time="1m", cleanup="never", lost_grace=30)
            fut = ex.submit(_sleep_forever)
        _early["timeout"] = {"executor": ex, "future": fut, "submitted": time.monotonic()}
    return _early["timeout"]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Tests that use ``timeout_job`` run last: the job is submitted first and the other tests
    run while it waits for its time limit."""
    late = [i for i in items if "timeout_job" in getattr(i, "fixturenames", ())]
    items[:] = [i for i in items if i not in late] + late


@pytest.fixture(scope="session", autouse=True)
def _start_slow_jobs_first(request: pytest.FixtureRequest) -> Iterator[None]:
    if any("timeout_job" in getattr(i, "fixturenames", ()) for i in request.session.items):
        try:
            request.getfixturevalue("timeout_job")
        except pytest.skip.Exception:  # no cluster here: the tests that need it skip themselves
            pass
    yield
    job = _early.pop("timeout", None)
    if job is not None:
        job["executor"].shutdown(wait=False, cancel_futures=True)
