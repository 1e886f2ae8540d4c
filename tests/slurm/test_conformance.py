"""The shared scheduler conformance suite against the real SLURM, over both transports:
``slurm`` (commands run on this machine) and ``slurm-ssh`` (through the ssh test server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_core.testing.conformance import SchedulerConformance
from tests.conftest import cluster_config


class TestSlurmConformance(SchedulerConformance):
    profile = "slurm"
    overrides = {"cleanup": "never"}
    hold = {"directives": ["--hold"]}

    @pytest.fixture(scope="class")
    @classmethod
    def cluster_config(cls) -> Path:
        return cluster_config("slurm")


class TestSlurmSshConformance(SchedulerConformance):
    profile = "slurm-ssh"
    overrides = {"cleanup": "never"}
    hold = {"directives": ["--hold"]}

    @pytest.fixture(scope="class")
    @classmethod
    def cluster_config(cls) -> Path:
        path = cluster_config("slurm")
        if "[profiles.slurm-ssh]" not in path.read_text():
            pytest.skip("the test cluster has no slurm-ssh profile (CLUSTRIX_SLURM_NO_SSH=1)")
        return path
