"""What a user tries first on Kubernetes, beyond values and exceptions (test_k8s.py): the
cross-version path (image ``python:3.6-slim``, which the emulator runs with pyenv's Python 3.6:
the source strategy) for a call, an exception and a map, with the remote Python declared and
probed by a short-lived pod; and ``kubectl get jobs,pods -l ...`` showing what clustrix
created."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from clustrix_core.executor import ClusterExecutor
from tests.k8s.conftest import TIMEOUT

pytestmark = pytest.mark.usefixtures("use_k8s")

PY36 = "python:3.6-slim"


class Oops(ValueError):
    pass


def where(x: int) -> tuple[int, str]:
    import sys

    return x * 2, f"{sys.version_info[0]}.{sys.version_info[1]}"


def raises(x: int) -> None:
    raise Oops(f"bad {x}")


@pytest.fixture(params=["declared", "probed"])
def py36(
    request: pytest.FixtureRequest, executors: Callable[..., ClusterExecutor]
) -> ClusterExecutor:
    versions = os.path.expanduser("~/.pyenv/versions")
    if not os.path.isdir(versions) or not any(v.startswith("3.6.") for v in os.listdir(versions)):
        pytest.skip("pyenv has no Python 3.6 for the emulator's python:3.6 images")
    extra = {"remote_python": "3.6"} if request.param == "declared" else {}
    return executors("k8s", image=PY36, **extra)


def test_cross_version_call(py36: ClusterExecutor) -> None:
    assert py36.submit(where, 21).result(timeout=TIMEOUT) == (42, "3.6")


def test_cross_version_exception_keeps_its_type(py36: ClusterExecutor) -> None:
    with pytest.raises(Oops, match="bad 7") as info:
        py36.submit(raises, 7).result(timeout=TIMEOUT)
    assert "raise Oops" in info.value.remote_traceback  # type: ignore[attr-defined]


def test_cross_version_map(py36: ClusterExecutor) -> None:
    results = list(py36.map(where, range(5), chunksize=2, timeout=TIMEOUT))
    assert results == [(2 * x, "3.6") for x in range(5)]


def test_kubectl_shows_what_clustrix_created(
    executors: Callable[..., ClusterExecutor], k8s_profile: dict[str, Any], namespace: str
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (tests/clusters/k8s/up installs kubernetes-client)")
    ex = executors("k8s", cleanup="never")
    call = ex.submit(abs, -5)
    mapped = ex.map_futures(abs, [-1, -2, -3], chunksize=1)
    assert call.result(timeout=TIMEOUT) == 5
    assert [f.result(timeout=TIMEOUT) for f in mapped] == [1, 2, 3]
    env = {**os.environ, "KUBECONFIG": k8s_profile["kubeconfig"]}

    def kubectl_get(what: str, selector: str, *more: str) -> str:
        out = subprocess.run(
            [kubectl, "get", what, "-n", namespace, "-l", selector, *more],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    for fut, ntasks in ((call, 1), (mapped[0], 3)):
        selector = f"app.kubernetes.io/managed-by=clustrix,clustrix.io/job-id={fut.job_id}"
        names = kubectl_get("jobs,pods,secrets", selector, "-o", "name").split()
        job = fut.job.submissions[0].native_id
        assert f"job.batch/{job}" in names, names
        assert f"secret/{fut.job.location}" in names, names
        pods = [n for n in names if n.startswith(f"pod/{job}-")]
        assert len(pods) == ntasks, names
        # the human table, as a user reads it: the Job complete, its pods Completed
        table = kubectl_get("jobs,pods", selector)
        assert f"job.batch/{job}" in table and "Complete" in table, table
        assert table.count("Completed") == ntasks, table
