"""Fixtures for the attacks of issue 14, performed by a second Unix user that these tests create.

Users (created once per session with ``useradd``, as root; removed at the end when possible):

- ``clustrix-mallory``: the attacker. Commands run as her with ``runuser -u clustrix-mallory``.
- ``clustrix-victim``: an ordinary (non-root) victim; the test process itself is the root victim.
- group ``clustrix-proj``: both users are members (a project group for the group-writable cases).

The non-root victim's Python is the system interpreter (``/usr/bin/python3``: the pyenv root and
the nox virtualenv live under root-only or possibly unreadable directories), with a private copy
of clustrix_core and its pure-Python dependencies (attrs, pluggy, cloudpickle) in a directory it
can read. Over SSH, the non-root victim is the remote user: the test sshd authorizes the test key
for every account, so the test process connects as ``clustrix-victim``.

Every attack works in an ``arena``: a fresh root-owned directory with mode 1777 (like /tmp), so
that mallory can create entries in it but cannot rename the victim's.
"""

from __future__ import annotations

import importlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from clustrix_core.config import Profile, build_profile, load_profile, profile_to_dict
from clustrix_core.errors import TransportError
from clustrix_core.transport import LocalTransport, Transport
from tests.conftest import cluster_config

MALLORY = "clustrix-mallory"
VICTIM = "clustrix-victim"
GROUP = "clustrix-proj"
SYSTEM_PYTHON = "/usr/bin/python3"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def run_as(
    user: str, *argv: str, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` (not checked: attacks are allowed to fail)."""
    return subprocess.run(
        ["runuser", "-u", user, "--", *argv], capture_output=True, text=True, cwd=cwd, check=False
    )


def mallory(*argv: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_as(MALLORY, *argv, cwd=cwd)


def uid_of(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


@pytest.fixture(scope="session")
def users() -> Iterator[dict[str, int]]:
    """Create the attacker, the non-root victim and their shared group; their uids by name."""
    if os.geteuid() != 0:
        message = "the security tests create Unix users: run them as root"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    _sh("groupadd", "-f", GROUP)
    made = []
    for user in (MALLORY, VICTIM):
        try:
            pwd.getpwnam(user)
        except KeyError:
            done = _sh("useradd", "-m", "-s", "/bin/sh", "-G", GROUP, user)
            assert done.returncode == 0, done.stderr
            made.append(user)
        _sh("usermod", "-a", "-G", GROUP, user)
        _sh("usermod", "-p", "*", user)  # sshd (UsePAM no) refuses a '!' password field
    yield {MALLORY: uid_of(MALLORY), VICTIM: uid_of(VICTIM)}
    from clustrix_core.transport import close_all_transports

    close_all_transports()
    for user in made:
        _sh("userdel", "-r", user)  # best effort: fails while a session of the user lives on


@pytest.fixture
def arena(users: dict[str, int]) -> Iterator[Path]:
    """A fresh root-owned 1777 directory under /tmp where mallory can create entries."""
    path = Path(f"/tmp/clustrix-security-{secrets.token_hex(6)}")
    path.mkdir()
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(arena: Path) -> Path:
    """A project directory of the group (root:clustrix-proj, mode 2775): both users may write."""
    path = arena / "project"
    path.mkdir()
    os.chown(path, 0, __import__("grp").getgrnam(GROUP).gr_gid)
    path.chmod(0o2775)
    return path


# ------------------------------------------------------------------ the non-root victim's Python

_PURE = ("clustrix_core", "attr", "attrs", "pluggy", "cloudpickle")


@pytest.fixture(scope="session")
def victim_site(users: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory the victim can read with a copy of clustrix_core and its dependencies."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"{SYSTEM_PYTHON} is needed to run Python as {VICTIM}", pytrace=False)
    site = Path(f"/tmp/clustrix-security-site-{secrets.token_hex(6)}")
    site.mkdir()
    for name in _PURE:
        source = Path(importlib.import_module(name).__file__ or "").parent
        shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(site)], check=True)
    site.chmod(0o755)
    yield site
    shutil.rmtree(site, ignore_errors=True)


@attrs.define
class VictimPython:
    """Runs Python code as ``clustrix-victim`` (a clean environment, HOME set)."""

    site: Path

    def run(
        self,
        code: str,
        *args: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        home = pwd.getpwnam(VICTIM).pw_dir
        base = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": str(self.site)}
        envs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
        return subprocess.run(
            ["runuser", "-u", VICTIM, "--", "env", "-i", *envs, SYSTEM_PYTHON, "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=cwd or "/",
            check=False,
            timeout=120,
        )


@pytest.fixture
def victim_python(victim_site: Path) -> VictimPython:
    return VictimPython(site=victim_site)


_CALL = r"""
import json, sys
from clustrix_core.config import Profile
from clustrix_core.errors import TransportError
from clustrix_core.transport import LocalTransport
method, args = sys.argv[1], json.loads(sys.argv[2])
if method == "put_bytes":
    args[1] = args[1].encode()
try:
    value = getattr(LocalTransport(profile=Profile()), method)(*args)
except (TransportError, FileExistsError) as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"value": value}))
"""


class VictimLocalTransport:
    """The local transport of the non-root victim, called in a Python process running as them."""

    name = "local"

    def __init__(self, python: VictimPython) -> None:
        self.python = python

    def _call(self, method: str, *args: Any) -> Any:
        done = self.python.run(_CALL, method, json.dumps(list(args)))
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if "error" in answer:
            kind = FileExistsError if answer["error"] == "FileExistsError" else TransportError
            raise kind(answer["message"])
        return answer["value"]

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method in ("makedirs", "private_dir", "mkdir_exclusive", "put_bytes", "remove_tree"):
            return lambda *args: self._call(
                method, *(a.decode() if isinstance(a, bytes) else a for a in args)
            )
        raise AttributeError(method)

    def uid(self) -> int:
        return uid_of(VICTIM)

    def user_name(self) -> str:
        return VICTIM


# ------------------------------------------------------------------ victims, as transports


def ssh_profile(user: str) -> Profile:
    """The test sshd's profile "ssh" (tests/clusters/ssh/up), logging in as ``user``."""
    os.environ["CLUSTRIX_CONFIG"] = str(cluster_config("ssh"))
    try:
        values = profile_to_dict(load_profile("ssh"))
    finally:
        del os.environ["CLUSTRIX_CONFIG"]
    values["user"] = user
    return build_profile(f"ssh-{user}", {k: v for k, v in values.items() if v is not None})


VICTIMS = ["local-root", "local-victim", "ssh-root", "ssh-victim"]


@pytest.fixture(params=VICTIMS)
def victim(request: pytest.FixtureRequest, users: dict[str, int]) -> Iterator[Any]:
    """The victim's transport: local or over the real test sshd, as root or as clustrix-victim."""
    kind = request.param
    if kind == "local-root":
        yield LocalTransport(profile=Profile())
    elif kind == "local-victim":
        yield VictimLocalTransport(request.getfixturevalue("victim_python"))
    else:
        from clustrix_ssh.transport import SshTransport

        t: Transport = SshTransport(profile=ssh_profile("root" if kind == "ssh-root" else VICTIM))
        yield t
        t.close()


def owner(path: Path) -> str:
    return pwd.getpwuid(os.lstat(path).st_uid).pw_name


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o7777


def names(path: Path) -> list[str]:
    return sorted(os.listdir(path))
