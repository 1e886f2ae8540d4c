"""The shared scheduler conformance suite on the PBS test clusters: ``pbs`` (real OpenPBS 23.06,
root, local commands), ``pbs-ssh`` (the same server as the non-root ``pbsuser``, through the ssh
test server) and ``torque`` (Debian's slurm-wlm-torque wrappers over the real SLURM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_core.testing.conformance import SchedulerConformance

from .conftest import need_profile, pbs_config


class TestPbsConformance(SchedulerConformance):
    profile = "pbs"
    overrides = {"cleanup": "never"}
    hold = {"directives": ["-h"]}  # qsub -h: a user hold keeps the job queued

    @pytest.fixture(scope="class")
    @classmethod
    def cluster_config(cls) -> Path:
        path = pbs_config()
        need_profile(path, cls.profile)
        return path


class TestPbsSshConformance(TestPbsConformance):
    profile = "pbs-ssh"


class TestTorqueConformance(TestPbsConformance):
    profile = "torque"
