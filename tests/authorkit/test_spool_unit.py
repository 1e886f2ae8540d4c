"""The example scheduler's directives, argv builders and parsers, on output captured from real
spool commands (tests/authorkit/data), with clustrix_core.testing's ``recording_transport``."""

from __future__ import annotations

from pathlib import Path

import pytest
from clustrix_spool.scheduler import OPTIONS, SpoolScheduler, parse_rows

from clustrix_core.config import build_profile
from clustrix_core.errors import CommandError, ConfigError, SubmissionError
from clustrix_core.scheduler import JobSpec, JobState, QueueEntry, Submission, env_script
from clustrix_core.testing import RecordingTransport, assert_golden

from .conftest import DATA


def make(transport: RecordingTransport, **values: object) -> SpoolScheduler:
    profile = build_profile("spool", {"scheduler": "spool", **values}, plugin_options=OPTIONS)
    return SpoolScheduler(profile=profile, transport=transport)


def job(
    sched: SpoolScheduler, ntasks: int = 1, location: str = "/scratch/jobs/clustrix-fit-1"
) -> JobSpec:
    return JobSpec(
        job_id="20260101-000000-abcd",
        name="clustrix-fit",
        location=location,
        ntasks=ntasks,
        python="/usr/bin/python3",
        profile=sched.profile,
    )


def captured(name: str) -> str:
    return (DATA / name).read_text()


# ------------------------------------------------------------------ script and argv


def test_rendered_array_script_matches_golden_file(recording_transport: RecordingTransport) -> None:
    sched = make(
        recording_transport,
        cores=4,
        memory="2GB",
        time="01:30:00",
        slots=2,
        directives=["#SPOOL --name=override"],
        env={"OMP_NUM_THREADS": "4"},
        setup=["ulimit -c 0"],
    )
    spec = job(sched, ntasks=10)
    script = sched.render_script(spec, first=4, count=6, array=True)
    assert_golden(script, DATA / "spool-array-job.sh")
    # the environment and setup are in env.sh, which the script sources
    assert env_script(spec).splitlines()[1:] == ["export OMP_NUM_THREADS=4", "ulimit -c 0"]


def test_single_job_has_no_array_directive(recording_transport: RecordingTransport) -> None:
    sched = make(recording_transport)
    script = sched.render_script(job(sched), first=0, count=1, array=False)
    assert "--array" not in script
    assert "TASK=0\n" in script
    assert "#SPOOL --name=clustrix-fit\n" in script


def test_argv_builders(recording_transport: RecordingTransport) -> None:
    plain = make(recording_transport)
    assert plain.submit_argv("/j/job.0.sh", job(plain), first=0, count=1, array=False) == [
        "spool-submit",
        "--parsable",
        "/j/job.0.sh",
    ]
    assert plain.status_argv(["3", "4"]) == ["spool-status", "--parsable", "3", "4"]
    assert plain.cancel_argv(["3", "4"]) == ["spool-cancel", "3", "4"]
    placed = make(recording_transport, spool_bin="/opt/spool/bin/", spool_dir="/srv/spool dir")
    assert placed.status_argv(["9"]) == [
        "/opt/spool/bin/spool-status",
        "--spool-dir",
        "/srv/spool dir",
        "--parsable",
        "9",
    ]


def test_submit_writes_script_and_parses_id(
    recording_transport: RecordingTransport, tmp_path: Path
) -> None:
    recording_transport.answers["spool-submit"] = (0, captured("spool-submit-parsable.txt"), "")
    sched = make(recording_transport)
    [sub] = sched.submit(job(sched, location=str(tmp_path)))
    assert sub == Submission(native_id="1", location=str(tmp_path), first=0, count=1)
    script = tmp_path / "job.0.sh"
    assert script.stat().st_mode & 0o777 == 0o700
    env = tmp_path / "env.sh"
    assert env.stat().st_mode & 0o777 == 0o600
    assert env.read_text() == env_script(job(sched, location=str(tmp_path)))
    assert recording_transport.commands("spool-submit") == [
        ["spool-submit", "--parsable", str(script)]
    ]


def test_big_map_is_split_into_arrays_of_max_array_size(
    recording_transport: RecordingTransport, tmp_path: Path
) -> None:
    ids = iter(["11", "12", "13"])
    recording_transport.answers["spool-submit"] = lambda argv: (0, next(ids) + "\n", "")
    sched = make(recording_transport, max_array_size=4)
    subs = sched.submit(job(sched, ntasks=10, location=str(tmp_path)))
    assert [(s.native_id, s.first, s.count) for s in subs] == [
        ("11", 0, 4),
        ("12", 4, 4),
        ("13", 8, 2),
    ]
    third = (tmp_path / "job.8.sh").read_text()  # scripts are named for their first task
    assert "#SPOOL --array=0-1" in third and "TASK=$(( ${SPOOL_ARRAY_TASK_ID} + 8 ))" in third


def test_refused_submission_is_a_submission_error(
    recording_transport: RecordingTransport, tmp_path: Path
) -> None:
    recording_transport.answers["spool-submit"] = (
        1,
        "",
        "spool-submit: error: --time='0' must be positive\n",
    )
    sched = make(recording_transport)
    with pytest.raises(SubmissionError, match="must be positive"):
        sched.submit(job(sched, location=str(tmp_path)))


