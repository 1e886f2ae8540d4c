"""Real jobs on the PBS test clusters: a walltime overrun, ``qdel`` as root and as a non-root
user, chunked arrays, one ``qstat`` per poll, a job that vanished without job history, and the
Torque wrappers' ``C`` of a job that left no result."""

from __future__ import annotations

import os
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clustrix_pbs.scheduler import PbsScheduler

from clustrix_core.errors import JobFailedError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.scheduler import JobState, Submission
from clustrix_core.testing.conformance import wait_for

from .conftest import PBS_BIN, TIMEOUT, qstat_job, running

PBS_PROFILES = ["pbs", "pbs-ssh"]


def nap(seconds: float) -> float:
    import time as _time

    _time.sleep(seconds)
    return seconds


def exit_with(code: int) -> None:
    import os as _os

    _os._exit(code)


def picky(x: int) -> int:
    if x == 13:
        raise KeyError(f"item {x} is bad")
    return -x


def square(x: int) -> int:
    return x * x


@pytest.fixture(params=PBS_PROFILES)
def pbs_profile(request: pytest.FixtureRequest) -> str:
    """``pbs`` (root, local commands) and ``pbs-ssh`` (pbsuser through ssh) in turn."""
    return str(request.param)


def final_record(native_id: str) -> dict[str, Any]:
    """The server's record of a job once it is ``F`` (job history is on)."""
    return wait_for(
        lambda: (lambda j: j if j.get("job_state") == "F" else None)(qstat_job(native_id))
    )


# ------------------------------------------------------------------ walltime


def test_walltime_overrun_is_timeout_with_pbs_own_message(
    make_executor: Callable[..., ClusterExecutor], pbs_profile: str
) -> None:
    """``-l walltime=00:00:05`` and a 10-minute sleep: pbs_mom (polling every 10 s) kills the job
    10-22 s after it starts, ``Exit_status -29``, its message in ``pbs.err.0``."""
    ex = make_executor(pbs_profile, time="00:00:05")
    fut = ex.submit(nap, 600)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    err = info.value
    assert err.state == "TIMEOUT", err
    assert "TIMEOUT" in str(err) and "walltime" in str(err)
    assert "=>> PBS: job killed: walltime" in err.stderr_tail, err.stderr_tail
    assert "exceeded limit 5" in err.stderr_tail
    record = final_record(str(fut.native_id))
    assert record["Exit_status"] == -29
    script = Path(fut.job.record.job_dir, "job.0.sh").read_text() if pbs_profile == "pbs" else ""
    if script:
        assert "#PBS -l walltime=00:00:05\n" in script


# ------------------------------------------------------------------ qdel


@pytest.mark.parametrize(
    "profile,exit_status", [("pbs", 0), ("pbs-ssh", 271)], ids=["root", "pbsuser"]
)
def test_cancel_through_the_executor_is_qdel_and_cancelled(
    make_executor: Callable[..., ClusterExecutor], profile: str, exit_status: int
) -> None:
    """``Future.cancel()`` of a running job runs ``qdel``; PBS ends it with substate 91 and
    ``Exit_status`` 0 for root (pbs_mom does not track root's processes) or 271 (256 + SIGTERM)
    for a real user; a fresh scheduler (no memory of the cancel) reads CANCELLED from qstat."""
    ex = make_executor(profile)
    fut = ex.submit(nap, 600)
    wait_for(lambda: running(fut))
    sub = fut.job.submissions[0]
    assert fut.cancel()
    record = final_record(sub.native_id)
    assert record["substate"] == 91
    assert record.get("Exit_status") == exit_status, record
    fresh = type(ex.backend.scheduler)(profile=ex.profile, transport=ex.backend.transport)
    status = fresh.statuses([sub])[sub.native_id]
    assert status.state is JobState.CANCELLED, status
    assert status.exit_code == exit_status


def test_qdel_from_outside_gives_cancelled(
    make_executor: Callable[..., ClusterExecutor], pbs_profile: str
) -> None:
    """Someone else (the site, a ``qdel`` in a shell) deletes the running job."""
    ex = make_executor(pbs_profile)
    fut = ex.submit(nap, 600)
    wait_for(lambda: running(fut))
    subprocess.run([f"{PBS_BIN}/qdel", str(fut.native_id)], check=True)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "CANCELLED", info.value
    assert "deleted" in str(info.value)


