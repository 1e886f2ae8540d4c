"""The parts of the core's BatchScheduler that were settled with the SLURM backend, on a minimal
made-up batch system (commands answered by RecordingTransport): chunk directives, batched final
lookups, schedulers without arrays, scripts on stdin. No cluster needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clustrix_core.config import build_profile
from clustrix_core.scheduler import (
    BatchScheduler,
    JobSpec,
    JobState,
    JobStatus,
    QueueEntry,
    Submission,
)
from clustrix_core.testing import RecordingTransport
from clustrix_core.transport import CommandResult


class Toy(BatchScheduler):
    name = "toy"
    directive_prefix = "#TOY"
    task_var = "TOY_INDEX"
    STATES = {"Q": JobState.PENDING, "R": JobState.RUNNING, "D": JobState.COMPLETED}

    def directives(self, job: JobSpec, *, count: int, array: bool) -> list[str]:
        return [f"#TOY count={count} array={array}"]

    def submit_argv(
        self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
    ) -> list[str]:
        return ["toy-submit", script_path]

    def status_argv(self, native_ids: Sequence[str]) -> list[str]:
        return ["toy-status", *native_ids]

    def parse_status(self, result: CommandResult, asked: Sequence[str]) -> list[QueueEntry]:
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
        return [QueueEntry(job_id=r[0], task=None, state=r[1]) for r in rows]

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return ["toy-cancel", *native_ids]


def make(
    cls: type[Toy], answers: dict[str, Any], tmp_path: Path, ntasks: int
) -> tuple[Toy, JobSpec]:
    profile = build_profile("t", {"scheduler": "local"})
    sched = cls(profile=profile, transport=RecordingTransport(answers=answers))
    job = JobSpec(
        job_id="j", name="n", location=str(tmp_path), ntasks=ntasks, python="py", profile=profile
    )
    return sched, job


def counter() -> Any:
    ids = iter(range(1, 100))
    return lambda argv: (0, f"{next(ids)}\n", "")


def test_chunk_directives_default_to_directives(tmp_path: Path) -> None:
    sched, job = make(Toy, {}, tmp_path, 5)
    script = sched.render_script(job, first=0, count=5, array=True)
    assert "#TOY count=5 array=True\n" in script


def test_without_arrays_every_task_is_its_own_job(tmp_path: Path) -> None:
    class NoArrays(Toy):
        supports_arrays = False

    sched, job = make(NoArrays, {"toy-submit": counter()}, tmp_path, 3)
    subs = sched.submit(job)
    assert [(s.native_id, s.first, s.count) for s in subs] == [
        ("1", 0, 1),
        ("2", 1, 1),
        ("3", 2, 1),
    ]
    assert "TASK=2\n" in (tmp_path / "job.2.sh").read_text()
    assert "#TOY count=1 array=False" in (tmp_path / "job.2.sh").read_text()


def test_jobs_that_left_the_queue_are_looked_up_together(tmp_path: Path) -> None:
    asked: list[list[str]] = []

    class Batched(Toy):
        def final_statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
            asked.append([s.native_id for s in submissions])
            return {s.native_id: JobStatus(state=JobState.COMPLETED) for s in submissions[:1]}

    sched, _ = make(Batched, {"toy-status": (0, "1 R\n", "")}, tmp_path, 1)
    subs = [Submission(native_id=i, location="/j") for i in ("1", "2", "3")]
    statuses = sched.statuses(subs)
    assert asked == [["2", "3"]]  # one lookup for both jobs squeue-equivalent no longer lists
    assert statuses["1"].state is JobState.RUNNING
    assert statuses["2"].state is JobState.COMPLETED
    assert statuses["3"].state is JobState.LOST
    sched.statuses(subs)
    assert asked[-1] == ["3"]  # a final state is remembered; the lost one is asked again


def test_final_statuses_defaults_to_final_status_per_job(tmp_path: Path) -> None:
    class PerJob(Toy):
        def final_status(self, submission: Submission) -> JobStatus | None:
            return JobStatus(state=JobState.FAILED) if submission.native_id == "7" else None

    sched, _ = make(PerJob, {}, tmp_path, 1)
    subs = [Submission(native_id=i, location="/j") for i in ("7", "8")]
    assert sched.final_statuses(subs) == {"7": JobStatus(state=JobState.FAILED)}


def test_a_scheduler_may_read_the_script_on_stdin(tmp_path: Path) -> None:
    seen: list[bytes | None] = []

    class Stdin(Toy):
        def submit_argv(
            self, script_path: str, job: JobSpec, *, first: int, count: int, array: bool
        ) -> list[str]:
            return ["toy-submit"]

        def submit_stdin(self, script_path: str, script: str) -> bytes | None:
            return script.encode()

    sched, job = make(Stdin, {"toy-submit": counter()}, tmp_path, 1)
    transport = sched.transport
    original = transport.run

    def run(argv: Any, *, stdin: bytes | None = None, timeout: float | None = None) -> Any:
        seen.append(stdin)
        return original(argv, stdin=stdin, timeout=timeout)

    transport.run = run  # type: ignore[method-assign]
    sched.submit(job)
    assert seen == [(tmp_path / "job.0.sh").read_bytes()]


def test_cancel_leaves_delivered_tasks_alone(tmp_path: Path) -> None:
    """Cancelling a map whose first tasks delivered: those tasks are not cancelled (SLURM would
    mark a task still COMPLETING as CANCELLED); a scheduler that can name array elements cancels
    only the rest, one that cannot cancels the whole submission, and a submission whose every
    task delivered is not cancelled at all."""
    from clustrix_core.executor import Monitor
    from clustrix_core.scheduler import Submission, index_ranges, index_spans

    class Ranged(Toy):
        task_base = 1

        def cancel_tasks_argv(self, native_id: str, indices: Sequence[int]) -> list[str]:
            spans = [f"{a}-{b}" for a, b in index_ranges(indices)]
            return ["toy-cancel-tasks", native_id, *spans]

    def cancels(cls: type[Toy], done: set[int]) -> list[list[str]]:
        sched, _ = make(
            cls, {"toy-cancel": (0, "", ""), "toy-cancel-tasks": (0, "", "")}, tmp_path, 8
        )
        subs = [
            Submission(native_id="7", location=str(tmp_path), first=0, count=4),
            Submission(native_id="8", location=str(tmp_path), first=4, count=4),
        ]
        Monitor(sched, sched.profile).cancel(subs, done=done)
        transport = sched.transport
        assert isinstance(transport, RecordingTransport)
        return [c for c in transport.calls if c[0].startswith("toy-cancel")]

    assert cancels(Ranged, {0, 1, 2, 3, 4, 6}) == [["toy-cancel-tasks", "8", "2-2", "4-4"]]
    assert cancels(Ranged, {0, 1, 2, 3}) == [["toy-cancel", "8"]]
    assert cancels(Ranged, set()) == [["toy-cancel", "7", "8"]]
    assert cancels(Toy, {0, 4}) == [["toy-cancel", "7", "8"]]
    assert index_ranges([5, 2, 3, 3, 9, 8, 7]) == [(2, 3), (5, 5), (7, 9)]
    assert index_spans([5, 2, 3, 3, 9, 8, 7]) == ["2-3", "5", "7-9"]
