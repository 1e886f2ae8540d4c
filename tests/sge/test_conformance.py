"""The shared scheduler conformance suite against the real Son of Grid Engine, over both
transports: profile ``sge`` (local commands) and ``sge-ssh`` (through the ssh test server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_core.testing.conformance import SchedulerConformance
from tests.conftest import cluster_config

from .conftest import need_transport


class TestSgeConformance(SchedulerConformance):
    profile = "sge"
    overrides = {"cleanup": "never"}
    hold = {"directives": ["-h"]}

    @pytest.fixture(scope="class")
    def cluster_config(self) -> Path:
        need_transport(self.profile)
        return cluster_config("sge")


class TestSgeSshConformance(TestSgeConformance):
    profile = "sge-ssh"
