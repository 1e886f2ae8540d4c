"""clustrix's shared scheduler contract, run against real spool jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from clustrix_core.testing.conformance import SchedulerConformance


class TestSpoolConformance(SchedulerConformance):
    profile = "spool"

    @pytest.fixture(scope="class")
    def cluster_config(self, spool_config: Path) -> Path:
        return spool_config
