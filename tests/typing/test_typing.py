"""Issue 12 item 5: ``@cluster`` keeps the function's signature for type checkers. Runs mypy
--strict on check_types.py (must be clean; each N comment's note must appear) and check_errors.py
(exactly the error codes of its E comments, line by line)."""

from __future__ import annotations

import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*?)(?:  \[(?P<code>[a-z-]+)\])?$"
)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int, str, str, str]]:
    pytest.importorskip("mypy", reason="the typing tests need mypy (nox installs it)")
    cache = tmp_path_factory.mktemp("mypy-cache")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--show-error-codes",
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            "--cache-dir",
            str(cache),
            str(HERE / "check_types.py"),
            str(HERE / "check_errors.py"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found = []
    for line in done.stdout.splitlines():
        m = LINE.match(line)
        assert m, f"unexpected mypy output: {line!r}"
        found.append(
            (
                Path(m["file"]).name,
                int(m["line"]),
                m["kind"],
                m["text"].replace("builtins.", ""),
                m["code"] or "",
            )
        )
    return found


def expected(name: str, marker: str) -> dict[int, str]:
    out = {}
    for number, line in enumerate((HERE / name).read_text().splitlines(), start=1):
        if f"# {marker}: " in line:
            out[number] = line.split(f"# {marker}: ", 1)[1].strip()
    return out


def test_the_typed_api_checks_clean_under_strict_with_the_expected_notes(
    mypy_output: list[tuple[str, int, str, str, str]],
) -> None:
    mine = [f for f in mypy_output if f[0] == "check_types.py"]
    assert [f for f in mine if f[2] == "error"] == []
    notes = {line: text for _, line, kind, text, _ in mine if kind == "note"}
    assert notes == expected("check_types.py", "N")


def test_mistakes_are_type_errors_and_nothing_else_is(
    mypy_output: list[tuple[str, int, str, str, str]],
) -> None:
    errors = {
        line: code
        for file, line, kind, _, code in mypy_output
        if file == "check_errors.py" and kind == "error"
    }
    assert errors == expected("check_errors.py", "E")


def test_executor_methods_are_documented_in_their_own_words() -> None:
    from clustrix_core import ClusterExecutor

    for method in (ClusterExecutor.map, ClusterExecutor.submit):
        text = pydoc.render_doc(method, renderer=pydoc.plaintext)
        assert "ProcessPoolExecutor" not in text, text
        assert method.__doc__ and "job" in method.__doc__, text
