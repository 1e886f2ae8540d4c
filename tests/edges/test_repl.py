"""Issue 12 item 8 (the plain REPL): functions and classes typed at the ``>>>`` prompt of a real
interactive interpreter (under a pseudo-terminal) run with the source strategy on a Python 3.6
remote. Python 3.13's prompt keeps what is typed where ``inspect`` finds it; older ones are
recovered from the readline history (checked against the code the interpreter compiled), and
when that is gone the error names the function and what to do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.edges.conftest import ROOT

pexpect = pytest.importorskip("pexpect")

SESSION = [
    "from clustrix_core import SerializationError, cluster",
    "def helper(x):",
    "    return x + 1",
    "",
    "class Pt:",
    "    def __init__(self, v):",
    "        self.v = v",
    "",
    '@cluster(profile="local-py36")',
    "def work(x):",
    "    y = x * x",
    "    return helper(y), Pt(y).v",
    "",
    '@cluster(profile="local-py36")',
    "def make(v):",
    "    return Pt(v * 2)",
    "",
    'print("RESULT", work(4))',
    "p = make(5)",
    'print("CLASS", type(p) is Pt, p.v)',
]

LOST = [
    "def lost(x):",
    "    return x",
    "",
    "import readline",
    "readline.clear_history()",
    "try:",
    '    cluster(lost, profile="local-py36")(1)',
    "except SerializationError as exc:",
    '    print("REFUSED", str(exc).replace("\\n", " "))',
    "",
]


def _interpreters() -> list[str]:
    found = [sys.executable]
    try:
        prefix = subprocess.run(
            ["pyenv", "prefix", "3.13.0"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        prefix = ""
    if prefix and Path(prefix, "bin", "python").exists():
        found.append(str(Path(prefix, "bin", "python")))
    return found


def _deps(tmp_path: Path) -> Path:
    """The core's pure-Python dependencies, importable by another interpreter (3.13)."""
    import attr
    import attrs
    import cloudpickle
    import pluggy

    deps = tmp_path / "deps"
    deps.mkdir()
    for module in (attr, attrs, cloudpickle, pluggy):
        (deps / Path(module.__file__).parent.name).symlink_to(Path(module.__file__).parent)
    return deps


class Prompt:
    """A real interactive interpreter on a pseudo-terminal."""

    def __init__(self, python: str, tmp_path: Path, local: Path) -> None:
        self.version = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[1])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.pyrepl = int(self.version) >= 13  # the new prompt indents by itself
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT), str(_deps(tmp_path))]),
            HOME=str(tmp_path),  # a private ~/.python_history
            TERM="xterm",
            CLUSTRIX_CONFIG=str(local),
        )
        self.child = pexpect.spawn(
            python, ["-q"], env=env, cwd=str(tmp_path), encoding="utf-8", timeout=90
        )
        self.child.logfile_read = open(tmp_path / "pty.log", "w")  # noqa: SIM115
        self.child.expect(">>> ")

    def type(self, lines: list[str]) -> None:
        for line in lines:
            if self.pyrepl:  # it indents a block itself; an empty line may only dedent once
                line = line.lstrip() or "\r"
            self.child.send(line + "\r")
            time.sleep(0.25)

    def expect(self, pattern: str) -> re.Match[str]:
        self.child.expect(pattern)
        return self.child.match  # type: ignore[no-any-return]

    def close(self) -> None:
        self.child.sendeof()
        self.child.close(force=True)


@pytest.fixture(params=_interpreters(), ids=lambda p: "3.13" if "3.13" in p else "this-python")
def prompt(request: pytest.FixtureRequest, tmp_path: Path, local: Path) -> Prompt:
    if "local-py36" not in local.read_text():
        pytest.skip("profile local-py36 needs pyenv's Python 3.6.15")
    if shutil.which("pyenv") is None and request.param != sys.executable:
        pytest.skip("no pyenv")
    p = Prompt(request.param, tmp_path, local)
    yield p  # type: ignore[misc]
    p.close()


def test_functions_and_classes_typed_at_the_prompt_run_on_a_36_remote(prompt: Prompt) -> None:
    prompt.type(SESSION)
    got = prompt.expect(r"RESULT \((\d+), (\d+)\)")
    assert got.groups() == ("17", "16")
    got = prompt.expect(r"CLASS (\w+) (\d+)")
    assert got.groups() == ("True", "10")


@pytest.fixture
def plain_prompt(tmp_path: Path, local: Path) -> Prompt:
    """This Python's prompt (before 3.13: it keeps no source of what is typed)."""
    assert sys.version_info < (3, 13), "the lost-source case needs a prompt older than 3.13"
    p = Prompt(sys.executable, tmp_path, local)
    yield p  # type: ignore[misc]
    p.close()


def test_without_history_the_error_names_the_function_and_what_to_do(
    plain_prompt: Prompt,
) -> None:
    prompt = plain_prompt
    prompt.type(["from clustrix_core import SerializationError, cluster", *LOST])
    message = prompt.expect(r"REFUSED ([^\r\n]*)").group(1)
    assert "__main__.lost" in message and "typed at the interactive prompt" in message
    assert "readline history has no definition" in message or "not available" in message
    assert "Put it in a file" in message
