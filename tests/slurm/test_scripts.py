"""Rendered job scripts against golden files (tests/slurm/golden), and what the profile may ask.
No cluster needed. Regenerate the golden files with ``CLUSTRIX_UPDATE_GOLDEN=1`` and review the diff."""

from __future__ import annotations

from typing import Any

import pytest
from clustrix_slurm.scheduler import SlurmScheduler

from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError
from clustrix_core.scheduler import JobSpec
from clustrix_core.testing import RecordingTransport, assert_golden

from .conftest import GOLDEN

JOB_DIR = "/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd"

FULL = {
    "cores": 4,
    "memory": "8GB",
    "time": "1d2h",
    "gpus": 2,
    "nodes": 2,
    "partition": "gpu",
    "account": "proj-42",
    "qos": "high",
    "max_parallel": 5,
    "env": {"OMP_NUM_THREADS": "4", "GREETING": "it's a 'test' $HOME"},
    "modules": ["gcc/12.2", "cuda/12"],
    "setup": ["source ~/venvs/fit/bin/activate", "ulimit -c 0"],
    "directives": ["--constraint=haswell", "#SBATCH --exclusive", "--mail-type=FAIL"],
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (profile values, render arguments, job dir)
    "single": ({}, {"ntasks": 1}, JOB_DIR),
    "array": ({"partition": "debug"}, {"ntasks": 25}, JOB_DIR),
    "full_array": (FULL, {"ntasks": 40}, JOB_DIR),
    "full_single": (FULL, {"ntasks": 1}, JOB_DIR),
    "split_array_second_chunk": (
        {"time": 90},
        {"ntasks": 15000, "first": 10001, "count": 4999},
        JOB_DIR,
    ),
    "queue_and_spaces": (
        {"queue": "long", "memory": "1500MiB"},
        {"ntasks": 3},
        "/home/bob smith/clustrix jobs/clustrix-f-1-2-3",
    ),
    "percent_in_path": ({}, {"ntasks": 2}, "/scratch/100%/clustrix-f-1-2-3"),
}


def make(values: dict[str, Any]) -> SlurmScheduler:
    profile = build_profile(
        "golden",
        {"scheduler": "slurm", **values},
        plugin_options={"sacct": "", "lost_grace": "", "slurm_bin": ""},
    )
    sched = SlurmScheduler(profile=profile, transport=RecordingTransport())
    sched.validate(profile)
    return sched


