"""Transports: run commands and move bytes on the machine where jobs are submitted.

Trust model of the file primitives (OpenSSH ``StrictModes`` style): a directory is trusted when it
is owned by the current user or by root, and is not writable by group or others unless it has the
sticky bit (``/tmp``). Every component of a path is checked, from ``/`` down, at every call.
Symbolic links are followed only when the link itself is owned by the current user or by root
(only they can have made it: a link's owner is its creator) and its target passes the same checks,
so ``/home -> /data/home`` or ``~/scratch -> /scratch/$USER`` work while a link planted by another
user is refused. Files are written only into directories the user privately owns.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .errors import CommandError, TransportError

if TYPE_CHECKING:
    from .config import Profile

MAX_SYMLINKS = 40
"""Symbolic links followed while checking one path (the kernel's limit)."""


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


@attrs.frozen
class PathInfo:
    """What :meth:`Transport.lstat` reports about a path (the link itself, never its target)."""

    uid: int
    mode: int
    """Full ``st_mode`` (type and permission bits)."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def shared_writable(self) -> bool:
        """Writable by group or others."""
        return bool(self.mode & 0o022)

    @property
    def sticky(self) -> bool:
        return bool(self.mode & stat.S_ISVTX)


def shell_join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def describe_mode(info: PathInfo) -> str:
    return f"{stat.S_IMODE(info.mode):04o}"


@attrs.frozen(kw_only=True)
class Walk:
    """The outcome of checking a path: ``real`` is the deepest existing component (symlinks
    resolved), ``missing`` the names below it that do not exist yet, ``info`` the lstat of
    ``real`` when nothing is missing (the final component is *not* checked: callers decide)."""

    real: str
    missing: tuple[str, ...]
    info: PathInfo | None


def walk_path(
    path: str,
    *,
    uid: int,
    lstat: Callable[[str], PathInfo | None],
    readlink: Callable[[str], str],
    where: str,
    owner_name: Callable[[int], str] = str,
) -> Walk:
    """Check every component of the absolute ``path`` but the last, from ``/`` down: each must be
    a directory owned by ``uid`` or root, not group/other-writable unless sticky. A symlink is
    followed only if owned by ``uid`` or root; its target is checked the same way."""
    if not path.startswith("/"):
        raise TransportError(f"{path!r} on {where} is not an absolute path")
    pending: deque[str] = deque(p for p in path.split("/") if p not in ("", "."))
    current = "/"
    root = lstat("/")
    if root is not None and pending:
        trusted_dir("/", root, uid=uid, where=where, owner_name=owner_name)
    links = 0
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            current = posixpath.dirname(current)  # ``current`` is real: '..' is its parent
            continue
        candidate = posixpath.join(current, name)
        info = lstat(candidate)
        if info is None:
            missing = (name, *pending)
            if ".." in missing:
                raise TransportError(f"{path!r} on {where}: cannot create '..' components")
            return Walk(
                real=current, missing=tuple(p for p in missing if p not in ("", ".")), info=None
            )
        if info.is_link:
            if info.uid not in (uid, 0):
                raise TransportError(
                    f"{candidate} on {where} is a symbolic link owned by {owner_name(info.uid)} "
                    f"(uid {info.uid}), not by you or root: clustrix does not follow it. "
                    "Use a directory you own, or remove the link"
                )
            links += 1
            if links > MAX_SYMLINKS:
                raise TransportError(f"{path!r} on {where}: too many levels of symbolic links")
            target = readlink(candidate)
            if target.startswith("/"):
                current = "/"
            pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        if not pending:
            return Walk(real=candidate, missing=(), info=info)
        trusted_dir(candidate, info, uid=uid, where=where, owner_name=owner_name)
        current = candidate
    return Walk(real=current, missing=(), info=root if current == "/" else lstat(current))


def trusted_dir(
    path: str, info: PathInfo, *, uid: int, where: str, owner_name: Callable[[int], str] = str
) -> None:
    """Raise unless ``path`` is a directory owned by ``uid`` or root, not writable by group or
    others unless sticky (not a symlink: callers resolve trusted links first)."""
    what = f"{path} on {where} (owner {owner_name(info.uid)}, uid {info.uid}, mode {describe_mode(info)})"
    if info.is_link:
        raise TransportError(f"{what} is a symbolic link; clustrix does not follow it here")
    if not info.is_dir:
        raise TransportError(f"{what} is not a directory")
    if info.uid not in (uid, 0):
        raise TransportError(
            f"{what} belongs to another user, who could replace what clustrix creates in it. "
            "Use a directory owned by you (or root), e.g. one under your home directory"
        )
    if info.shared_writable and not info.sticky:
        raise TransportError(
            f"{what} is writable by its group or by others without the sticky bit, so another "
            "user could rename or replace what clustrix creates in it. Use a directory only you "
            "can write, or point work_dir at the shared directory itself (clustrix then keeps "
            "its files in a private clustrix-USER directory inside it)"
        )


def shared_host_problem(info: PathInfo, uid: int) -> str:
    """Why clustrix must not keep its per-user directory inside the directory ``info`` (that is
    not the user's private one), '' when it may: nobody but the user and root may be able to
    rename what the user creates there, except the members of a project directory's group."""
    owner_ok = info.uid in (uid, 0)
    if info.sticky:
        return (
            ""
            if owner_ok
            else (
                f"is a sticky directory of uid {info.uid}, who can still rename what others make in it"
            )
        )
    if info.mode & 0o002:
        return "is writable by everyone without the sticky bit, so anyone could rename what clustrix makes in it"
    if info.mode & 0o020:
        if uid != 0:
            return ""  # a project directory (e.g. 2775) shared with the group's members
        return (
            "is writable by its group: as root, clustrix keeps its files only where no other "
            "user can rename them"
        )
    return (
        "" if owner_ok else f"belongs to uid {info.uid}, who could rename what clustrix makes in it"
    )


def private_info_problem(info: PathInfo, uid: int) -> str:
    """Why ``info`` is not a directory that ``uid`` privately owns ('' when it is)."""
    if info.is_link:
        return "is a symbolic link"
    if not info.is_dir:
        return "is not a directory"
    if info.uid != uid:
        return f"belongs to uid {info.uid}, not to you (uid {uid})"
    if info.shared_writable:
        return f"is writable by group or others (mode {describe_mode(info)})"
    return ""


class Transport:
    """Interface every transport implements. Paths are POSIX paths on the submit host; a leading
    ``~/`` means the remote user's home directory.

    File primitives and their guarantees (see the module docstring for the trust model):
    :meth:`makedirs` and :meth:`private_dir` check every path component; :meth:`mkdir_exclusive`
    and :meth:`put_bytes` act only inside a directory the user privately owns and never follow a
    symlink at the final name; :meth:`remove_tree` never follows symlinks."""

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
        """Write ``data`` to ``path`` atomically with exactly ``mode``: a new file with a random
        name (exclusive create, no symlink followed) renamed over ``path``. The parent must be a
        directory the user privately owns, else :class:`TransportError`."""
        raise NotImplementedError

    def get_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def makedirs(self, path: str, *, mode: int = 0o700) -> None:
        """Make sure the directory ``path`` exists: missing components are created with exactly
        ``mode`` (exclusive mkdir); every existing one, the last included, must be trusted
        (owned by you or root, not group/other-writable unless sticky, symlinks only of yours or
        root's). An existing directory's mode is never changed. :class:`TransportError` names
        the component that fails and what to do."""
        raise NotImplementedError

    def private_dir(self, path: str) -> str:
        """A directory the user privately owns for clustrix's files at ``path`` (its real path):
        ``path`` itself when missing (created 0700) or owned by the user and not
        group/other-writable; for a shared directory (owned by someone else, or group/other-
        writable like a 2775 project directory or 1777 ``/tmp``) the per-user directory
        ``path/clustrix-USER`` (0700) inside it, whose mode and owner are checked. The shared
        directory's mode is never changed. Parents are checked as in :meth:`makedirs`, at every
        call. In a shared directory without the sticky bit, other members can rename entries:
        the result is re-checked at every call, but users of the path must re-check too. Refused
        (:class:`TransportError`): a shared directory others could rename entries in other than
        a sticky one of the user's or root's or (not for root) a group-writable project
        directory, e.g. another user's directory or a world-writable one without the sticky bit."""
        raise NotImplementedError

    def mkdir_exclusive(self, path: str, *, mode: int = 0o700) -> None:
        """Create the directory ``path`` with exactly ``mode``; :class:`FileExistsError` if
        anything exists there. The parent must be a directory the user privately owns (e.g. from
        :meth:`private_dir`), else :class:`TransportError`."""
        raise NotImplementedError

    def lstat(self, path: str) -> PathInfo | None:
        """Owner and mode of ``path`` itself (a symlink is not followed); ``None`` if missing."""
        raise NotImplementedError

    def uid(self) -> int:
        """The numeric user id the transport acts as on its host."""
        raise NotImplementedError

    def user_name(self) -> str:
        """The login name the transport acts as on its host."""
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def remove_tree(self, path: str) -> None:
        """Remove the file or directory tree ``path`` without following any symlink. Refuses
        (:class:`TransportError`) ``/``, the home directory, a symlink, and anything not owned
        by the user. Callers check that ``path`` is theirs to remove (a job directory)."""
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


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _local_lstat(path: str) -> PathInfo | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TransportError(f"cannot inspect {path}: {exc}") from exc
    return PathInfo(uid=st.st_uid, mode=st.st_mode)


def _info(st: os.stat_result) -> PathInfo:
    return PathInfo(uid=st.st_uid, mode=st.st_mode)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def local_walk(path: str) -> Walk:
    """:func:`walk_path` on this machine, as the effective user."""
    return walk_path(
        path,
        uid=os.geteuid(),
        lstat=_local_lstat,
        readlink=os.readlink,
        where="this machine",
        owner_name=_owner_name,
    )


def local_makedirs(path: str, *, mode: int = 0o700) -> str:
    """:meth:`Transport.makedirs` on this machine; returns the real path."""
    uid = os.geteuid()
    walk = local_walk(path)
    real = walk.real
    if not walk.missing:
        assert walk.info is not None
        trusted_dir(real, walk.info, uid=uid, where="this machine", owner_name=_owner_name)
        return real
    for name in walk.missing:
        parent, real = real, posixpath.join(real, name)
        try:
            _local_mkdir_at(parent, name, mode)
        except FileExistsError:  # made meanwhile: trust it only as we would an existing one
            info = _local_lstat(real)
            if info is None:
                raise TransportError(f"{real} appeared and vanished while clustrix created it")
            trusted_dir(real, info, uid=uid, where="this machine", owner_name=_owner_name)
    return real


def _local_mkdir_at(parent: str, name: str, mode: int) -> None:
    """``mkdir name`` inside ``parent`` through a directory descriptor, then set exactly ``mode``."""
    dfd = os.open(parent, _DIR_FLAGS)
    try:
        _mkdir_in(dfd, name, mode)
    finally:
        os.close(dfd)


def _mkdir_in(dfd: int, name: str, mode: int) -> None:
    """``mkdir name`` (exclusive) in the directory open as ``dfd``, with exactly ``mode``."""
    os.mkdir(name, mode, dir_fd=dfd)
    fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _open_private_parent(path: str) -> tuple[int, str]:
    """A descriptor of ``path``'s parent directory (checked private to the user) and the name."""
    parent, name = posixpath.split(path)
    if not name or name in (".", ".."):
        raise TransportError(f"{path!r} does not name a file in a directory")
    try:
        dfd = os.open(parent or ".", _DIR_FLAGS)
    except OSError as exc:
        raise TransportError(f"cannot open the directory {parent!r}: {exc}") from exc
    problem = private_info_problem(_info(os.fstat(dfd)), os.geteuid())
    if problem:
        os.close(dfd)
        raise TransportError(
            f"{parent} {problem}: clustrix writes only into directories you privately own "
            "(use Transport.private_dir to get one)"
        )
    return dfd, name


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

    def uid(self) -> int:
        return os.geteuid()

    def user_name(self) -> str:
        return _owner_name(os.geteuid())

    def lstat(self, path: str) -> PathInfo | None:
        return _local_lstat(self.expand(path))

    def put_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        dfd, name = _open_private_parent(self.expand(path))
        try:
            tmp = f"{name}.clustrix-tmp-{secrets.token_hex(8)}"
            flags = (
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            )
            fd = os.open(tmp, flags, mode & 0o700, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fh.fileno(), mode)
                    fh.write(data)
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
                raise
        finally:
            os.close(dfd)

    def get_bytes(self, path: str) -> bytes:
        fd = os.open(self.expand(path), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    def makedirs(self, path: str, *, mode: int = 0o700) -> None:
        local_makedirs(self.expand(path), mode=mode)

    def private_dir(self, path: str) -> str:
        return local_private_dir(self.expand(path))

    def mkdir_exclusive(self, path: str, *, mode: int = 0o700) -> None:
        dfd, name = _open_private_parent(self.expand(path))
        try:
            _mkdir_in(dfd, name, mode)
        finally:
            os.close(dfd)

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(self.expand(path))
        except FileNotFoundError:
            return []

    def remove_tree(self, path: str) -> None:
        path = posixpath.normpath(self.expand(path))
        if path in ("/", ".", "") or path == posixpath.normpath(self.home()):
            raise TransportError(f"refusing to remove {path!r}")
        info = _local_lstat(path)
        if info is None:
            return
        if info.is_link:
            raise TransportError(f"{path} is a symbolic link: clustrix does not remove through it")
        if info.uid != os.geteuid():
            raise TransportError(
                f"{path} belongs to {_owner_name(info.uid)} (uid {info.uid}), not to you: "
                "clustrix removes only what it made"
            )
        if not info.is_dir:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return

        def ignore_missing(_func: Any, _path: str, exc: Any) -> None:
            err = exc[1] if isinstance(exc, tuple) else exc
            if not isinstance(err, FileNotFoundError):
                raise err

        try:
            if sys.version_info >= (3, 12):
                shutil.rmtree(path, onexc=ignore_missing)
            else:  # pragma: no cover - older Pythons
                shutil.rmtree(path, onerror=ignore_missing)
        except OSError as exc:
            raise TransportError(f"removing {path} failed: {exc}") from exc

    def home(self) -> str:
        return os.path.expanduser("~")


def local_private_dir(path: str) -> str:
    """:meth:`Transport.private_dir` on this machine (also used for clustrix's local state)."""
    uid = os.geteuid()
    walk = local_walk(path)
    if walk.missing:
        return local_makedirs(path, mode=0o700)
    assert walk.info is not None
    real, info = walk.real, walk.info
    if not info.is_dir:
        raise TransportError(f"{real} on this machine is not a directory")
    if info.uid == uid and not info.shared_writable:
        return real
    refuse_shared_host(real, info, uid, where="this machine", owner_name=_owner_name)
    name = f"clustrix-{_owner_name(uid)}"
    sub = posixpath.join(real, name)
    try:
        _local_mkdir_at(real, name, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TransportError(
            f"{real} (owner {_owner_name(info.uid)}, mode {describe_mode(info)}) is shared, and "
            f"clustrix cannot create its private directory {name} in it: {exc}"
        ) from exc
    check_private(sub, _local_lstat(sub), uid, where="this machine")
    return sub


def refuse_shared_host(
    path: str, info: PathInfo, uid: int, *, where: str, owner_name: Callable[[int], str] = str
) -> None:
    """Raise unless clustrix may keep its per-user directory in ``path`` (see
    :func:`shared_host_problem`)."""
    problem = shared_host_problem(info, uid)
    if problem:
        raise TransportError(
            f"{path} on {where} (owner {owner_name(info.uid)}, uid {info.uid}, mode "
            f"{describe_mode(info)}) {problem}. Set work_dir to a directory of your own (missing "
            "directories are created with mode 0700), a sticky one like /tmp, or your group's "
            "project directory"
        )


def check_private(path: str, info: PathInfo | None, uid: int, *, where: str) -> None:
    """Raise unless ``path`` is a directory that ``uid`` privately owns."""
    if info is None:
        raise TransportError(f"{path} on {where} vanished while clustrix created it")
    problem = private_info_problem(info, uid)
    if problem:
        raise TransportError(
            f"{path} on {where} {problem} (owner uid {info.uid}, mode {describe_mode(info)}): "
            "clustrix keeps its files only in a directory you privately own. Someone else may "
            f"have made it: inspect it, then remove it (rm -r {shlex.quote(path)}) or choose "
            "another work_dir"
        )


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
