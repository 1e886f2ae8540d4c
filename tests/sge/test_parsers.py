"""Parsers and the status logic on real Son of Grid Engine 8.1.9 output (tests/sge/data, see its
README for how each file was captured). No cluster needed: a recording transport answers the
commands with the captured text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clustrix_sge.parsers import (
    expand_tasks,
    parse_error_reasons,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub_terse,
    record_state,
)
from clustrix_sge.scheduler import OPTIONS, SgeScheduler, parse_cluster_queue_slots

from clustrix_core.config import build_profile
from clustrix_core.scheduler import JobState, QueueEntry, Submission
from clustrix_core.testing import RecordingTransport

from .conftest import DATA


def data(name: str) -> str:
    return (DATA / name).read_text()


def scheduler(answers: dict[str, Any], **values: Any) -> tuple[SgeScheduler, RecordingTransport]:
    transport = RecordingTransport(answers=answers)
    profile = build_profile("p", {"scheduler": "sge", **values}, plugin_options=OPTIONS)
    return SgeScheduler(profile=profile, transport=transport), transport


def sub(native_id: str, count: int = 1, first: int = 0) -> Submission:
    return Submission(native_id=native_id, location="/nonexistent", first=first, count=count)


# ------------------------------------------------------------------ qsub


def test_qsub_terse() -> None:
    assert parse_qsub_terse(data("qsub_terse.txt")) == "52"
    assert parse_qsub_terse(data("qsub_terse_array.txt")) == "53"
    assert parse_qsub_terse(data("qsub_terse_array_running.txt")) == "61"
    # a directive given twice (here -w): qsub warns on stdout before the id
    assert parse_qsub_terse(data("qsub_terse_w_override.txt")) == "412"


def test_qsub_without_terse_is_not_mistaken_for_an_id() -> None:
    with pytest.raises(ValueError, match="no job id"):
        parse_qsub_terse(data("qsub_plain.txt"))


# ------------------------------------------------------------------ qstat -xml


def test_qstat_xml_snapshot() -> None:
    entries = parse_qstat_xml(data("qstat_xml.txt"))
    by_id: dict[str, list[QueueEntry]] = {}
    for e in entries:
        by_id.setdefault(e.job_id, []).append(e)
    assert [(e.task, e.state) for e in by_id["60"]] == [(None, "r")]
    assert sorted((e.task, e.state) for e in by_id["61"]) == [
        (1, "r"),
        (2, "r"),
        (3, "qw"),
        (4, "qw"),
    ]
    assert [e.state for e in by_id["58"]] == ["Eqw"]
    assert [e.state for e in by_id["59"]] == ["Eqw"]
    assert [e.state for e in by_id["62"]] == ["qw"]
    assert [e.state for e in by_id["63"]] == ["hqw"]


def test_qstat_xml_all_users_and_full_form_give_the_same_jobs() -> None:
    plain = sorted(parse_qstat_xml(data("qstat_xml.txt")), key=repr)
    assert sorted(parse_qstat_xml(data("qstat_xml_u_all.txt")), key=repr) == plain
    assert sorted(parse_qstat_xml(data("qstat_f_xml_u_all.txt")), key=repr) == plain


def test_qstat_xml_empty() -> None:
    assert parse_qstat_xml(data("qstat_xml_empty.txt")) == []
    assert parse_qstat_xml("") == []


def test_task_ranges() -> None:
    assert expand_tasks("7") == [7]
    assert expand_tasks("3,4") == [3, 4]
    assert expand_tasks("5-9:1") == [5, 6, 7, 8, 9]
    assert expand_tasks("2-10:4,13") == [2, 6, 10, 13]
    with pytest.raises(ValueError):
        expand_tasks("x-1")


def test_every_captured_state_maps_to_a_core_state() -> None:
    sched, _ = scheduler({})
    states = {e.state for e in parse_qstat_xml(data("qstat_xml.txt"))}
    assert states == {"r", "qw", "Eqw", "hqw"}
    assert {s: sched.map_state(s) for s in states} == {
        "r": JobState.RUNNING,
        "qw": JobState.PENDING,
        "Eqw": JobState.ERROR,
        "hqw": JobState.HELD,
    }


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("t", JobState.RUNNING),
        ("Rr", JobState.RUNNING),
        ("s", JobState.SUSPENDED),
        ("S", JobState.SUSPENDED),
        ("dr", JobState.COMPLETING),
        ("dt", JobState.COMPLETING),
        ("Rq", JobState.PENDING),
        ("hRwq", JobState.HELD),
        ("Ehqw", JobState.ERROR),
        ("dRs", JobState.COMPLETING),
        ("Tr", JobState.SUSPENDED),
        ("qw", JobState.PENDING),
    ],
)
def test_documented_and_combined_states(native: str, state: JobState) -> None:
    sched, _ = scheduler({})
    assert sched.map_state(native) is state


# ------------------------------------------------------------------ qstat -j


def test_eqw_reasons() -> None:
    assert parse_error_reasons(data("qstat_j_eqw.txt")) == {
        1: 'error: can\'t open output file "/nonexistent/dir/out": No such file or directory'
    }
    assert parse_error_reasons(data("qstat_j_eqw_wd.txt")) == {
        1: "error: can't chdir to /nonexistent/wd: No such file or directory"
    }
    for name in (
        "qstat_j_running.txt",
        "qstat_j_array.txt",
        "qstat_j_pending.txt",
        "qstat_j_held.txt",
    ):
        assert parse_error_reasons(data(name)) == {}


# ------------------------------------------------------------------ qacct -j


@pytest.mark.parametrize(
    ("name", "state", "exit_status", "words"),
    [
        ("qacct_j_ok.txt", JobState.COMPLETED, 0, ""),
        ("qacct_j_exit3.txt", JobState.FAILED, 3, "exit status 3"),
        ("qacct_j_h_rt.txt", JobState.TIMEOUT, 137, "time limit (h_rt)"),
        (
            "qacct_j_qdel_running.txt",
            JobState.CANCELLED,
            137,
            "killed by qdel or a signal (SIGKILL)",
        ),
        (
            "qacct_j_eqw.txt",
            JobState.FAILED,
            0,
            "could not start the job; qacct: failed 26 (opening input/output file)",
        ),
    ],
)
def test_qacct_records(name: str, state: JobState, exit_status: int, words: str) -> None:
    [rec] = parse_qacct(data(name))
    assert rec.task is None
    assert rec.exit_status == exit_status
    got, reason = record_state(rec)
    assert got is state
    assert words in reason


def test_qacct_array_records() -> None:
    recs = parse_qacct(data("qacct_j_array.txt"))
    assert [(r.job_id, r.task, r.failed, r.exit_status) for r in recs] == [
        ("53", t, 0, 0) for t in (1, 2, 3, 4)
    ]
    killed = parse_qacct(data("qacct_j_array_qdel.txt"))
    assert [(r.task, r.failed, r.exit_status) for r in killed] == [(1, 100, 137), (2, 100, 137)]


def test_qacct_nothing() -> None:
    assert parse_qacct(data("qacct_j_unknown.txt")) == []
    assert parse_qacct(data("qacct_j_never_ran.txt")) == []


# ------------------------------------------------------------------ the scheduler on captured output


def answer(name: str, rc: int = 0) -> tuple[int, str, str]:
    return (rc, data(name), "")


def test_statuses_one_qstat_for_all_jobs() -> None:
    sched, transport = scheduler({"qstat": answer("qstat_xml.txt")})
    out = sched.statuses([sub("60"), sub("61", count=4), sub("62"), sub("63")])
    assert transport.calls == [["qstat", "-xml"]]
    assert out["60"].state is JobState.RUNNING
    assert out["61"].state is JobState.RUNNING
    assert out["61"].tasks == {
        0: JobState.RUNNING,
        1: JobState.RUNNING,
        2: JobState.PENDING,
        3: JobState.PENDING,
    }
    assert out["62"].state is JobState.PENDING
    assert out["63"].state is JobState.HELD


def test_eqw_job_reports_sge_reason_and_is_deleted() -> None:
    def qstat(argv: list[str]) -> tuple[int, str, str]:
        return answer("qstat_j_eqw.txt") if "-j" in argv else answer("qstat_xml.txt")

    sched, transport = scheduler(
        {"qstat": qstat, "qdel": answer("qdel_several.txt"), "qacct": answer("qacct_j_eqw.txt")}
    )
    status = sched.statuses([sub("58")])["58"]
    assert status.state is JobState.ERROR and status.state.final
    assert 'can\'t open output file "/nonexistent/dir/out"' in status.reason
    assert transport.commands("qstat") == [["qstat", "-xml"], ["qstat", "-j", "58"]]
    assert transport.commands("qdel") == [["qdel", "58"]]
    # the final state is remembered: no more queries, and the ERROR (not qacct's view) stays
    again = sched.statuses([sub("58")])["58"]
    assert again == status
    assert len(transport.calls) == 3


def test_finished_jobs_from_qacct() -> None:
    by_id = {
        "52": "qacct_j_ok.txt",
        "54": "qacct_j_exit3.txt",
        "56": "qacct_j_h_rt.txt",
        "60": "qacct_j_qdel_running.txt",
        "53": "qacct_j_array.txt",
        "61": "qacct_j_array_qdel.txt",
    }

    def qacct(argv: list[str]) -> tuple[int, str, str]:
        return answer(by_id[argv[-1]])

    sched, transport = scheduler({"qstat": answer("qstat_xml_empty.txt"), "qacct": qacct})
    subs = [
        sub("52"),
        sub("54"),
        sub("56"),
        sub("60"),
        sub("53", count=4),
        sub("61", count=4, first=8),
    ]
    out = sched.statuses(subs)
    assert {k: v.state for k, v in out.items()} == {
        "52": JobState.COMPLETED,
        "54": JobState.FAILED,
        "56": JobState.TIMEOUT,
        "60": JobState.CANCELLED,
        "53": JobState.COMPLETED,
        "61": JobState.CANCELLED,
    }
    assert out["54"].exit_code == 3
    assert out["53"].tasks == {
        0: JobState.COMPLETED,
        1: JobState.COMPLETED,
        2: JobState.COMPLETED,
        3: JobState.COMPLETED,
    }
    assert out["61"].tasks == {
        8: JobState.CANCELLED,
        9: JobState.CANCELLED,
    }  # tasks 3, 4 never started
    assert len(transport.commands("qstat")) == 1
    assert len(transport.commands("qacct")) == 6
    sched.statuses(subs)  # all final now: remembered, nothing asked again
    assert len(transport.commands("qstat")) == 1 and len(transport.commands("qacct")) == 6


def test_job_missing_from_qstat_and_qacct_is_lost_but_asked_again() -> None:
    """Accounting lag: not final for good; the executor keeps asking for ``accounting_wait`` s."""
    records: dict[str, Callable[[list[str]], tuple[int, str, str]]] = {
        "qstat": lambda argv: answer("qstat_xml_empty.txt"),
        "qacct": lambda argv: (1, "", data("qacct_j_unknown.stderr")),
    }
    sched, transport = scheduler(records, accounting_wait=45)
    assert sched.accounting_lag == 45
    assert sched.statuses([sub("52")])["52"].state is JobState.LOST
    records["qacct"] = lambda argv: answer("qacct_j_ok.txt")
    transport.answers.update(records)
    assert sched.statuses([sub("52")])["52"].state is JobState.COMPLETED


def test_array_partly_in_accounting_waits_for_the_rest() -> None:
    two_of_four = data("qacct_j_array.txt").split("=" * 62)
    partial = ("=" * 62).join(two_of_four[:3])
    sched, _ = scheduler({"qstat": answer("qstat_xml_empty.txt"), "qacct": (0, partial, "")})
    assert sched.final_status(sub("53", count=4)) is None


def test_reused_job_number_takes_the_latest_record() -> None:
    text = data("qacct_j_exit3.txt").replace("54", "52") + data("qacct_j_ok.txt")
    sched, _ = scheduler({"qacct": (0, text, "")})
    status = sched.final_status(sub("52"))
    assert status is not None and status.state is JobState.COMPLETED


def test_qstat_failure_raises_so_the_executor_retries() -> None:
    sched, _ = scheduler(
        {"qstat": (1, "", 'error: unable to contact qmaster using port 6444 on host "vm"')}
    )
    with pytest.raises(Exception, match="unable to contact qmaster"):
        sched.statuses([sub("1")])


def test_parallelism_from_queue_slots_or_max_parallel() -> None:
    sched, transport = scheduler({"qstat": answer("qstat_g_c_q.txt")}, queue="all.q", cores=3)
    assert sched.parallelism() == 2  # 8 slots, 3 per task
    assert sched.parallelism() == 2
    assert transport.calls == [["qstat", "-g", "c", "-q", "all.q"]]
    sched, transport = scheduler({}, max_parallel=5)
    assert sched.parallelism() == 5 and transport.calls == []
    assert parse_cluster_queue_slots(data("qstat_g_c.txt")) == 8


def test_max_array_size_from_qconf() -> None:
    sched, transport = scheduler({"qconf": answer("qconf_sconf.txt")})
    assert sched.max_array_size() == 75000
    assert sched.max_array_size() == 75000
    assert len(transport.calls) == 1
