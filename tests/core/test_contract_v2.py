"""Core contract v2 on the local backend (real detached processes): the job store, results bound
to their task, finished jobs answered from the registry, kept logs, one monitor per profile,
hooks through pluggy, an import graph without cycles, and the core defects of issue 9."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from clustrix_core import ClusterExecutor, ClustrixError, attach, cluster, hookimpl
from clustrix_core.errors import IntegrityError
from clustrix_core.executor import ClusterFuture
from clustrix_core.registry import get_registry
from clustrix_core.scheduler import BatchScheduler, JobSpec, JobState, QueueEntry, Submission
from clustrix_core.store import FileStore, split_framed_output
from clustrix_core.testing import RecordingTransport
from clustrix_core.testing.conformance import wait_for
from tests.conftest import cluster_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = cluster_config("local")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def nap(x: float, i: int) -> int:
    import time as _t

    _t.sleep(x)
    return i


def getenv(name: str) -> str | None:
    import os as _os

    return _os.environ.get(name)


# ------------------------------------------------------------------ defect 1: cancel vs delivery


def test_cancel_racing_delivery_never_breaks_the_monitor(local: Path) -> None:
    """Futures cancelled while the monitor delivers: each ends either cancelled or with its value,
    nothing raises 'Future in unexpected state', and the other futures complete."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the two threads as much as possible
    try:
        job_stub: Any = type("J", (), {})()
        job_stub.executor = type("E", (), {"_cancel_future": lambda self, fut: None})()
        errors: list[BaseException] = []
        for _ in range(300):
            futures = [ClusterFuture(job_stub, i) for i in range(50)]

            def deliver(futs: list[ClusterFuture] = futures) -> None:
                try:
                    for f in futs:
                        f._settle(value=1)
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            t = threading.Thread(target=deliver)
            t.start()
            for f in futures[::2]:
                f.cancel()
            t.join()
            assert all(f.done() for f in futures)
            assert all(f.cancelled() or f.result() == 1 for f in futures)
        assert not errors, errors[:3]
    finally:
        sys.setswitchinterval(old)


def test_cancel_of_one_map_future_leaves_the_others_running(local: Path) -> None:
    with ClusterExecutor("local", cleanup="never") as ex:

        def slow(x: int) -> int:
            import time as _t

            _t.sleep(0.3)
            return x

        futures = ex.map_futures(slow, range(6), chunksize=1)
        assert futures[2].cancel()
        assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 2] == [0, 1, 3, 4, 5]
        assert futures[2].cancelled()


# ------------------------------------------------------------------ defect 2: finished jobs


def test_finished_and_cleaned_job_is_answered_from_the_registry(local: Path) -> None:
    @cluster(profile="local")
    def seven() -> int:
        return 7

    fut = seven.submit()
    assert fut.result(timeout=60) == 7
    job_id = fut.job_id
    wait_for(lambda: get_registry().get(job_id).state == "COMPLETED")
    status = cli("status", job_id)
    assert status.returncode == 0 and "COMPLETED" in status.stdout, status
    assert "RUNNING" not in status.stdout and "killed" not in status.stdout
    result = cli("result", job_id)
    assert result.returncode == 1
    assert "finished COMPLETED" in result.stderr and "cleaned up" in result.stderr
    assert get_registry().get(job_id).state == "COMPLETED"  # not rewritten to FAILED
    cancel = cli("cancel", job_id)
    assert cancel.returncode == 0 and "already finished" in cancel.stdout
    assert get_registry().get(job_id).state == "COMPLETED"


def test_cancel_never_signals_a_reused_process_group(local: Path, tmp_path: Path) -> None:
    """A finished job's recorded process-group id now belongs to an unrelated process: cancel
    leaves it alone (the PID is not the job's own script)."""
    with ClusterExecutor("local", cleanup="never") as ex:
        fut = ex.submit(int, "5")
        assert fut.result(timeout=60) == 5
        record = get_registry().get(fut.job_id)
    victim = subprocess.Popen(
        ["sleep", "60"], start_new_session=True, stdout=subprocess.DEVNULL
    )  # an unrelated process group
    try:
        record.submissions = [{**record.submissions[0], "native_id": str(victim.pid)}]
        record.state = "SUBMITTED"  # a record that claims the job still runs
        ClusterExecutor("local").cancel_record(record)
        time.sleep(1.0)
        assert victim.poll() is None, "an unrelated process group was signalled"
    finally:
        victim.kill()
        victim.wait()


