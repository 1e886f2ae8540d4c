"""Hostile remote (issue 13), on the ssh test server: a remote ``python`` that prints garbage
before its output, a login shell that prints a banner on every command, a ``~/.bashrc`` that
exits for non-interactive shells. clustrix works, or says precisely what is wrong, and so does
``clustrix doctor``.

The banner and .bashrc cases use a dedicated user (``clustrix-hostile``, created here as
tests/security/conftest.py creates its users) so that the root account other tests use is
never touched. Its Python is the system one (``/usr/bin/python3``)."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clustrix_core.executor import ClusterExecutor
from clustrix_core.transport import close_all_transports

from .conftest import TIMEOUT, cluster_values, clustrix, records

pytestmark = pytest.mark.faults

USER = "clustrix-hostile"
SYSTEM_PYTHON = "/usr/bin/python3"
BANNER_SHELL = "/usr/local/bin/clustrix-banner-shell"


def add(x: int, y: int) -> int:
    return x + y


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def hostile_user() -> Iterator[Path]:
    """The dedicated user (its home directory); removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("creating a test user needs root")
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        done = _sh("useradd", "-m", "-s", "/bin/bash", USER)
        assert done.returncode == 0, done.stderr
        made = True
    _sh("usermod", "-p", "*", USER)  # sshd (UsePAM no) refuses a '!' password field
    home = Path(pwd.getpwnam(USER).pw_dir)
    yield home
    close_all_transports()
    _sh("usermod", "-s", "/bin/bash", USER)
    if made:
        _sh("userdel", "-r", USER)


@pytest.fixture
def as_user(
    hostile_user: Path, profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> Callable[..., ClusterExecutor]:
    """``as_user(shell=..., bashrc=...)``: an executor on the ssh server as the hostile user."""

    def build(*, shell: str = "/bin/bash", bashrc: str = "") -> ClusterExecutor:
        close_all_transports()
        assert _sh("usermod", "-s", shell, USER).returncode == 0
        rc = hostile_user / ".bashrc"
        rc.write_text(bashrc)
        os.chown(rc, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
        values = {
            **cluster_values("ssh"),
            "user": USER,
            "python": SYSTEM_PYTHON,
            "work_dir": "~/jobs",
            "poll_max": 0.5,
            "command_timeout": 20.0,
        }
        profiles("ssh", hostile=values)
        return make("hostile")

    return build


def _doctor(profile: str) -> subprocess.CompletedProcess[str]:
    return clustrix("doctor", profile, "--timeout", "120", timeout=300)


def test_python_prints_garbage_first(
    tmp_path: Path, profiles: Callable[..., Path], make: Callable[..., ClusterExecutor]
) -> None:
    """A site's python wrapper that greets on stdout and stderr before running Python."""
    base = cluster_values("ssh")
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        'echo "Welcome to the cluster python {\\"python\\": \\"9.9\\"} GARBAGE"\n'
        'echo "module: warning: garbage on stderr" >&2\n'
        f'exec {base["python"]} "$@"\n'
    )
    wrapper.chmod(0o755)
    profiles("ssh", garbage={**base, "python": str(wrapper), "poll_max": 0.5})
    ex = make("garbage")
    assert ex.submit(add, 2, 3).result(timeout=TIMEOUT) == 5
    assert list(ex.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    doctor = _doctor("garbage")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert {r.state for r in records().values()} == {"COMPLETED"}


def test_login_shell_prints_banner(as_user: Callable[..., ClusterExecutor]) -> None:
    """A login shell that prints a banner on stdout and stderr before every command."""
    Path(BANNER_SHELL).write_text(
        "#!/bin/sh\n"
        'echo "*** AUTHORIZED USE ONLY: banner on stdout 12345 ***"\n'
        'echo "*** banner on stderr ***" >&2\n'
        'exec /bin/sh "$@"\n'
    )
    Path(BANNER_SHELL).chmod(0o755)
    ex = as_user(shell=BANNER_SHELL)
    assert ex.submit(add, 2, 3).result(timeout=TIMEOUT) == 5
    assert list(ex.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    doctor = _doctor("hostile")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert {r.state for r in records().values()} == {"COMPLETED"}


def test_bashrc_exits_for_noninteractive_shells(as_user: Callable[..., ClusterExecutor]) -> None:
    """``~/.bashrc`` exits when not interactive: nothing can run; clustrix says so precisely
    (the remote shell, its startup files), before anything is submitted, and so does doctor."""
    ex = as_user(bashrc="case $- in *i*) ;; *) exit 0 ;; esac\n")
    with pytest.raises(Exception) as info:
        ex.submit(add, 2, 3).result(timeout=TIMEOUT)
    message = str(info.value)
    assert "shell" in message and (".bashrc" in message or "startup" in message), message
    assert not [r for r in records().values() if r.submissions]
    doctor = _doctor("hostile")
    assert doctor.returncode != 0
    assert ".bashrc" in doctor.stdout or "startup" in doctor.stdout, doctor.stdout
