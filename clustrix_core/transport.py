"""Transports: run commands and move bytes on the machine where jobs are submitted."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .errors import CommandError, TransportError

if TYPE_CHECKING:
    from .config import Profile


@attrs.frozen(kw_only=True)
class CommandResult:
    """The outcome of one command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def assert_success(self) -> CommandResult:
        if self.returncode != 0:
            raise CommandError(list(self.argv), self.returncode, self.stdout, self.stderr)
        return self


def shell_join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


class Transport:
    """Interface every transport implements. Paths are POSIX paths on the submit host; a leading
    ``~/`` means the remote user's home directory."""

    name = ""

    def __init__(self, *, profile: Profile) -> None:
        self.profile = profile

    @classmethod
    def connection_key(cls, profile: Profile) -> tuple[Any, ...]:
        """Profiles with equal keys share one transport instance in a process."""
        return (cls.name,)

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        raise NotImplementedError

    def put_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        raise NotImplementedError

    def get_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def makedirs(self, path: str, *, mode: int = 0o700) -> None:
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def remove_tree(self, path: str) -> None:
        raise NotImplementedError

    def home(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (idempotent)."""

    # helpers built on the primitives
    def expand(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def get_text(self, path: str, *, tail: int | None = None) -> str:
        try:
            data = self.get_bytes(path)
        except (FileNotFoundError, TransportError):
            return ""
        if tail is not None:
            data = data[-tail:]
        return data.decode("utf-8", "replace")


class LocalTransport(Transport):
    """This machine: subprocesses and the local file system."""

    name = "local"

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                list(argv), input=stdin, capture_output=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            return CommandResult(argv=tuple(argv), returncode=127, stdout="", stderr=str(exc))
        except subprocess.TimeoutExpired as exc:
            raise TransportError(
                f"command {shell_join(argv)!r} timed out after {timeout} s"
            ) from exc
        return CommandResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            stdout=proc.stdout.decode("utf-8", "replace"),
            stderr=proc.stderr.decode("utf-8", "replace"),
        )

    def put_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        path = self.expand(path)
        tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def get_bytes(self, path: str) -> bytes:
        with open(self.expand(path), "rb") as fh:
            return fh.read()

    def makedirs(self, path: str, *, mode: int = 0o700) -> None:
        path = self.expand(path)
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chmod(path, mode)

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(self.expand(path))
        except FileNotFoundError:
            return []

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(self.expand(path), ignore_errors=True)

    def home(self) -> str:
        return os.path.expanduser("~")


_pool_lock = threading.Lock()
_pool: dict[tuple[Any, ...], Transport] = {}


def shared_transport(cls: type[Transport], profile: Profile) -> Transport:
    """One transport per connection key per process, shared by all executors."""
    key = (cls, *cls.connection_key(profile))
    with _pool_lock:
        transport = _pool.get(key)
        if transport is None:
            transport = cls(profile=profile)
            _pool[key] = transport
        return transport


def close_all_transports() -> None:
    with _pool_lock:
        items = list(_pool.values())
        _pool.clear()
    for t in items:
        t.close()
