"""Grid Engine behaviour against the real Son of Grid Engine (tests/clusters/sge/up): arrays,
chunking and order, failing items, h_rt overruns, qdel from outside, Eqw jobs, accounting lag,
resources. Most tests run over both transports (profiles ``sge`` and ``sge-ssh``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from clustrix_core.errors import JobFailedError, SubmissionError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.scheduler import JobState
from clustrix_core.testing.conformance import wait_for
from clustrix_core.transport import CommandResult

from .conftest import TIMEOUT, in_qstat, qacct, running

Make = Callable[..., ClusterExecutor]


def test_map_is_one_array_chunked_and_in_order(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile)

    def slow_square(x: int) -> int:
        import time as _time

        _time.sleep((50 - x) * 0.004)  # later items finish first
        return x * x

    futures = ex.map_futures(slow_square, range(50), chunksize=7)
    assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in range(50)]
    record = futures[0].job.record
    assert record.ntasks == 8 and len(record.native_ids) == 1
    script = ex.backend.transport.get_bytes(f"{record.job_dir}/job.0.sh").decode()
    assert "#$ -t 1-8\n" in script

    def accounted() -> list[int]:
        lines = qacct(record.native_ids[0]).splitlines()
        return sorted(int(line.split()[1]) for line in lines if line.startswith("taskid"))

    wait_for(
        lambda: accounted() == list(range(1, 9)), timeout=30
    )  # results can beat the accounting


def test_map_without_chunksize_is_sized_by_the_queue_slots(make_executor: Make) -> None:
    ex = make_executor("sge")
    assert ex.backend.scheduler.parallelism() == 8  # all.q has 8 slots
    futures = ex.map_futures(abs, range(-20, 0))
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(20, 0, -1))
    assert futures[0].job.record.ntasks == 8
    assert make_executor("sge", cores=3).backend.scheduler.parallelism() == 2


def test_map_split_over_several_arrays_keeps_order(
    make_executor: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = make_executor("sge")
    # as if the cluster had max_aj_tasks 4
    monkeypatch.setattr(ex.backend.scheduler, "max_array_size", lambda: 4)

    def ident(x: int) -> int:
        return x

    futures = ex.map_futures(ident, range(10), chunksize=1)
    assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(10))
    subs = futures[0].job.submissions
    assert [(s.first, s.count) for s in subs] == [(0, 4), (4, 4), (8, 2)]
    assert len({s.native_id for s in subs}) == 3


def test_failing_item_keeps_its_own_exception(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile)

    def inverse(x: int) -> float:
        return 1 / x

    futures = ex.map_futures(inverse, [1, 2, 0, 4, 5], chunksize=2)  # 0 shares a task with 4
    assert futures[0].result(timeout=TIMEOUT) == 1.0
    assert futures[1].result(timeout=TIMEOUT) == 0.5
    with pytest.raises(ZeroDivisionError) as info:
        futures[2].result(timeout=TIMEOUT)
    assert "inverse" in info.value.remote_traceback  # type: ignore[attr-defined]
    assert futures[3].result(timeout=TIMEOUT) == 0.25
    assert futures[4].result(timeout=TIMEOUT) == 0.2


def _sleep_long() -> None:
    import time as _time

    _time.sleep(300)


def test_h_rt_overrun_reports_the_time_limit(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile, time=3)
    fut = ex.submit(_sleep_long)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "TIMEOUT"
    assert "time limit (h_rt) exceeded" in str(info.value)
    assert "qmaster enforced h_rt" in str(info.value)


def test_qdel_from_outside_reports_cancellation(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile)
    fut = ex.submit(_sleep_long)
    wait_for(lambda: running(fut))
    subprocess.run(["qdel", str(fut.native_id)], check=True, capture_output=True)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "CANCELLED"
    assert "killed by qdel" in str(info.value)


def test_cancelling_a_map_deletes_the_whole_array(make_executor: Make) -> None:
    ex = make_executor("sge")

    def nap(x: int) -> int:
        import time as _time

        _time.sleep(300)
        return x

    futures = ex.map_futures(nap, range(12), chunksize=1)  # 12 tasks on 8 slots: some pending
    wait_for(lambda: running(futures[0]))
    native = futures[0].job.record.native_ids[0]
    assert in_qstat(native)
    for f in futures:
        f.cancel()
    wait_for(lambda: not in_qstat(native), timeout=30)
    assert all(f.cancelled() for f in futures)


@pytest.mark.parametrize(
    ("directive", "reason"),
    [
        ("-wd /nonexistent/clustrix-wd", "can't chdir to /nonexistent/clustrix-wd"),
        (
            "-o /nonexistent/clustrix-dir/out",
            'can\'t open output file "/nonexistent/clustrix-dir/out"',
        ),
    ],
)
def test_eqw_job_fails_with_sge_reason_and_is_deleted(
    make_executor: Make, profile: str, directive: str, reason: str
) -> None:
    ex = make_executor(profile, directives=[directive])
    start = time.monotonic()
    fut = ex.submit(abs, -1)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=60)
    assert info.value.state == "ERROR"
    assert "Eqw" in str(info.value) and reason in str(info.value)
    assert time.monotonic() - start < 30
    assert not in_qstat(str(fut.native_id))  # deleted, not left in the queue forever


def _die() -> None:
    import os as _os
    import signal as _signal

    _os.kill(_os.getpid(), _signal.SIGKILL)


def _lagging_qacct(
    ex: ClusterExecutor, monkeypatch: pytest.MonkeyPatch, lag: float
) -> dict[str, Any]:
    """Make ``qacct`` answer "not found" for ``lag`` seconds after it is first asked (as on a site
    with a long accounting_flush_time). Returns counters."""
    transport = ex.backend.transport
    original = transport.run
    seen: dict[str, Any] = {"first": None, "calls": 0}

    def run(argv: Any, **kwargs: Any) -> CommandResult:
        if argv and argv[0] == "qacct":
            seen["calls"] += 1
            seen["first"] = seen["first"] or time.monotonic()
            if time.monotonic() - seen["first"] < lag:
                return CommandResult(
                    argv=tuple(argv),
                    returncode=1,
                    stdout="",
                    stderr=f"error: job id {argv[-1]} not found\n",
                )
        return original(argv, **kwargs)

    monkeypatch.setattr(transport, "run", run)
    return seen


def test_accounting_lag_is_not_a_false_failure(
    make_executor: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = make_executor("sge", accounting_wait=30)
    seen = _lagging_qacct(ex, monkeypatch, lag=4.0)
    fut = ex.submit(_die)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "CANCELLED", (
        info.value
    )  # what qacct said once it caught up, not LOST
    assert "SIGKILL" in str(info.value)
    assert time.monotonic() - seen["first"] >= 4.0
    assert seen["calls"] < 30  # the executor backs off while it waits


def test_job_unknown_to_accounting_is_lost_after_accounting_wait(
    make_executor: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = make_executor("sge", accounting_wait=2)
    seen = _lagging_qacct(ex, monkeypatch, lag=3600)
    fut = ex.submit(_die)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "LOST"
    assert time.monotonic() - seen["first"] >= 2.0


def test_results_do_not_wait_for_accounting(
    make_executor: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = make_executor("sge", accounting_wait=600)
    _lagging_qacct(ex, monkeypatch, lag=3600)
    start = time.monotonic()
    assert ex.submit(abs, -5).result(timeout=TIMEOUT) == 5
    assert time.monotonic() - start < 20


def test_resources_reach_grid_engine(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile, cores=2, memory="1GiB", time="10m", env={"CLUSTRIX_TEST": "x y"})

    def job_env() -> tuple[str, str, str]:
        import os as _os

        return _os.environ["NSLOTS"], _os.environ["PE"], _os.environ["CLUSTRIX_TEST"]

    fut = ex.submit(job_env)
    assert fut.result(timeout=TIMEOUT) == ("2", "smp", "x y")
    category = wait_for(
        lambda: [
            line for line in qacct(str(fut.native_id)).splitlines() if line.startswith("category")
        ]
    )
    assert "h_rt=600" in category[0] and "h_vmem=512M" in category[0]
    assert "-q all.q" in category[0] and "-pe smp 2" in category[0]


def test_max_parallel_throttles_the_array(make_executor: Make) -> None:
    ex = make_executor("sge", max_parallel=2)

    def span(x: int) -> tuple[float, float]:
        import time as _time

        start = _time.time()
        _time.sleep(1.0)
        return start, _time.time()

    futures = ex.map_futures(span, range(5), chunksize=1)
    spans = [f.result(timeout=TIMEOUT) for f in futures]
    script = ex.backend.transport.get_bytes(f"{futures[0].job.record.job_dir}/job.0.sh").decode()
    assert "#$ -tc 2\n" in script
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2


def test_scheduler_output_goes_to_the_job_dir(make_executor: Make) -> None:
    ex = make_executor("sge")
    fut = ex.submit(abs, -2)
    assert fut.result(timeout=TIMEOUT) == 2
    names = ex.backend.transport.listdir(fut.job.record.job_dir)
    assert {"sge.out", "sge.err", "out.0", "err.0", "result.0"} <= set(names)


def test_status_states_seen_while_running(make_executor: Make) -> None:
    ex = make_executor("sge")
    fut = ex.submit(_sleep_long)
    wait_for(lambda: running(fut))
    sched = ex.backend.scheduler
    [status] = sched.statuses(fut.job.submissions).values()
    assert status.state is JobState.RUNNING
    fut.cancel()
    final = wait_for(
        lambda: [s for s in sched.statuses(fut.job.submissions).values() if s.state.final]
    )
    assert final[0].state is JobState.CANCELLED


def test_job_no_queue_can_run_is_refused_at_submission(make_executor: Make, profile: str) -> None:
    ex = make_executor(profile, cores=16)  # all.q has 8 slots on its one host
    start = time.monotonic()
    with pytest.raises(SubmissionError, match="no suitable queues"):
        ex.submit(abs, -1)
    assert time.monotonic() - start < 10


def test_pending_job_deleted_from_outside_is_lost_with_a_reason(make_executor: Make) -> None:
    ex = make_executor("sge", cores=16, verify="n", accounting_wait=2)  # pends forever
    fut = ex.submit(abs, -1)
    wait_for(lambda: any(s.state is JobState.PENDING for s in fut.job.last_status.values()))
    subprocess.run(["qdel", str(fut.native_id)], check=True, capture_output=True)
    with pytest.raises(JobFailedError) as info:
        fut.result(timeout=TIMEOUT)
    assert info.value.state == "LOST"
    assert "deleted (qdel) before it started" in str(info.value)
