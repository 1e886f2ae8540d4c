"""Rendered job scripts against golden files (tests/sge/golden), submission argv, and what a
profile may ask of Grid Engine. No cluster needed. Regenerate the golden files with
``CLUSTRIX_UPDATE_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clustrix_sge.scheduler import OPTIONS, SgeScheduler

from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError
from clustrix_core.scheduler import JobSpec
from clustrix_core.testing import RecordingTransport, assert_golden
from clustrix_core.transport import CommandResult

from .conftest import GOLDEN

JOB_DIR = "/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd"

FULL = {
    "cores": 4,
    "memory": "8GB",
    "time": "1d2h",
    "queue": "long.q",
    "account": "proj-42",
    "max_parallel": 5,
    "env": {"OMP_NUM_THREADS": "4", "GREETING": "it's a 'test' $HOME"},
    "modules": ["gcc/12.2"],
    "setup": ["source ~/venvs/fit/bin/activate", "ulimit -c 0"],
    "directives": ["-l arch=lx-amd64", "#$ -m a", "-M alice@example.org"],
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (profile values, render arguments)
    "single": ({}, {"ntasks": 1}),
    "array": ({"queue": "all.q"}, {"ntasks": 25}),
    "full_single": (FULL, {"ntasks": 1}),
    "full_array": (FULL, {"ntasks": 40}),
    "split_array_second_chunk": ({"time": 90}, {"ntasks": 100000, "first": 75000, "count": 25000}),
    "site_complexes": (
        {
            "cores": 2,
            "memory": "3GiB",
            "gpus": 1,
            "pe": "mpi",
            "memory_resource": "mem_free",
            "gpu_resource": "gpu",
        },
        {"ntasks": 1},
    ),
}


def make(values: dict[str, Any]) -> SgeScheduler:
    profile = build_profile("golden", {"scheduler": "sge", **values}, plugin_options=OPTIONS)
    sched = SgeScheduler(profile=profile, transport=RecordingTransport())
    sched.validate(profile)
    return sched


def job_for(sched: SgeScheduler, ntasks: int, job_dir: str = JOB_DIR) -> JobSpec:
    return JobSpec(
        job_id="20260101-120000-0a1b2c3d",
        name="clustrix-fit",
        location=job_dir,
        ntasks=ntasks,
        python="/usr/bin/python3",
        profile=sched.profile,
    )


def render(values: dict[str, Any], args: dict[str, Any]) -> str:
    sched = make(values)
    ntasks = args["ntasks"]
    return sched.render_script(
        job_for(sched, ntasks),
        first=args.get("first", 0),
        count=args.get("count", ntasks),
        array=ntasks > 1,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_matches_golden_file(name: str) -> None:
    assert_golden(render(*CASES[name]), GOLDEN / f"{name}.sh")


def test_environment_modules_and_setup_are_in_env_sh(tmp_path: Path) -> None:
    """The script sources the job directory's env.sh (0600), which holds the profile's values."""
    script = render(*CASES["full_single"])
    assert "\n. ./env.sh || exit 96\n" in script
    for value in ("OMP_NUM_THREADS", "GREETING", "module load", "ulimit", "activate"):
        assert value not in script
    transport = RecordingTransport(answers={"qsub": (0, "77\n", "")})
    profile = build_profile("p", {"scheduler": "sge", **FULL}, plugin_options=OPTIONS)
    sched = SgeScheduler(profile=profile, transport=transport)
    sched.submit(job_for(sched, 1, str(tmp_path)))
    env = tmp_path / "env.sh"
    assert env.stat().st_mode & 0o777 == 0o600
    assert env.read_text().splitlines()[1:] == [
        "export OMP_NUM_THREADS=4",
        "export GREETING='it'\"'\"'s a '\"'\"'test'\"'\"' $HOME'",
        "module load gcc/12.2",
        "source ~/venvs/fit/bin/activate",
        "ulimit -c 0",
    ]


def test_scripts_are_valid_bash(tmp_path: Path) -> None:
    for name, case in CASES.items():
        script = tmp_path / f"{name}.sh"
        script.write_text(render(*case))
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr)


def test_array_task_numbers_map_to_clustrix_tasks(tmp_path: Path) -> None:
    """SGE numbers array tasks from 1; the script turns SGE_TASK_ID into clustrix's task number
    (from 0, offset by the chunk's first task)."""
    for args, sge_task, expected in (
        ({"ntasks": 25}, 1, 0),
        ({"ntasks": 25}, 25, 24),
        ({"ntasks": 100000, "first": 75000, "count": 25000}, 1, 75000),
    ):
        script = render({}, args)
        task_line = next(line for line in script.splitlines() if line.startswith("TASK="))
        out = subprocess.run(
            ["bash", "-c", f"{task_line}; echo $TASK"],
            capture_output=True,
            text=True,
            env={"SGE_TASK_ID": str(sge_task), "PATH": os.environ["PATH"]},
        ).stdout
        assert out.strip() == str(expected)


def test_directives_come_before_the_first_command() -> None:
    for case in CASES.values():
        lines = render(*case).splitlines()
        first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
        assert all(not line.startswith("#$") for line in lines[first_command:])


def test_memory_is_per_slot_and_time_is_hms() -> None:
    script = render({"cores": 4, "memory": "8GiB", "time": "1h30m"}, {"ntasks": 1})
    assert "#$ -l h_vmem=2048M" in script
    assert "#$ -l h_rt=01:30:00" in script
    assert "#$ -pe smp 4" in script
    one_core = render({"memory": "100MB"}, {"ntasks": 1})
    assert "#$ -l h_vmem=96M" in one_core  # 100 MB rounded up to whole MiB
    assert "-pe" not in one_core


def test_job_name_never_starts_with_a_digit() -> None:
    sched = make({})
    job = JobSpec(
        job_id="x", name="2fit", location=JOB_DIR, ntasks=1, python="python3", profile=sched.profile
    )
    assert "#$ -N j2fit" in sched.render_script(job)


def test_submit_argv_and_terse_output() -> None:
    sched = make({})
    assert sched.submit_argv("/d/job.0.sh", job_for(sched, 1), first=0, count=1, array=False) == [
        "qsub",
        "-terse",
        "/d/job.0.sh",
    ]
    ok = CommandResult(argv=("qsub",), returncode=0, stdout="4711.1-25:1\n", stderr="")
    assert sched.parse_submit(ok) == "4711"
    assert sched.cancel_argv(["1", "2"]) == ["qdel", "1", "2"]
    assert sched.cancel_tasks_argv("7", [5, 2, 3]) == ["qdel", "7.2-3", "7.5-5"]
    assert sched.status_argv(["1", "2"]) == ["qstat", "-xml"]


def test_submission_splits_at_max_aj_tasks(tmp_path: Path) -> None:
    """A map larger than the cluster's max_aj_tasks becomes several arrays (qconf -sconf is read once)."""
    ids = iter(["101.1-3:1", "102.1-3:1", "103.1-1:1"])
    transport = RecordingTransport(
        answers={
            "qconf": (0, "max_aj_instances             2000\nmax_aj_tasks                 3\n", ""),
            "qsub": lambda argv: (0, next(ids) + "\n", ""),
        }
    )
    profile = build_profile("p", {"scheduler": "sge"}, plugin_options=OPTIONS)
    sched = SgeScheduler(profile=profile, transport=transport)
    job = JobSpec(
        job_id="j", name="f", location=str(tmp_path), ntasks=7, python="python3", profile=profile
    )
    subs = sched.submit(job)
    assert [(s.native_id, s.first, s.count) for s in subs] == [
        ("101", 0, 3),
        ("102", 3, 3),
        ("103", 6, 1),
    ]
    assert len(transport.commands("qconf")) == 1
    third = (tmp_path / "job.6.sh").read_text()  # named for its first task
    assert "#$ -t 1-1" in third and "TASK=$(( ${SGE_TASK_ID} + 5 ))" in third


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"partition": "short"}, "queue= instead"),
        ({"qos": "high"}, "no meaning for Grid Engine"),
        ({"gpus": 1}, "gpu_resource"),
        ({"nodes": 2}, "allocation rule"),
        ({"pe": "smp 4"}, "pe="),
        ({"memory_resource": "h_vmem=1G"}, "memory_resource="),
        ({"work_dir": "/home/bob smith/jobs"}, "spaces, commas or colons"),
        ({"accounting_wait": "soon"}, "accounting_wait"),
        ({"verify": "yes"}, "qsub -w level"),
        ({"queue": "all.q -l x"}, "queue="),
        ({"directives": ["#SBATCH --exclusive"]}, "#\\$"),
        ({"directives": ["-l a=1\n-l b=2"]}, "several lines"),
    ],
)
def test_bad_profiles_rejected(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(values)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="memory_resource"):
        build_profile("p", {"scheduler": "sge", "parallel_env": "smp"}, plugin_options=OPTIONS)


def test_verify_level() -> None:
    assert "#$ -w e\n" in render({}, {"ntasks": 1})
    assert "#$ -w n\n" in render({"verify": "n"}, {"ntasks": 1})
