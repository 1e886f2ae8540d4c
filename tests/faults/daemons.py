"""Stopping and restarting the test clusters' daemons on purpose (tests/faults).

Daemons are found through their PID files (never by name) and brought back by running the
cluster's ``up`` script again, which is idempotent and starts exactly what is missing. Other
suites use the same daemons: callers keep every outage short and restart in a ``finally``.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import CLUSTERS

TEST_ROOT = Path(os.environ.get("CLUSTRIX_TEST_ROOT", "/tmp/clustrix-test"))
SLURM_RUN = TEST_ROOT / "slurm" / "run"
SLURMCTLD = (SLURM_RUN / "slurmctld.pid", "slurmctld")
SLURMD = (SLURM_RUN / "slurmd.pid", "slurmd")
SGE_SPOOL = Path("/var/spool/gridengine")
QMASTER = (SGE_SPOOL / "qmaster" / "qmaster.pid", "sge_qmaster")


def execd() -> tuple[Path, str]:
    """The pid file of the live sge_execd (its spool subdirectory is named for its host)."""
    for path in sorted(glob.glob(str(SGE_SPOOL / "execd" / "*" / "execd.pid"))):
        if pid_of((Path(path), "sge_execd")):
            return Path(path), "sge_execd"
    raise AssertionError("no live sge_execd pid file under /var/spool/gridengine/execd")


def alive(pid: int, comm: str) -> bool:
    """``pid`` runs and is ``comm`` (a zombie is not alive; a reused pid is not ``comm``)."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
            return False
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(") ")[2][:1] not in ("Z", "X")


def pid_of(daemon: tuple[Path, str]) -> int | None:
    """The live pid the daemon's pid file names, or None."""
    path, comm = daemon
    try:
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and alive(pid, comm) else None


def stop(daemon: tuple[Path, str], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Signal the daemon (by its pid file) and wait until that process is gone; its pid."""
    pid = pid_of(daemon)
    assert pid is not None, f"{daemon[1]} is not running (pid file {daemon[0]})"
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid, daemon[1]):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += 10
        time.sleep(0.05)
    return pid


def up(cluster: str) -> None:
    """Run ``tests/clusters/CLUSTER/up`` (idempotent: it starts what is missing)."""
    done = subprocess.run(
        [str(CLUSTERS / cluster / "up")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{cluster}/up failed:\n{done.stderr[-3000:]}"


def stop_qmaster(timeout: float = 30.0) -> None:
    """``qconf -km`` (the orderly way), then wait for the process to be gone."""
    pid = pid_of(QMASTER)
    assert pid is not None, "sge_qmaster is not running"
    subprocess.run(["qconf", "-km"], capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout
    while alive(pid, "sge_qmaster"):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += 10
        time.sleep(0.1)


@contextmanager
def down(cluster: str, daemon: tuple[Path, str], sig: int = signal.SIGTERM) -> Iterator[int]:
    """The daemon stopped for the ``with`` block (its old pid given), restarted afterwards by
    the cluster's up script whatever happens."""
    try:
        yield stop(daemon, sig)
    finally:
        up(cluster)


def node_state() -> str:
    out = subprocess.run(
        ["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()
