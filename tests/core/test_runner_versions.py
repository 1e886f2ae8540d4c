"""The runner, run by every pyenv CPython 3.6 to 3.13 on payloads made by the local Python."""

from __future__ import annotations

import glob
import os
import pickle
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from clustrix_core import runner
from clustrix_core.errors import IntegrityError
from clustrix_core.executor import RUNNER_SOURCE, rebuild_exception, split_tasks
from clustrix_core.serialization import (
    PROBE_SNIPPET,
    CloudpickleSerializer,
    DillSerializer,
    Payload,
    RemoteInfo,
    SourceSerializer,
    decode_result,
    encode_payload,
    loads_value,
)
from tests.core import crossfuncs

PYENV = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
VERSIONS = ["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def interpreter(version: str) -> str:
    found = sorted(glob.glob(f"{PYENV}/versions/{version}.*/bin/python{version}"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"CPython {version} is not installed under {PYENV}")
        pytest.skip(f"CPython {version} is not installed under {PYENV}")
    return found[-1]


def probe(python: str) -> RemoteInfo:
    import json

    out = subprocess.run([python, "-c", PROBE_SNIPPET], capture_output=True, text=True, check=True)
    return RemoteInfo(**json.loads(out.stdout))


JOB_ID = "20261201-000000-0badcafe"


def stage(job: Path, payload: Payload, key: bytes) -> None:
    """A job directory as the file store writes it."""
    job.mkdir(mode=0o700, exist_ok=True)
    (job / "key").write_text(key.hex())
    (job / "runner.py").write_bytes(RUNNER_SOURCE)
    for name, data in payload.files().items():
        (job / name).write_bytes(data)


def report_of(job: Path, key: bytes, task: int = 0, ncalls: int = 1) -> dict:
    blob = (job / f"result.{task}").read_bytes()
    return decode_result(blob, key, job_id=JOB_ID, task=task, ncalls=ncalls)


def encode(fn, calls, tasks, key, remote, strategies) -> Payload:
    return encode_payload(
        fn, calls, tasks, job_id=JOB_ID, key=key, remote=remote, strategies=strategies
    )


def run_job(tmp_path: Path, python: str, fn, calls, ntasks, strategy) -> list[dict]:
    job = tmp_path / f"job-{secrets.token_hex(4)}"
    key = secrets.token_bytes(32)
    tasks = split_tasks(len(calls), ntasks)
    stage(job, encode(fn, calls, tasks, key, probe(python), [strategy]), key)
    reports = []
    for t, (a, b) in enumerate(tasks):
        proc = subprocess.run(
            [python, str(job / "runner.py"), str(job), str(t)], capture_output=True, text=True
        )
        report = report_of(job, key, t, b - a)
        assert proc.returncode == (
            0
            if all(o["ok"] for o in report["outcomes"]) and not report["error"]
            else (2 if report["error"] else 1)
        ), proc.stderr
        reports.append(report)
    return reports


def values(reports: list[dict]) -> list:
    out = []
    for r in reports:
        assert r["error"] is None, r["error"]
        for o in r["outcomes"]:
            out.append(loads_value(o["value"]) if o["ok"] else rebuild_exception(o))
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_source_strategy_every_version(tmp_path: Path, version: str) -> None:
    python = interpreter(version)
    fn = crossfuncs.uses_everything.__wrapped__
    reports = run_job(
        tmp_path, python, fn, [((1,), {}), ((2,), {"label": "x"})], 1, SourceSerializer()
    )
    assert reports[0]["strategy"] == "source"
    assert reports[0]["python"].startswith(version)
    first, second = values(reports)
    assert first == {"helper": 9, "sqrt": 4.0, "json": '["hi"]', "point": 5.0}
    assert second["json"] == '["x"]' and second["helper"] == 12


@pytest.mark.parametrize("version", VERSIONS)
def test_exception_and_array_slices_every_version(tmp_path: Path, version: str) -> None:
    python = interpreter(version)
    calls = [((n,), {}) for n in range(6)]
    reports = run_job(tmp_path, python, crossfuncs.raises, calls, 3, SourceSerializer())
    assert [len(r["outcomes"]) for r in reports] == [2, 2, 2]
    got = values(reports)
    assert got[:3] == [0, 1, 2] and got[4:] == [4, 5]
    assert isinstance(got[3], KeyError) and "item 3" in str(got[3])
    assert "raises" in got[3].remote_traceback and "KeyError" in got[3].remote_traceback


@pytest.mark.parametrize("version", VERSIONS)
def test_closure_defaults_and_recursion_every_version(tmp_path: Path, version: str) -> None:
    python = interpreter(version)
    closure = crossfuncs.make_closure(3, factor=5)
    assert values(
        run_job(
            tmp_path, python, closure, [((2,), {}), ((2,), {"extra": 0})], 1, SourceSerializer()
        )
    ) == [43, 13]
    assert values(
        run_job(tmp_path, python, crossfuncs.calls_itself, [((5,), {})], 1, SourceSerializer())
    ) == [120]


def test_cloudpickle_strategy_same_version(tmp_path: Path) -> None:
    python = sys.executable  # the same Python and cloudpickle as the payload's maker
    assert CloudpickleSerializer().applies(probe(python))
    got = values(
        run_job(
            tmp_path,
            python,
            lambda x: [x, x * 2],
            [((n,), {}) for n in range(4)],
            2,
            CloudpickleSerializer(),
        )
    )
    assert got == [[0, 0], [1, 2], [2, 4], [3, 6]]


def test_dill_strategy_same_version(tmp_path: Path) -> None:
    pytest.importorskip("dill")
    got = values(
        run_job(
            tmp_path, sys.executable, crossfuncs.make_closure(1), [((1,), {})], 1, DillSerializer()
        )
    )
    assert got == [13]


def test_runner_reports_unloadable_payload(tmp_path: Path) -> None:
    """A cloudpickle payload shipped to Python 3.6 (wrong strategy): the runner says why, exit 2."""
    python = interpreter("3.6")
    reports = run_job(tmp_path, python, crossfuncs.version, [((), {})], 1, _ForcedCloudpickle())
    err = reports[0]["error"]
    assert err and "no encoding of the function could be loaded by Python 3.6" in err["message"]


class _ForcedCloudpickle(CloudpickleSerializer):
    def encode_function(self, fn, protocol):  # type: ignore[override]
        return super().encode_function(fn, min(protocol, 4))

    def encode_calls(self, fn, calls, protocol):  # type: ignore[override]
        return super().encode_calls(fn, calls, min(protocol, 4))


def test_tampered_payload_refused_by_runner(tmp_path: Path) -> None:
    reports_dir = tmp_path / "j"
    key = secrets.token_bytes(32)
    payload = encode(
        crossfuncs.version, [((), {})], [(0, 1)], key, RemoteInfo.local(), [SourceSerializer()]
    )
    stage(reports_dir, payload, key)
    (reports_dir / "payload.bin").write_bytes(payload.function.replace(b"version", b"versioN"))
    proc = subprocess.run(
        [sys.executable, str(reports_dir / "runner.py"), str(reports_dir), "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "HMAC" in proc.stderr
    report = report_of(reports_dir, key)
    assert "HMAC" in report["error"]["message"]


def test_tampered_result_refused_locally() -> None:
    key = secrets.token_bytes(32)
    report = {"task": 0, "outcomes": [{"ok": True, "value": pickle.dumps(1)}], "error": None}
    context = runner.task_context(JOB_ID, 0)
    blob = runner.seal(runner.RESULT_MAGIC, key, pickle.dumps(report), context)
    assert decode_result(blob, key, job_id=JOB_ID, task=0, ncalls=1) == report
    forged = runner.seal(
        runner.RESULT_MAGIC, secrets.token_bytes(32), pickle.dumps(report), context
    )
    with pytest.raises(IntegrityError, match="HMAC"):
        decode_result(forged, key, job_id=JOB_ID, task=0, ncalls=1)
    with pytest.raises(IntegrityError, match="HMAC"):
        decode_result(blob[:-1] + b"X", key, job_id=JOB_ID, task=0, ncalls=1)


def test_result_is_bound_to_job_task_and_direction() -> None:
    """A result of another task or job, an input relabelled as a result, and an authentic but
    malformed report are each refused with IntegrityError (never unpickled as an outcome)."""
    key = secrets.token_bytes(32)
    report = {"task": 1, "outcomes": [{"ok": True, "value": pickle.dumps(1)}], "error": None}
    of_task_1 = runner.seal(
        runner.RESULT_MAGIC, key, pickle.dumps(report), runner.task_context(JOB_ID, 1)
    )
    with pytest.raises(IntegrityError, match="belongs to"):
        decode_result(of_task_1, key, job_id=JOB_ID, task=0, ncalls=1)
    with pytest.raises(IntegrityError, match="belongs to"):
        decode_result(of_task_1, key, job_id="20261201-000000-00000000", task=1, ncalls=1)
    payload = encode(
        crossfuncs.version, [((), {})], [(0, 1)], key, RemoteInfo.local(), [SourceSerializer()]
    )
    with pytest.raises(IntegrityError, match="bad header"):
        decode_result(payload.calls[0], key, job_id=JOB_ID, task=0, ncalls=1)
    relabelled = runner.RESULT_MAGIC + payload.calls[0][len(runner.CALLS_MAGIC) :]
    with pytest.raises(IntegrityError, match="HMAC"):
        decode_result(relabelled, key, job_id=JOB_ID, task=0, ncalls=1)
    malformed = runner.seal(
        runner.RESULT_MAGIC, key, pickle.dumps({"task": 0}), runner.task_context(JOB_ID, 0)
    )
    with pytest.raises(IntegrityError, match="not the report"):
        decode_result(malformed, key, job_id=JOB_ID, task=0, ncalls=1)


@pytest.mark.parametrize("version", ["3.6", "3.13"])
def test_source_strategy_ships_other_local_modules(tmp_path: Path, version: str) -> None:
    """A function using another local module (not installed remotely) gets it shipped as source,
    @cluster decorators in it included, and `from __future__ import annotations` on 3.6."""
    python = interpreter(version)
    other = crossfuncs

    def uses_other(x):
        return [other.helper(x), other.uses_everything(x)["sqrt"], other.SCALE]

    env_free = run_job(tmp_path, python, uses_other, [((1,), {})], 1, SourceSerializer())
    assert values(env_free) == [[9, 4.0, 3]]


def test_payload_carries_every_applicable_encoding_and_runner_falls_back(tmp_path: Path) -> None:
    """Same Python: cloudpickle first, source as fallback; a runner that cannot load the first
    encoding (here: cloudpickle made unimportable) loads the next one."""
    import json

    key = secrets.token_bytes(32)
    strategies = [CloudpickleSerializer(), SourceSerializer()]
    payload = encode(crossfuncs.raises, [((5,), {})], [(0, 1)], key, RemoteInfo.local(), strategies)
    envelope = pickle.loads(
        runner.unseal(runner.PAYLOAD_MAGIC, key, payload.function, "payload", JOB_ID)
    )
    assert envelope["strategies"] == ["cloudpickle", "source"]
    job = tmp_path / "job"
    stage(job, payload, key)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "cloudpickle.py").write_text("raise ImportError('no cloudpickle here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    proc = subprocess.run(
        [sys.executable, str(job / "runner.py"), str(job), "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = report_of(job, key)
    assert report["strategy"] == "source" and values([report]) == [5]
    assert json.dumps(envelope["tasks"]) == "[[0, 1]]"


def test_large_payload_carries_one_encoding() -> None:
    big = b"x" * (2 << 20)
    payload_key = secrets.token_bytes(32)
    payload = encode(
        crossfuncs.raises,
        [((big,), {})],
        [(0, 1)],
        payload_key,
        RemoteInfo.local(),
        [CloudpickleSerializer(), SourceSerializer()],
    )
    envelope = pickle.loads(
        runner.unseal(runner.PAYLOAD_MAGIC, payload_key, payload.function, "payload", JOB_ID)
    )
    assert envelope["strategies"] == ["cloudpickle"]