def test_garbage_submit_output_is_a_submission_error(
    recording_transport: RecordingTransport,
) -> None:
    recording_transport.answers["spool-submit"] = (0, "Submitted spool job 1\n", "")
    sched = make(recording_transport)
    with pytest.raises(SubmissionError, match="no job id"):
        sched.parse_submit(recording_transport.run(["spool-submit"]))


# ------------------------------------------------------------------ parsers


def test_parse_status_on_captured_active_listing(recording_transport: RecordingTransport) -> None:
    recording_transport.answers["spool-status"] = (0, captured("spool-status-active.txt"), "")
    sched = make(recording_transport)
    asked = ["1", "2", "3", "4", "5"]
    entries = sched.parse_status(recording_transport.run(sched.status_argv(asked)), asked)
    assert entries[:3] == [
        QueueEntry(job_id="1", task=2, state="queued"),
        QueueEntry(job_id="1", task=3, state="queued"),
        QueueEntry(job_id="2", task=None, state="running"),
    ]
    assert {sched.map_state(e.state) for e in entries} == {JobState.PENDING, JobState.RUNNING}


def test_parse_rows_ignores_the_human_table() -> None:
    assert parse_rows(captured("spool-status-human.txt")) == []


def test_every_captured_state_is_in_the_state_map() -> None:
    seen = {
        r.state
        for name in ("spool-status-active.txt", "spool-status-all.txt")
        for r in parse_rows(captured(name))
    }
    assert seen <= set(SpoolScheduler.STATES)
    assert {s for s in SpoolScheduler.STATES.values() if s.final} == {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
    }


def test_status_query_is_one_command_then_final_lookup(
    recording_transport: RecordingTransport,
) -> None:
    active, everything = captured("spool-status-active.txt"), captured("spool-status-all.txt")

    def answer(argv: list[str]) -> tuple[int, str, str]:
        if "--all" in argv:
            wanted = argv[-1]
            return (
                0,
                "".join(ln + "\n" for ln in everything.splitlines() if ln.startswith(wanted + "|")),
                "",
            )
        return (0, active, "")

    recording_transport.answers["spool-status"] = answer
    sched = make(recording_transport)
    subs = [
        Submission(native_id="1", location="/j/1", count=4),
        Submission(native_id="2", location="/j/2"),
        Submission(native_id="4", location="/j/4"),
        Submission(native_id="5", location="/j/5"),
        Submission(native_id="99", location="/j/99"),
    ]
    out = sched.statuses(subs)
    calls = recording_transport.commands("spool-status")
    assert calls[0] == ["spool-status", "--parsable", "1", "2", "4", "5", "99"]
    assert [c[-1] for c in calls[1:]] == ["4", "99"]  # only the jobs that left the active listing
    assert out["1"].state is JobState.PENDING and out["1"].tasks == {
        2: JobState.PENDING,
        3: JobState.PENDING,
    }
    assert out["2"].state is JobState.RUNNING
    assert out["4"].state is JobState.FAILED and out["4"].exit_code == 137
    assert "SIGKILL" in out["4"].reason
    assert out["99"].state is JobState.LOST


def test_final_status_of_an_array_reports_the_failed_task(
    recording_transport: RecordingTransport,
) -> None:
    recording_transport.answers["spool-status"] = (0, captured("spool-status-all.txt"), "")
    sched = make(recording_transport)
    status = sched.final_status(Submission(native_id="1", location="/j/1", first=8, count=4))
    assert status is not None
    assert (status.state, status.exit_code, status.reason) == (JobState.FAILED, 3, "exit status 3")
    assert status.tasks == {
        8: JobState.COMPLETED,
        9: JobState.COMPLETED,
        10: JobState.FAILED,
        11: JobState.COMPLETED,
    }
    for native, state in (
        ("2", JobState.TIMEOUT),
        ("3", JobState.CANCELLED),
        ("5", JobState.NODE_FAIL),
    ):
        found = sched.final_status(Submission(native_id=native, location="/j"))
        assert found is not None and found.state is state


def test_status_command_failure_raises(recording_transport: RecordingTransport) -> None:
    recording_transport.answers["spool-status"] = (2, "", "spool-status: error: no spool\n")
    sched = make(recording_transport)
    with pytest.raises(CommandError):
        sched.statuses([Submission(native_id="1", location="/j")])


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"gpus": 1}, "gpus"),
        ({"nodes": 2}, "nodes"),
        ({"partition": "short"}, "partition"),
        ({"account": "abc"}, "account"),
        ({"slots": 0}, "slots"),
        ({"max_array_size": "many"}, "max_array_size"),
    ],
)
def test_validate_rejects_what_spool_cannot_do(
    recording_transport: RecordingTransport, values: dict[str, object], field: str
) -> None:
    sched = make(recording_transport)
    profile = build_profile("spool", {"scheduler": "spool", **values}, plugin_options=OPTIONS)
    with pytest.raises(ConfigError, match=field):
        sched.validate(profile)


def test_unknown_profile_key_names_the_accepted_options() -> None:
    with pytest.raises(ConfigError, match="spool_dir"):
        build_profile(
            "spool", {"scheduler": "spool", "spool_directory": "/x"}, plugin_options=OPTIONS
        )
