"""Issue 14 item 1 end to end, through ``ClusterExecutor`` on the real local, SLURM and Grid
Engine test clusters (root victim: the test clusters run jobs as root). Mallory plants the
work_dir, or tries to swap the job directory while the job waits in a shared sticky directory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustrix_core import ClusterExecutor
from clustrix_core.config import reset_configuration
from clustrix_core.errors import TransportError
from tests.conftest import cluster_config

from .conftest import MALLORY, mallory, mode, names, owner


@pytest.fixture(params=["local", "slurm", "sge"])
def profile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = request.param
    if name != "local":
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config(name)))
    reset_configuration()
    yield name
    reset_configuration()


def _nap(seconds: float) -> str:
    import time as _time

    _time.sleep(seconds)
    return "done by the victim's runner"


def test_planted_work_dir_is_refused(profile: str, arena: Path, users: dict[str, int]) -> None:
    work = arena / "work"
    assert mallory("mkdir", "-m", "0777", str(work)).returncode == 0
    ex = ClusterExecutor(profile, work_dir=str(work))
    try:
        with pytest.raises(TransportError, match=rf"{work}.*uid {users[MALLORY]}"):
            ex.submit(_nap, 0).result(timeout=120)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    assert (owner(work), mode(work), names(work)) == (MALLORY, 0o777, [])


def test_job_dirs_in_a_sticky_directory_cannot_be_swapped(
    profile: str, arena: Path, users: dict[str, int]
) -> None:
    """While the job waits or runs, mallory tries to move each entry clustrix made aside and put
    her own runner in its place; the shared directory keeps its mode."""
    ex = ClusterExecutor(profile, work_dir=str(arena), cleanup="never")
    try:
        fut = ex.submit(_nap, 3)
        attempts = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not fut.done():
            for entry in os.listdir(arena):
                if entry.startswith("mallory"):
                    continue
                moved = mallory("mv", str(arena / entry), str(arena / f"mallory-{entry}"))
                assert moved.returncode != 0, f"mallory moved {entry}"
                attempts += 1
            time.sleep(0.2)
        assert fut.result(timeout=120) == "done by the victim's runner"
        assert attempts
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    assert mode(arena) == 0o1777
    assert all(owner(arena / e) == "root" for e in names(arena))
