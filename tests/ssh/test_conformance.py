"""The shared conformance suites, run against the real test sshd (tests/clusters/ssh/up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clustrix_ssh.transport import SshTransport

from clustrix_core.config import load_profile
from clustrix_core.testing.conformance import SchedulerConformance, TransportConformance
from tests.conftest import cluster_config


class TestSshSchedulerConformance(SchedulerConformance):
    profile = "ssh"
    overrides = {"cleanup": "never"}

    @pytest.fixture(scope="class")
    @classmethod
    def cluster_config(cls) -> Path:
        return cluster_config("ssh")


class TestSshTransportConformance(TransportConformance):
    @pytest.fixture
    def transport(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshTransport]:
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("ssh")))
        t = SshTransport(profile=load_profile("ssh"))
        yield t
        t.close()


class TestSshTransportConformanceWithoutPersistentShell(TestSshTransportConformance):
    """The same contract when every command gets its own channel (``persistent_shell = false``)."""

    @pytest.fixture
    def transport(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshTransport]:
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("ssh")))
        t = SshTransport(profile=load_profile("ssh", persistent_shell=False))
        yield t
        t.close()
