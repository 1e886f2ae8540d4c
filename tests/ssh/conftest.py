"""Fixtures for the ssh plugin's tests: the shared test sshd, a private second sshd for fault
tests (which stop and restart it), interpreters of other Python versions."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from clustrix_core.config import load_profile, reset_configuration
from clustrix_core.executor import ClusterExecutor
from clustrix_core.testing import start_cluster
from clustrix_core.transport import close_all_transports
from tests.conftest import CLUSTERS, cluster_config

SSHD = "/usr/sbin/sshd"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def interpreter(minor: str) -> str:
    """The pyenv interpreter of Python ``minor`` (e.g. "3.6"); skipped (failed under CI) if absent."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python"))
    if not found:
        message = f"no Python {minor} under {root}/versions"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found[-1]


@pytest.fixture
def ssh_config(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared test sshd's config (profile "ssh"), made the active clustrix config."""
    path = cluster_config("ssh")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    reset_configuration()
    return path


@pytest.fixture
def make_executor(
    ssh_config: Path, executors: Callable[..., ClusterExecutor]
) -> Callable[..., ClusterExecutor]:
    """``make_executor(**overrides)``: an executor on profile "ssh", shut down after the test."""

    def make(profile: str = "ssh", **overrides: Any) -> ClusterExecutor:
        return executors(profile, **overrides)

    return make


# ---------------------------------------------------------------- a private sshd


@attrs.define
class PrivateSshd:
    """A second test sshd that only these tests use, so that they can stop and restart it."""

    root: Path
    config: Path

    @property
    def state(self) -> Path:
        return self.root / "ssh"

    def pid(self) -> int:
        return int((self.state / "sshd.pid").read_text().split()[0])

    def descendants(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener, recursively)."""
        parents: dict[int, int] = {}
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                text = Path(stat).read_text()
                pid = int(stat.split("/")[2])
                parents[pid] = int(text.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        found, frontier = [], {self.pid()}
        while frontier:
            children = {p for p, pp in parents.items() if pp in frontier}
            found.extend(children)
            frontier = children
        return [p for p in found if _exe(p) == SSHD]

    def kill_connections(self) -> int:
        """Kill the server side of every open connection (the listener keeps running)."""
        victims = self.descendants()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(victims)

    def stop(self) -> None:
        """Stop the listener and every connection's server side (by PID, never by name)."""
        victims = self.descendants()
        subprocess.run(
            [str(CLUSTERS / "ssh" / "down")], env=self.env(), check=True, capture_output=True
        )
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def start(self) -> None:
        """Start the listener again, same port and keys."""
        state = self.state
        subprocess.run(
            [SSHD, "-f", str(state / "sshd_config"), "-E", str(state / "sshd.log")], check=True
        )
        port = int(
            next(
                line.split()[1]
                for line in (state / "sshd_config").read_text().splitlines()
                if line.startswith("Port ")
            )
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private sshd did not come back")

    def env(self) -> dict[str, str]:
        return {**os.environ, "CLUSTRIX_TEST_ROOT": str(self.root)}


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def private_sshd() -> Iterator[PrivateSshd]:
    """A second sshd on its own port and state dir (stopped after the module)."""
    root = Path(f"/tmp/clustrix-test-ssh-private-{os.getpid()}")
    env = {"CLUSTRIX_TEST_ROOT": str(root)}
    config = start_cluster(CLUSTERS / "ssh" / "up", env=env)
    server = PrivateSshd(root=root, config=config)
    yield server
    close_all_transports()
    subprocess.run([str(CLUSTERS / "ssh" / "down")], env=server.env(), capture_output=True)
    for pid in server.descendants() if (server.state / "sshd.pid").exists() else []:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_profile(private_sshd: PrivateSshd, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(private_sshd.config))
    reset_configuration()
    load_profile("ssh")
    return "ssh"
