"""The edge tests run real jobs on the ``local`` backend: ``local`` (Python 3.11 without a
matching cloudpickle: the source strategy), ``local-py36`` (a Python 3.6 remote: the source
strategy across versions) and ``local`` with this interpreter (the cloudpickle strategy)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import ClusterExecutor
from tests.conftest import cluster_config

ROOT = Path(__file__).resolve().parents[2]

# name -> (profile, overrides, strategy the payload uses)
STRATEGIES: dict[str, tuple[str, dict[str, Any], str]] = {
    "source": ("local", {}, "source"),
    "source-py36": ("local-py36", {}, "source"),
    "cloudpickle": ("local", {"python": sys.executable}, "cloudpickle"),
}


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = cluster_config("local")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    return path


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request: pytest.FixtureRequest, local: Path) -> tuple[str, dict[str, Any], str]:
    profile, overrides, kind = STRATEGIES[request.param]
    if profile not in local.read_text():
        pytest.skip(f"profile {profile} needs pyenv's Python 3.6.15")
    return profile, overrides, kind


@pytest.fixture
def executor(
    strategy: tuple[str, dict[str, Any], str], executors: Callable[..., ClusterExecutor]
) -> ClusterExecutor:
    profile, overrides, kind = strategy
    ex = executors(profile, **overrides)
    python, remote = ex.backend.remote()
    from clustrix_core.serialization import choose_strategies

    chosen = choose_strategies(remote, "auto", ex.backend.serializers)
    assert chosen[0].name == kind, (python, remote)
    return ex


def run_script(
    code: str, tmp_path: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``code`` run as ``__main__`` of a real Python process (this interpreter)."""
    script = tmp_path / "user_script.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
