"""How the Torque wrappers' ``C`` is completed from ``sacct``, and how a job clustrix deleted
is reported (no cluster needed)."""

from __future__ import annotations

from clustrix_pbs.scheduler import DELETED, classify, parse_sacct_endings

from clustrix_core.scheduler import JobState, QueueEntry, Submission

SACCT = """\
283|FAILED|1:0
284|COMPLETED|0:0
285|CANCELLED by 0|0:15
286|TIMEOUT|0:0
287|OUT_OF_MEMORY|0:125
288|FAILED|0:9
289|RUNNING|0:0
"""


def test_sacct_endings_in_torque_terms() -> None:
    got = parse_sacct_endings(SACCT)
    assert got["283"] == ("C", 1, "SLURM: FAILED")
    assert got["284"] == ("C", 0, "")
    assert got["285"][2].startswith(DELETED)
    assert got["286"][:2] == ("C", -11)
    assert got["287"][:2] == ("C", -10)
    assert got["288"] == ("C", 265, "SLURM: FAILED")
    assert got["289"][0] == "E"  # accounting lag: asked again next poll


def test_sacct_endings_classified() -> None:
    states = {
        job: classify(state, code, reason, dialect="torque").state
        for job, (state, code, reason) in parse_sacct_endings(SACCT).items()
    }
    assert states == {
        "283": JobState.FAILED,
        "284": JobState.COMPLETED,
        "285": JobState.CANCELLED,
        "286": JobState.TIMEOUT,
        "287": JobState.OUT_OF_MEMORY,
        "288": JobState.FAILED,
        "289": JobState.COMPLETING,
    }


def test_a_job_clustrix_deleted_is_cancelled_whatever_pbs_then_says() -> None:
    """A root job deleted while it started ends ``F`` with ``Exit_status 0`` (substate 92)."""
    from clustrix_pbs.scheduler import PbsScheduler

    from clustrix_core.config import Profile

    sched = PbsScheduler(profile=Profile(name="t", scheduler="pbs"), transport=None)  # type: ignore[arg-type]
    sub = Submission(native_id="7.pbs-server", location="/tmp/x")
    done = [QueueEntry(job_id="7.pbs-server", task=None, state="F", exit_code=0, reason="ok")]
    assert sched.summarize(sub, done).state is JobState.COMPLETED  # type: ignore[union-attr]
    sched._cancelled.add(sub.native_id)
    status = sched.summarize(sub, done)
    assert status is not None and status.state is JobState.CANCELLED
    assert status.reason.startswith("cancelled by clustrix") and "COMPLETED" in status.reason
    running = [QueueEntry(job_id="7.pbs-server", task=None, state="R")]
    assert sched.summarize(sub, running).state is JobState.RUNNING  # type: ignore[union-attr]
