"""Unit tests of the command builders and parsers: no jobs run. ``recording_transport`` (from
clustrix_core.testing) records every command and answers the ones you script."""

from __future__ import annotations

import pytest
from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError, SubmissionError
from clustrix_core.scheduler import JobSpec, JobState, Submission

from clustrix_spool.scheduler import OPTIONS, SpoolScheduler


def scheduler(transport, **values):
    profile = build_profile("spool", {"scheduler": "spool", **values}, plugin_options=OPTIONS)
    return SpoolScheduler(profile=profile, transport=transport)


def test_directives_and_array(recording_transport):
    sched = scheduler(recording_transport, cores=2, memory="1GiB", time="1h")
    job = JobSpec(
        job_id="j1", name="clustrix-fit", job_dir="/w/j1", ntasks=4, python="python3", profile=sched.profile
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
        job_id="j1", name="t", job_dir=str(tmp_path), ntasks=1, python="python3", profile=sched.profile
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
    def answer(argv):
        if "--all" in argv:  # the job that left the queue: how did it end?
            return (0, "8|-|failed|3|exit status 3\n", "")
        return (0, "7|0|running||\n7|1|queued||\n", "")

    recording_transport.answers["spool-status"] = answer
    sched = scheduler(recording_transport)
    out = sched.statuses(
        [Submission(native_id="7", job_dir="/a", count=2), Submission(native_id="8", job_dir="/b")]
    )
    assert out["7"].state is JobState.RUNNING
    assert out["8"].state is JobState.FAILED and out["8"].exit_code == 3
    assert len(recording_transport.commands("spool-status")) == 2  # one query + one final lookup


def test_gpus_are_rejected(recording_transport):
    with pytest.raises(ConfigError, match="gpus"):
        scheduler(recording_transport).validate(build_profile("x", {"gpus": 1}))
