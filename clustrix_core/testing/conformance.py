"""Shared conformance suites: subclass, set ``profile``, provide the ``cluster_config`` fixture.

Example::

    import pytest
    from clustrix_core.testing import start_cluster
    from clustrix_core.testing.conformance import SchedulerConformance

    class TestMySchedulerConformance(SchedulerConformance):
        profile = "mysched"

        @pytest.fixture(scope="class")
        def cluster_config(self):
            return start_cluster("tests/clusters/mysched/up")

Every test runs real jobs against the cluster the profile reaches. Functions shipped by the tests
are defined inside the tests, so they travel by value and need nothing installed remotely.
``overrides`` (a dict of profile values) applies to every test's executor. The plugin author's
guide is docs/writing-a-plugin.md in the clustrix repository.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import reset_configuration
from ..errors import ConfigError, JobFailedError, TransportError
from ..executor import ClusterExecutor
from ..scheduler import BatchScheduler, JobState
from ..store import new_job_id

TIMEOUT = 120.0


def wait_for(predicate: Any, timeout: float = TIMEOUT, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class _Base:
    profile: str = ""
    overrides: dict[str, Any] = {}

    @pytest.fixture(scope="class")
    def cluster_config(self) -> Path:
        cls = type(self)
        raise NotImplementedError(
            f"{cls.__name__}: override the class-scoped fixture cluster_config; it returns the path of a "
            f"clustrix config file that has the profile {cls.profile!r}"
        )

    @pytest.fixture
    def executor(
        self, cluster_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[ClusterExecutor]:
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config))
        monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(tmp_path / "state"))
        reset_configuration()
        ex = ClusterExecutor(self.profile, **self.overrides)
        yield ex
        ex.shutdown(wait=False, cancel_futures=True)


class SchedulerConformance(_Base):
    """The contract every scheduler backend keeps, run against its real test cluster."""

    def test_trivial_call_returns_value(self, executor: ClusterExecutor) -> None:
        def add(a: int, b: int) -> int:
            return a + b

        fut = executor.submit(add, 2, b=40)
        assert fut.result(timeout=TIMEOUT) == 42
        assert fut.native_id

    def test_remote_exception_keeps_type_and_traceback(self, executor: ClusterExecutor) -> None:
        def fail(x: int) -> None:
            raise LookupError(f"no item {x}")

        fut = executor.submit(fail, 7)
        with pytest.raises(LookupError, match="no item 7") as info:
            fut.result(timeout=TIMEOUT)
        assert "fail" in info.value.remote_traceback  # type: ignore[attr-defined]
        assert "LookupError" in info.value.remote_traceback  # type: ignore[attr-defined]

    def test_map_keeps_order(self, executor: ClusterExecutor) -> None:
        def square(x: int) -> int:
            return x * x

        items = list(range(23))
        futures = executor.map_futures(square, items, chunksize=5)
        assert [f.result(timeout=TIMEOUT) for f in futures] == [x * x for x in items]
        assert futures[0].job.record.ntasks == 5
        assert len({f.job_id for f in futures}) == 1
        sched = executor.backend.scheduler
        if (
            isinstance(sched, BatchScheduler) and sched.supports_arrays
        ):  # the array path: one per chunk
            assert len(futures[0].job.submissions) == len(sched.array_chunks(5))

    def test_map_with_a_killed_task_fails_only_its_calls(self, executor: ClusterExecutor) -> None:
        def maybe_die(x: int) -> int:
            import os as _os
            import signal as _signal

            if x == 3:
                _os.kill(_os.getpid(), _signal.SIGKILL)
            return x

        futures = executor.map_futures(
            maybe_die, range(6), chunksize=2
        )  # tasks [0, 1], [2, 3], [4, 5]
        assert [futures[i].result(timeout=TIMEOUT) for i in (0, 1, 4, 5)] == [0, 1, 4, 5]
        for i in (2, 3):  # the task died before writing its result: both of its calls fail
            with pytest.raises(JobFailedError) as info:
                futures[i].result(timeout=TIMEOUT)
            assert "task 1" in str(info.value)

    def test_cancel_running_job(self, executor: ClusterExecutor) -> None:
        def sleeper() -> None:
            time.sleep(600)

        fut = executor.submit(sleeper)
        wait_for(lambda: any(s.state is JobState.RUNNING for s in fut.job.last_status.values()))
        assert fut.cancel(), fut.exception() if fut.done() else None
        sched = executor.backend.scheduler
        final = wait_for(
            lambda: [s for s in sched.statuses(fut.job.submissions).values() if s.state.final]
        )
        assert final[0].state in (JobState.CANCELLED, JobState.FAILED), final

    def test_killed_job_raises_job_failure(self, executor: ClusterExecutor) -> None:
        def die() -> None:
            import os as _os
            import signal as _signal

            _os.kill(_os.getpid(), _signal.SIGKILL)

        fut = executor.submit(die)
        with pytest.raises(JobFailedError) as info:
            fut.result(timeout=TIMEOUT)
        assert info.value.state
        assert info.value.state in str(info.value)

    def test_stdout_and_stderr_are_retrievable(self, executor: ClusterExecutor) -> None:
        def chatty() -> int:
            import sys as _sys

            print("hello from stdout")
            print("hello from stderr", file=_sys.stderr)
            return 1

        fut = executor.submit(chatty)
        assert fut.result(timeout=TIMEOUT) == 1
        if executor.profile.cleanup != "never":  # kept locally once the job is cleaned up
            fut.job.settled.wait(TIMEOUT)
        assert "hello from stdout" in fut.stdout()
        assert "hello from stderr" in fut.stderr()

    def test_one_status_query_per_poll(self, executor: ClusterExecutor) -> None:
        def nap(x: float) -> float:
            time.sleep(x)
            return x

        sched = executor.monitor.scheduler  # the profile's one watching scheduler
        transport = sched.transport
        counts: list[tuple[int, int, int]] = []
        original_status, original_run = sched.statuses, transport.run
        local = {"runs": 0, "thread": 0}

        def counting_run(*args: Any, **kwargs: Any) -> Any:
            # only the monitor's own commands: the transport is shared with this thread's
            # submissions and other executors
            if threading.get_ident() == local["thread"]:
                local["runs"] += 1
            return original_run(*args, **kwargs)

        def counting_statuses(subs: Any) -> Any:
            local["runs"], local["thread"] = 0, threading.get_ident()
            result = original_status(subs)
            finals = sum(1 for s in result.values() if s.state.final)
            counts.append((len(subs), local["runs"], finals))
            return result

        transport.run = counting_run  # type: ignore[method-assign]
        sched.statuses = counting_statuses  # type: ignore[method-assign,assignment]
        try:
            futures = [executor.submit(nap, 1.5) for _ in range(4)]
            for f in futures:
                assert f.result(timeout=TIMEOUT) == 1.5
        finally:
            del transport.run
            del sched.statuses
        busy = [c for c in counts if c[0] == 4 and c[2] == 0]
        assert busy, counts
        assert all(runs == 1 for _, runs, _ in busy), counts

    # ---- contract v2: the job store, exit statuses, ids, cancel of a queued job, one monitor
    hold: dict[str, Any] | None = None
    """Profile overrides that keep a job queued without running (e.g. ``{"directives":
    ["--hold"]}`` on SLURM); None: the scheduler has no queue (processes start at once)."""

    def test_store_stages_fetches_and_cleans_up(self, executor: ClusterExecutor) -> None:
        store = executor.backend.store
        location = store.stage(job_id=new_job_id(), name="conformance", inputs={"probe": b"x"})
        try:
            assert store.ready(location, [0, 1]) == set()
            assert store.fetch(location, 0) is None
            assert store.log(location, "out", 0) == ""
        finally:
            store.cleanup(location)
        store.cleanup(location)  # idempotent

        def twice(x: int) -> int:
            print(f"twice {x}")
            return 2 * x

        with ClusterExecutor(executor.profile, cleanup="never") as ex:
            futures = ex.map_futures(twice, [1, 2], chunksize=1)
            assert [f.result(timeout=TIMEOUT) for f in futures] == [2, 4]
        job = futures[0].job
        assert store.ready(job.location, [0, 1]) == {0, 1}
        assert all(store.fetch(job.location, t) for t in (0, 1))
        assert "twice 2" in store.log(job.location, "out", 1)
        store.cleanup(job.location)
        assert store.ready(job.location, [0, 1]) == set()

    def test_exit_status_reaches_the_status(self, executor: ClusterExecutor) -> None:
        def leave(code: int) -> None:
            import os as _os

            _os._exit(code)

        fut = executor.submit(leave, 3)
        with pytest.raises(JobFailedError):
            fut.result(timeout=TIMEOUT)
        sched = executor.monitor.scheduler
        [status] = sched.statuses(fut.job.submissions).values()
        assert status.state.final and status.state is not JobState.COMPLETED, status
        assert status.exit_code == 3 or "3" in status.reason, status

    def test_statuses_are_keyed_by_the_submitted_ids(self, executor: ClusterExecutor) -> None:
        fut = executor.submit(abs, -1)
        assert fut.result(timeout=TIMEOUT) == 1
        sched = executor.monitor.scheduler
        ids = [s.native_id for s in fut.job.submissions]
        assert sorted(sched.statuses(fut.job.submissions)) == sorted(ids)
        for native in ids:
            if isinstance(sched, BatchScheduler):
                assert sched.normalize_id(sched.normalize_id(native)) == sched.normalize_id(native)

    def test_cancel_of_a_queued_job(self, cluster_config: Path, executor: ClusterExecutor) -> None:
        """A held job (``hold``) is cancelled while queued; a backend without a queue cancels a
        job right after its submission. Either way it ends CANCELLED, also once it vanished."""

        def sleeper() -> None:
            time.sleep(600)

        with ClusterExecutor(self.profile, **{**self.overrides, **(self.hold or {})}) as ex:
            fut = ex.submit(sleeper)
            sched = ex.monitor.scheduler
            if self.hold is not None:
                wait_for(lambda: fut.job.last_status)
                assert not any(s.state.final for s in fut.job.last_status.values())
            assert fut.cancel()
            final = wait_for(
                lambda: [s for s in sched.statuses(fut.job.submissions).values() if s.state.final]
            )
        assert final[0].state is JobState.CANCELLED, final

    def test_executors_of_a_profile_share_one_status_query(self, executor: ClusterExecutor) -> None:
        others = [ClusterExecutor(self.profile, **self.overrides) for _ in range(2)]
        monitor = executor.monitor
        assert all(ex.monitor is monitor for ex in others)
        asked: list[set[str]] = []  # the native ids of each status query
        original = monitor.scheduler.statuses

        def counting(subs: Any) -> Any:
            asked.append({s.native_id for s in subs})
            return original(subs)

        def nap(x: float) -> float:
            time.sleep(x)
            return x

        monitor.scheduler.statuses = counting  # type: ignore[method-assign,assignment]
        try:
            futures = [ex.submit(nap, 2.0) for ex in (executor, *others) for _ in range(2)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [2.0] * 6
        finally:
            del monitor.scheduler.statuses
            for ex in others:
                ex.shutdown(wait=False)
        ours = {s.native_id for f in futures for s in f.job.submissions}
        assert any(ours <= ids for ids in asked), asked  # all six jobs in one query (others too)

    def test_bad_resources_rejected_before_submission(
        self, cluster_config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config))
        reset_configuration()
        with pytest.raises(ConfigError, match="memory"):
            ClusterExecutor(self.profile, memory="lots")
        with pytest.raises(ConfigError, match="time"):
            ClusterExecutor(self.profile, time="soon")
        with pytest.raises(ConfigError, match="cores"):
            ClusterExecutor(self.profile, cores=0)


class TransportConformance:
    """The contract every transport keeps. Provide a ``transport`` fixture and ``scratch`` (a
    writable directory path on the transport's host)."""

    @pytest.fixture
    def scratch(self, transport: Any) -> Iterator[str]:
        path = transport.expand(f"~/.clustrix-conformance-{os.getpid()}-{time.monotonic_ns()}")
        transport.makedirs(path)
        yield path
        transport.remove_tree(path)

    def test_run_returns_output_and_status(self, transport: Any) -> None:
        ok = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (ok.returncode, ok.stdout, ok.stderr) == (3, "out\n", "err\n")

    def test_arguments_are_not_shell_interpreted(self, transport: Any, scratch: str) -> None:
        marker = f"{scratch}/pwned"
        result = transport.run(["echo", f"$(touch {marker})", ";", "touch", marker])
        assert result.ok
        assert f"$(touch {marker})" in result.stdout
        assert "pwned" not in transport.listdir(scratch)

    def test_stdin_is_passed(self, transport: Any) -> None:
        assert transport.run(["cat"], stdin=b"abc\x00def").stdout == "abc\x00def"

    def test_bytes_round_trip_and_modes(self, transport: Any, scratch: str) -> None:
        data = os.urandom(300_000)
        transport.put_bytes(f"{scratch}/blob", data, mode=0o600)
        assert transport.get_bytes(f"{scratch}/blob") == data
        mode = transport.run(["stat", "-c", "%a", f"{scratch}/blob"]).stdout.strip()
        assert mode == "600"
        transport.makedirs(f"{scratch}/a/b", mode=0o700)
        assert transport.run(["stat", "-c", "%a", f"{scratch}/a/b"]).stdout.strip() == "700"
        assert sorted(transport.listdir(scratch)) == ["a", "blob"]

    def test_missing_file_raises(self, transport: Any, scratch: str) -> None:
        with pytest.raises((FileNotFoundError, OSError, Exception)):
            transport.get_bytes(f"{scratch}/missing")

    def test_remove_tree(self, transport: Any, scratch: str) -> None:
        transport.makedirs(f"{scratch}/x/y")
        transport.put_bytes(f"{scratch}/x/y/z", b"1")
        transport.remove_tree(f"{scratch}/x")
        assert transport.listdir(scratch) == []

    # ---- the file primitives a job store builds on (a shared host: trust only your own files)
    def _mode(self, transport: Any, path: str) -> str:
        return str(transport.run(["stat", "-c", "%a", path]).assert_success().stdout.strip())

    def test_identity(self, transport: Any) -> None:
        assert transport.uid() == int(transport.run(["id", "-u"]).stdout)
        assert transport.user_name() == transport.run(["id", "-un"]).stdout.strip()

    def test_makedirs_keeps_the_mode_of_an_existing_directory(
        self, transport: Any, scratch: str
    ) -> None:
        transport.run(["mkdir", "-m", "755", f"{scratch}/open"]).assert_success()
        transport.makedirs(f"{scratch}/open", mode=0o700)
        assert self._mode(transport, f"{scratch}/open") == "755"
        transport.makedirs(f"{scratch}/open/new/deeper", mode=0o750)
        assert self._mode(transport, f"{scratch}/open/new") == "750"
        assert self._mode(transport, f"{scratch}/open/new/deeper") == "750"

    def test_makedirs_refuses_a_group_writable_component(
        self, transport: Any, scratch: str
    ) -> None:
        shared = f"{scratch}/shared"
        transport.run(["mkdir", "-m", "2775", shared]).assert_success()
        for path in (shared, f"{shared}/sub"):
            with pytest.raises(TransportError, match=r"shared.*2775.*sticky"):
                transport.makedirs(path)
        assert transport.listdir(shared) == []
        assert self._mode(transport, shared) == "2775"
        transport.run(["chmod", "1777", shared]).assert_success()  # sticky, like /tmp: fine
        transport.makedirs(f"{shared}/sub")
        assert self._mode(transport, f"{shared}/sub") == "700"

    def test_private_dir(self, transport: Any, scratch: str) -> None:
        mine = f"{scratch}/mine"
        assert transport.private_dir(mine) == mine  # missing: created 0700
        assert self._mode(transport, mine) == "700"
        transport.run(["chmod", "750", mine]).assert_success()
        assert transport.private_dir(mine) == mine  # ours, not writable by others: used as is
        assert self._mode(transport, mine) == "750"
        project = f"{scratch}/project"
        transport.run(["mkdir", "-m", "2775", project]).assert_success()
        if transport.uid() == 0:  # root keeps nothing where group members could rename it
            with pytest.raises(TransportError, match="as root"):
                transport.private_dir(project)
            transport.run(["chmod", "1777", project]).assert_success()  # sticky, like /tmp
        shared_mode = self._mode(transport, project)
        own = f"{project}/clustrix-{transport.user_name()}"
        assert transport.private_dir(project) == own
        assert transport.private_dir(project) == own
        assert self._mode(transport, project) == shared_mode
        assert self._mode(transport, own) == "700"
        transport.run(["chmod", "777", own]).assert_success()  # tampered with: refused
        with pytest.raises(TransportError, match=f"clustrix-{transport.user_name()}"):
            transport.private_dir(project)

    def test_symlinks_of_your_own_are_resolved(self, transport: Any, scratch: str) -> None:
        transport.makedirs(f"{scratch}/real")
        transport.run(["ln", "-s", f"{scratch}/real", f"{scratch}/link"]).assert_success()
        assert transport.private_dir(f"{scratch}/link") == f"{scratch}/real"
        transport.makedirs(f"{scratch}/link/sub")
        assert "sub" in transport.listdir(f"{scratch}/real")

    def test_mkdir_exclusive(self, transport: Any, scratch: str) -> None:
        transport.mkdir_exclusive(f"{scratch}/job", mode=0o700)
        assert self._mode(transport, f"{scratch}/job") == "700"
        with pytest.raises(FileExistsError):
            transport.mkdir_exclusive(f"{scratch}/job")
        transport.run(["ln", "-s", f"{scratch}/job", f"{scratch}/link"]).assert_success()
        with pytest.raises(FileExistsError):
            transport.mkdir_exclusive(f"{scratch}/link")
        transport.run(["mkdir", "-m", "2775", f"{scratch}/shared"]).assert_success()
        with pytest.raises(TransportError, match="privately own"):
            transport.mkdir_exclusive(f"{scratch}/shared/job")

    def test_put_bytes_never_follows_a_symlink(self, transport: Any, scratch: str) -> None:
        transport.makedirs(f"{scratch}/elsewhere")
        transport.put_bytes(f"{scratch}/elsewhere/target", b"original")
        transport.run(
            ["ln", "-s", f"{scratch}/elsewhere/target", f"{scratch}/name"]
        ).assert_success()
        transport.put_bytes(f"{scratch}/name", b"new", mode=0o640)
        assert transport.get_bytes(f"{scratch}/elsewhere/target") == b"original"
        assert transport.get_bytes(f"{scratch}/name") == b"new"
        assert transport.lstat(f"{scratch}/name").is_link is False
        assert self._mode(transport, f"{scratch}/name") == "640"
        assert sorted(transport.listdir(scratch)) == ["elsewhere", "name"]  # no temporary left
        transport.run(["chmod", "777", f"{scratch}/elsewhere"]).assert_success()
        with pytest.raises(TransportError, match="privately own"):
            transport.put_bytes(f"{scratch}/elsewhere/x", b"1")

    def test_remove_tree_never_follows_symlinks(self, transport: Any, scratch: str) -> None:
        transport.makedirs(f"{scratch}/keep")
        transport.put_bytes(f"{scratch}/keep/file", b"1")
        transport.makedirs(f"{scratch}/tree/sub")
        transport.run(["ln", "-s", f"{scratch}/keep", f"{scratch}/tree/sub/link"]).assert_success()
        transport.run(["ln", "-s", f"{scratch}/keep", f"{scratch}/top"]).assert_success()
        with pytest.raises(TransportError, match="symbolic link"):
            transport.remove_tree(f"{scratch}/top")
        transport.remove_tree(f"{scratch}/tree")
        assert sorted(transport.listdir(scratch)) == ["keep", "top"]
        assert transport.listdir(f"{scratch}/keep") == ["file"]
        transport.remove_tree(f"{scratch}/missing")  # nothing there: nothing to do
