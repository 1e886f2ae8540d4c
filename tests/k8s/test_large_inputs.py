"""Inputs above a Secret's size limit (~1 MiB): without a volume for inputs, a clear error before
anything is created; with ``inputs_pvc`` (and ``inputs_local_path``, where this host sees the
same volume: under the emulator, the directory behind the claim), the inputs but the key and
runner go into a private directory per job on the volume, which the pod mounts read-only; the
result still comes back through the pod log."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.errors import ConfigError, SerializationError
from clustrix_core.executor import ClusterExecutor
from tests.k8s.conftest import TIMEOUT

pytestmark = pytest.mark.usefixtures("use_k8s")

BIG = 2 * 1024 * 1024


def digest(data: bytes) -> tuple[int, str]:
    import hashlib

    return len(data), hashlib.sha256(data).hexdigest()


def managed(core: Any, batch: Any, namespace: str) -> set[str]:
    selector = "app.kubernetes.io/managed-by=clustrix"
    return {
        s.metadata.name
        for s in core.list_namespaced_secret(namespace, label_selector=selector).items
    } | {
        j.metadata.name for j in batch.list_namespaced_job(namespace, label_selector=selector).items
    }


@pytest.fixture
def volume(k8s_profile: dict[str, Any], namespace: str) -> Iterator[tuple[str, Path]]:
    """A fresh claim and the emulator's directory behind it (this host's view of the volume)."""
    name = f"inputs-{uuid.uuid4().hex[:8]}"
    path = Path(k8s_profile["kubeconfig"]).parent / "volumes" / namespace / name
    path.mkdir(parents=True)
    yield name, path
    shutil.rmtree(path, ignore_errors=True)


def test_large_argument_fails_before_anything_is_created(
    executors: Callable[..., ClusterExecutor], core: Any, batch: Any, namespace: str
) -> None:
    ex = executors("k8s")
    ex.backend.remote()  # the probe pod comes and goes before
    before = managed(core, batch, namespace)
    with pytest.raises(SerializationError, match="pass smaller arguments") as info:
        ex.submit(digest, os.urandom(BIG))
    assert "bytes" in str(info.value) and "volume for large inputs" in str(info.value)
    assert managed(core, batch, namespace) <= before  # no Secret, no Job


def test_large_map_fails_before_anything_is_created(
    executors: Callable[..., ClusterExecutor], core: Any, batch: Any, namespace: str
) -> None:
    """Each task fits, all of them together (one Secret per job) do not: the message names the
    profile keys."""
    ex = executors("k8s")
    ex.backend.remote()
    before = managed(core, batch, namespace)
    chunk = os.urandom(600 * 1024)
    with pytest.raises(SerializationError, match="inputs_pvc") as info:
        ex.map_futures(digest, [chunk, chunk], chunksize=1)
    assert "pass smaller arguments" in str(info.value)
    assert managed(core, batch, namespace) <= before


def test_large_argument_through_an_inputs_volume(
    executors: Callable[..., ClusterExecutor],
    volume: tuple[str, Path],
    core: Any,
    batch: Any,
    namespace: str,
) -> None:
    claim, path = volume
    ex = executors("k8s", inputs_pvc=claim, inputs_local_path=str(path), cleanup="never")
    data = os.urandom(BIG)
    fut = ex.submit(digest, data)
    assert fut.result(timeout=TIMEOUT) == (BIG, hashlib.sha256(data).hexdigest())
    # the Secret keeps the key and the runner only; the rest is in a private directory
    secret = core.read_namespaced_secret(fut.job.location, namespace)
    assert set(secret.data) == {"key", "runner.py"}
    rel = secret.metadata.annotations["clustrix.io/inputs-dir"]
    job_dir = path / rel
    assert job_dir.parent == path / "clustrix-inputs"
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    assert {p.name for p in job_dir.iterdir()} == {"payload.bin", "calls.0"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in job_dir.iterdir())
    # the pod mounts only this job's directory, read-only
    [job] = batch.list_namespaced_job(
        namespace, label_selector=f"clustrix.io/job-id={fut.job_id}"
    ).items
    pod_spec = job.spec.template.spec
    [vol] = [v for v in pod_spec.volumes if v.persistent_volume_claim]
    assert vol.persistent_volume_claim.claim_name == claim and vol.persistent_volume_claim.read_only
    [mount] = [m for m in pod_spec.containers[0].volume_mounts if m.name == vol.name]
    assert mount.read_only and mount.sub_path == rel
    # cleanup removes the directory with the Job and the Secret
    ex.backend.store.cleanup(fut.job.location)
    assert not job_dir.exists()


def test_large_map_through_an_inputs_volume(
    executors: Callable[..., ClusterExecutor], volume: tuple[str, Path]
) -> None:
    claim, path = volume
    ex = executors("k8s", inputs_pvc=claim, inputs_local_path=str(path))
    chunks = [os.urandom(700 * 1024) for _ in range(3)]
    got = list(ex.map(digest, chunks, chunksize=1, timeout=TIMEOUT))
    assert got == [(len(c), hashlib.sha256(c).hexdigest()) for c in chunks]
    deadline = time.monotonic() + 30  # cleaned up after collection (by the monitor)
    while list((path / "clustrix-inputs").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list((path / "clustrix-inputs").iterdir())


def test_inputs_local_path_must_be_a_directory(
    executors: Callable[..., ClusterExecutor], tmp_path: Path
) -> None:
    ex = executors("k8s", inputs_pvc="x", inputs_local_path=str(tmp_path / "not-mounted"))
    with pytest.raises(ConfigError, match="inputs_local_path"):
        ex.submit(digest, b"small")
