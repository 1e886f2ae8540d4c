"""The author kit's tests: the example plugin (examples/plugins/clustrix-spool), the guide
(docs/writing-a-plugin.md) and clustrix_core.testing.

The example is not installed into the development environment (that would add a ``spool``
backend to everyone's plugin list): in-process tests import it from its folder and register it
for one test with ``clustrix_register_plugin``; test_venv.py installs it for real, in a fresh
virtual environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugins" / "clustrix-spool"
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
DATA = Path(__file__).resolve().parent / "data"
SPOOL_PY = EXAMPLE / "clustrix_spool" / "spool.py"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture
def spool_bin(tmp_path: Path) -> Path:
    """A directory with spool-submit, spool-status and spool-cancel, as ``pip install`` would
    make them, running the example's spool.py from the repository."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for command in ("submit", "status", "cancel"):
        path = directory / f"spool-{command}"
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SPOOL_PY}" {command} "$@"\n')
        path.chmod(0o755)
    return directory


@pytest.fixture
def spool_plugin(clustrix_register_plugin: Callable[..., None]) -> Any:
    """The example plugin, registered as if its entry point had been found."""
    from clustrix_spool import plugin

    clustrix_register_plugin(plugin, name="spool", distribution="clustrix-spool")
    return plugin


@pytest.fixture
def spool_profile(
    tmp_path: Path, spool_bin: Path, spool_plugin: Any, clustrix_config: Callable[..., Path]
) -> Callable[..., Path]:
    """``spool_profile(**values)`` writes a config whose profile ``spool`` uses a private spool."""

    def make(**values: Any) -> Path:
        return clustrix_config(
            {
                "spool": {
                    "scheduler": "spool",
                    "transport": "local",
                    "python": sys.executable,
                    "work_dir": str(tmp_path / "jobs"),
                    "spool_dir": str(tmp_path / "spool"),
                    "spool_bin": str(spool_bin),
                    "cleanup": "never",
                    **values,
                }
            }
        )

    return make


def spool(*args: str, spool_dir: Path, check: bool = True) -> Any:
    """Run the spool batch system directly: ``spool("status", "--all", spool_dir=...)``."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(SPOOL_PY), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SPOOL_DIR": str(spool_dir)},
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"spool {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc
