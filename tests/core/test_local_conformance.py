from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_core.testing.conformance import SchedulerConformance
from tests.conftest import cluster_config


class TestLocalConformance(SchedulerConformance):
    profile = "local"
    overrides = {"cleanup": "never"}

    @pytest.fixture(scope="class")
    def cluster_config(self) -> Path:
        return cluster_config("local")
