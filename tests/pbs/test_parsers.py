"""Every parser of clustrix_pbs.parsers, and the scheduler's reading of statuses, on real
captured output (tests/pbs/data, see PROVENANCE.md). No cluster needed."""

from __future__ import annotations

import json

import pytest
from clustrix_pbs import parsers as p
from clustrix_pbs.scheduler import DELETED, classify, parse_node_cpus

from clustrix_core.scheduler import JobState

from .conftest import DATA, read

# ------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    ("printed", "key"),
    [
        ("123.pbs-server.example.org", "123"),
        ("123.pbs-server", "123"),
        ("123", "123"),
        ("5[].pbs-server", "5[]"),
        ("5[3].pbs-server", "5[3]"),
        ("2596901[10].pbsse", "2596901[10]"),  # cut by a qstat table
        ("1006[0].pbs-serv*", "1006[0]"),  # cut and marked by OpenPBS
        ("48[1].torque01.bcgsc.ca", "48[1]"),
        ("not-a-job-id", "not-a-job-id"),
    ],
)
def test_normalize_id(printed: str, key: str) -> None:
    assert p.normalize_id(printed) == key


def test_same_job_ignores_the_server_suffix() -> None:
    assert p.same_job("123.pbs-server.domain", "123")
    assert p.same_job("5[].pbs-server", "5[].other")
    assert not p.same_job("5[].pbs-server", "5.pbs-server")
    assert not p.same_job("5[1].pbs-server", "5[].pbs-server")
    parts = p.split_id("5[3].pbs-server")
    assert parts is not None and (parts.seq, parts.index, parts.array_key) == ("5", 3, "5[]")


# ------------------------------------------------------------------ qsub


@pytest.mark.parametrize(
    ("name", "job_id"),
    [
        ("openpbs/pbsuser_qsub-single.txt", "2.pbs-server"),
        ("openpbs/pbsuser_qsub-array.txt", "5[].pbs-server"),
        ("local/pbsuser-qsub-array.txt", "11[].pbs-server"),
        ("fixtures/openpbs-qsub.txt", "2556851.pbsserver"),
        ("fixtures/openpbs-qsub-gadi.txt", "136703295.gadi-pbs"),
        ("fixtures/openpbs-qsub-pbspro14.txt", "0.sirna1"),
        ("fixtures/torque-qsub.txt", "6401.gb-ce-kun.els.sara.nl"),
        ("fixtures/torque-qsub-array.txt", "189[].napali"),
        ("local/torque-wrappers/qsub.txt", "4"),
    ],
)
def test_parse_qsub(name: str, job_id: str) -> None:
    assert p.parse_qsub(read(name)) == job_id


def test_parse_qsub_without_an_id_raises() -> None:
    with pytest.raises(ValueError, match="no job id"):
        p.parse_qsub(read("local/qsub-J-single-index.txt.stderr"))
    with pytest.raises(ValueError):
        p.parse_qsub("")


# ------------------------------------------------------------------ qstat -f -F json


def rows_by_id(rows: list[p.JobRow]) -> dict[str, p.JobRow]:
    return {r.job_id: r for r in rows}


