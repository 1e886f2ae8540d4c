"""Fault 7: result tampering and corruption on the file store (local and slurm, cleanup="never",
then re-attach with ``clustrix_core.attach(id)``): a truncated result, another task's result
copied over, another job's result, a bit flipped, a result sealed with another key. Each is
refused with IntegrityError naming the file; the other tasks of the map still deliver."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from clustrix_core import attach
from clustrix_core.errors import IntegrityError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.runner import RESULT_MAGIC, seal, task_context

from .conftest import TIMEOUT, jobs_listing, records

pytestmark = pytest.mark.faults

N = 7


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_tampered_results_refused_others_deliver(
    cluster: str, profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    profiles(cluster)
    ex = make(cluster, cleanup="never", chunksize=1, poll_max=0.5)
    assert list(ex.map(square, range(N))) == [x * x for x in range(N)]
    other = ex.map_futures(square, range(N))  # another job of the same function
    assert [f.result(timeout=TIMEOUT) for f in other] == [x * x for x in range(N)]
    (job_id,) = [
        r.job_id for r in records().values() if r.job_id != other[0].job_id and r.ntasks == N
    ]
    job_dir = Path(records()[job_id].job_dir)
    other_dir = Path(other[0].job.location)

    def result(t: int) -> Path:
        return job_dir / f"result.{t}"

    blob = result(0).read_bytes()
    result(0).write_bytes(blob[: len(blob) // 2])  # truncated
    result(1).write_bytes(result(2).read_bytes())  # another task's result
    shutil.copy(other_dir / "result.3", result(3))  # the same task of another job
    flipped = bytearray(result(4).read_bytes())
    flipped[-5] ^= 0x10  # one bit of the body
    result(4).write_bytes(bytes(flipped))
    forged = seal(  # a well-formed result for this very task, sealed with another key
        RESULT_MAGIC, secrets.token_bytes(32), b"anything", task_context(job_id, 5)
    )
    result(5).write_bytes(forged)
    os.truncate(result(6), 0)  # empty
    tampered = {0: "HMAC", 1: "belongs to", 3: "HMAC", 4: "HMAC", 5: "HMAC", 6: "bad header"}

    futs = attach(job_id).futures
    for t, fut in enumerate(futs):
        if t in tampered:
            with pytest.raises(IntegrityError) as info:
                fut.result(timeout=TIMEOUT)
            message = str(info.value)
            assert str(result(t)) in message, message
            assert tampered[t] in message, message
        else:
            assert fut.result(timeout=TIMEOUT) == t * t
    # nothing lost: both jobs are recorded, the tampered one as finished with errors
    listing = jobs_listing()
    assert listing[other[0].job_id] == "COMPLETED"
    assert listing[job_id] in ("COMPLETED", "COMPLETED_WITH_ERRORS")
    # the untouched results can still be collected again
    again = attach(job_id).futures
    assert again[2].result(timeout=TIMEOUT) == 4
