"""Job states on the real SLURM: time limit, scancel from outside, a job that can never start,
one squeue per poll, and how jobs that left squeue are looked up (sacct, scontrol, neither)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.errors import JobFailedError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.jobhandle import JobHandle
from clustrix_core.scheduler import JobState, JobStatus, QueueEntry, Submission
from clustrix_core.testing.conformance import wait_for

from .conftest import TIMEOUT, running, squeue_state


def nap(seconds: float) -> float:
    import time as _time

    _time.sleep(seconds)
    return seconds


def exit_with(code: int) -> None:
    import os as _os

    _os._exit(code)


def maybe_exit(x: int) -> int:
    import os as _os

    if x == 1:
        _os._exit(5)
    return x


# ------------------------------------------------------------------ time limit (runs last)


def test_time_limit_overrun_raises_job_failure_saying_timeout(timeout_job: dict[str, Any]) -> None:
    """A call with ``time="1m"`` that sleeps for an hour: SLURM kills it at the limit (its
    check runs every ~30 s, so 60-100 s after the start). Submitted at the start of the session."""
    fut = timeout_job["future"]
    left = timeout_job["submitted"] + 240 - time.monotonic()
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=max(left, 1))
    err = info.value
    assert err.state == "TIMEOUT"
    assert "TIMEOUT" in str(err) and "TimeLimit" in str(err)
    assert "DUE TO TIME LIMIT" in err.stderr_tail  # SLURM's own message, in the task's err file
    assert squeue_state(fut.native_id) == "TIMEOUT"
    script = Path(fut.job.record.job_dir, "job.0.sh").read_text()
    assert "#SBATCH --time=00:01:00\n" in script


# ------------------------------------------------------------------ cancelling


def test_scancel_from_outside_gives_cancelled(executor: ClusterExecutor) -> None:
    fut = executor.submit(nap, 600)
    wait_for(lambda: running(fut))
    subprocess.run(["scancel", fut.native_id], check=True)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "CANCELLED"
    assert squeue_state(fut.native_id) == "CANCELLED"


def test_scancel_of_an_array_cancels_every_task(executor: ClusterExecutor) -> None:
    futures = executor.map_futures(nap, [600] * 4, chunksize=1)
    job = futures[0].job
    wait_for(lambda: any(s.state is JobState.RUNNING for s in job.last_status.values()))
    executor.backend.scheduler.cancel(job.submissions)
    for fut in futures:
        with pytest.raises(JobFailedError) as info:
            fut.result(timeout=TIMEOUT)
        assert info.value.state == "CANCELLED"
    assert squeue_state(job.submissions[0].native_id) == "CANCELLED"


def test_a_job_pending_on_an_impossible_request_can_be_cancelled(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    """64 CPUs on a 2-CPU partition: SLURM accepts it (EnforcePartLimits=NO) and it pends for ever."""
    ex = make_executor("slurm", cores=64, cleanup="never")
    fut = ex.submit(nap, 0)
    status = wait_for(lambda: next(iter(fut.job.last_status.values()), None))
    assert status.state is JobState.PENDING and status.reason == "PartitionConfig"
    assert fut.cancel()
    assert fut.cancelled()
    wait_for(lambda: squeue_state(fut.native_id) == "CANCELLED")


# ------------------------------------------------------------------ one squeue per poll


@pytest.fixture
def command_log(
    executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[int, str]]]:
    """(poll number, program) of every command the executor's monitor thread runs."""
    log: list[tuple[int, str]] = []
    transport = executor.backend.transport
    original = transport.run
    start = executor.polls  # the shared monitor may be amid a poll of earlier jobs: skip that

    def run(argv: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is executor.monitor.thread and executor.polls > start:
            log.append((executor.polls, argv[0]))
        return original(argv, **kwargs)

    monkeypatch.setattr(transport, "run", run)
    yield log


def test_one_squeue_per_poll_however_many_jobs_are_watched(
    executor: ClusterExecutor, command_log: list[tuple[int, str]]
) -> None:
    futures = [executor.submit(nap, 0.5 + i / 10) for i in range(8)]
    futures += executor.map_futures(nap, [1.0] * 12, chunksize=2)
    futures += executor.map_futures(nap, [0.2] * 5, chunksize=1)
    assert len({f.job for f in futures}) == 10
    for fut in futures:
        fut.result(timeout=TIMEOUT)
    per_poll = Counter(poll for poll, program in command_log if program == "squeue")
    assert per_poll and set(per_poll.values()) == {1}, per_poll
    busy = [poll for poll, count in per_poll.items()]
    assert len(busy) >= 3
    # squeue (--states=all) shows how jobs ended but not their exit status: the jobs that ended
    # since the last poll are looked up in the accounting together, one sacct in that poll
    programs = Counter(p for _, p in command_log)
    assert set(programs) <= {"squeue", "sacct"}, programs
    lookups = Counter(poll for poll, program in command_log if program == "sacct")
    assert set(lookups.values()) <= {1}, lookups
    assert set(lookups) <= set(per_poll)


# ------------------------------------------------------------------ jobs squeue no longer lists


@pytest.fixture(scope="module")
def finished_jobs(
    slurm_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Submission]:
    """Real jobs that ended: a value, ``os._exit(3)``, and an array whose task 1 exits 5."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTRIX_CONFIG", str(slurm_config))
        mp.setenv("CLUSTRIX_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        from clustrix_core.config import reset_configuration

        reset_configuration()
        ex = ClusterExecutor("slurm", cleanup="never")
        try:
            ok = ex.submit(nap, 0)
            bad = ex.submit(exit_with, 3)
            arr = ex.map_futures(maybe_exit, range(4), chunksize=1)
            assert ok.result(TIMEOUT) == 0
            with pytest.raises(JobFailedError):
                bad.result(TIMEOUT)
            with pytest.raises(JobFailedError):
                arr[1].result(TIMEOUT)
            assert [arr[i].result(TIMEOUT) for i in (0, 2, 3)] == [0, 2, 3]
        finally:
            ex.shutdown(wait=False)
    return {
        "ok": ok.job.submissions[0],
        "bad": bad.job.submissions[0],
        "array": arr[0].job.submissions[0],
    }


def lookup_kind(argv: Any) -> str:
    """ "sacct", "scontrol" (show job), or the program's name for other commands."""
    if argv[0] == "scontrol" and "job" in argv:
        return "scontrol"
    return "sacct" if argv[0] == "sacct" else f"other:{argv[0]}"


def check_finals(finals: dict[str, JobStatus], jobs: dict[str, Submission]) -> None:
    assert finals[jobs["ok"].native_id].state is JobState.COMPLETED
    bad = finals[jobs["bad"].native_id]
    assert bad.state is JobState.FAILED and bad.exit_code == 3
    arr = finals[jobs["array"].native_id]
    assert arr.state is JobState.FAILED and arr.exit_code == 5
    assert arr.tasks == {
        0: JobState.COMPLETED,
        1: JobState.FAILED,
        2: JobState.COMPLETED,
        3: JobState.COMPLETED,
    }


@pytest.mark.parametrize("sacct,program", [("auto", "sacct"), (True, "sacct"), (False, "scontrol")])
def test_final_states_of_finished_jobs(
    make_executor: Callable[..., ClusterExecutor],
    finished_jobs: dict[str, Submission],
    sacct: Any,
    program: str,
) -> None:
    ex = make_executor("slurm", sacct=sacct)
    sched = ex.backend.scheduler
    calls: list[str] = []
    argvs: list[list[str]] = []
    original = sched.transport.run

    me = threading.current_thread()

    def run(argv: Any, **kwargs: Any) -> Any:
        if (
            threading.current_thread() is me
        ):  # the transport is shared with other executors' monitors
            calls.append(lookup_kind(argv))
            argvs.append(list(argv))
        return original(argv, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sched.transport, "run", run)
        finals = wait_for(
            # sacct may still show a finished array as PENDING for a moment (accounting lag)
            lambda: (
                lambda f: f if len(f) == 3 and all(v.state.final for v in f.values()) else None
            )(sched.final_statuses(list(finished_jobs.values()))),
            timeout=30,
        )
    check_finals(finals, finished_jobs)
    assert set(calls) == {program}
    ids = sorted(s.native_id for s in finished_jobs.values())
    if (
        program == "sacct"
    ):  # one call for all three jobs (repeated while the accounting lags behind)
        assert all(sorted(a[-2].split("=", 1)[1].split(",")) == ids for a in argvs), argvs
    else:  # scontrol show job takes one id
        assert sorted({a[-1] for a in argvs}) == ids


@pytest.mark.parametrize("sacct,program", [("auto", "sacct"), (False, "scontrol")])
def test_executor_uses_the_lookup_for_jobs_squeue_forgot(
    make_executor: Callable[..., ClusterExecutor],
    monkeypatch: pytest.MonkeyPatch,
    sacct: Any,
    program: str,
) -> None:
    """As if slurmctld had purged finished jobs (MinJobAge): squeue lists only live ones, and
    the executor learns how the others ended from sacct, or scontrol with ``sacct = false``."""
    ex = make_executor("slurm", sacct=sacct, cleanup="never")
    sched = ex.monitor.scheduler  # the scheduler that watches the profile's jobs
    original_parse = sched.parse_status
    monkeypatch.setattr(
        sched,
        "parse_status",
        lambda result, asked: [
            e for e in original_parse(result, asked) if not sched.map_state(e.state).final
        ],
    )
    looked_up: list[str] = []
    original_final = sched.final_statuses

    def final_statuses(subs: Any) -> Any:
        looked_up.extend(s.native_id for s in subs)
        return original_final(subs)

    monkeypatch.setattr(sched, "final_statuses", final_statuses)
    runs: list[str] = []
    # this scheduler's commands: the transport is shared with every other scheduler of the same
    # endpoint (another profile's monitor may still be asking sacct about an earlier test's job)
    original_run = sched.run
    monkeypatch.setattr(
        sched,
        "run",
        lambda argv, **kw: (runs.append(lookup_kind(argv)), original_run(argv, **kw))[1],
    )

    fine = ex.submit(nap, 0.1)
    dies = ex.submit(exit_with, 7)
    assert fine.result(TIMEOUT) == 0.1
    with pytest.raises(JobFailedError) as info:
        dies.result(TIMEOUT)
    assert info.value.state == "FAILED" and "exit code 7" in str(info.value)
    assert dies.native_id in looked_up and program in runs
    other = "scontrol" if program == "sacct" else "sacct"
    assert other not in runs  # the other way was not used


def test_a_job_that_neither_squeue_nor_accounting_knows_is_lost(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    """Re-attaching to a job id SLURM never heard of (and whose directory has no result): LOST
    after ``lost_grace`` seconds."""
    executor = make_executor("slurm", cleanup="never", lost_grace=2)
    fut = executor.submit(nap, 0)
    assert fut.result(TIMEOUT) == 0
    record = fut.job.record
    Path(record.job_dir, "result.0").unlink()
    record.submissions = [{"native_id": "60000000", "first": 0, "count": 1}]
    # as a process that died before it saw the job end would have left the record
    record.state, record.finished_at = "SUBMITTED", None
    status = executor.backend.scheduler.statuses(
        [Submission(native_id="60000000", location=record.job_dir)]
    )
    assert status["60000000"].state is JobState.LOST
    handle = JobHandle(record)
    try:
        start = time.monotonic()
        with pytest.raises(JobFailedError) as info:
            handle.result(timeout=TIMEOUT)
        assert info.value.state == "LOST"
        assert time.monotonic() - start >= 2
    finally:
        handle.executor.shutdown(wait=False)


def second_attempt() -> str:
    import os as _os
    import time as _time

    if not _os.path.exists("attempt.1"):  # the job runs in its job directory (--chdir)
        open("attempt.1", "w").close()
        _time.sleep(600)
    return "second attempt"


def test_retries_resubmit_after_a_node_failure(
    make_executor: Callable[..., ClusterExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt is killed for real (scancel) and its state reported as NODE_FAIL (a node
    cannot be failed on a shared one-node test cluster); ``retries = 1`` resubmits the job."""
    ex = make_executor("slurm", retries=1, cleanup="never")
    sched = ex.monitor.scheduler  # the scheduler that watches the profile's jobs
    failed: set[str] = set()
    original_parse = sched.parse_status
    original_finals = sched.final_statuses

    def parse_status(result: Any, asked: Any) -> Any:
        return [
            QueueEntry(job_id=e.job_id, task=e.task, state="NODE_FAIL", reason="NodeDown")
            if e.job_id in failed and sched.map_state(e.state).final
            else e
            for e in original_parse(result, asked)
        ]

    def final_statuses(subs: Any) -> Any:  # the accounting's view of the killed one, too
        return {
            native: JobStatus(state=JobState.NODE_FAIL, reason="NodeDown")
            if native in failed and status.state.final
            else status
            for native, status in original_finals(subs).items()
        }

    monkeypatch.setattr(sched, "parse_status", parse_status)
    monkeypatch.setattr(sched, "final_statuses", final_statuses)
    fut = ex.submit(second_attempt)
    wait_for(lambda: running(fut) and Path(fut.job.record.job_dir, "attempt.1").exists())
    first = fut.native_id
    failed.add(first)
    subprocess.run(["scancel", first], check=True)
    assert fut.result(timeout=TIMEOUT) == "second attempt"
    assert fut.native_id != first
    assert squeue_state(first) == "CANCELLED"
    wait_for(lambda: squeue_state(fut.native_id) == "COMPLETED")
