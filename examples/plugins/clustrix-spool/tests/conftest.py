"""A private spool "cluster" for the test session: a spool directory, a job directory and a
clustrix config file with the profile ``spool``. For your own scheduler, return the config of
your test cluster instead (for example from a ``tests/clusters/NAME/up`` script, through
``clustrix_core.testing.start_cluster``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from clustrix_core.testing import write_config


@pytest.fixture(scope="session")
def spool_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    submit = shutil.which("spool-submit") or str(Path(sys.executable).parent / "spool-submit")
    if not Path(submit).is_file():
        pytest.fail("spool-submit is not installed: pip install this package first", pytrace=False)
    root = tmp_path_factory.mktemp("spool")
    return write_config(
        root / "clustrix.toml",
        {
            "spool": {
                "scheduler": "spool",
                "transport": "local",
                "python": sys.executable,
                "work_dir": str(root / "jobs"),
                "spool_dir": str(root / "spool"),
                "spool_bin": str(Path(submit).parent),
                "cleanup": "never",
            },
        },
    )
