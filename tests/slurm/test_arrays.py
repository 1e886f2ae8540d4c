"""Job arrays on the real SLURM: one array per map, results in order, per-item failures,
splitting at MaxArraySize, several calls per task, array sizing from the partition."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from clustrix_core.executor import ClusterExecutor
from clustrix_core.testing import forget_cluster_facts
from clustrix_core.testing.conformance import wait_for

from .conftest import TIMEOUT, squeue_state


def square(x: int) -> int:
    return x * x


def test_map_of_250_with_chunksize_10_is_one_array_of_25_tasks(executor: ClusterExecutor) -> None:
    def sq(x: int) -> int:
        return x * x

    futures = executor.map_futures(sq, range(250), chunksize=10)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(250)]
    job = futures[0].job
    assert {f.job for f in futures} == {job}
    assert job.record.ntasks == 25 and len(job.submissions) == 1
    (sub,) = job.submissions
    assert (sub.first, sub.count) == (0, 25)
    script = Path(job.record.job_dir, "job.0.sh").read_text()
    assert "#SBATCH --array=0-24\n" in script
    # SLURM ran 25 array tasks of that one job, and each task ran its 10 calls
    wait_for(lambda: squeue_state(sub.native_id) == "COMPLETED")
    tasks = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", sub.native_id, "-o", "%K"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(int(t) for t in tasks) == list(range(25))
    assert [job.task_of(i) for i in (0, 9, 10, 249)] == [0, 0, 1, 24]


def test_one_failing_item_raises_its_own_exception_and_the_rest_are_retrievable(
    executor: ClusterExecutor,
) -> None:
    def picky(x: int) -> int:
        if x == 17:
            raise KeyError(f"item {x} is bad")
        return -x

    futures = executor.map_futures(picky, range(40), chunksize=4)
    for i, fut in enumerate(futures):
        if i == 17:
            with pytest.raises(KeyError, match="item 17 is bad"):
                fut.result(timeout=TIMEOUT)
        else:
            assert fut.result(timeout=TIMEOUT) == -i
    # map() raises at the failing item, after the values before it
    got = []
    with pytest.raises(KeyError):
        for value in executor.map(picky, range(20), chunksize=5):
            got.append(value)
    assert got == [-x for x in range(17)]


def test_map_without_chunksize_is_sized_to_the_partition(executor: ClusterExecutor) -> None:
    """2 CPUs with OverSubscribe=FORCE:4 on the test cluster: 8 tasks, many calls each."""

    def inc(x: int) -> int:
        return x + 1

    sched = executor.backend.scheduler
    assert sched.parallelism() == 8
    futures = executor.map_futures(inc, range(2000))
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(1, 2001))
    job = futures[0].job
    assert job.record.ntasks == 8 and len(job.submissions) == 1
    assert [stop - start for start, stop in job.record.tasks] == [250] * 8


def test_max_parallel_throttles_the_array(make_executor: Callable[..., ClusterExecutor]) -> None:
    ex = make_executor("slurm", max_parallel=2, cleanup="never")
    futures = ex.map_futures(square, range(12), chunksize=2)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(12)]
    job = futures[0].job
    assert job.record.ntasks == 6
    assert "#SBATCH --array=0-5%2\n" in Path(job.record.job_dir, "job.0.sh").read_text()


def test_arrays_larger_than_max_array_size_are_split(
    executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster's MaxArraySize is read from ``scontrol show config``; here it is lowered to 4
    for this scheduler only (restarting slurmctld with a lower limit: test_real_max_array_size)."""
    sched = executor.backend.scheduler
    assert sched.max_array_size() == int(os.environ.get("CLUSTRIX_SLURM_MAX_ARRAY_SIZE", "10001"))
    monkeypatch.setattr(sched, "max_array_size", lambda: 4)
    futures = executor.map_futures(square, range(30), chunksize=3)  # 10 tasks: arrays of 4, 4, 2
    assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(30)]
    job = futures[0].job
    assert [(s.first, s.count) for s in job.submissions] == [(0, 4), (4, 4), (8, 2)]
    assert len({s.native_id for s in job.submissions}) == 3
    for index, sub in enumerate(job.submissions):
        script = Path(job.record.job_dir, f"job.{sub.first}.sh").read_text()
        assert f"#SBATCH --array=0-{sub.count - 1}\n" in script
        # SLURM's own output: %a is the task number only in the first array
        expected = "out.%a" if index == 0 else "slurm-%A_%a.out"
        assert f"#SBATCH --output={job.record.job_dir}/{expected}\n" in script
        wait_for(lambda sub=sub: squeue_state(sub.native_id) == "COMPLETED")


@pytest.mark.skipif(
    os.environ.get("CLUSTRIX_SLURM_NO_RESTART") == "1",
    reason="CLUSTRIX_SLURM_NO_RESTART=1: this test restarts slurmctld and slurmd twice",
)
def test_real_max_array_size(use_config: Path) -> None:
    """The real way: bring the cluster up with MaxArraySize=5 (tests/clusters/slurm/up restarts
    slurmctld and slurmd, about 7 s), map 12 tasks (arrays of 5, 5, 2), and restore the limit."""
    up = Path(__file__).resolve().parents[1] / "clusters" / "slurm" / "up"

    def restart(size: str) -> None:
        proc = subprocess.run(
            [str(up)],
            env={**os.environ, "CLUSTRIX_SLURM_MAX_ARRAY_SIZE": size},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (
            subprocess.run(
                ["scontrol", "show", "config"], capture_output=True, text=True
            ).stdout.count(f"MaxArraySize            = {size}\n")
            == 1
        )

    restart("5")
    try:
        forget_cluster_facts()  # as a new process would: this one read MaxArraySize before
        ex = ClusterExecutor("slurm")
        try:
            assert ex.backend.scheduler.max_array_size() == 5
            futures = ex.map_futures(square, range(12), chunksize=1)
            assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(12)]
            assert [(s.first, s.count) for s in futures[0].job.submissions] == [
                (0, 5),
                (5, 5),
                (10, 2),
            ]
        finally:
            ex.shutdown(wait=False, cancel_futures=True)
    finally:
        restart(os.environ.get("CLUSTRIX_SLURM_MAX_ARRAY_SIZE", "10001"))
        forget_cluster_facts()
