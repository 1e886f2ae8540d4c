"""Issue 14 items 3, 6, 7, 9 and 10 on the real backends: values that try to become directives,
secrets in batch scripts, results bound to their task, signals to reused process groups, and
work_dir characters batch systems interpret."""

from __future__ import annotations

import glob
import os
import stat
import subprocess
from pathlib import Path

import pytest

from clustrix_core import ClusterExecutor
from clustrix_core.errors import ConfigError, IntegrityError
from tests.conftest import cluster_config

from .conftest import MALLORY, run_as


def env_of(name: str) -> str | None:
    import os as _os

    return _os.environ.get(name)


def pythonpath() -> str:
    import os as _os

    return _os.environ.get("PYTHONPATH", "")


@pytest.mark.parametrize(
    ("cluster", "profile", "prefix"),
    [("sge", "sge", "#$"), ("slurm", "slurm", "#SBATCH")],
)
def test_a_value_never_forms_a_directive_and_secrets_stay_out_of_scripts(
    cluster: str,
    profile: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    users: dict[str, int],
) -> None:
    """Item 3: an env value spanning lines with a directive line; item 7: a token in env."""
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config(cluster)))
    evil = tmp_path / "evil"
    evil.mkdir()
    directive = (
        f"{prefix} -v PYTHONPATH={evil}"
        if prefix == "#$"
        else f"{prefix} --export=PYTHONPATH={evil}"
    )
    value = f"first\n{directive}\nlast"
    token = "tok-" + os.urandom(8).hex()
    with ClusterExecutor(profile, cleanup="never", env={"TRICK": value, "TOKEN": token}) as ex:
        assert ex.submit(env_of, "TRICK").result(timeout=120) == value
        fut = ex.submit(pythonpath)
        assert str(evil) not in fut.result(timeout=120)
        job_dir = Path(fut.job.location)
    scripts = [p.read_text() for p in job_dir.glob("job.*.sh")]
    assert scripts and all(token not in s and directive not in s for s in scripts)
    env_sh = job_dir / "env.sh"
    assert token in env_sh.read_text() and stat.S_IMODE(env_sh.stat().st_mode) == 0o600
    if cluster == "sge":  # Grid Engine's spool copy of the script, readable by other users
        for path in glob.glob("/var/spool/gridengine/**/job_scripts/*", recursive=True):
            assert token not in Path(path).read_text(errors="replace")
    readable = run_as(MALLORY, "cat", str(env_sh))
    assert readable.returncode != 0 and token not in readable.stdout


def test_swapped_results_are_refused_as_another_user_would_swap_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 6: results of a map swapped (by someone who can write the job directory: here root
    standing in for it) are refused; the untouched task still delivers."""
    from clustrix_core import attach

    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("local")))

    def tenfold(x: int) -> int:
        return 10 * x

    with ClusterExecutor("local", cleanup="never") as ex:
        futures = ex.map_futures(tenfold, [1, 2, 3], chunksize=1)
        assert [f.result(timeout=60) for f in futures] == [10, 20, 30]
        job_dir = Path(futures[0].job.location)
    a, b = (job_dir / "result.0").read_bytes(), (job_dir / "result.1").read_bytes()
    (job_dir / "result.0").write_bytes(b)
    (job_dir / "result.1").write_bytes(a)
    handle = attach(futures[0].job_id)
    for i in (0, 1):
        with pytest.raises(IntegrityError, match="belongs to"):
            handle.futures[i].result(timeout=60)
    assert handle.futures[2].result(timeout=60) == 30


def test_cancel_of_a_finished_job_leaves_a_reused_process_group_alone(
    monkeypatch: pytest.MonkeyPatch, users: dict[str, int]
) -> None:
    """Item 9: the recorded process group id of a finished local job now belongs to another
    user's process: `clustrix cancel` does not signal it."""
    from clustrix_core import attach
    from clustrix_core.registry import get_registry

    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config("local")))
    with ClusterExecutor("local") as ex:
        fut = ex.submit(abs, -4)
        assert fut.result(timeout=60) == 4
    other = subprocess.Popen(
        ["runuser", "-u", MALLORY, "--", "setsid", "sleep", "60"], stdout=subprocess.DEVNULL
    )
    try:
        import time

        time.sleep(0.5)
        pids = subprocess.run(
            ["pgrep", "-u", MALLORY, "-x", "sleep"], capture_output=True, text=True
        ).stdout.split()
        assert pids
        record = get_registry().get(fut.job_id)
        get_registry().update(
            fut.job_id,
            state="SUBMITTED",
            submissions=[{**record.submissions[0], "native_id": pids[0]}],
        )
        assert attach(fut.job_id).cancel() is True  # the record claims it runs: asked to cancel
        time.sleep(1.0)
        assert subprocess.run(["kill", "-0", pids[0]]).returncode == 0, "signalled"
    finally:
        other.kill()
        subprocess.run(["pkill", "-u", MALLORY, "-x", "sleep"])


@pytest.mark.parametrize("profile", ["slurm", "sge"])
@pytest.mark.parametrize("bad", ["/tmp/a\\b", "/tmp/$USER/x", '/tmp/"q"', "/tmp/#x"])
def test_work_dir_characters_batch_systems_interpret_are_refused(
    profile: str, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 10: refused before anything is staged, naming the work_dir."""
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(cluster_config(profile)))
    with pytest.raises(ConfigError, match="work_dir"):
        ClusterExecutor(profile, work_dir=bad)


@pytest.mark.parametrize("how", ["foreign owner", "group-writable"])
def test_a_task_refuses_a_job_directory_swapped_after_staging(
    how: str, tmp_path: Path, users: dict[str, int]
) -> None:
    """Item 1 (the rename race in a group project directory): whatever sits at the job
    directory's path when the task starts must be the user's own private directory, else the
    task stops before sourcing env.sh or running runner.py."""
    from clustrix_core.config import build_profile
    from clustrix_core.scheduler import JobSpec, task_body

    job_dir = tmp_path / "job"
    job_dir.mkdir(mode=0o700)
    marker = tmp_path / "ran"
    (job_dir / "env.sh").write_text(f"touch {marker}\n")
    (job_dir / "runner.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    if how == "foreign owner":
        os.chown(job_dir, users[MALLORY], -1)
    else:
        job_dir.chmod(0o770)
    spec = JobSpec(
        job_id="j",
        name="n",
        location=str(job_dir),
        ntasks=1,
        python="python3",
        profile=build_profile("p", {}),
    )
    proc = subprocess.run(
        ["sh", "-c", "TASK=0\n" + task_body(spec)], capture_output=True, text=True
    )
    assert proc.returncode == 95, proc
    assert "refusing to run" in proc.stderr and not marker.exists()