# ------------------------------------------------------------------ defect 3: output after cleanup


def test_stdout_and_stderr_survive_the_default_cleanup(local: Path) -> None:
    @cluster(profile="local")
    def chatty(i: int) -> int:
        import sys as _sys

        print(f"out {i}")
        print(f"err {i}", file=_sys.stderr)
        return i

    futures = [chatty.submit(i) for i in range(10)]
    for i, fut in enumerate(futures):
        assert fut.result(timeout=60) == i
        assert fut.stdout() == f"out {i}\n" and fut.stderr() == f"err {i}\n"
    time.sleep(0.3)  # the job directories are gone by now
    assert [f.stdout() for f in futures] == [f"out {i}\n" for i in range(10)]
    logs = cli("logs", futures[3].job_id)
    assert logs.returncode == 0 and "out 3" in logs.stdout and "err 3" in logs.stdout


# ------------------------------------------------------------------ defect 5 (environments), 6


def test_environments_live_in_the_private_work_dir(
    local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustrix_core import environment

    seen: list[str] = []

    def fake_prepare(transport: Any, python: str, minor: Any, reqs: Any, base: str) -> str:
        seen.append(base)
        return python

    monkeypatch.setattr(environment, "prepare", fake_prepare)
    work = tmp_path / "w"
    ex = ClusterExecutor("local", work_dir=str(work), environment=["six"])
    ex.backend.remote()
    assert seen == [f"{work}/.envs"]


def test_doctor_leaves_nothing_behind(local: Path, tmp_path: Path) -> None:
    work = tmp_path / "doc"
    config = tmp_path / "doctor.toml"
    config.write_text(
        f'[profiles.doc]\nscheduler = "local"\ntransport = "local"\n'
        f'python = "{sys.executable}"\nwork_dir = "{work}"\n'
    )
    proc = cli("doctor", "doc", env={"CLUSTRIX_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "job store" in proc.stdout
    assert sorted(os.listdir(work)) == [], os.listdir(work)


# ------------------------------------------------------------------ defect 7: retries


class _Recorder(BatchScheduler):
    name = "recorder"
    directive_prefix = "#REC"
    task_var = "REC_TASK"

    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        return self.prefixed([f"--tasks={count}"] + (["--array"] if array else []))

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return ["rec-submit", script_path, str(first), str(count)]


def test_retry_submits_only_the_tasks_without_a_result(tmp_path: Path) -> None:
    from clustrix_core.config import build_profile

    profile = build_profile("r", {"work_dir": str(tmp_path)})
    counter = iter(range(100, 200))
    transport = RecordingTransport(
        answers={"rec-submit": lambda argv: (0, f"{next(counter)}\n", "")}
    )
    sched = _Recorder(profile=profile, transport=transport)
    job_dir = tmp_path / "j"
    job_dir.mkdir()
    spec = JobSpec(
        job_id="x", name="n", location=str(job_dir), ntasks=8, python="py", profile=profile
    )
    subs = sched.submit(attrs.evolve(spec, only=(1, 3, 4, 7)))
    assert [(s.first, s.count) for s in subs] == [(1, 1), (3, 2), (7, 1)]
    script = (job_dir / "job.3.sh").read_text()
    assert "TASK=$(( ${REC_TASK} + 3 ))" in script and "--tasks=2" in script
    assert "TASK=$(( ${REC_TASK} + 1 ))" in (job_dir / "job.1.sh").read_text()  # array of one
    assert (job_dir / "env.sh").stat().st_mode & 0o777 == 0o600


def test_one_task_chunks_become_plain_jobs_where_the_scheduler_prefers(tmp_path: Path) -> None:
    from clustrix_core.config import build_profile

    class NoSingleArrays(_Recorder):
        single_task_arrays = False

    profile = build_profile("r", {"work_dir": str(tmp_path)})
    transport = RecordingTransport(answers={"rec-submit": (0, "7\n", "")})
    sched = NoSingleArrays(profile=profile, transport=transport)
    spec = JobSpec(
        job_id="x", name="n", location=str(tmp_path), ntasks=3, python="p", profile=profile
    )
    sched.submit(spec)
    argv = transport.commands("rec-submit")[0]
    script = Path(argv[1]).read_text()
    assert "--array" in script  # 3 tasks: an array
    sched.submit(attrs.evolve(spec, only=(2,)))
    script = Path(transport.commands("rec-submit")[1][1]).read_text()
    assert "--array" not in script and "TASK=2" in script


# ------------------------------------------------------------------ statuses, ids, cancel


class _Listing(_Recorder):
    """Rows of ``123[4].server``-style ids with exit statuses, as PBS prints them."""

    STATES = {"R": JobState.RUNNING, "F": JobState.COMPLETED, "Q": JobState.PENDING}

    def status_argv(self, native_ids: Any) -> list[str]:
        return ["rec-status"]

    def parse_status(self, result: Any, asked: Any) -> list[QueueEntry]:
        out = []
        for line in result.stdout.splitlines():
            jid, task, state, code = line.split()
            out.append(
                QueueEntry(
                    job_id=jid,
                    task=None if task == "-" else int(task),
                    state=state,
                    exit_code=None if code == "-" else int(code),
                )
            )
        return out

    def normalize_id(self, native_id: str) -> str:
        head, _, server = native_id.partition(".")
        return f"{head}.{server.split('.')[0]}" if server else head

    def cancel_argv(self, native_ids: Any) -> list[str]:
        return ["rec-cancel", *native_ids]


def _listing(tmp_path: Path, rows: str) -> _Listing:
    from clustrix_core.config import build_profile

    transport = RecordingTransport(answers={"rec-status": (0, rows, ""), "rec-cancel": (0, "", "")})
    return _Listing(profile=build_profile("r", {"work_dir": str(tmp_path)}), transport=transport)


def test_ids_are_matched_through_normalize_id_and_exit_codes_classified(tmp_path: Path) -> None:
    sched = _listing(
        tmp_path,
        "12[].srv.example.org - R -\n12[].srv.example.org 0 F 0\n12[].srv.example.org 1 R -\n"
        "13.srv.example.org - F 3\n",
    )
    subs = [
        Submission(native_id="12[].srv", location="l", first=0, count=2),
        Submission(native_id="13.srv", location="l"),
    ]
    got = sched.statuses(subs)
    assert got["12[].srv"].state is JobState.RUNNING
    assert got["12[].srv"].tasks == {0: JobState.COMPLETED, 1: JobState.RUNNING}
    assert got["13.srv"].state is JobState.FAILED and got["13.srv"].exit_code == 3
    assert "exit status 3" in got["13.srv"].reason


def test_queued_job_cancelled_then_vanished_is_cancelled_not_lost(tmp_path: Path) -> None:
    sched = _listing(tmp_path, "")
    sub = Submission(native_id="14.srv", location="l")
    sched.cancel([sub])
    assert sched.statuses([sub])["14.srv"].state is JobState.CANCELLED
    other = Submission(native_id="15.srv", location="l")
    assert sched.statuses([other])["15.srv"].state is JobState.LOST


# ------------------------------------------------------------------ defect 8: tampered results


def test_swapped_results_of_a_map_are_refused_and_the_rest_deliver(local: Path) -> None:
    with ClusterExecutor("local", cleanup="never") as ex:

        def times10(x: int) -> int:
            return x * 10

        futures = ex.map_futures(times10, range(4), chunksize=1)
        assert [f.result(timeout=60) for f in futures] == [0, 10, 20, 30]
        job_dir = Path(futures[0].job.location)
    r0, r1 = (job_dir / "result.0").read_bytes(), (job_dir / "result.1").read_bytes()
    (job_dir / "result.0").write_bytes(r1)
    (job_dir / "result.1").write_bytes(r0)
    (job_dir / "result.2").write_bytes((job_dir / "payload.bin").read_bytes())
    handle = attach(futures[0].job_id)
    for i in (0, 1, 2):
        with pytest.raises(IntegrityError):
            handle.futures[i].result(timeout=60)
    assert handle.futures[3].result(timeout=60) == 30


# ------------------------------------------------------------------ defects 9 and 10


def test_status_failures_end_in_an_error_not_a_hang(local: Path, tmp_path: Path) -> None:
    """The status command keeps failing: after 5 failures and status_patience seconds the waiting
    future fails with a StatusError naming the command and how to re-attach."""
    from clustrix_core.errors import StatusError

    ex = ClusterExecutor("local", status_patience=0.5, poll_max=0.1, command_timeout=1.0)

    def sleeper() -> None:
        import time as _t

        _t.sleep(30)

    fut = ex.submit(sleeper)
    sched = ex.monitor.scheduler
    real = sched.transport.run

    def hanging_status(argv: Any, **kw: Any) -> Any:
        if threading.current_thread() is ex.monitor.thread:  # the monitor's status query hangs
            return real(["sleep", "30"], timeout=kw.get("timeout"))
        return real(argv, **kw)

    sched.transport.run = hanging_status  # type: ignore[method-assign]
    try:
        with pytest.raises(StatusError) as info:
            fut.result(timeout=60)
    finally:
        del sched.transport.run
        fut.job.executor.cancel_record(get_registry().get(fut.job_id))
    assert "timed out after 1.0 s" in str(info.value) and fut.job_id in str(info.value)
    assert "re-attach" in str(info.value)


# ------------------------------------------------------------------ one monitor per profile


def test_ten_functions_and_three_executors_make_one_status_query_per_poll(local: Path) -> None:
    functions = [cluster(profile="local")(nap) for _ in range(10)]
    executors = [
        ClusterExecutor("local"),
        ClusterExecutor("local", cores=2),
        ClusterExecutor("local"),
    ]
    monitor = executors[0].monitor
    assert all(ex.monitor is monitor for ex in executors)
    assert all(f.executor.monitor is monitor for f in functions)
    queries: list[tuple[int, int]] = []  # (thread id, number of jobs asked)
    original = monitor.scheduler.statuses

    def counting(subs: Any) -> Any:
        queries.append((threading.get_ident(), len(subs)))
        return original(subs)

    monitor.scheduler.statuses = counting  # type: ignore[method-assign]
    try:
        futures = [f.submit(1.5, i) for i, f in enumerate(functions)]
        futures += [ex.submit(time.sleep, 1.5) for ex in executors]
        assert [f.result(timeout=60) for f in futures[:10]] == list(range(10))
        for f in futures[10:]:
            f.result(timeout=60)
    finally:
        del monitor.scheduler.statuses
    assert len({tid for tid, _ in queries}) <= 2  # one monitor thread (restarted when idle)
    assert max(n for _, n in queries) == 13, queries  # every job in one query
    assert len(queries) == monitor.polls - (monitor.polls - len(queries))


# ------------------------------------------------------------------ hooks through pluggy


class Wrappers:
    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @hookimpl(wrapper=True)
    def clustrix_job_script(self, profile: Any, job_name: str, script: Any) -> Iterator[None]:
        before = script.text
        result = yield
        self.seen["script"] = (before, script.text, result)
        return result

    @hookimpl(wrapper=True)
    def clustrix_job_submitted(self, record: Any) -> Iterator[None]:
        result = yield
        self.seen["submitted"] = record.job_id
        return result

    @hookimpl(wrapper=True)
    def clustrix_job_finished(self, record: Any, state: str) -> Iterator[None]:
        result = yield
        self.seen["finished"] = (record.job_id, state)
        return result


class InPlace:
    @hookimpl(tryfirst=True)
    def clustrix_job_script(self, script: Any) -> None:
        first, rest = script.text.split("\n", 1)
        script.text = f"{first}\nexport HOOKED_IN_PLACE=1\n{rest}"


def test_a_wrapper_on_each_lifecycle_hook(
    local: Path, clustrix_register_plugin: Any, tmp_path: Path
) -> None:
    wrappers = Wrappers()
    clustrix_register_plugin(wrappers, name="wrappers")
    clustrix_register_plugin(InPlace(), name="in-place")
    ex = ClusterExecutor("local", cleanup="never")
    fut = ex.submit(getenv, "HOOKED_IN_PLACE")
    assert fut.result(timeout=60) == "1"
    wait_for(lambda: "finished" in wrappers.seen)
    before, after, _ = wrappers.seen["script"]
    assert "HOOKED_IN_PLACE" not in before and "export HOOKED_IN_PLACE=1" in after
    assert isinstance(after, str) and "generator" not in after
    assert wrappers.seen["submitted"] == fut.job_id
    assert wrappers.seen["finished"] == (fut.job_id, "COMPLETED")


# ------------------------------------------------------------------ import graph


MODULES = ["config", "plugins", "builtin", "hookspecs", "scheduler", "transport", "store", "specs"]


def _imports(module: str) -> set[str]:
    """Core modules ``module`` imports at run time (function-level imports included,
    ``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse((ROOT / "clustrix_core" / f"{module}.py").read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found & set(MODULES)


def test_core_modules_import_each_other_without_cycles() -> None:
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if not state.get(nxt):
                found = cycle_from(nxt, [*path, node])
                if found:
                    return found
        state[node] = 2
        return None

    for m in MODULES:
        if not state.get(m):
            assert cycle_from(m, []) is None, graph
    assert graph["specs"] == set()
    assert "plugins" not in graph["scheduler"]


# ------------------------------------------------------------------ the store and framed output


def test_file_store_stages_fetches_and_cleans_only_job_directories(tmp_path: Path) -> None:
    from clustrix_core.transport import LocalTransport

    store = FileStore(LocalTransport(profile=None), str(tmp_path / "w"))  # type: ignore[arg-type]
    loc = store.stage(job_id="20261201-101010-abcdef01", name="n", inputs={"a": b"1"})
    assert os.stat(loc).st_mode & 0o777 == 0o700
    assert store.ready(loc, [0, 1]) == set() and store.fetch(loc, 0) is None
    Path(loc, "result.1").write_bytes(b"r")
    Path(loc, "out.1").write_text("printed\n")
    assert store.ready(loc, [0, 1]) == {1} and store.fetch(loc, 1) == b"r"
    assert store.log(loc, "out", 1) == "printed\n" and store.log(loc, "err", 1) == ""
    with pytest.raises(ClustrixError, match="refusing to remove"):
        store.cleanup(str(tmp_path))
    store.cleanup(loc)
    assert not os.path.exists(loc)


def test_runner_writes_its_outcome_to_stdout_between_markers(tmp_path: Path) -> None:
    """``runner.py --inputs DIR --output -``: read-only inputs, the outcome framed on stdout after
    the function's prints, which cannot forge it."""
    import secrets

    from clustrix_core import runner
    from clustrix_core.executor import RUNNER_SOURCE
    from clustrix_core.serialization import (
        RemoteInfo,
        SourceSerializer,
        decode_result,
        encode_payload,
        loads_value,
    )
    from tests.core import crossfuncs

    key = secrets.token_bytes(32)
    job_id = "20261201-101010-abcdef02"
    payload = encode_payload(
        crossfuncs.prints_a_fake_frame,
        [((job_id,), {})],
        [(0, 1)],
        job_id=job_id,
        key=key,
        remote=RemoteInfo.local(),
        strategies=[SourceSerializer()],
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "key").write_text(key.hex())
    (inputs / "runner.py").write_bytes(RUNNER_SOURCE)
    for name, data in payload.files().items():
        (inputs / name).write_bytes(data)
    for f in inputs.iterdir():
        f.chmod(0o400)
    inputs.chmod(0o500)
    proc = subprocess.run(
        [
            sys.executable,
            str(inputs / "runner.py"),
            "--inputs",
            str(inputs),
            "--task-env",
            "IDX",
            "--output",
            "-",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "IDX": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    printed, blob = split_framed_output(proc.stdout, job_id, 0)
    assert blob is not None and "hello before" in printed and "CLUSTRIX" in printed
    report = decode_result(blob, key, job_id=job_id, task=0, ncalls=1)
    assert loads_value(report["outcomes"][0]["value"]) == 42
    assert pickle.loads(runner.unseal(runner.PAYLOAD_MAGIC, key, payload.function, "p", job_id))
    assert not list(inputs.glob("result.*"))


def test_json_of_a_record_keeps_the_location_opaque(local: Path) -> None:
    with ClusterExecutor("local") as ex:
        fut = ex.submit(abs, -3)
        assert fut.result(timeout=60) == 3
    record = get_registry().get(fut.job_id)
    assert json.loads(json.dumps(record.submissions))[0]["native_id"]


def test_clustrix_core_attach_is_the_function_whatever_was_imported_first() -> None:
    """The CLI imports the module behind ``attach`` first; ``from clustrix_core import attach``
    still gives the function (a submodule of the same name used to shadow it)."""
    code = (
        "import clustrix_core.cli, clustrix_core.jobhandle\n"
        "from clustrix_core import attach\n"
        "assert callable(attach) and attach.__name__ == 'attach', attach\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
