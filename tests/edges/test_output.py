"""Issue 12 item 2: a job's prints are seen. A blocking call (``f(x)``) and ``f.map(xs)`` show the
job's stdout and stderr on the caller's own ``sys.stdout``/``sys.stderr`` as they arrive (lines
of a map prefixed ``[JOB task N]``), unless ``stream_output = false``; executor futures stream
only when asked; the output stays readable after cleanup (kept tails), and ``clustrix logs``
says when there is none. Real processes on the ``local`` backend."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustrix_core import ClusterExecutor
from tests.edges import streamfuncs
from tests.edges.conftest import ROOT, run_script

STREAM_SCRIPT = """
import sys
from clustrix_core import cluster
from tests.edges import streamfuncs

chatty = cluster(streamfuncs.chatty, profile="local")
print("RESULT", chatty(3, 1.5), flush=True)
"""


def test_a_blocking_call_shows_its_output_as_it_arrives(local: Path, tmp_path: Path) -> None:
    """The first line printed remotely reaches the caller's stdout seconds before the call
    returns (line by line, not at the end), and its stderr reaches the caller's stderr."""
    script = tmp_path / "stream.py"
    script.write_text(STREAM_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seen: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append((time.monotonic(), line.rstrip("\n")))
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=120) == 0, err
    lines = [text for _, text in seen]
    assert lines == ["out line 0", "out line 1", "out line 2", "RESULT 30"], (lines, err)
    first, result = seen[0][0], seen[-1][0]
    assert result - first > 2.0, f"the output arrived only at the end: {seen}"
    assert "err line 0\nerr line 1\nerr line 2\n" in err


def test_a_map_prefixes_each_line_with_its_job_and_task(
    local: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from clustrix_core import cluster

    shout = cluster(streamfuncs.shout, profile="local")
    assert shout.map(range(4), chunksize=2) == [0, 1, 2, 3]
    out = capfd.readouterr().out
    from clustrix_core.registry import get_registry

    (job_id,) = [r.job_id for r in get_registry().list() if r.function.endswith("shout")]
    for x, task in ((0, 0), (1, 0), (2, 1), (3, 1)):
        assert f"[{job_id} task {task}] value {x}\n" in out, out


def test_stream_output_false_turns_it_off(local: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from clustrix_core import cluster

    shout = cluster(streamfuncs.shout, profile="local", stream_output=False)
    assert shout(7) == 7
    assert shout.map([1, 2]) == [1, 2]
    assert "value" not in capfd.readouterr().out


def test_the_environment_variable_turns_it_off(
    local: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clustrix_core import cluster

    monkeypatch.setenv("CLUSTRIX_STREAM_OUTPUT", "false")
    assert cluster(streamfuncs.shout, profile="local")(5) == 5
    assert "value 5" not in capfd.readouterr().out


def test_executor_futures_stream_only_when_asked(
    local: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert ClusterExecutor("local").submit(streamfuncs.shout, 1).result(timeout=120) == 1
    assert "value 1" not in capfd.readouterr().out
    ex = ClusterExecutor("local", stream_output=True)
    assert ex.submit(streamfuncs.shout, 2).result(timeout=120) == 2
    assert list(ex.map(streamfuncs.shout, [3], timeout=120)) == [3]
    out = capfd.readouterr().out
    assert "value 2\n" in out and "value 3\n" in out


def test_output_is_kept_after_cleanup_and_logs_says_when_there_is_none(
    local: Path, tmp_path: Path
) -> None:
    ex = ClusterExecutor("local", cleanup="always")
    fut = ex.submit(streamfuncs.chatty, 2, 0)
    assert fut.result(timeout=120) == 20
    ex.shutdown(wait=True)
    assert not Path(fut.job.location).exists()  # cleaned up
    assert fut.stdout() == "out line 0\nout line 1\n"
    assert fut.stderr() == "err line 0\nerr line 1\n"
    silent = ClusterExecutor("local", cleanup="always")
    quiet = silent.submit(streamfuncs.quiet, 1)
    assert quiet.result(timeout=120) == 2
    silent.shutdown(wait=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def logs(job_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustrix_core.cli", "logs", job_id],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    done = logs(fut.job_id)
    assert done.returncode == 0, done.stderr
    assert "out line 1" in done.stdout and "err line 1" in done.stdout
    none = logs(quiet.job_id)
    assert none.returncode == 0, none.stderr
    assert none.stdout == ""
    assert re.search(rf"job {quiet.job_id}, task 0: no output", none.stderr), none.stderr


def test_a_notebook_style_stream_object_receives_the_output(local: Path, tmp_path: Path) -> None:
    """Output goes to whatever ``sys.stdout`` is when the call is made (a Jupyter kernel's
    stream object, here a stand-in), not to the process's file descriptor 1."""
    code = """
import io, json, sys
from clustrix_core import cluster
from tests.edges import streamfuncs

class Cell(io.StringIO):
    pass

cell_out, cell_err, real = Cell(), Cell(), sys.stdout
sys.stdout, sys.stderr = cell_out, cell_err
value = cluster(streamfuncs.chatty, profile="local")(1, 0)
sys.stdout, sys.stderr = real, sys.__stderr__
print("RESULT " + json.dumps([value, cell_out.getvalue(), cell_err.getvalue()]))
"""
    done = run_script(code, tmp_path)
    assert done.returncode == 0, done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    value, out, err = json.loads(line[len("RESULT ") :])
    assert (value, out, err) == (10, "out line 0\n", "err line 0\n")
    assert "out line 0" not in done.stdout.replace(line, "")