def render(values: dict[str, Any], args: dict[str, Any], job_dir: str) -> str:
    sched = make(values)
    ntasks = args["ntasks"]
    job = JobSpec(
        job_id="20260101-120000-0a1b2c3d",
        name="clustrix-fit",
        location=job_dir,
        ntasks=ntasks,
        python="/usr/bin/python3",
        profile=sched.profile,
    )
    first = args.get("first", 0)
    count = args.get("count", ntasks)
    return sched.render_script(job, first=first, count=count, array=ntasks > 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_matches_golden_file(name: str) -> None:
    assert_golden(render(*CASES[name]), GOLDEN / f"{name}.sh")


def test_environment_modules_and_setup_are_in_env_sh(tmp_path: Any) -> None:
    """The script sources env.sh (0600) of the job directory; env.sh holds the values."""
    script = render(*CASES["full_single"])
    assert f"cd {JOB_DIR} || exit 97\n" in script and "\n. ./env.sh || exit 96\n" in script
    for value in ("OMP_NUM_THREADS", "GREETING", "module load", "ulimit", "activate"):
        assert value not in script
    sched, transport, job = submitting(tmp_path, "3", FULL)
    sched.submit(job)
    env = tmp_path / "env.sh"
    assert env.stat().st_mode & 0o777 == 0o600
    assert env.read_text().splitlines()[1:] == [
        "export OMP_NUM_THREADS=4",
        "export GREETING='it'\"'\"'s a '\"'\"'test'\"'\"' $HOME'",
        "module load gcc/12.2",
        "module load cuda/12",
        "source ~/venvs/fit/bin/activate",
        "ulimit -c 0",
    ]
    import subprocess

    proc = subprocess.run(
        ["bash", "-c", f'. {env} && printf %s "$GREETING"'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.stdout == "it's a 'test' $HOME"


def test_scripts_are_valid_bash(tmp_path: Any) -> None:
    import subprocess

    for name, case in CASES.items():
        script = tmp_path / f"{name}.sh"
        script.write_text(render(*case))
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr)


def test_directives_come_before_the_first_command() -> None:
    """sbatch stops reading #SBATCH lines at the first line that is not a comment."""
    lines = render(*CASES["full_array"]).splitlines()
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert directives and max(directives) < first_command
    assert "#SBATCH --array=0-39%5" in lines
    assert "#SBATCH --constraint=haswell" in lines and "#SBATCH --exclusive" in lines


def test_resources_are_converted() -> None:
    script = render(*CASES["full_single"])
    for line in (
        "--cpus-per-task=4",
        "--mem=7630M",
        "--time=1-02:00:00",
        "--gres=gpu:2",
        "--nodes=2",
        "--partition=gpu",
        "--account=proj-42",
        "--qos=high",
        "--job-name=clustrix-fit",
    ):
        assert f"#SBATCH {line}\n" in script
    assert "--array" not in script


def test_submit_argv() -> None:
    sched = make({})
    job = JobSpec(
        job_id="x", name="n", location=JOB_DIR, ntasks=1, python="p", profile=sched.profile
    )
    assert sched.submit_argv(f"{JOB_DIR}/job.0.sh", job, first=0, count=1, array=False) == [
        "sbatch",
        "--parsable",
        f"{JOB_DIR}/job.0.sh",
    ]
    assert sched.cancel_argv(["12", "13"]) == ["scancel", "12", "13"]
    assert sched.cancel_tasks_argv("12", [5, 2, 3]) == ["scancel", "12_[2-3,5]"]


@pytest.mark.parametrize(
    "values,field",
    [
        ({"partition": "a b"}, "partition"),
        ({"account": "x\n#SBATCH --uid=0"}, "account"),
        ({"qos": "'high'"}, "qos"),
        ({"partition": "debug", "queue": "long"}, "partition"),
        ({"directives": ["--constraint=a\n--exclusive"]}, "directives"),
        ({"directives": ["#PBS -l nodes=1"]}, "directives"),
        ({"sacct": "sometimes"}, "sacct"),
        ({"lost_grace": -1}, "lost_grace"),
        ({"lost_grace": "long"}, "lost_grace"),
    ],
)
def test_bad_requests_fail_before_submission(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make(values)


def test_quote_in_the_job_dir_is_refused() -> None:
    with pytest.raises(ConfigError, match="quote"):
        render({}, {"ntasks": 1}, '/home/x"y/job')


def submitting(
    tmp_path: Any, max_array_size: str, values: dict[str, Any] | None = None
) -> tuple[SlurmScheduler, RecordingTransport, JobSpec]:
    ids = iter(range(500, 600))
    answers = {
        "scontrol": (0, f"MaxArraySize            = {max_array_size}\n", ""),
        "sbatch": lambda argv: (0, f"{next(ids)}\n", ""),
    }
    profile = build_profile("t", {"scheduler": "slurm", **(values or {})}, plugin_options={})
    transport = RecordingTransport(answers=answers)
    sched = SlurmScheduler(profile=profile, transport=transport)
    job = JobSpec(
        job_id="j", name="n", location=str(tmp_path), ntasks=7, python="python3", profile=profile
    )
    return sched, transport, job


def test_submit_splits_at_max_array_size(tmp_path: Any) -> None:
    sched, transport, job = submitting(tmp_path, "3")
    subs = sched.submit(job)
    assert [(s.native_id, s.first, s.count) for s in subs] == [
        ("500", 0, 3),
        ("501", 3, 3),
        ("502", 6, 1),
    ]
    assert [c[:2] for c in transport.commands("sbatch")] == [["sbatch", "--parsable"]] * 3
    scripts = [(tmp_path / f"job.{first}.sh").read_text() for first in (0, 3, 6)]
    assert ["#SBATCH --array=0-2\n" in scripts[0], "#SBATCH --array=0-2\n" in scripts[1]] == [
        True,
        True,
    ]
    assert "#SBATCH --array=0-0\n" in scripts[2]
    assert "TASK=$(( ${SLURM_ARRAY_TASK_ID} + 3 ))" in scripts[1]
    assert len(transport.commands("scontrol")) == 1


def test_clusters_without_arrays_get_one_job_per_task(tmp_path: Any) -> None:
    sched, transport, job = submitting(tmp_path, "0")  # MaxArraySize=0: job arrays disabled
    subs = sched.submit(job)
    assert [(s.first, s.count) for s in subs] == [(i, 1) for i in range(7)]
    for i in range(7):
        script = (tmp_path / f"job.{i}.sh").read_text()
        assert "--array" not in script and f"\nTASK={i}\n" in script
        assert f"#SBATCH --output={tmp_path}/out.{i}\n" in script


def test_slurm_bin_prefixes_every_command(tmp_path: Any) -> None:
    profile = build_profile(
        "t",
        {"scheduler": "slurm", "slurm_bin": "/opt/slurm/bin/"},
        plugin_options={"slurm_bin": ""},
    )
    sched = SlurmScheduler(profile=profile, transport=RecordingTransport())
    sched.validate(profile)
    job = JobSpec(
        job_id="j", name="n", location=str(tmp_path), ntasks=1, python="p", profile=profile
    )
    argvs = [
        sched.submit_argv("s.sh", job, first=0, count=1, array=False),
        sched.status_argv(["1"]),
        sched.cancel_argv(["1"]),
    ]
    assert [a[0] for a in argvs] == [
        "/opt/slurm/bin/sbatch",
        "/opt/slurm/bin/squeue",
        "/opt/slurm/bin/scancel",
    ]
    with pytest.raises(ConfigError, match="slurm_bin"):
        make({"slurm_bin": 3})
