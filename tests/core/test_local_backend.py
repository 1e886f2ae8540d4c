"""Decorator and executor end to end on the local backend (real detached processes)."""

from __future__ import annotations

import inspect
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from clustrix_core import (
    ClusterExecutor,
    JobFailedError,
    RemoteError,
    SerializationError,
    attach,
    cluster,
)
from clustrix_core.scheduler import JobState
from clustrix_core.testing.conformance import wait_for
from tests.conftest import cluster_config
from tests.core import crossfuncs
from tests.core.test_runner_versions import interpreter


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = cluster_config("local")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    return path


def test_decorator_bare_and_with_arguments_keeps_signature(local: Path) -> None:
    @cluster
    def add(a: int, b: int = 2) -> int:
        """Adds."""
        return a + b

    @cluster(profile="local", cores=1, memory="1GB")
    def mul(a: int, *, b: int) -> int:
        return a * b

    assert add(1) == 3 and add(1, b=5) == 6
    assert mul(3, b=4) == 12
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    assert add.__doc__ == "Adds." and add.__name__ == "add"
    assert add.local(2, 2) == 4
    fut = add.submit(5)
    assert fut.result(timeout=60) == 7 and fut.job_id and fut.native_id


def test_remote_exception_type_and_traceback(local: Path) -> None:
    @cluster
    def fail(n: int) -> None:
        raise ValueError(f"bad {n}")

    with pytest.raises(ValueError, match="bad 4") as info:
        fail(4)
    assert "in fail" in info.value.remote_traceback
    assert "Remote traceback" in str(info.value.__cause__)


def test_exception_type_that_cannot_be_rebuilt_is_remote_error(local: Path) -> None:
    @cluster
    def fail() -> None:
        class Odd(Exception):
            pass

        raise Odd("strange")

    with pytest.raises(RemoteError) as info:
        fail()
    assert info.value.type_name.endswith("Odd") and info.value.message == "strange"
    assert "raise Odd" in info.value.remote_traceback


def test_map_keeps_order_and_uses_one_job(local: Path) -> None:
    with ClusterExecutor("local", max_parallel=4, cleanup="never") as ex:
        futures = ex.map_futures(crossfuncs.raises, [0, 1, 2, 4, 5, 6, 7])
        assert [f.result(timeout=60) for f in futures] == [0, 1, 2, 4, 5, 6, 7]
        assert len({f.job_id for f in futures}) == 1 and futures[0].job.record.ntasks == 4
        assert list(ex.map(pow, [2, 3], [5, 2], chunksize=1)) == [32, 9]


def test_one_failing_item_keeps_its_exception_others_values(local: Path) -> None:
    with ClusterExecutor("local") as ex:
        futures = ex.map_futures(crossfuncs.raises, range(6), chunksize=2)
        assert isinstance(futures[3].exception(timeout=60), KeyError)
        assert [f.result() for i, f in enumerate(futures) if i != 3] == [0, 1, 2, 4, 5]


