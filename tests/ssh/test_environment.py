"""Remote virtual environments (profile ``environment``) built through the ssh transport."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clustrix_core.errors import TransportError
from clustrix_core.testing import forget_cluster_facts

from . import remote_funcs
from .conftest import interpreter


def _forget_caches() -> None:
    """Make the next executor ask the remote again instead of this process's memory (the probe
    and the environment are cluster facts)."""
    forget_cluster_facts()


@pytest.mark.parametrize("minor", ["3.11", "3.6"])
def test_requirement_is_importable_and_the_venv_is_reused(
    minor: str, make_executor, tmp_path: Path
) -> None:
    _forget_caches()
    work = f"{tmp_path}/remote/jobs"
    ex = make_executor(
        python=interpreter(minor), environment=["six"], work_dir=work, cleanup="always"
    )
    started = time.monotonic()
    python, _ = ex.backend.remote()
    build_seconds = time.monotonic() - started
    venv = python.rsplit("/bin/", 1)[0]
    # inside the user's private work directory (not beside work_dir: "/tmp" made it "/envs")
    root = ex.backend.store.root()
    assert root.startswith(work) and venv.startswith(f"{root}/.envs/env-"), python
    where = ex.submit(remote_funcs.module_file, "six").result(timeout=120)
    assert where.startswith(venv + "/"), (
        where
    )  # from the environment, not the interpreter's site-packages

    transport = ex.backend.transport
    transport.put_bytes(f"{venv}/clustrix-test-marker", b"built once")
    _forget_caches()
    again = make_executor(
        python=interpreter(minor), environment=["six"], work_dir=work, cleanup="always"
    )
    started = time.monotonic()
    python_again, _ = again.backend.remote()
    reuse_seconds = time.monotonic() - started
    assert python_again == python
    assert transport.get_bytes(f"{venv}/clustrix-test-marker") == b"built once"  # not rebuilt
    assert reuse_seconds < build_seconds / 3, (reuse_seconds, build_seconds)
    assert again.submit(remote_funcs.versions_of, "six").result(timeout=120)["six"]


def test_bad_requirement_gives_the_installers_error(make_executor, tmp_path: Path) -> None:
    _forget_caches()
    ex = make_executor(
        environment=["clustrix-surely-missing-package==0.0.1"], work_dir=f"{tmp_path}/remote/jobs"
    )
    with pytest.raises(TransportError) as info:
        ex.submit(remote_funcs.versions_of, "json").result(timeout=120)
    text = str(info.value)
    assert "clustrix-surely-missing-package" in text
    assert "No matching distribution" in text or "not found" in text.lower(), text
    names = ex.backend.transport.listdir(f"{ex.backend.store.root()}/.envs")
    leftovers = [n for n in names if not n.endswith(".requirements.txt")]
    assert leftovers == [], leftovers  # no half-built environment that a later call would reuse
