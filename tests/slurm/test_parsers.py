"""Parsers and the status logic on real SLURM 22.05 output captured on the test cluster
(tests/slurm/data, see its README and capture.sh; ``jobs.tsv`` says what each job was).
No cluster needed."""

from __future__ import annotations

import csv
from typing import Any

import pytest
from clustrix_slurm import parsers
from clustrix_slurm.scheduler import SlurmScheduler

from clustrix_core.config import build_profile
from clustrix_core.errors import CommandError, SubmissionError
from clustrix_core.scheduler import JobState, Submission
from clustrix_core.testing import RecordingTransport
from clustrix_core.transport import CommandResult

from .conftest import DATA

with open(DATA / "exit_codes.tsv") as _fh:
    EXIT_CODES = {row["case"]: int(row["rc"]) for row in csv.DictReader(_fh, delimiter="\t")}


def text(case: str) -> str:
    path = DATA / f"{case}.txt"
    return path.read_text() if path.exists() else ""


def captured(case: str) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of a captured case."""
    err = DATA / f"{case}.stderr.txt"
    return EXIT_CODES.get(case, 0), text(case), err.read_text() if err.exists() else ""


def result(case: str, argv: tuple[str, ...] = ("x",)) -> CommandResult:
    code, out, err = captured(case)
    return CommandResult(argv=argv, returncode=code, stdout=out, stderr=err)


def scheduler(
    answers: dict[str, Any] | None = None, **values: Any
) -> tuple[SlurmScheduler, RecordingTransport]:
    profile = build_profile(
        "t",
        {"scheduler": "slurm", **values},
        plugin_options={"sacct": "", "lost_grace": "", "slurm_bin": ""},
    )
    transport = RecordingTransport(answers=answers or {})
    return SlurmScheduler(profile=profile, transport=transport), transport


def sub(native: str, count: int = 1, first: int = 0) -> Submission:
    return Submission(native_id=native, location="/j", first=first, count=count)


# ------------------------------------------------------------------ states

ISSUE_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
    "REQUEUED": JobState.REQUEUED,
    "BOOT_FAIL": JobState.BOOT_FAIL,
    "DEADLINE": JobState.DEADLINE,
    "SUSPENDED": JobState.SUSPENDED,
}
# every state of SLURM 22.05 (squeue(1) "JOB STATE CODES"): long name and compact code
ALL_SLURM_STATES = {
    "BOOT_FAIL": "BF",
    "CANCELLED": "CA",
    "COMPLETED": "CD",
    "CONFIGURING": "CF",
    "COMPLETING": "CG",
    "DEADLINE": "DL",
    "FAILED": "F",
    "NODE_FAIL": "NF",
    "OUT_OF_MEMORY": "OOM",
    "PENDING": "PD",
    "PREEMPTED": "PR",
    "RUNNING": "R",
    "RESV_DEL_HOLD": "RD",
    "REQUEUE_FED": "RF",
    "REQUEUE_HOLD": "RH",
    "REQUEUED": "RQ",
    "RESIZING": "RS",
    "REVOKED": "RV",
    "SIGNALING": "SI",
    "SPECIAL_EXIT": "SE",
    "STAGE_OUT": "SO",
    "STOPPED": "ST",
    "SUSPENDED": "S",
    "TIMEOUT": "TO",
}


@pytest.mark.parametrize("native,expected", sorted(ISSUE_STATES.items()))
def test_each_state_the_issue_names_is_mapped(native: str, expected: JobState) -> None:
    sched, _ = scheduler()
    assert sched.map_state(native) is expected


@pytest.mark.parametrize("native", sorted(ALL_SLURM_STATES))
def test_every_slurm_state_and_its_compact_code_is_mapped_alike(native: str) -> None:
    assert native in parsers.STATES and ALL_SLURM_STATES[native] in parsers.STATES
    assert parsers.STATES[native] is parsers.STATES[ALL_SLURM_STATES[native]]


def test_retryable_states_are_final_and_the_waiting_ones_are_not() -> None:
    for native in (
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "DEADLINE",
        "REVOKED",
    ):
        assert parsers.STATES[native].final, native
    for native in (
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "SUSPENDED",
        "STOPPED",
        "REQUEUE_HOLD",
        "SPECIAL_EXIT",
        "RESV_DEL_HOLD",
        "SIGNALING",
        "STAGE_OUT",
        "RESIZING",
    ):
        assert not parsers.STATES[native].final, native


def test_sacct_state_words() -> None:
    assert parsers.native_state("CANCELLED by 0") == "CANCELLED"
    assert parsers.native_state("CANCELLED+") == "CANCELLED"


# ------------------------------------------------------------------ sbatch


@pytest.mark.parametrize(
    "case",
    [
        "sbatch_parsable",
        "sbatch_parsable_array",
        "sbatch_plain",
        "sbatch_impossible_cpus",
        "sbatch_impossible_nodes",
        "sbatch_impossible_time",
    ],
)
def test_sbatch_output_gives_the_job_id(case: str) -> None:
    sched, _ = scheduler()
    native = sched.parse_submit(result(case))
    assert native.isdigit() and native in text(case)


def test_sbatch_parsable_with_a_cluster_name() -> None:
    assert parsers.parse_sbatch("sbatch: warning: something\n1234;cluster2\n") == "1234"


@pytest.mark.parametrize(
    "case",
    [
        "sbatch_impossible_mem",
        "sbatch_bad_partition",
        "sbatch_array_too_big",
        "sbatch_array_max_index",
    ],
)
def test_rejected_sbatch_raises_with_its_message(case: str) -> None:
    sched, _ = scheduler()
    with pytest.raises(CommandError) as info:
        sched.parse_submit(result(case))
    assert "error" in str(info.value)


def test_sbatch_without_an_id_is_a_submission_error() -> None:
    sched, _ = scheduler()
    with pytest.raises(SubmissionError, match="no job id"):
        sched.parse_submit(
            CommandResult(argv=("sbatch",), returncode=0, stdout="hello\n", stderr="")
        )


# ------------------------------------------------------------------ squeue


def test_squeue_rows_key_array_tasks_by_the_array_job() -> None:
    rows = parsers.parse_squeue(text("squeue_mixed_ids"))
    assert len(rows) == len(text("squeue_mixed_ids").splitlines()) == 14
    by_raw = {r.raw: r for r in rows}
    assert by_raw["73_[2-5%2]"].job_id == "73" and by_raw["73_[2-5%2]"].task is None
    assert by_raw["73_[2-5%2]"].reason == "JobArrayTaskLimit"
    assert (
        by_raw["73_1"].job_id == "73"
        and by_raw["73_1"].task == 1
        and by_raw["73_1"].state == "RUNNING"
    )
    assert by_raw["70"].reason == "JobHeldUser" and by_raw["69"].reason == ""


def test_one_squeue_answers_for_every_watched_job() -> None:
    sched, transport = scheduler({"squeue": captured("squeue_mixed_ids")})
    ids = ["63", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79"]
    subs = [sub(i, count=6 if i == "73" else 1) for i in ids]
    statuses = sched.statuses(subs)
    assert len(transport.calls) == 1
    argv = transport.calls[0]
    assert argv[0] == "squeue" and "--states=all" in argv and f"--jobs={','.join(ids)}" in argv
    assert statuses["73"].state is JobState.RUNNING
    assert statuses["73"].tasks == {0: JobState.RUNNING, 1: JobState.RUNNING}
    assert statuses["70"].state is JobState.PENDING and statuses["70"].reason == "JobHeldUser"
    assert statuses["71"].reason == "BeginTime"
    assert all(not s.state.final for s in statuses.values())


def test_finished_jobs_get_their_exit_status_from_one_accounting_query() -> None:
    """squeue still lists the ended array but has no exit status: one sacct call adds it."""
    sched, transport = scheduler(
        {"squeue": captured("squeue_array_mixed_finished"), "sacct": captured("sacct_X_many")}
    )
    status = sched.statuses([sub("66", count=4, first=10)])["66"]
    assert [c[0] for c in transport.calls] == ["squeue", "sacct"]
    assert "--jobs=66" in transport.calls[1]
    assert status.state is JobState.FAILED and status.exit_code == 3
    assert status.reason == "array task 66_1, exit code 3"
    assert status.tasks == {
        10: JobState.COMPLETED,
        11: JobState.FAILED,
        12: JobState.COMPLETED,
        13: JobState.FAILED,
    }
    assert sched.statuses([sub("66", count=4, first=10)])["66"] == status
    assert len(transport.calls) == 2  # the final state is remembered


def test_the_accounting_adds_exit_statuses_and_keeps_squeues_reasons() -> None:
    """sacct's Reason of a job killed at its time limit is "None": squeue's "TimeLimit" stays."""
    sched, transport = scheduler(
        {"squeue": captured("squeue_finished"), "sacct": captured("sacct_X_many")}
    )
    out = sched.statuses([sub("63"), sub("67"), sub("68")])
    assert [c[0] for c in transport.calls] == ["squeue", "sacct"]
    assert "--jobs=63,67,68" in transport.calls[1]
    assert (out["63"].state, out["63"].reason, out["63"].exit_code) == (
        JobState.TIMEOUT,
        "TimeLimit",
        0,
    )
    assert (out["67"].state, out["67"].reason, out["67"].exit_code) == (
        JobState.FAILED,
        "exit code 3",
        3,
    )
    assert (out["68"].state, out["68"].reason) == (JobState.FAILED, "killed by signal 9")


def test_finished_jobs_keep_squeues_state_where_nothing_knows_more() -> None:
    sched, transport = scheduler(
        {
            "squeue": captured("squeue_array_mixed_finished"),
            "scontrol": captured("scontrol_show_job_oneline_unknown"),
        },
        sacct=False,
    )
    status = sched.statuses([sub("66", count=4, first=10)])["66"]
    assert [c[0] for c in transport.calls] == ["squeue", "scontrol"]
    assert status.state is JobState.FAILED and status.reason == "NonZeroExitCode"
    assert status.exit_code is None
    assert status.tasks == {
        10: JobState.COMPLETED,
        11: JobState.FAILED,
        12: JobState.COMPLETED,
        13: JobState.FAILED,
    }


def test_squeue_of_one_unknown_id_is_an_empty_listing() -> None:
    sched, _ = scheduler()
    assert EXIT_CODES["squeue_unknown"] == 1
    assert sched.parse_status(result("squeue_unknown"), ["70"]) == []


def test_other_squeue_failures_raise_so_the_executor_retries() -> None:
    sched, _ = scheduler()
    failed = CommandResult(
        argv=("squeue",),
        returncode=1,
        stdout="",
        stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
    )
    with pytest.raises(CommandError, match="Unable to contact"):
        sched.parse_status(failed, ["70"])


# ------------------------------------------------------------------ sacct


def test_sacct_rows() -> None:
    rows = {r.raw: r for r in parsers.parse_sacct(text("sacct_X_many"))}
    assert rows["63"].state == "TIMEOUT"
    assert rows["67"].state == "FAILED" and rows["67"].exit_code == 3 and rows["67"].signal == 0
    assert rows["68"].signal == 9
    assert rows["69"].state == "CANCELLED"
    assert rows["66_1"].job_id == "66" and rows["66_1"].task == 1


def test_steps_are_skipped() -> None:
    rows = parsers.parse_sacct(
        "\n".join(line.split("|", 1)[1] for line in text("sacct_steps_failed").splitlines())
    )
    assert [r.raw for r in rows] == ["67"]


def test_final_states_from_one_sacct_call() -> None:
    sched, transport = scheduler({"sacct": captured("sacct_X_many")})
    subs = [
        sub("63"),
        sub("64"),
        sub("66", count=4),
        sub("67"),
        sub("68"),
        sub("69"),
        sub("999999"),
    ]
    finals = sched.final_statuses(subs)
    assert [c[0] for c in transport.calls] == ["sacct"]
    assert finals["63"].state is JobState.TIMEOUT
    assert finals["64"].state is JobState.COMPLETED and finals["64"].exit_code == 0
    assert finals["66"].state is JobState.FAILED and "66_1" in finals["66"].reason
    assert finals["66"].tasks == {
        0: JobState.COMPLETED,
        1: JobState.FAILED,
        2: JobState.COMPLETED,
        3: JobState.FAILED,
    }
    assert finals["67"].state is JobState.FAILED and finals["67"].exit_code == 3
    assert "exit code 3" in finals["67"].reason
    assert "signal 9" in finals["68"].reason
    assert finals["69"].state is JobState.CANCELLED
    assert "999999" not in finals  # neither squeue nor accounting knows it


def test_accounting_that_lags_reports_the_live_state() -> None:
    sched, _ = scheduler({"sacct": captured("sacct_X_running")})
    finals = sched.final_statuses([sub("69"), sub("73", count=6)])
    assert finals["69"].state is JobState.RUNNING
    assert finals["73"].state is JobState.PENDING


def test_an_array_not_fully_in_the_accounting_yet_is_not_final() -> None:
    lines = text("sacct_X_array_mixed").splitlines()
    sched, _ = scheduler({"sacct": (0, "\n".join(lines[:2]) + "\n", "")})
    assert sched.final_statuses([sub("66", count=4)]) == {}


def test_without_accounting_scontrol_answers_and_sacct_is_not_asked_again() -> None:
    answers = {
        "sacct": (1, "", "Slurm accounting storage is disabled\n"),
        "scontrol": lambda argv: captured(f"scontrol_show_job_oneline_{JOB_CASES[argv[-1]]}"),
    }
    sched, transport = scheduler(answers)
    first = sched.final_statuses([sub("67"), sub("66", count=4)])
    assert first["67"].state is JobState.FAILED and first["67"].exit_code == 3
    assert first["66"].tasks == {
        0: JobState.COMPLETED,
        1: JobState.FAILED,
        2: JobState.COMPLETED,
        3: JobState.FAILED,
    }
    again = sched.final_statuses([sub("63"), sub("69")])
    assert again["63"].state is JobState.TIMEOUT and again["69"].state is JobState.CANCELLED
    programs = [c[0] for c in transport.calls]
    assert programs.count("sacct") == 1 and programs.count("scontrol") == 4


def test_sacct_false_never_runs_sacct() -> None:
    answers = {
        "scontrol": lambda argv: captured(f"scontrol_show_job_oneline_{JOB_CASES[argv[-1]]}")
    }
    sched, transport = scheduler(answers, sacct=False)
    assert sched.final_status(sub("68")).state is JobState.FAILED  # type: ignore[union-attr]
    assert sched.final_status(sub("999999")) is None
    assert {c[0] for c in transport.calls} == {"scontrol"}


# ------------------------------------------------------------------ scontrol

JOB_CASES = {
    "63": "timeout",
    "64": "completed",
    "66": "array_mixed",
    "67": "failed",
    "68": "signal",
    "69": "cancelled",
    "73": "array_throttled",
    "999999": "unknown",
}


@pytest.mark.parametrize(
    "case",
    [
        "completed",
        "failed",
        "signal",
        "cancelled",
        "timeout",
        "array_mixed",
        "array_running",
        "array_throttled",
        "running",
    ],
)
def test_scontrol_block_and_oneline_forms_agree(case: str) -> None:
    block = parsers.parse_scontrol_jobs(text(f"scontrol_show_job_{case}"))
    oneline = parsers.parse_scontrol_jobs(text(f"scontrol_show_job_oneline_{case}"))
    assert block and block == oneline


def test_scontrol_rows() -> None:
    (failed,) = parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_failed"))
    assert (failed.job_id, failed.task, failed.state, failed.exit_code) == ("67", None, "FAILED", 3)
    (timeout,) = parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_timeout"))
    assert timeout.state == "TIMEOUT" and timeout.reason == "TimeLimit"
    tasks = parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_array_mixed"))
    assert {t.job_id for t in tasks} == {"66"} and sorted(t.task for t in tasks) == [0, 1, 2, 3]  # type: ignore[type-var]
    held = parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_pending_held"))
    assert held[0].state == "PENDING" and held[0].reason == "JobHeldUser"


def test_scontrol_of_an_unknown_job() -> None:
    assert EXIT_CODES["scontrol_show_job_oneline_unknown"] == 1
    assert "Invalid job id" in captured("scontrol_show_job_oneline_unknown")[2]
    assert parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_unknown")) == []


def test_max_array_size_from_scontrol_show_config() -> None:
    sched, transport = scheduler({"scontrol": captured("scontrol_show_config_maxarraysize")})
    assert sched.max_array_size() == 10001
    assert sched.max_array_size() == 10001
    assert len(transport.calls) == 1  # read once


# ------------------------------------------------------------------ partitions and parallelism


def test_partitions_in_both_forms() -> None:
    oneline = parsers.parse_partitions(text("scontrol_show_partition_oneline"))
    assert oneline == parsers.parse_partitions(text("scontrol_show_partition"))
    debug, tiny = oneline
    assert (debug.name, debug.default, debug.total_cpus, debug.oversubscribe) == (
        "debug",
        True,
        2,
        "FORCE:4",
    )
    assert (tiny.name, tiny.default, tiny.max_time) == ("tiny", False, "00:01:00")
    assert debug.jobs_per_cpu == 4


@pytest.mark.parametrize(
    "oversubscribe,per_cpu",
    [("NO", 1), ("EXCLUSIVE", 1), ("YES:4", 1), ("FORCE", 4), ("FORCE:2", 2)],
)
def test_oversubscribe_factor(oversubscribe: str, per_cpu: int) -> None:
    part = parsers.Partition(
        name="p",
        default=True,
        state="UP",
        total_cpus=2,
        total_nodes=1,
        oversubscribe=oversubscribe,
        max_time="",
    )
    assert part.jobs_per_cpu == per_cpu


@pytest.mark.parametrize(
    "values,expected",
    [({}, 8), ({"cores": 2}, 4), ({"cores": 3}, 2), ({"cores": 64}, 1), ({"partition": "tiny"}, 8)],
)
def test_parallelism_is_the_partitions_cpus_over_the_cpus_a_task_takes(
    values: dict[str, Any], expected: int
) -> None:
    def answer(argv: list[str]) -> tuple[int, str, str]:
        return captured(
            "scontrol_show_partition_oneline_tiny"
            if argv[-1] == "tiny"
            else "scontrol_show_partition_oneline"
        )

    sched, transport = scheduler({"scontrol": answer}, **values)
    assert sched.parallelism() == expected
    assert sched.parallelism() == expected
    assert len(transport.calls) == 1
    assert transport.calls[0][-1] == values.get("partition", "partition")


def test_max_parallel_wins_without_asking_the_cluster() -> None:
    sched, transport = scheduler({}, max_parallel=3)
    assert sched.parallelism() == 3 and transport.calls == []


# ------------------------------------------------------------------ more captured cases


@pytest.mark.parametrize(
    "case",
    [
        "squeue_mixed_pipe",
        "squeue_finished",
        "squeue_impossible",
        "squeue_array_only",
        "squeue_known_and_unknown",
        "squeue_oom_cgroup",
        "squeue_oom_overmemorykill",
    ],
)
def test_short_squeue_format_parses_alike(case: str) -> None:
    rows = parsers.parse_squeue(text(case))
    assert len(rows) == len(text(case).splitlines())
    for row in rows:
        assert (
            row.job_id.isdigit() and row.state in parsers.STATES and row.raw.startswith(row.job_id)
        )


def test_the_short_and_the_long_squeue_formats_agree() -> None:
    short = {
        (r.job_id, r.task, r.state, r.reason)
        for r in parsers.parse_squeue(text("squeue_mixed_pipe"))
    }
    long = {
        (r.job_id, r.task, r.state, r.reason)
        for r in parsers.parse_squeue(text("squeue_mixed_ids"))
    }
    assert short == long


def test_finished_states_in_squeue() -> None:
    sched, _ = scheduler()
    rows = {r.raw: sched.map_state(r.state) for r in parsers.parse_squeue(text("squeue_finished"))}
    assert rows == {
        "69": JobState.CANCELLED,
        "64": JobState.COMPLETED,
        "66_0": JobState.COMPLETED,
        "66_2": JobState.COMPLETED,
        "66_1": JobState.FAILED,
        "66_3": JobState.FAILED,
        "67": JobState.FAILED,
        "68": JobState.FAILED,
        "63": JobState.TIMEOUT,
    }


def test_impossible_requests_pend_with_a_reason() -> None:
    reasons = {r.raw: (r.state, r.reason) for r in parsers.parse_squeue(text("squeue_impossible"))}
    assert reasons == {
        "88": ("PENDING", "PartitionNodeLimit"),
        "89": ("PENDING", "PartitionConfig"),
        "90": ("PENDING", "PartitionTimeLimit"),
    }


def test_out_of_memory_where_cgroups_enforce_it() -> None:
    sched, _ = scheduler({"sacct": captured("sacct_X_oom_cgroup")})
    status = sched.final_status(sub("4"))
    assert status is not None and status.state is JobState.OUT_OF_MEMORY
    (row,) = parsers.parse_scontrol_jobs(text("scontrol_show_job_oneline_oom_cgroup"))
    assert sched.map_state(row.state) is JobState.OUT_OF_MEMORY and row.reason == "OutOfMemory"


def test_memory_kill_by_the_accounting_plugin_is_a_failure_by_signal_9() -> None:
    sched, _ = scheduler({"sacct": captured("sacct_X_oom_overmemorykill")})
    status = sched.final_status(sub("5"))
    assert status is not None and status.state is JobState.FAILED and "signal 9" in status.reason


def test_captured_accounting_disabled_falls_back_to_scontrol() -> None:
    assert EXIT_CODES["sacct_accounting_disabled"] == 1
    sched, transport = scheduler(
        {
            "sacct": captured("sacct_accounting_disabled"),
            "scontrol": captured("scontrol_show_job_oneline_completed"),
        }
    )
    status = sched.final_status(sub("64"))
    assert status is not None and status.state is JobState.COMPLETED
    assert [c[0] for c in transport.calls] == ["sacct", "scontrol"]
