"""Unit tests of the command builders and parsers: no jobs run. ``recording_transport`` (from
clustrix_core.testing) records every command and answers the ones you script."""

from __future__ import annotations

from pathlib import Path

import pytest
from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError, SubmissionError
from clustrix_core.scheduler import JobSpec, JobState, Submission

from clustrix_spool.scheduler import OPTIONS, SpoolScheduler

DATA = Path(__file__).parent / "data"  # output captured from real spool commands


def scheduler(transport, **values):
    profile = build_profile("spool", {"scheduler": "spool", **values}, plugin_options=OPTIONS)
    return SpoolScheduler(profile=profile, transport=transport)


def test_directives_and_array(recording_transport):
    sched = scheduler(recording_transport, cores=2, memory="1GiB", time="1h")
    job = JobSpec(
        job_id="j1", name="clustrix-fit", location="/w/j1", ntasks=4, python="python3", profile=sched.profile
    )
    script = sched.render_script(job, first=0, count=4, array=True)
    assert "#SPOOL --array=0-3" in script
    assert "#SPOOL --time=3600" in script
    assert "#SPOOL --mem=1024" in script
    assert 'TASK="${SPOOL_ARRAY_TASK_ID}"' in script


def test_submit_parses_the_job_id(recording_transport, tmp_path):
    recording_transport.answers["spool-submit"] = (0, "17\n", "")
    sched = scheduler(recording_transport)
    job = JobSpec(
        job_id="j1", name="t", location=str(tmp_path), ntasks=1, python="python3", profile=sched.profile
    )
    [sub] = sched.submit(job)
    assert sub.native_id == "17"
    assert recording_transport.commands("spool-submit") == [
        ["spool-submit", "--parsable", f"{tmp_path}/job.0.sh"]
    ]


def test_garbage_from_submit_is_a_submission_error(recording_transport):
    recording_transport.answers["spool-submit"] = (0, "ok?\n", "")
    sched = scheduler(recording_transport)
    with pytest.raises(SubmissionError):
        sched.parse_submit(recording_transport.run(["spool-submit"]))


def test_one_status_command_for_many_jobs(recording_transport):
    active = (DATA / "status-active.txt").read_text()  # real `spool-status --parsable 1 2 3 4 5` output
    finished = (DATA / "status-all.txt").read_text()  # real `spool-status --parsable --all 1 2 3 4 5`

    def answer(argv):
        if "--all" in argv:  # a job that left the queue: how did it end?
            wanted = argv[-1]
            return (0, "".join(ln + "\n" for ln in finished.splitlines() if ln.startswith(wanted + "|")), "")
        return (0, active, "")

    recording_transport.answers["spool-status"] = answer
    sched = scheduler(recording_transport)
    subs = [Submission(native_id="1", location="/a", count=4), Submission(native_id="4", location="/b")]
    out = sched.statuses(subs)
    assert out["1"].state is JobState.PENDING  # tasks 2 and 3 still queued
    assert out["1"].tasks == {2: JobState.PENDING, 3: JobState.PENDING}
    assert out["4"].state is JobState.FAILED and out["4"].exit_code == 137  # killed by SIGKILL
    assert len(recording_transport.commands("spool-status")) == 2  # one query + one final lookup


def test_final_status_of_an_array(recording_transport):
    recording_transport.answers["spool-status"] = (0, (DATA / "status-all.txt").read_text(), "")
    status = scheduler(recording_transport).final_status(Submission(native_id="1", location="/a", count=4))
    assert (status.state, status.exit_code, status.reason) == (JobState.FAILED, 3, "exit status 3")
    assert status.tasks == {
        0: JobState.COMPLETED,
        1: JobState.COMPLETED,
        2: JobState.FAILED,
        3: JobState.COMPLETED,
    }


def test_gpus_are_rejected(recording_transport):
    with pytest.raises(ConfigError, match="gpus"):
        scheduler(recording_transport).validate(build_profile("x", {"gpus": 1}))
