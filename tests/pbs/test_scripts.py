"""Rendered job scripts of both dialects against golden files (tests/pbs/golden), argv builders,
and what a profile may ask of PBS. No cluster needed. Regenerate the golden files with
``CLUSTRIX_UPDATE_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clustrix_pbs.scheduler import OPTIONS, PbsScheduler, TorqueScheduler

from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError
from clustrix_core.scheduler import JobSpec
from clustrix_core.testing import RecordingTransport, assert_golden
from clustrix_core.transport import CommandResult

from .conftest import GOLDEN, read

JOB_DIR = "/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd"

FULL = {
    "cores": 4,
    "memory": "8GB",
    "time": "1d2h",
    "gpus": 2,
    "queue": "gpuq",
    "account": "proj-42",
    "max_parallel": 5,
    "env": {"OMP_NUM_THREADS": "4", "GREETING": "it's a 'test' $HOME"},
    "modules": ["gcc/12.2", "cuda/12"],
    "setup": ["source ~/venvs/fit/bin/activate", "ulimit -c 0"],
    "directives": ["-m a", "#PBS -M alice@example.org"],
}

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (profile values, render arguments)
    "single": ({}, {"ntasks": 1}),
    "array": ({"queue": "workq"}, {"ntasks": 25}),
    "full_single": (FULL, {"ntasks": 1}),
    "full_array": (FULL, {"ntasks": 40}),
    "two_nodes": ({"nodes": 2, "cores": 8, "memory": "1500MiB"}, {"ntasks": 1}),
    "split_array_second_chunk": ({"time": 90}, {"ntasks": 15000, "first": 10000, "count": 5000}),
    "one_task_chunk": ({}, {"ntasks": 10001, "first": 10000, "count": 1}),
}

SCHEDULERS = {"pbs": PbsScheduler, "torque": TorqueScheduler}


def make(kind: str, values: dict[str, Any], transport: Any = None) -> PbsScheduler:
    profile = build_profile("golden", {"scheduler": kind, **values}, plugin_options=OPTIONS)
    sched = SCHEDULERS[kind](profile=profile, transport=transport or RecordingTransport())
    sched.validate(profile)
    return sched


def job_for(sched: PbsScheduler, ntasks: int, job_dir: str = JOB_DIR) -> JobSpec:
    return JobSpec(
        job_id="20260101-120000-0a1b2c3d",
        name="clustrix-fit",
        location=job_dir,
        ntasks=ntasks,
        python="/usr/bin/python3",
        profile=sched.profile,
    )


def render(kind: str, values: dict[str, Any], args: dict[str, Any]) -> str:
    sched = make(kind, values)
    ntasks = args["ntasks"]
    return sched.render_script(
        job_for(sched, ntasks),
        first=args.get("first", 0),
        count=args.get("count", ntasks),
        array=ntasks > 1,
    )


@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_script_matches_golden_file(kind: str, name: str) -> None:
    assert_golden(render(kind, *CASES[name]), GOLDEN / kind / f"{name}.sh")


def test_scripts_are_valid_bash(tmp_path: Path) -> None:
    for kind in SCHEDULERS:
        for name, case in CASES.items():
            script = tmp_path / f"{kind}-{name}.sh"
            script.write_text(render(kind, *case))
            proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert proc.returncode == 0, (kind, name, proc.stderr)


def test_directives_come_before_the_first_command() -> None:
    for kind in SCHEDULERS:
        for case in CASES.values():
            lines = render(kind, *case).splitlines()
            first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
            assert all(not line.startswith("#PBS") for line in lines[first:])


@pytest.mark.parametrize(
    ("kind", "var", "args", "index", "expected"),
    [
        ("pbs", "PBS_ARRAY_INDEX", {"ntasks": 25}, 0, 0),
        ("pbs", "PBS_ARRAY_INDEX", {"ntasks": 25}, 24, 24),
        ("pbs", "PBS_ARRAY_INDEX", {"ntasks": 15000, "first": 10000, "count": 5000}, 3, 10003),
        ("torque", "PBS_ARRAYID", {"ntasks": 25}, 7, 7),
        ("torque", "PBS_ARRAYID", {"ntasks": 15000, "first": 10000, "count": 5000}, 0, 10000),
    ],
)
def test_array_index_maps_to_the_task(
    kind: str, var: str, args: dict[str, Any], index: int, expected: int
) -> None:
    script = render(kind, {}, args)
    task_line = next(line for line in script.splitlines() if line.startswith("TASK="))
    out = subprocess.run(
        ["bash", "-c", f"{task_line}; echo $TASK"],
        capture_output=True,
        text=True,
        env={var: str(index), "PATH": os.environ["PATH"]},
    ).stdout
    assert out.strip() == str(expected)


def test_resources_pbspro() -> None:
    script = render("pbs", FULL, {"ntasks": 40})
    for line in (
        "-l select=1:ncpus=4:mem=7630mb:ngpus=2",
        "-l walltime=26:00:00",
        "-q gpuq",
        "-A proj-42",
        "-J 0-39",
        "-r y",
        "-W max_run_subjobs=5",
        "-N clustrix-fit",
        f"-o {JOB_DIR}/pbs.out.^array_index^",
        "-m a",
        "-M alice@example.org",
    ):
        assert f"#PBS {line}\n" in script
    single = render("pbs", {}, {"ntasks": 1})
    assert "-J" not in single and f"#PBS -e {JOB_DIR}/pbs.err.0\n" in single
    chunk = render("pbs", {}, {"ntasks": 10001, "first": 10000, "count": 1})
    assert "-J" not in chunk and "\nTASK=10000\n" in chunk  # -J 10000-10000 would be refused


def test_resources_torque() -> None:
    script = render("torque", FULL, {"ntasks": 40})
    for line in (
        "-l nodes=1:ppn=4:gpus=2",
        "-l mem=7630mb",
        "-l walltime=26:00:00",
        "-q gpuq",
        "-A proj-42",
        "-t 0-39%5",
    ):
        assert f"#PBS {line}\n" in script
    assert "#PBS -o" not in script  # on the qsub command line instead


def test_job_names_are_made_safe() -> None:
    for kind, limit in (("pbs", 236), ("torque", 15)):
        sched = make(kind, {})
        job = JobSpec(
            job_id="x",
            name="2 fit/λ" + "x" * 300,
            location=JOB_DIR,
            ntasks=1,
            python="p",
            profile=sched.profile,
        )
        name = sched.job_name(job)
        assert name.startswith("j2_fit__") and len(name) == limit


def test_argv() -> None:
    pbs = make("pbs", {"pbs_bin": "/opt/pbs/bin/"})
    job = job_for(pbs, 1)
    assert pbs.submit_argv("/d/job.0.sh", job, first=0, count=1, array=False) == [
        "/opt/pbs/bin/qsub",
        "/d/job.0.sh",
    ]
    assert pbs.status_argv(["5[].pbs-server"]) == [
        "/opt/pbs/bin/qstat",
        "-f",
        "-F",
        "json",
        "-x",
        "-t",
        "5[].pbs-server",
    ]
    assert pbs.status_argv(["1.s", "2.s"]) == ["/opt/pbs/bin/qstat", "-f", "-x", "-t", "1.s", "2.s"]
    assert pbs.cancel_argv(["5[].s"]) == ["/opt/pbs/bin/qdel", "5[].s"]
    assert pbs.cancel_tasks_argv("5[].s", [5, 2, 3]) == ["/opt/pbs/bin/qdel", "5[2-3].s", "5[5].s"]
    assert pbs.cancel_tasks_argv("5.s", [1]) is None  # not an array
    json_always = make("pbs", {"status_format": "json"})
    assert "json" in json_always.status_argv(["1.s", "2.s"])
    torque = make("torque", {})
    assert torque.cancel_tasks_argv("5[]", [1]) is None  # the whole array
    tjob = job_for(torque, 3)
    assert torque.submit_argv("/d/job.0.sh", tjob, first=0, count=3, array=True) == [
        "qsub",
        "-o",
        f"{JOB_DIR}/pbs.out.chunk0",
        "-e",
        f"{JOB_DIR}/pbs.err.chunk0",
        "/d/job.0.sh",
    ]
    assert pbs.normalize_id("123.pbs-server.example.org") == pbs.normalize_id("123")


def test_parse_submit() -> None:
    pbs = make("pbs", {})
    ok = CommandResult(
        argv=("qsub",), returncode=0, stdout=read("openpbs/pbsuser_qsub-array.txt"), stderr=""
    )
    assert pbs.parse_submit(ok) == "5[].pbs-server"


def test_torque_wrappers_are_detected_once_and_get_one_job_per_task() -> None:
    transport = RecordingTransport(
        answers={"qstat": (2, "", read("local/torque-wrappers/qstat--version.txt.stderr"))}
    )
    sched = make("torque", {}, transport)
    assert sched.array_chunks(3) == [(0, 1), (1, 1), (2, 1)]
    assert sched.status_argv(["4", "5"]) == ["qstat", "-f", "4", "5"]
    assert len(transport.commands("qstat")) == 1


@pytest.mark.parametrize(
    ("kind", "values", "match"),
    [
        ("pbs", {"partition": "short"}, "queue= instead"),
        ("pbs", {"qos": "high"}, "no meaning for PBS"),
        ("pbs", {"queue": "work q"}, "queue="),
        ("pbs", {"account": "a,b"}, "account="),
        ("pbs", {"work_dir": "/home/bob smith/jobs"}, "work_dir"),
        ("pbs", {"pbs_bin": "/opt/my pbs"}, "pbs_bin"),
        ("pbs", {"status_format": "xml"}, "status_format"),
        ("torque", {"status_format": "json"}, "no JSON"),
        ("pbs", {"directives": ["#SBATCH --exclusive"]}, "#PBS"),
        ("pbs", {"directives": ["-l a=1\n-l b=2"]}, "several lines"),
    ],
)
def test_bad_profiles_rejected(kind: str, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(kind, values)
