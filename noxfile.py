"""Every developer and CI action is a nox session: demo, tests, lint, typecheck, bench."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PLUGINS = sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("plugins/*/pyproject.toml"))
DEFAULT_PYTHON = "3.11"
CORE_PYTHONS = ["3.9", "3.13"]
CORE_TEST_DEPS = ["pytest>=7", "pytest-timeout", "numpy"]
"""What tests/core needs (it runs on the oldest and newest supported Pythons)."""
TEST_DEPS = [
    *CORE_TEST_DEPS,
    "mypy",
    "kubernetes==37.0.2",
    "hypothesis",
    "nbclient",
    "nbformat",
    "ipykernel",
    "pexpect",
]

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


def _add_pyenv_interpreters() -> None:
    """Make every pyenv-installed CPython findable by nox as pythonX.Y (appended to PATH, so the
    machine's default python stays first)."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    bins = sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin")))
    if bins:
        os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *bins])


_add_pyenv_interpreters()


def _install_all(session: nox.Session) -> None:
    session.install("-e", ".[dill]", *(f"-e{p}" for p in PLUGINS), *TEST_DEPS)


@nox.session(python=DEFAULT_PYTHON)
def demo(session: nox.Session) -> None:
    """Run examples/demo.py on the local backend (and on a Python 3.6 interpreter when pyenv has one)."""
    session.install(".")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite: core and every plugin, against real test clusters (tests/clusters/*/up)."""
    _install_all(session)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests",
        "-p",
        "no:cacheprovider",
        "--timeout=900",
        *session.posargs,
    )


@nox.session(python=CORE_PYTHONS)
def tests_core(session: nox.Session) -> None:
    """The core's tests on the oldest and newest supported local Pythons."""
    session.install("-e", ".[dill]", *CORE_TEST_DEPS)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/core",
        "-p",
        "no:cacheprovider",
        "--timeout=600",
        *session.posargs,
    )


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("mypy", "-e", ".", *(f"-e{p}" for p in PLUGINS), "types-paramiko", "pytest")
    session.run("mypy", "clustrix_core", *(str(Path(p) / Path(p).name) for p in PLUGINS))


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (bench/*.py); each prints a table. `nox -s bench -- core` runs bench/bench_core.py only."""
    _install_all(session)
    session.install("submitit")
    wanted = session.posargs or [
        Path(p).stem.removeprefix("bench_") for p in sorted(glob.glob("bench/bench_*.py"))
    ]
    for name in wanted:
        session.run("python", f"bench/bench_{name}.py")