def test_cancel_kills_the_process(local: Path) -> None:
    def sleeper() -> None:
        time.sleep(300)

    with ClusterExecutor("local", cleanup="never") as ex:
        fut = ex.submit(sleeper)
        wait_for(lambda: any(s.state is JobState.RUNNING for s in fut.job.last_status.values()), 30)
        pid = int(fut.native_id)
        assert fut.cancel() and fut.cancelled()
        wait_for(lambda: not _alive(pid), 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def test_process_killed_from_outside_is_job_failure(local: Path) -> None:
    def sleeper() -> None:
        time.sleep(300)

    with ClusterExecutor("local", cleanup="never") as ex:
        fut = ex.submit(sleeper)
        wait_for(lambda: any(s.state is JobState.RUNNING for s in fut.job.last_status.values()), 30)
        pgid = int(fut.native_id)
        os.killpg(pgid, signal.SIGKILL)
        with pytest.raises(JobFailedError) as info:
            fut.result(timeout=60)
        assert info.value.state == "FAILED"
        assert "FAILED" in str(info.value) and "killed" in str(info.value)


def test_runner_killed_by_signal_names_signal_and_stderr_tail(local: Path) -> None:
    def die() -> None:
        import sys as _sys

        print("about to die", file=_sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(JobFailedError) as info:
        cluster(die)()
    assert "signal 9" in str(info.value) and "about to die" in info.value.stderr_tail


def test_reattach_from_a_new_process(local: Path, tmp_path: Path) -> None:
    script = tmp_path / "submit.py"
    script.write_text(
        textwrap.dedent("""
        import time
        from clustrix_core import ClusterExecutor
        def slow(x):
            time.sleep(1.5)
            return x * 7
        fut = ClusterExecutor("local").submit(slow, 6)
        print(fut.job_id)
    """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    handle = attach(job_id)
    assert handle.result(timeout=60) == 42
    cli = subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", "jobs"], capture_output=True, text=True, env=env
    )
    assert job_id in cli.stdout and "COMPLETED" in cli.stdout


def test_cli_result_of_a_job_submitted_elsewhere(local: Path) -> None:
    fut = ClusterExecutor("local", cleanup="never").submit(divmod, 17, 5)
    assert fut.result(timeout=60) == (3, 2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-m", "clustrix_core.cli", "result", fut.job_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 2)"


# ------------------------------------------------------------ cross-version through the local backend


def test_source_strategy_on_python36_through_local_backend(local: Path) -> None:
    py36 = interpreter("3.6")
    fn = cluster(crossfuncs.uses_everything.__wrapped__, python=py36)
    assert fn(1) == {"helper": 9, "sqrt": 4.0, "json": '["hi"]', "point": 5.0}
    assert cluster(crossfuncs.version, python=py36)() == [3, 6]
    closure = cluster(crossfuncs.make_closure(2), python=py36)
    assert closure.map([1, 2, 3]) == [24, 26, 28]
    with pytest.raises(KeyError, match="item 3"):
        cluster(crossfuncs.raises, python=py36)(3)
    # builtins and functions of installed modules travel as imports
    assert cluster(divmod, python=py36)(17, 5) == (3, 2)
    import json

    assert ClusterExecutor("local", python=py36).submit(json.dumps, [1]).result(timeout=60) == "[1]"


def test_decorated_module_function_strips_decorator_by_syntax_tree(local: Path) -> None:
    py36 = interpreter("3.6")
    ex = ClusterExecutor("local", python=py36)
    assert ex.submit(crossfuncs.uses_everything, 2, label="z").result(timeout=60)["json"] == '["z"]'


# ------------------------------------------------------------ bad input, before submission


def test_unpicklable_argument_fails_locally_naming_it(local: Path, tmp_path: Path) -> None:
    jobs = Path(os.environ["CLUSTRIX_STATE_DIR"])
    gen = (i for i in range(3))
    with pytest.raises(SerializationError, match=r"argument 0 of call 0 .*generator"):
        cluster(crossfuncs.raises).submit(gen)
    assert (
        not (jobs / "jobs.sqlite3").exists()
        or "raises"
        not in subprocess.run(
            [sys.executable, "-m", "clustrix_core.cli", "jobs"], capture_output=True, text=True
        ).stdout
    )


def test_function_without_source_fails_locally_under_source_strategy(local: Path) -> None:
    namespace: dict = {}
    exec("def made_up(x):\n    return x\n", namespace)
    with pytest.raises(SerializationError, match="needs the source code"):
        ClusterExecutor("local", serializer="source").submit(namespace["made_up"], 1)
    with pytest.raises(SerializationError, match="lambda"):
        ClusterExecutor("local", serializer="source").submit(lambda x: x, 1)


def test_source_strategy_refuses_uncarriable_global(local: Path) -> None:
    with pytest.raises(SerializationError, match="LOCK"):
        ClusterExecutor("local", serializer="source").submit(_uses_lock)


LOCK = threading.Lock()


def _uses_lock() -> bool:
    return LOCK.locked()


def test_cloudpickle_refused_for_other_remote_version(local: Path) -> None:
    with pytest.raises(SerializationError, match="cloudpickle.*3.6"):
        ClusterExecutor("local", python=interpreter("3.6"), serializer="cloudpickle").submit(
            crossfuncs.version
        )


# ------------------------------------------------------------ security


def test_job_directory_private_and_unpredictable(local: Path) -> None:
    with ClusterExecutor("local", cleanup="never") as ex:
        a, b = ex.submit(abs, -1), ex.submit(abs, -2)
        assert (a.result(timeout=60), b.result(timeout=60)) == (1, 2)
        dirs = [Path(f.job.record.job_dir) for f in (a, b)]
        for d in dirs:
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
            assert stat.S_IMODE((d / "key").stat().st_mode) == 0o600
            assert stat.S_IMODE((d / "payload.bin").stat().st_mode) == 0o600
        assert dirs[0].name != dirs[1].name and len(dirs[0].name.rsplit("-", 1)[1]) == 16


def test_tampered_result_file_is_refused(local: Path) -> None:
    def slow() -> int:
        time.sleep(1.0)
        return 1

    with ClusterExecutor("local", cleanup="never") as ex:
        fut = ex.submit(slow)
        d = Path(fut.job.record.job_dir)
        wait_for(lambda: (d / "result.0").exists(), 30, 0.005)
        blob = (d / "result.0").read_bytes()
        (d / "result.0").write_bytes(blob[:-3] + b"ZZZ")
        with pytest.raises(Exception, match="HMAC"):
            fut.result(timeout=60)


def test_shell_values_are_quoted(local: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker})"

    def env_value() -> str:
        return os.environ["EVIL"]

    with ClusterExecutor(
        "local",
        job_name=f"x{evil}`touch {marker}`",
        env={"EVIL": evil + "'\"; touch " + str(marker)},
        cleanup="never",
    ) as ex:
        fut = ex.submit(env_value)
        assert fut.result(timeout=60) == evil + "'\"; touch " + str(marker)
    assert not marker.exists()
    assert "$(" not in Path(fut.job.record.job_dir).name


def test_closure_using_another_local_module_travels_by_value(local: Path, tmp_path: Path) -> None:
    """cloudpickle ships every user module by value, not only the function's own."""
    from tests.core import crossfuncs as other

    def uses_other(x: int) -> int:
        return other.helper(x) + other.SCALE

    with ClusterExecutor("local", work_dir=str(tmp_path / "jobs")) as ex:
        assert ex.submit(uses_other, 1).result(timeout=60) == 12


def test_cli_status_logs_cancel_of_a_running_job(local: Path) -> None:
    def chatty_sleeper() -> None:
        print("started", flush=True)
        time.sleep(300)

    fut = ClusterExecutor("local", cleanup="never").submit(chatty_sleeper)
    wait_for(lambda: any(s.state is JobState.RUNNING for s in fut.job.last_status.values()), 30)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustrix_core.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    status = cli("status", fut.job_id)
    assert status.returncode == 0 and "RUNNING" in status.stdout, status.stderr
    wait_for(lambda: "started" in cli("logs", fut.job_id, "--stream", "out").stdout, 30)
    assert cli("cancel", fut.job_id).returncode == 0
    wait_for(lambda: "CANCELLED" in cli("status", fut.job_id).stdout, 30)
    with pytest.raises(JobFailedError, match="CANCELLED"):
        fut.result(timeout=60)
    unknown = cli("status", "no-such-job")
    assert unknown.returncode == 1 and "no job 'no-such-job'" in unknown.stderr
