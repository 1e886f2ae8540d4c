"""Shared fixtures: the real test clusters (tests/clusters/NAME/up) and a private registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import ClusterExecutor
from clustrix_core.testing import cluster_starts, start_cluster

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ROOT / "tests" / "clusters"


def cluster_config(name: str) -> Path:
    """Start tests/clusters/NAME/up once per session; its config file (fails in CI if it can't)."""
    return start_cluster(CLUSTERS / name / "up")


@pytest.fixture
def executors() -> Iterator[Callable[..., ClusterExecutor]]:
    """``executors(profile, **overrides)``: a ClusterExecutor, shut down (its jobs cancelled)
    after the test."""
    made: list[ClusterExecutor] = []

    def make(profile: str, **overrides: Any) -> ClusterExecutor:
        ex = ClusterExecutor(profile, **overrides)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(tmp_path / "clustrix-state"))
    monkeypatch.delenv("CLUSTRIX_CONFIG", raising=False)
    monkeypatch.delenv("CLUSTRIX_PROFILE", raising=False)
    from clustrix_core.config import reset_configuration

    reset_configuration()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long each test cluster took to come up (a first start installs and builds)."""
    ours = [s for s in cluster_starts if Path(s[0]).parent.parent == CLUSTERS]
    if ours:
        terminalreporter.section("test clusters")
        for script, seconds, outcome in ours:
            terminalreporter.write_line(
                f"{Path(script).parent.name:>8}: {outcome} in {seconds:6.1f} s"
            )
