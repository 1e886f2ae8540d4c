"""The profile's ``environment`` on Kubernetes: pip requirements installed when each pod starts,
into a temporary directory, or once per requirement set into the ``environment_pvc`` cache and
reused by later pods; the probe runs in such a pod, so the strategy follows what the environment
provides. Under the emulator pip runs on this machine and installs offline from its local wheel
indexes (pip's global config): ``tomli-w`` is used because the emulator's Python lacks it (``six``
is already installed there, so it would prove nothing)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.errors import ClustrixError
from clustrix_core.executor import ClusterExecutor
from tests.k8s.conftest import TIMEOUT

pytestmark = pytest.mark.usefixtures("use_k8s")

REQUIREMENT = "tomli-w"


def uses_tomli_w(x: int) -> tuple[str, str, str]:
    """What the environment provides: the package, where it is, and the cache's build marker."""
    import os

    import tomli_w

    env = os.environ.get("CLUSTRIX_ENV", "")
    marker = os.path.join(env, ".clustrix-ready")
    built = open(marker).read().strip() if os.path.exists(marker) else ""
    return tomli_w.dumps({"x": x}), env, built


def imports_tomli_w() -> None:
    import tomli_w  # noqa: F401


@pytest.fixture
def claim(k8s_profile: dict[str, Any], namespace: str) -> Iterator[tuple[str, Path]]:
    """A fresh claim name and the emulator's directory behind it (PVCs are shared directories)."""
    name = f"envcache-{uuid.uuid4().hex[:8]}"
    path = Path(k8s_profile["kubeconfig"]).parent / "volumes" / namespace / name
    yield name, path
    shutil.rmtree(path, ignore_errors=True)


def test_the_image_lacks_the_requirement(executors: Callable[..., ClusterExecutor]) -> None:
    ex = executors("k8s")
    with pytest.raises(ModuleNotFoundError, match="tomli_w"):
        ex.submit(imports_tomli_w).result(timeout=TIMEOUT)


def test_environment_installed_at_each_pod_start(
    executors: Callable[..., ClusterExecutor], tmp_path: Path
) -> None:
    """No cache volume: a temporary directory per pod (a requirements file works as well)."""
    import cloudpickle

    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"{REQUIREMENT}  # for the test\n")
    ex = executors("k8s", environment=[str(reqs)])
    first = ex.submit(uses_tomli_w, 1).result(timeout=TIMEOUT)
    second = ex.submit(uses_tomli_w, 2).result(timeout=TIMEOUT)
    assert first[0] == "x = 1\n" and second[0] == "x = 2\n"
    assert first[1] and second[1] and first[1] != second[1]  # installed again, elsewhere
    assert not first[2] and not second[2]  # no cache
    # the probe ran with the environment: the local cloudpickle the executor pinned is there
    _, info = ex.backend.remote()
    assert info.cloudpickle == cloudpickle.__version__
    assert any(r.startswith("cloudpickle==") for r in ex.backend.scheduler.requirements())


def test_environment_cached_on_a_volume_and_reused(
    executors: Callable[..., ClusterExecutor], claim: tuple[str, Path]
) -> None:
    name, path = claim
    ex = executors("k8s", environment=[REQUIREMENT], environment_pvc=name)
    first = ex.submit(uses_tomli_w, 1).result(timeout=TIMEOUT)
    assert first[0] == "x = 1\n"
    envs = sorted((path / "clustrix-envs").iterdir())
    assert [p.name for p in envs if p.is_dir()] == [Path(first[1]).name], envs
    assert first[2].startswith("built ") and REQUIREMENT in first[2]
    built_at = (Path(envs[0]) / ".clustrix-ready").stat().st_mtime
    # later pods (a call, then a map's tasks running at once) reuse it: same marker, not rebuilt
    second = ex.submit(uses_tomli_w, 2).result(timeout=TIMEOUT)
    mapped = list(ex.map(uses_tomli_w, range(3), chunksize=1, timeout=TIMEOUT))
    for got in (second, *mapped):
        assert got[2] == first[2] and Path(got[1]).name == Path(first[1]).name
    assert [r[0] for r in mapped] == [f"x = {i}\n" for i in range(3)]
    assert (Path(envs[0]) / ".clustrix-ready").stat().st_mtime == built_at
    assert not list((path / "clustrix-envs").glob("*.lock"))  # the build lock was released
    # another executor (a new probe, the same requirement set) finds it ready too
    other = executors("k8s", environment=[REQUIREMENT], environment_pvc=name, remote_python="3.11")
    assert other.submit(uses_tomli_w, 3).result(timeout=TIMEOUT)[2] == first[2]


def test_a_failed_install_says_so(executors: Callable[..., ClusterExecutor]) -> None:
    """The remote Python declared (no probe pod): the job's pod fails at start, exit status 97,
    and the error says what failed; pip's own message is in the pod log."""
    ex = executors("k8s", environment=["tomli-w===!!"], remote_python="3.11")
    fut = ex.submit(uses_tomli_w, 1)
    with pytest.raises(ClustrixError, match="exit status 97") as info:
        fut.result(timeout=TIMEOUT)
    assert "environment" in str(info.value) and f"clustrix logs {fut.job_id}" in str(info.value)
    out = fut.stdout() + fut.stderr()
    assert "installing the environment" in out and "tomli-w===!!" in out, out


def test_a_failed_install_in_the_probe_pod_says_so(
    executors: Callable[..., ClusterExecutor],
) -> None:
    ex = executors("k8s", environment=["tomli-w===!!"])
    with pytest.raises(ClustrixError, match="installing the profile's environment") as info:
        ex.submit(uses_tomli_w, 1).result(timeout=TIMEOUT)
    assert "tomli-w===!!" in str(info.value)