def test_json_finished_exit3_walltime_and_deleted() -> None:
    (ok,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-finished.json"))
    assert (ok.job_id, ok.state, ok.exit_status, ok.substate, ok.task) == (
        "2.pbs-server",
        "F",
        0,
        92,
        None,
    )
    (e3,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-exit3.json"))
    assert (e3.exit_status, e3.substate) == (3, 93)
    (wall,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-walltime-exceeded.json"))
    assert (wall.exit_status, wall.substate) == (-29, 93)
    assert "exceeded resource walltime" in wall.comment
    (killed,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-qdel-running.json"))
    assert (killed.exit_status, killed.deleted) == (271, True)
    (root_killed,) = p.parse_qstat_json(read("openpbs/root_qstat-fx-F-json-qdel-running.json"))
    assert (root_killed.exit_status, root_killed.deleted) == (0, True)  # root: Exit_status 0
    (held,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-qdel-held.json"))
    assert (held.state, held.exit_status, held.deleted) == ("F", None, True)


def test_json_live_states() -> None:
    (running,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-f-F-json-running.json"))
    (held,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-f-F-json-held.json"))
    (sub,) = p.parse_qstat_json(read("openpbs/pbsuser_qstat-f-F-json-subjob-running.json"))
    assert (running.state, held.state) == ("R", "H")
    assert (sub.job_id, sub.array_id, sub.task, sub.state) == (
        "5[0].pbs-server",
        "5[].pbs-server",
        0,
        "R",
    )


def test_json_array_with_subjobs() -> None:
    rows = p.parse_qstat_json(read("openpbs/pbsuser_qstat-f-F-json-t-array-begun.json"))
    parent = rows[0]
    assert (parent.job_id, parent.is_array, parent.state, parent.task) == (
        "5[].pbs-server",
        True,
        "B",
        None,
    )
    assert [(r.task, r.state) for r in rows[1:]] == [(0, "R"), (1, "Q"), (2, "Q"), (3, "Q")]
    assert {r.array_id for r in rows} == {"5[].pbs-server"}
    done = p.parse_qstat_json(read("openpbs/pbsuser_qstat-fx-F-json-t-array-finished.json"))
    assert [(r.task, r.state, r.exit_status) for r in done] == [
        (None, "F", 0),
        (0, "F", 0),
        (1, "F", 0),
        (2, "F", 0),
        (3, "F", 0),
    ]
    deleted = p.parse_qstat_json(read("local/pbsuser-qstat-fx-F-json-t-array-deleted.json"))
    assert [(r.task, r.exit_status, r.deleted) for r in deleted] == [
        (None, 1, True),
        (0, 271, True),
        (1, 271, True),
        (2, 1, True),
        (3, 1, True),
    ]


def test_json_of_other_sites_and_empty_answers() -> None:
    rows = p.parse_qstat_json(read("fixtures/openpbs-qstat-xf-F-json-queued-held-finished.json"))
    assert rows and {r.state for r in rows} <= set(p.STATE_NAMES)
    assert any(r.state == "H" for r in rows)
    running = p.parse_qstat_json(read("fixtures/openpbs-qstat-xf-F-json-running.json"))
    assert [r.state for r in running] == ["R"] * len(running)
    finished = p.parse_qstat_json(read("fixtures/openpbs-qstat-xf-F-json-finished-held.json"))
    assert any(r.state == "F" and r.exit_status is not None for r in finished)
    # an unknown id: rc 153 and a document without "Jobs"
    assert p.parse_qstat_json(read("openpbs/common_qstat-f-F-json-unknown-job-id.json")) == []
    assert p.parse_qstat_json("") == []
    with pytest.raises(p.QstatJsonError):
        p.load_qstat_json("qstat: cannot connect to server pbs-client (errno=15010)\n")


def test_json_with_several_ids_lists_only_the_first_on_openpbs_23() -> None:
    """The OpenPBS bug the plugin works around by asking several ids in text form."""
    rows = p.parse_qstat_json(read("local/qstat-f-F-json-two-ids-first-only.json"))
    assert [r.job_id for r in rows] == ["6.pbs-server"]


# ------------------------------------------------------------------ invalid JSON


def test_the_spliced_files_are_invalid_json() -> None:
    for path in sorted((DATA / "spliced").glob("*.json")):
        with pytest.raises(ValueError):
            json.loads(path.read_text())


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("unescaped-quotes-comment.json", "repaired"),
        ("invalid-escapes-variable-list.json", "repaired"),
        ("leading-zero-number.json", "repaired"),
        ("raw-control-characters.json", "lenient"),
        ("everything.json", "repaired"),
        ("truncated.json", "lines"),
    ],
)
def test_invalid_json_is_read_anyway(name: str, method: str) -> None:
    text = read(f"spliced/{name}")
    loaded = p.load_qstat_json(text)
    assert loaded.method == method
    (row,) = p.parse_qstat_json(text)
    if name == "raw-control-characters.json":
        assert (row.job_id, row.state, row.substate) == ("6.pbs-server", "H", 20)
        env = loaded.jobs["6.pbs-server"]["Variable_List"]
        assert env["MYNL"] == "line1\nline2" and env["MYQ"] == 'say \\"hi\\"\ttab'
    else:
        assert (row.job_id, row.state, row.exit_status, row.substate) == (
            "2.pbs-server",
            "F",
            0,
            92,
        )


def test_repair_keeps_what_pbs_meant() -> None:
    jobs = p.load_qstat_json(read("spliced/everything.json")).jobs
    job = jobs["2.pbs-server"]
    assert job["comment"] == 'a "quoted" and\nbroken comment'
    assert job["Variable_List"]["foo"] == "005"  # a string, leading zeros kept
    assert job["Variable_List"]["MYVAR"] == "'\"asads\"'"  # the fix PR #2049 made upstream
    assert job["resources_used"]["walltime"] == "00:00:00"
    quotes = p.load_qstat_json(read("spliced/unescaped-quotes-comment.json")).jobs
    assert '"zaskly sdileny scratch"' in quotes["2.pbs-server"]["comment"]
    escapes = p.load_qstat_json(read("spliced/invalid-escapes-variable-list.json")).jobs
    assert escapes["2.pbs-server"]["Variable_List"]["MYVAR2"] == "/home/pbstest01/Mo\\'"


def test_repair_leaves_valid_json_alone() -> None:
    text = read("openpbs/pbsuser_qstat-fx-F-json-t-array-finished.json")
    assert json.loads(p.repair_qstat_json(text)) == json.loads(text)


# ------------------------------------------------------------------ qstat -f (text)


def test_text_openpbs_records() -> None:
    (wall,) = p.parse_qstat_full(read("openpbs/pbsuser_qstat-fx-walltime-exceeded.txt"))
    assert (wall.job_id, wall.state, wall.exit_status, wall.substate) == (
        "7.pbs-server",
        "F",
        -29,
        93,
    )
    (killed,) = p.parse_qstat_full(read("openpbs/root_qstat-fx-qdel-running.txt"))
    # the comment wraps ("termin" / TAB "ated"): joined again
    assert killed.comment.endswith("and terminated by root@pbs-client")
    assert killed.deleted and killed.exit_status == 0
    (parent,) = p.parse_qstat_full(read("openpbs/pbsuser_qstat-fx-array-parent-finished.txt"))
    assert parent.is_array and parent.task is None
    (running,) = p.parse_qstat_full(read("openpbs/pbsuser_qstat-f-running.txt"))
    (held,) = p.parse_qstat_full(read("openpbs/pbsuser_qstat-f-held.txt"))
    assert (running.state, held.state) == ("R", "H")
    records = dict(p.parse_qstat_full_records(read("openpbs/pbsuser_qstat-fx-qdel-running.txt")))
    assert "PBS_O_WORKDIR=/tmp/pbscap" in records["4.pbs-server"]["Variable_List"]


def test_text_several_ids_and_arrays() -> None:
    rows = p.parse_qstat_full(read("local/qstat-fx-t-two-ids-one-unknown.txt"))
    assert [r.job_id for r in rows] == ["6.pbs-server", "1.pbs-server"]
    deleted = p.parse_qstat_full(read("local/pbsuser-qstat-fx-t-array-deleted.txt"))
    assert [(r.task, r.state, r.exit_status, r.deleted) for r in deleted] == [
        (None, "F", 1, True),
        (0, "F", 271, True),
        (1, "F", 271, True),
        (2, "F", 1, True),
        (3, "F", 1, True),
    ]
    running = p.parse_qstat_full(read("local/pbsuser-qstat-fx-t-array-running.txt"))
    assert [r.task for r in running] == [None, 0, 1, 2, 3] and running[0].state == "B"


def test_text_raw_tab_and_newline_in_a_value() -> None:
    records = dict(p.parse_qstat_full_records(read("local/qstat-f-env-values.txt")))
    env = records["6.pbs-server"]["Variable_List"]
    assert 'MYQ=say \\"hi\\"\ttab' in env
    assert "MYNL=line1\nline2,MYBS=a\\\\b,MYC=ab\\,c" in env
    assert env.endswith("PBS_O_HOST=pbs-client")


def test_text_other_pbspro_sites() -> None:
    (gadi,) = p.parse_qstat_full(read("fixtures/openpbs-qstat-fx-finished.txt"))
    assert gadi.state == "F" and gadi.exit_status == 0
    rows = p.parse_qstat_full(read("fixtures/openpbs-qstat-f-queued-running-held.txt"))
    assert {r.state for r in rows} == {"Q", "R", "H"}


def test_text_torque() -> None:
    rows = p.parse_qstat_full(read("fixtures/torque-qstat-f-held-running-completed-queued.txt"))
    assert [(r.job_id, r.state, r.exit_status) for r in rows if r.state == "C"] == [
        ("546437", "C", 271),
        ("543984", "C", 271),
    ]
    assert [r.state for r in rows].count("Q") == 5
    (done,) = p.parse_qstat_full(read("fixtures/torque-qstat-f-completed.txt"))
    assert (done.job_id, done.state, done.exit_status) == ("9.torque01.bcgsc.ca", "C", 0)
    records = dict(p.parse_qstat_full_records(read("fixtures/torque-qstat-f-completed.txt")))
    assert records["9.torque01.bcgsc.ca"]["Error_Path"].endswith("/temp/subtest.sh.e9")
    (sub,) = p.parse_qstat_full(read("fixtures/torque-qstat-f-array-subjob-completed.txt"))
    assert (sub.array_id, sub.task, sub.state, sub.exit_status) == (
        "48[].torque01.bcgsc.ca",
        1,
        "C",
        271,
    )
    assert "can never be satisfied" in sub.comment
    (doc,) = p.parse_qstat_full(read("fixtures/torque-qstat-f-completed-docs.txt"))
    assert (doc.state, doc.exit_status) == ("C", -1)


def test_text_slurm_torque_wrappers() -> None:
    rows = p.parse_qstat_full(read("local/torque-wrappers/qstat-f-running-completed.txt"))
    assert [(r.job_id, r.state, r.exit_status) for r in rows] == [
        ("4", "R", None),
        ("5", "C", None),
    ]
    (cancelled,) = p.parse_qstat_full(read("local/torque-wrappers/qstat-f-cancelled.txt"))
    assert (cancelled.state, cancelled.exit_status) == ("C", None)
    assert p.parse_qstat_full(read("local/torque-wrappers/qstat-f-unknown.txt")) == []


# ------------------------------------------------------------------ tables


def test_tables() -> None:
    rows = p.parse_qstat_table(read("openpbs/pbsuser_qstat-t.txt"))
    assert [(r.job_id, r.task, r.state) for r in rows][:3] == [
        ("4.pbs-server", None, "R"),
        ("5[].pbs-server", None, "B"),
        ("5[0].pbs-server", 0, "R"),
    ]
    history = p.parse_qstat_table(read("openpbs/common_qstat-H.txt"))  # alternate layout
    assert len(history) == 13 and {r.state for r in history} == {"F"}
    xt = p.parse_qstat_table(read("openpbs/pbsuser_qstat-x-t-array-finished.txt"))
    assert [r.task for r in xt] == [None, 0, 1, 2, 3]
    artemis = p.parse_qstat_table(read("fixtures/openpbs-qstat-t-array-begun-expired-running.txt"))
    assert [r.state for r in artemis] == ["B"] + ["X"] * 8 + ["R", "R"]
    assert p.normalize_id(artemis[-1].job_id) == "2596901[10]"
    torque = p.parse_qstat_table(read("fixtures/torque-qstat-completed-running-queued.txt"))
    assert {r.state for r in torque} == {"C", "R", "Q"}
    excerpt = p.parse_qstat_table(read("fixtures/torque-qstat-t-array-excerpt.txt"))
    assert excerpt[0].task == 287 and excerpt[0].array_id == "189[].napali"
    wrappers = p.parse_qstat_table(read("local/torque-wrappers/qstat-running-completed.txt"))
    assert [(r.job_id, r.state) for r in wrappers] == [("4", "R"), ("5", "C")]
    assert len(p.parse_qstat_table(read("openpbs/common_qstat-xt.txt"))) == 21


# ------------------------------------------------------------------ messages


@pytest.mark.parametrize(
    ("name", "kind", "job_id"),
    [
        ("openpbs/common_qstat-unknown-job-id.txt.stderr", "unknown", "99999.pbs-server"),
        ("openpbs/common_qdel-unknown-job-id.txt.stderr", "unknown", "99999.pbs-server"),
        ("openpbs/pbsuser_qdel-finished.txt.stderr", "finished", "4.pbs-server"),
        ("openpbs/pbsuser_qstat-f-finished-without-x.txt.stderr", "finished", "2.pbs-server"),
        ("openpbs/common_qdel-illegally-formed.txt.stderr", "illegal", "not-a-job-id"),
        ("openpbs/common_qstat-server-down-connection-refused.txt.stderr", "connect", ""),
        ("fixtures/openpbs-qdel-job-has-finished.txt", "finished", ""),
        ("fixtures/openpbs-qdel-unknown-job-id.txt", "unknown", "9999.sirna1"),
        ("fixtures/openpbs-qstat-unknown-job-id.txt", "unknown", "596901.pbsserver"),
        ("fixtures/torque-qstat-unknown-job-id.txt", "unknown", "6401.gb-ui-kun.els.sara.nl"),
    ],
)
def test_messages(name: str, kind: str, job_id: str) -> None:
    (message,) = [m for m in p.parse_messages(read(name)) if m.kind != "other"]
    assert (message.kind, message.job_id) == (kind, job_id)


def test_qdel_outcome_of_several_ids() -> None:
    outcome = p.qdel_outcome("", read("local/qdel-mixed-finished-unknown.txt.stderr"), 153)
    assert outcome == {"1.pbs-server": "finished", "99999.pbs-server": "unknown"}
    # the SLURM wrappers say nothing about finished or unknown ids (rc 1)
    assert p.qdel_outcome(read("local/torque-wrappers/qdel-unknown.txt"), "", 1) == {}


# ------------------------------------------------------------------ exit statuses and states


@pytest.mark.parametrize(
    ("code", "dialect", "kind", "signal"),
    [
        (0, "pbspro", "ok", None),
        (3, "pbspro", "exit", None),
        (-29, "pbspro", "walltime", None),
        (-27, "pbspro", "memory", None),
        (-26, "pbspro", "memory", None),
        (-11, "pbspro", "rerun", None),
        (-1, "pbspro", "exec", None),
        (-28, "pbspro", "limit", None),
        (-11, "torque", "walltime", None),
        (-10, "torque", "memory", None),
        (271, "pbspro", "signal", 15),
        (265, "torque", "signal", 9),
        (137, "pbspro", "signal", 9),
        (-99, "pbspro", "exec", None),
    ],
)
def test_exit_meaning(code: int, dialect: str, kind: str, signal: int | None) -> None:
    meaning = p.exit_meaning(code, dialect)
    assert (meaning.kind, meaning.signal) == (kind, signal)
    assert str(code) in meaning.text


def state_of(name: str, dialect: str = "pbspro") -> list[JobState]:
    """What the scheduler makes of each row of a captured file (JSON or text)."""
    text = read(name)
    rows = p.parse_qstat_json(text) if text.lstrip().startswith("{") else p.parse_qstat_full(text)
    out = []
    for row in rows:
        reason = (f"{DELETED}: {row.comment}" if row.deleted else row.comment) or ""
        out.append(classify(row.state, row.exit_status, reason, dialect=dialect).state)
    return out


@pytest.mark.parametrize(
    ("name", "dialect", "states"),
    [
        ("openpbs/pbsuser_qstat-fx-F-json-finished.json", "pbspro", [JobState.COMPLETED]),
        ("openpbs/pbsuser_qstat-fx-F-json-exit3.json", "pbspro", [JobState.FAILED]),
        ("openpbs/pbsuser_qstat-fx-F-json-walltime-exceeded.json", "pbspro", [JobState.TIMEOUT]),
        ("openpbs/root_qstat-fx-F-json-walltime-exceeded.json", "pbspro", [JobState.TIMEOUT]),
        ("openpbs/pbsuser_qstat-fx-F-json-qdel-running.json", "pbspro", [JobState.CANCELLED]),
        ("openpbs/root_qstat-fx-F-json-qdel-running.json", "pbspro", [JobState.CANCELLED]),
        ("openpbs/pbsuser_qstat-fx-F-json-qdel-held.json", "pbspro", [JobState.CANCELLED]),
        ("openpbs/root_qstat-fx-qdel-running.txt", "pbspro", [JobState.CANCELLED]),
        ("openpbs/pbsuser_qstat-f-F-json-held.json", "pbspro", [JobState.HELD]),
        ("openpbs/pbsuser_qstat-f-F-json-running.json", "pbspro", [JobState.RUNNING]),
        (
            "openpbs/pbsuser_qstat-f-F-json-t-array-begun.json",
            "pbspro",
            [JobState.RUNNING, JobState.RUNNING] + [JobState.PENDING] * 3,
        ),
        ("local/pbsuser-qstat-fx-F-json-t-array-deleted.json", "pbspro", [JobState.CANCELLED] * 5),
        ("fixtures/torque-qstat-f-completed.txt", "torque", [JobState.COMPLETED]),
        ("fixtures/torque-qstat-f-array-subjob-completed.txt", "torque", [JobState.CANCELLED]),
        ("fixtures/torque-qstat-f-completed-docs.txt", "torque", [JobState.FAILED]),
        (
            "local/torque-wrappers/qstat-f-running-completed.txt",
            "torque",
            [JobState.RUNNING, JobState.COMPLETED],
        ),
    ],
)
def test_states_of_real_jobs(name: str, dialect: str, states: list[JobState]) -> None:
    assert state_of(name, dialect) == states


def test_classify_reasons() -> None:
    wall = classify("F", -29, "Job run at ... and exceeded resource walltime", dialect="pbspro")
    assert wall.state is JobState.TIMEOUT and wall.exit_code == -29
    assert "walltime exceeded" in wall.reason and "exceeded resource walltime" in wall.reason
    assert classify("F", -27, "", dialect="pbspro").state is JobState.OUT_OF_MEMORY
    assert classify("C", -11, "", dialect="torque").state is JobState.TIMEOUT
    assert classify("C", -10, "", dialect="torque").state is JobState.OUT_OF_MEMORY
    assert classify("Q", -11, "", dialect="pbspro").state is JobState.REQUEUED
    assert not classify("Q", -11, "", dialect="pbspro").state.final
    assert classify("F", -11, "", dialect="pbspro").state is JobState.NODE_FAIL
    assert classify("F", 265, "", dialect="pbspro").state is JobState.FAILED
    assert "SIGKILL" in classify("F", 265, "", dialect="pbspro").reason
    assert classify("X", None, "", dialect="pbspro").state is JobState.COMPLETED
    assert classify("M", None, "", dialect="pbspro").state is JobState.FAILED
    for letter in "QHWTRBESU":
        assert not classify(letter, None, "", dialect="pbspro").state.final


def test_node_cpus() -> None:
    assert parse_node_cpus(read("openpbs/common_pbsnodes-a.txt")) == 2
    assert (
        parse_node_cpus("n1\n     np = 8\n     state = free\nn2\n     np = 8\n     state = down\n")
        == 8
    )