def test_qdel_of_an_array_cancels_every_subjob(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    ex = make_executor("pbs-ssh")
    futures = ex.map_futures(nap, [600] * 4, chunksize=1)
    job = futures[0].job
    (sub,) = job.submissions
    assert sub.native_id.endswith("[].pbs-server")
    wait_for(lambda: any(s.state is JobState.RUNNING for s in job.last_status.values()))
    ex.backend.scheduler.cancel(job.submissions)
    for fut in futures:
        with pytest.raises(JobFailedError) as info:
            fut.result(timeout=TIMEOUT)
        assert info.value.state == "CANCELLED", info.value
    assert final_record(sub.native_id)["job_state"] == "F"


def test_cancel_of_a_map_deletes_only_the_subjobs_not_yet_delivered(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    """Cancelling a map whose first subjobs delivered runs ``qdel`` on the others only
    (``N[2-3].server``), never on the array: the delivered ones keep their record (substate 92,
    Exit_status 0). (PBS shows a subjob deleted while queued as finished too once the array
    ends, so the command itself is what is checked.)"""
    ex = make_executor("pbs-ssh")
    scheduler = ex.monitor.scheduler  # the profile's one monitor cancels through its scheduler
    commands: list[list[str]] = []
    real_run = scheduler.run

    def run(argv: list[str], **kwargs: Any) -> Any:
        commands.append(list(argv))
        return real_run(argv, **kwargs)

    scheduler.run = run  # type: ignore[method-assign]
    futures = ex.map_futures(nap, [0.1, 0.1, 600, 600], chunksize=1)
    assert [f.result(timeout=TIMEOUT) for f in futures[:2]] == [0.1, 0.1]
    (sub,) = futures[0].job.submissions
    assert [f.cancel() for f in futures] == [False, False, True, True]
    seq, server = sub.native_id.split("[]")
    assert [c[1:] for c in commands if c[0].endswith("qdel")] == [[f"{seq}[2-3]{server}"]]
    records = [final_record(f"{seq}[{i}]{server}") for i in range(4)]
    assert [(r["substate"], r.get("Exit_status")) for r in records[:2]] == [(92, 0), (92, 0)]
    assert final_record(sub.native_id)["job_state"] == "F"


# ------------------------------------------------------------------ arrays


@pytest.mark.parametrize("profile", ["pbs", "pbs-ssh", "torque"])
def test_chunked_arrays_keep_order_and_a_failing_item_its_exception(
    make_executor: Callable[..., ClusterExecutor], monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    """27 items, 3 calls per task: 9 tasks. With arrays of at most 4 (the server's
    ``max_array_size`` lowered for this scheduler): ``-J 0-3``, ``-J 0-3`` and a plain job for
    the last task (PBS Pro refuses ``-J 8-8``). The Torque wrappers have no arrays to follow:
    one job per task."""
    ex = make_executor(profile)
    sched = ex.backend.scheduler
    assert isinstance(sched, PbsScheduler)
    if profile != "torque":
        assert sched.max_array_size() == 10000  # the server's own, from qstat -Bf
        monkeypatch.setattr(sched, "max_array_size", lambda: 4)
    futures = ex.map_futures(picky, range(27), chunksize=3)
    for i, fut in enumerate(futures):
        if i == 13:
            with pytest.raises(KeyError, match="item 13 is bad") as info:
                fut.result(timeout=TIMEOUT)
            assert "picky" in info.value.remote_traceback  # type: ignore[attr-defined]
        else:
            assert fut.result(timeout=TIMEOUT) == -i
    job = futures[0].job
    assert job.record.ntasks == 9
    spans = [(s.first, s.count) for s in job.submissions]
    if profile == "torque":
        assert spans == [(t, 1) for t in range(9)]
        return
    assert spans == [(0, 4), (4, 4), (8, 1)]
    ids = [s.native_id for s in job.submissions]
    assert ids[0].endswith("[].pbs-server") and ids[1].endswith("[].pbs-server")
    assert "[" not in ids[2]
    if profile == "pbs":
        d = Path(job.record.job_dir)
        assert "#PBS -J 0-3\n" in (d / "job.0.sh").read_text()
        assert "#PBS -J 0-3\n" in (d / "job.4.sh").read_text()
        assert f"#PBS -o {d}/pbs.out.4+^array_index^\n" in (d / "job.4.sh").read_text()
        assert "-J" not in (d / "job.8.sh").read_text()
    for native in ids:
        assert final_record(native)["job_state"] == "F"


def test_max_parallel_is_max_run_subjobs(make_executor: Callable[..., ClusterExecutor]) -> None:
    ex = make_executor("pbs", max_parallel=2)
    futures = ex.map_futures(square, range(12), chunksize=2)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(12)]
    script = Path(futures[0].job.record.job_dir, "job.0.sh").read_text()
    assert "#PBS -J 0-5\n" in script and "#PBS -W max_run_subjobs=2\n" in script


# ------------------------------------------------------------------ one qstat per poll


@pytest.fixture
def command_log(executor_for_poll: ClusterExecutor) -> Iterator[list[tuple[int, list[str]]]]:
    """(poll number, argv) of every command the profile's monitor thread runs."""
    log: list[tuple[int, list[str]]] = []
    monitor = executor_for_poll.monitor
    transport = monitor.scheduler.transport
    original = transport.run

    def run(argv: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is monitor.thread:
            log.append((monitor.polls, list(argv)))
        return original(argv, **kwargs)

    transport.run = run  # type: ignore[method-assign]
    try:
        yield log
    finally:
        del transport.run


@pytest.fixture(params=["pbs", "pbs-ssh", "torque"])
def executor_for_poll(
    request: pytest.FixtureRequest, make_executor: Callable[..., ClusterExecutor]
) -> ClusterExecutor:
    return make_executor(str(request.param))


def test_one_qstat_per_poll_however_many_jobs_are_watched(
    executor_for_poll: ClusterExecutor, command_log: list[tuple[int, list[str]]]
) -> None:
    ex = executor_for_poll
    futures = [ex.submit(nap, 0.5 + i / 10) for i in range(6)]
    futures += ex.map_futures(nap, [1.0] * 8, chunksize=2)
    futures += ex.map_futures(nap, [0.2] * 3, chunksize=1)
    assert len({f.job for f in futures}) == 8
    for fut in futures:
        fut.result(timeout=TIMEOUT)
    programs = Counter(os.path.basename(argv[0]) for _, argv in command_log)
    if ex.profile.scheduler == "torque":  # the wrappers' C: sacct, only in polls where jobs ended
        assert set(programs) == {"qstat", "sacct"}, programs
        # one sacct for every job that ended in a poll, asked again (at most 10 s) while the
        # accounting has not recorded a job's exit status yet: never more than one per poll
        sacct_per_poll = Counter(poll for poll, argv in command_log if argv[0].endswith("sacct"))
        assert set(sacct_per_poll.values()) == {1}, sacct_per_poll
    else:
        assert set(programs) == {"qstat"}, programs  # no accounting or other lookups
    per_poll = Counter(poll for poll, argv in command_log if argv[0].endswith("qstat"))
    assert per_poll and set(per_poll.values()) == {1}, per_poll
    assert len(per_poll) >= 3
    # several ids in one query (text qstat -f: OpenPBS's -F json lists only the first id)
    assert any(sum(1 for a in argv if a[:1].isdigit()) >= 8 for _, argv in command_log), command_log


# ------------------------------------------------------------------ no job history


def qmgr_history(enable: bool) -> None:
    value = "True" if enable else "False"
    subprocess.run(
        [f"{PBS_BIN}/qmgr", "-c", f"set server job_history_enable={value}"],
        check=True,
        capture_output=True,
    )


def history_enabled() -> bool:
    out = subprocess.run([f"{PBS_BIN}/qstat", "-Bf"], capture_output=True, text=True).stdout
    return "job_history_enable = True" in out


def test_without_job_history_a_vanished_job_is_lost_with_the_reason(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    """Job history off on the real server (turned back on at the end): a finished job vanishes
    from ``qstat -x`` at once. One that left a result is COMPLETED; one that died without a
    result (``os._exit(3)``) is LOST, and the error says to enable job history."""
    if os.geteuid() != 0:
        pytest.skip("changing the server's job history needs root (qmgr)")
    assert history_enabled()
    ex = make_executor("pbs")
    qmgr_history(False)
    try:
        fine = ex.submit(nap, 0.1)
        dies = ex.submit(exit_with, 3)
        assert fine.result(timeout=TIMEOUT) == 0.1
        with pytest.raises(JobFailedError) as info:
            dies.result(timeout=TIMEOUT)
        assert qstat_job(str(dies.native_id)) == {}  # really gone
    finally:
        qmgr_history(True)
    assert history_enabled()
    err = info.value
    assert err.state == "LOST", err
    assert "enable job history" in str(err) and "job_history_enable=True" in str(err)


def test_an_unknown_job_is_lost(make_executor: Callable[..., ClusterExecutor]) -> None:
    """The real server answers ``Unknown Job Id`` (rc 153): LOST, with the job-history hint."""
    ex = make_executor("pbs")
    sub = Submission(native_id="987654.pbs-server", location=ex.profile.work_dir)
    status = ex.backend.scheduler.statuses([sub])[sub.native_id]
    assert status.state is JobState.LOST
    assert "enable job history" in status.reason


# ------------------------------------------------------------------ torque wrappers


def test_torque_wrappers_c_is_completed_from_sacct(
    make_executor: Callable[..., ClusterExecutor],
) -> None:
    """The wrappers' ``qstat -f`` says ``C`` and no exit status for a job that exited 3: SLURM's
    accounting (one ``sacct`` in the poll where it ended) says FAILED, exit status 3."""
    ex = make_executor("torque")
    fut = ex.submit(exit_with, 3)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    err = info.value
    assert err.state == "FAILED", err
    assert "exit status 3" in str(err) and "SLURM: FAILED" in str(err)
    assert err.native_id and err.native_id.isdigit()


def test_torque_wrappers_completed_without_a_result_is_a_clear_failure(
    make_executor: Callable[..., ClusterExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SLURM accounting (``sacct`` answers nothing) the wrappers' ``C`` is all there is:
    a job that left no result fails with an error that says so (not a hang, not a value)."""
    ex = make_executor("torque")
    monkeypatch.setattr(ex.monitor.scheduler, "slurm_endings", lambda ids: {})
    fut = ex.submit(exit_with, 3)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    text = str(info.value)
    assert "without a result" in text, text
    assert "wrappers report no exit status" in text, text
