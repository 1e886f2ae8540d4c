"""The runner, run by every pyenv CPython 3.6 to 3.13 on payloads made by the local Python."""

from __future__ import annotations

import glob
import os
import pickle
import secrets
import shutil
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


def run_job(tmp_path: Path, python: str, fn, calls, ntasks, strategy) -> list[dict]:
    job = tmp_path / f"job-{secrets.token_hex(4)}"
    job.mkdir(mode=0o700)
    key = secrets.token_bytes(32)
    (job / "key").write_text(key.hex())
    (job / "runner.py").write_bytes(RUNNER_SOURCE)
    tasks = split_tasks(len(calls), ntasks)
    payload = encode_payload(fn, calls, tasks, key=key, remote=probe(python), strategies=[strategy])
    (job / "payload.bin").write_bytes(payload)
    reports = []
    for t in range(len(tasks)):
        proc = subprocess.run(
            [python, str(job / "runner.py"), str(job), str(t)], capture_output=True, text=True
        )
        report = decode_result((job / f"result.{t}").read_bytes(), key)
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
    def encode(self, fn, calls, protocol):  # type: ignore[override]
        return super().encode(fn, calls, min(protocol, 4))


def test_tampered_payload_refused_by_runner(tmp_path: Path) -> None:
    reports_dir = tmp_path / "j"
    reports_dir.mkdir()
    key = secrets.token_bytes(32)
    (reports_dir / "key").write_text(key.hex())
    payload = encode_payload(
        crossfuncs.version,
        [((), {})],
        [(0, 1)],
        key=key,
        remote=RemoteInfo.local(),
        strategies=[SourceSerializer()],
    )
    (reports_dir / "payload.bin").write_bytes(payload.replace(b"version", b"versioN"))
    shutil.copy(runner.__file__, reports_dir / "runner.py")
    proc = subprocess.run(
        [sys.executable, str(reports_dir / "runner.py"), str(reports_dir), "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "HMAC" in proc.stderr
    report = decode_result((reports_dir / "result.0").read_bytes(), key)
    assert "HMAC" in report["error"]["message"]


def test_tampered_result_refused_locally() -> None:
    key = secrets.token_bytes(32)
    body = pickle.dumps({"outcomes": []})
    blob = runner.seal(runner.RESULT_MAGIC, key, body)
    assert decode_result(blob, key) == {"outcomes": []}
    forged = runner.seal(
        runner.RESULT_MAGIC, secrets.token_bytes(32), pickle.dumps({"outcomes": ["evil"]})
    )
    with pytest.raises(IntegrityError, match="HMAC"):
        decode_result(forged, key)
    with pytest.raises(IntegrityError, match="HMAC"):
        decode_result(blob[:-1] + b"X", key)


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
    payload = encode_payload(
        crossfuncs.raises,
        [((5,), {})],
        [(0, 1)],
        key=key,
        remote=RemoteInfo.local(),
        strategies=strategies,
    )
    envelope = pickle.loads(runner.unseal(runner.PAYLOAD_MAGIC, key, payload, "payload"))
    assert envelope["strategies"] == ["cloudpickle", "source"]
    job = tmp_path / "job"
    job.mkdir()
    (job / "key").write_text(key.hex())
    (job / "payload.bin").write_bytes(payload)
    (job / "runner.py").write_bytes(RUNNER_SOURCE)
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
    report = decode_result((job / "result.0").read_bytes(), key)
    assert report["strategy"] == "source" and values([report]) == [5]
    assert json.dumps(envelope["tasks"]) == "[[0, 1]]"


def test_large_payload_carries_one_encoding() -> None:
    big = b"x" * (2 << 20)
    payload_key = secrets.token_bytes(32)
    payload = encode_payload(
        crossfuncs.raises,
        [((big,), {})],
        [(0, 1)],
        key=payload_key,
        remote=RemoteInfo.local(),
        strategies=[CloudpickleSerializer(), SourceSerializer()],
    )
    envelope = pickle.loads(runner.unseal(runner.PAYLOAD_MAGIC, payload_key, payload, "payload"))
    assert envelope["strategies"] == ["cloudpickle"]
