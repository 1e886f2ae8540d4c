"""Fault 4 (issue 13): the work directory is full (a 2 MiB tmpfs mounted as the profile's
``work_dir``). Staging fails with an error naming the directory and "no space left"; a runner
that cannot write its result ends the job with an error that says so; the registry stays
readable and nothing half-staged is left behind."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clustrix_core.errors import ClustrixError, JobFailedError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.registry import get_registry
from tests.faults.conftest import jobs_listing, wait_for

pytestmark = [pytest.mark.faults]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A private 2 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir(mode=0o700)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        chunk = b"\0" * 65536
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return filler


def echo(x: object) -> object:
    return x


def wait_then_return(go: str, size: int) -> bytes:
    import os
    import time

    while not os.path.exists(go):
        time.sleep(0.05)
    return b"r" * size


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_staging_into_a_full_work_dir(
    cluster: str,
    small_disk: Path,
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
) -> None:
    profiles(cluster)
    ex = make(cluster, work_dir=str(small_disk))
    assert ex.submit(echo, "fits").result(timeout=120) == "fits"  # the disk works
    big = os.urandom(3 * 1024 * 1024)  # more than the whole file system
    with pytest.raises(ClustrixError) as info:
        ex.submit(echo, big)
    text = str(info.value)
    assert str(small_disk) in text and "no space left" in text.lower(), text
    # nothing half-staged is left, the space is free again, the registry is readable
    assert [p.name for p in small_disk.iterdir() if not p.name.startswith(".")] == []
    listed = jobs_listing()
    assert len(listed) == len(get_registry().list()) == 1
    assert ex.submit(echo, "again").result(timeout=120) == "again"


@pytest.mark.parametrize("cluster", ["slurm"])
def test_runner_cannot_write_its_result(
    cluster: str,
    tmp_path: Path,
    small_disk: Path,
    profiles: Callable[..., Path],
    make: Callable[..., ClusterExecutor],
) -> None:
    profiles(cluster)
    ex = make(cluster, work_dir=str(small_disk))
    go = tmp_path / "go"
    fut = ex.submit(wait_then_return, str(go), 200_000)
    wait_for(lambda: any(small_disk.rglob("err.0")), timeout=60)  # staged and started
    filler = fill(small_disk)
    go.touch()
    t0 = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=180)
    text = str(info.value)
    print(f"failed after {time.monotonic() - t0:.1f} s: {text}")
    assert "could not write the result" in text and "no space left" in text.lower(), text
    filler.unlink()
    # nothing else is corrupted: the registry is readable and knows the job ended badly
    assert get_registry().get(fut.job_id).state == "FAILED"
    assert jobs_listing()[fut.job_id] == "FAILED"
    assert ex.submit(echo, "space again").result(timeout=120) == "space again"
