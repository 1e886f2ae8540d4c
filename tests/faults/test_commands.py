"""Fault 5: a scheduler command missing, failing, or hanging (real SLURM, the ``slurm_bin`` option
pointing at a directory of wrappers: symlinks to the real commands with one replaced).

Each case asserts what the user sees (a SubmissionError or StatusError naming the command and
its message, within the bounds ``command_timeout`` and ``status_patience`` set) and that nothing
is lost: the job is in the registry and ``clustrix jobs`` with its true state, and once the
command is back its result is collected by re-attaching."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clustrix_core import attach
from clustrix_core.errors import StatusError, SubmissionError
from clustrix_core.executor import ClusterExecutor

from .conftest import TIMEOUT, cluster_values, jobs_listing, records, wait_for

pytestmark = pytest.mark.faults

COMMANDS = ("sbatch", "squeue", "scontrol", "sacct", "scancel", "sinfo")
PATIENCE = 3.0


def double(x: int) -> int:
    return 2 * x


class Wrappers:
    """A directory of SLURM commands: symlinks to the real ones, any of which can be replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        for name in COMMANDS:
            self.restore(name)

    def restore(self, name: str) -> None:
        target = self.path / name
        target.unlink(missing_ok=True)
        real = shutil.which(name)
        assert real, f"{name} is not on PATH"
        target.symlink_to(real)

    def remove(self, name: str) -> None:
        (self.path / name).unlink()

    def replace(self, name: str, body: str) -> None:
        target = self.path / name
        target.unlink(missing_ok=True)
        target.write_text("#!/bin/sh\n" + body + "\n")
        target.chmod(0o755)


@pytest.fixture
def wrappers(tmp_path: Path) -> Wrappers:
    return Wrappers(tmp_path / "slurm-bin")


@pytest.fixture
def slurm_ex(
    profiles: Callable[..., Path], make: Callable[..., ClusterExecutor], wrappers: Wrappers
) -> Callable[..., ClusterExecutor]:
    def build(**overrides: object) -> ClusterExecutor:
        values = {
            **cluster_values("slurm"),
            "slurm_bin": str(wrappers.path),
            "status_patience": PATIENCE,
            "poll_max": 0.5,
            "command_timeout": 3.0,
            "cleanup": "never",
        }
        profiles("slurm", **{"slurm-wrapped": values})
        return make("slurm-wrapped", **overrides)

    return build


def _recollect(job_id: str, expected: object) -> None:
    """Nothing lost: a new handle collects the result and the record ends COMPLETED."""
    assert attach(job_id).result(timeout=TIMEOUT) == expected
    assert records()[job_id].state == "COMPLETED"
    assert jobs_listing()[job_id] == "COMPLETED"


def _status_fails(ex: ClusterExecutor, wrappers: Wrappers, name: str) -> StatusError:
    fut = ex.submit(double, 21)
    start = time.monotonic()
    with pytest.raises(StatusError) as info:
        fut.result(timeout=TIMEOUT)
    took = time.monotonic() - start
    # bounded: status_patience (and 5 failures, each at most command_timeout) plus polling
    assert took < PATIENCE + 5 * (ex.profile.command_timeout + ex.profile.poll_max) + 10, took
    message = str(info.value)
    assert f"{wrappers.path}/{name}" in message or f"'{name}" in message, message
    assert fut.job_id in message and "attach" in message
    # the job is still recorded as submitted (it may still run): nothing was lost
    assert records()[fut.job_id].state == "SUBMITTED"
    return info.value


def test_squeue_missing(slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers) -> None:
    wrappers.remove("squeue")
    ex = slurm_ex()
    err = _status_fails(ex, wrappers, "squeue")
    assert "squeue" in str(err) and ("No such file" in str(err) or "not found" in str(err))
    wrappers.restore("squeue")
    (job_id,) = [r.job_id for r in records().values() if r.state == "SUBMITTED"]
    _recollect(job_id, 42)


def test_squeue_fails_with_message(
    slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers
) -> None:
    wrappers.replace(
        "squeue",
        'echo "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (fault 5)" >&2; exit 1',
    )
    ex = slurm_ex()
    err = _status_fails(ex, wrappers, "squeue")
    assert "Unable to contact slurm controller (fault 5)" in str(err)
    assert "exited 1" in str(err)
    wrappers.restore("squeue")
    (job_id,) = [r.job_id for r in records().values() if r.state == "SUBMITTED"]
    _recollect(job_id, 42)


def test_squeue_hangs(slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers) -> None:
    wrappers.replace("squeue", "exec sleep 3600")
    ex = slurm_ex(command_timeout=2.0)
    err = _status_fails(ex, wrappers, "squeue")
    assert "timed out after 2.0 s" in str(err)
    wrappers.restore("squeue")
    (job_id,) = [r.job_id for r in records().values() if r.state == "SUBMITTED"]
    _recollect(job_id, 42)


def test_sbatch_missing(slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers) -> None:
    wrappers.remove("sbatch")
    ex = slurm_ex()
    with pytest.raises(SubmissionError) as info:
        ex.submit(double, 1)
    assert f"{wrappers.path}/sbatch" in str(info.value)
    ((job_id, record),) = records().items()
    assert record.state == "SUBMIT_FAILED" and "sbatch" in record.reason
    assert not record.submissions
    assert jobs_listing()[job_id] == "SUBMIT_FAILED"


def test_sbatch_fails_with_message(
    slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers
) -> None:
    wrappers.replace(
        "sbatch", 'echo "sbatch: error: Batch job submission failed: fault 5" >&2; exit 1'
    )
    ex = slurm_ex()
    with pytest.raises(SubmissionError, match="Batch job submission failed: fault 5"):
        ex.map(double, range(3))
    (record,) = records().values()
    assert record.state == "SUBMIT_FAILED"


def test_sbatch_hangs(slurm_ex: Callable[..., ClusterExecutor], wrappers: Wrappers) -> None:
    """A hanging sbatch ends at command_timeout; the record says the submission failed (it may
    or may not have reached the scheduler: here it did not)."""
    wrappers.replace("sbatch", "exec sleep 3600")
    ex = slurm_ex(command_timeout=2.0)
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        ex.submit(double, 1)
    assert time.monotonic() - start < 30
    assert "sbatch" in str(info.value) and "timed out after 2.0 s" in str(info.value)
    (record,) = records().values()
    assert record.state == "SUBMIT_FAILED" and "timed out" in record.reason


def test_scancel_fails_futures_still_end(
    slurm_ex: Callable[..., ClusterExecutor],
    wrappers: Wrappers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """scancel failing while a map is cancelled: the futures end cancelled at once (no hang),
    the user is warned with scancel's message, and the record follows the job to its true end
    (it still runs until scancel works again)."""
    wrappers.replace("scancel", 'echo "scancel: error: fault 5" >&2; exit 1')
    ex = slurm_ex()

    def slow(x: int) -> int:
        import time as t

        t.sleep(600)
        return x

    futs = ex.map_futures(slow, range(2))
    job_id = futs[0].job_id
    start = time.monotonic()
    with caplog.at_level("WARNING"):
        for f in futs:
            f.cancel()
    assert all(f.cancelled() for f in futs)
    assert time.monotonic() - start < 15
    assert any("scancel" in r.getMessage() and "fault 5" in r.getMessage() for r in caplog.records)
    wrappers.restore("scancel")
    for native in futs[0].job.record.native_ids:
        subprocess.run(["scancel", native], check=False)
    wait_for(lambda: records()[job_id].state == "CANCELLED", TIMEOUT)
    assert jobs_listing()[job_id] == "CANCELLED"
