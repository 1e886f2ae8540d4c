"""Issue 12 item 3: a remote ``sys.exit``, ``SystemExit`` or ``KeyboardInterrupt`` never ends or
interrupts the caller; ``os._exit`` is a job failure naming its status; one exit inside a
``map`` fails only its own call. Run in a real process as ``__main__`` (a remote exit that
reached the caller would end it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import ClusterExecutor, JobFailedError
from tests.edges import edgefuncs
from tests.edges.conftest import run_script

EXIT_SCRIPT = """
import json, sys
from clustrix_core import ClusterExecutor, RemoteError
from tests.edges import edgefuncs

ex = ClusterExecutor(sys.argv[1], **json.loads(sys.argv[2]))
out = {}
for label, fn, args in [
    ("exit3", edgefuncs.exits, (3,)),
    ("exit0", edgefuncs.exits, (0,)),
    ("exitnone", edgefuncs.exits, (None,)),
    ("exitmsg", edgefuncs.exits, ("bye",)),
    ("interrupt", edgefuncs.interrupted, ()),
]:
    try:
        out[label] = ["returned", repr(ex.submit(fn, *args).result(timeout=120))]
    except RemoteError as exc:
        out[label] = [exc.type_name, exc.message, getattr(exc, "exit_code", None)]
futures = ex.map_futures(edgefuncs.exit_on_two, range(5), chunksize=5)
out["map"] = [
    repr(f.exception(timeout=120)).split("(")[0] if f.exception(timeout=120) else f.result()
    for f in futures
]
print("RESULT " + json.dumps(out))
sys.stdout.flush()
"""


def test_a_remote_exit_or_interrupt_never_ends_the_caller(
    strategy: tuple[str, dict[str, Any], str], tmp_path: Path
) -> None:
    profile, overrides, _ = strategy
    done = run_script(EXIT_SCRIPT, tmp_path, profile, json.dumps(overrides))
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["exit3"] == ["SystemExit", "the function called sys.exit(3)", 3]
    assert out["exit0"] == ["SystemExit", "the function called sys.exit(0)", 0]
    assert out["exitnone"] == ["SystemExit", "the function called sys.exit()", None]
    assert out["exitmsg"] == ["SystemExit", "the function called sys.exit('bye')", "bye"]
    assert out["interrupt"][:2] == [
        "KeyboardInterrupt",
        "the function was interrupted on the remote (KeyboardInterrupt)",
    ]
    assert out["map"] == [0, 10, "RemoteError", 30, 40]


def test_the_message_of_a_remote_exit_reads_well(local: Path) -> None:
    ex = ClusterExecutor("local")
    exc = ex.submit(edgefuncs.exits, 3).exception(timeout=120)
    assert str(exc).startswith("SystemExit: the function called sys.exit(3)\n")
    assert "sys.exit(code)" in str(exc)  # the remote traceback, line and all


def test_os_exit_is_a_job_failure_naming_its_status(local: Path) -> None:
    ex = ClusterExecutor("local")
    with pytest.raises(JobFailedError, match=r"without a result.*exited 5") as info:
        ex.submit(edgefuncs.hard_exit, 5).result(timeout=120)
    assert info.value.state == "FAILED"
