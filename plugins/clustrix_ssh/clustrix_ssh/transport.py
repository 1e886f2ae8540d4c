"""The ``ssh`` transport: commands and files on a remote host over one shared paramiko connection.

One connection and one SFTP session per endpoint (host, port, user, and how it is reached and
trusted) are shared by every executor of the process (through ``connection_key`` and the core's
transport pool). Commands run concurrently on their own channels (at most ``max_sessions`` at a
time); SFTP requests are serialized, as paramiko's SFTP client is not thread-safe.

When the connection drops, the next operation reconnects, with backoff for up to
``reconnect_timeout`` seconds. Operations that are safe to repeat (file transfers, listings,
``makedirs``, ``remove_tree``, and commands whose channel could not even be opened) are retried
on the new connection; a command that was already started when the connection dropped is not
run again: it raises :class:`TransportError`, since it may or may not have run.

paramiko is imported only when the first connection opens, so that merely loading the plugin
stays cheap.
"""

from __future__ import annotations

import base64
import logging
import os
import posixpath
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from clustrix_core.errors import TransportError
from clustrix_core.transport import (
    CommandResult,
    PathInfo,
    Transport,
    Walk,
    check_private,
    describe_mode,
    private_info_problem,
    refuse_shared_host,
    shell_join,
    trusted_dir,
    walk_path,
)

from .endpoint import Endpoint, resolve
from .errors import ConnectError

if TYPE_CHECKING:
    from clustrix_core.config import Profile

    from .connection import Connection

logger = logging.getLogger(__name__)
T = TypeVar("T")
_RETRIES = 3
_EOF_GRACE = 2.0
"""Seconds an EOFError waits for the connection to show whether it is gone."""
_BIG_STDIN = 1 << 20


_instances: weakref.WeakSet[SshTransport] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for transport in list(_instances):
        transport._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Interrupted(Exception):
    """The connection failed after a command was started (it may have run)."""


class SshTransport(Transport):
    """Runs commands and moves bytes on ``profile.host`` over SSH (paramiko)."""

    name = "ssh"

    def __init__(self, *, profile: Profile) -> None:
        super().__init__(profile=profile)
        self.endpoint: Endpoint = resolve(profile)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._connected_once = False
        self._home: str | None = None
        self._ident: tuple[int, str] | None = None
        # one session is the SFTP one; the others run commands
        self._sessions = threading.BoundedSemaphore(max(1, self.endpoint.max_sessions - 1))
        self._idle_shells: list[_Shell] = []
        self._no_shell = False
        self.stats = {"connects": 0, "commands": 0, "sftp": 0, "reconnects": 0}
        """Counters for tests and benchmarks: connections opened, commands run, SFTP operations."""
        _instances.add(self)

    def _after_fork(self) -> None:
        """In a forked child the parent's connection is not usable (nor closable): forget it."""
        self._lock = threading.Lock()
        self._conn = None
        self._idle_shells = []
        self._sessions = threading.BoundedSemaphore(max(1, self.endpoint.max_sessions - 1))

    @classmethod
    def connection_key(cls, profile: Profile) -> tuple[Any, ...]:
        return (cls.name, *resolve(profile).key())

    def __repr__(self) -> str:
        return f"<SshTransport {self.endpoint.describe()}>"

    # ------------------------------------------------------------ connection
    def connect(self) -> None:
        """Open the connection now (it otherwise opens on first use)."""
        self._connection()

    def _connection(self) -> Connection:
        with self._lock:
            conn = self._conn
            if conn is not None and conn.active:
                return conn
            if conn is not None:
                conn.close()
                self._conn = None
            self._conn = self._open()
            return self._conn

    def _open(self) -> Connection:
        from .connection import Connection

        ep = self.endpoint
        # The first connection gets one try (a wrong host should fail fast); a reconnect keeps
        # trying with backoff, to ride out a restarting server or a flaky network.
        deadline = time.monotonic() + (ep.reconnect_timeout if self._connected_once else 0.0)
        delay = 0.1
        while True:
            try:
                conn = Connection(ep)
                break
            except ConnectError as exc:
                if not exc.transient or time.monotonic() + delay > deadline:
                    if self._connected_once and exc.transient:
                        raise ConnectError(
                            f"{exc} (gave up reconnecting after {ep.reconnect_timeout:g} s)",
                            transient=True,
                        ) from exc
                    raise
                logger.info("clustrix: reconnecting to %s in %.1f s: %s", ep.describe(), delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self._connected_once:
            self.stats["reconnects"] += 1
            logger.warning("clustrix: reconnected to %s", ep.describe())
        self.stats["connects"] += 1
        self._connected_once = True
        return conn

    def _drop(self, conn: Connection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
            shells = [sh for sh in self._idle_shells if sh.conn is conn]
            self._idle_shells = [sh for sh in self._idle_shells if sh.conn is not conn]
        for shell in shells:
            shell.close()
        conn.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            shells, self._idle_shells = self._idle_shells, []
        for shell in shells:
            shell.close()
        if conn is not None:
            conn.close()

    def _failed(self, conn: Connection, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone (rather than an answer from the server)."""
        from .connection import is_connection_failure

        if isinstance(exc, _Interrupted) or is_connection_failure(exc):
            return True

        def gone() -> bool:
            return not conn.active or conn.sftp_broken()

        if isinstance(exc, EOFError) and not gone():
            # paramiko raises EOFError both for an SFTP "end of file" answer and when a send
            # fails on a socket the peer closed, before its reader thread has seen the close:
            # give it a moment to tell the two apart
            deadline = time.monotonic() + _EOF_GRACE
            while time.monotonic() < deadline and not gone():
                time.sleep(0.05)
        return gone()

    def _do(self, what: str, op: Callable[[Connection], T]) -> T:
        """Run an operation that is safe to repeat, reconnecting and retrying when the connection drops."""
        attempt = 0
        while True:
            conn = self._connection()
            try:
                return op(conn)
            except Exception as exc:
                if not self._failed(conn, exc):
                    raise
                self._drop(conn)
                attempt += 1
                cause = exc.__cause__ if isinstance(exc, _Interrupted) else exc
                if attempt > _RETRIES:
                    raise TransportError(
                        f"the SSH connection to {self.endpoint.describe()} kept failing "
                        f"during {what}: {type(cause).__name__}: {cause}"
                    ) from cause
                logger.warning(
                    "clustrix: SSH connection to %s lost during %s (%s: %s); reconnecting",
                    self.endpoint.describe(),
                    what,
                    type(cause).__name__,
                    cause,
                )

    def _sftp(self, what: str, op: Callable[[Any], T]) -> T:
        def locked(conn: Connection) -> T:
            with conn.sftp_lock:
                self.stats["sftp"] += 1
                return op(conn.sftp())

        return self._do(what, locked)

    # ------------------------------------------------------------ commands
    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        command = shell_join(argv)
        attempt = 0
        while True:
            conn = self._connection()
            try:
                code, out, err = self._run_on(conn, command, stdin, timeout)
                return CommandResult(argv=argv, returncode=code, stdout=out, stderr=err)
            except _Interrupted as exc:
                self._drop(conn)
                raise TransportError(
                    f"the SSH connection to {self.endpoint.describe()} was lost while running "
                    f"{command!r} (it may or may not have run): {exc.__cause__}"
                ) from exc.__cause__
            except TransportError:
                raise
            except Exception as exc:
                if not self._failed(conn, exc):
                    raise TransportError(
                        f"cannot run {command!r} on {self.endpoint.describe()}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self._drop(conn)  # the channel never opened: the command did not run, try again
                attempt += 1
                if attempt > _RETRIES:
                    raise TransportError(
                        f"cannot run {command!r}: the SSH connection to "
                        f"{self.endpoint.describe()} keeps failing: {exc}"
                    ) from exc
                logger.warning(
                    "clustrix: SSH connection to %s lost (%s); reconnecting",
                    self.endpoint.describe(),
                    exc,
                )

    def _run_on(
        self, conn: Connection, command: str, stdin: bytes | None, timeout: float | None
    ) -> tuple[int, str, str]:
        """Run ``command`` on ``conn``. Raises the raw connection error when the command did not
        start, :class:`_Interrupted` when the connection failed after it may have started."""
        with self._sessions:
            self.stats["commands"] += 1
            if self.endpoint.persistent_shell and not self._no_shell:
                shell = self._take_shell(conn)
                if shell is not None and shell.accepts(stdin):
                    try:
                        result = shell.run(command, stdin, timeout)
                    except BaseException:
                        shell.close()
                        raise
                    with self._lock:
                        self._idle_shells.append(shell)
                    return result
                if shell is not None:
                    with self._lock:
                        self._idle_shells.append(shell)
            return self._exec(conn, command, stdin, timeout)

    def _take_shell(self, conn: Connection) -> _Shell | None:
        """An idle persistent shell on ``conn`` or a new one (``None`` if the host cannot have one)."""
        with self._lock:
            while self._idle_shells:
                shell = self._idle_shells.pop()
                if shell.conn is conn and shell.alive:
                    return shell
                shell.close()
        try:
            return _Shell.start(conn, self.endpoint)
        except _Interrupted as exc:  # nothing of the caller's ran yet: a plain connection failure
            raise ConnectionAbortedError(
                f"the connection failed while starting a shell: {exc.__cause__}"
            ) from exc
        except _ShellUnavailable as exc:
            logger.warning(
                "clustrix: no persistent shell on %s (%s); running every command on its own channel",
                self.endpoint.describe(),
                exc,
            )
            self._no_shell = True
            return None

    def _exec(
        self, conn: Connection, command: str, stdin: bytes | None, timeout: float | None
    ) -> tuple[int, str, str]:
        """Run ``command`` on a channel of its own (``exec`` request: a new login shell each time)."""
        chan = _open_session(conn, self.endpoint)
        writer: threading.Thread | None = None
        try:
            try:
                chan.exec_command(command)
                if stdin and len(stdin) > _BIG_STDIN:
                    writer = threading.Thread(target=_send_stdin, args=(chan, stdin), daemon=True)
                    writer.start()
                else:
                    if stdin:
                        chan.sendall(stdin)
                    chan.shutdown_write()
            except Exception as exc:
                raise _Interrupted(str(exc)) from exc
            deadline = None if timeout is None else time.monotonic() + timeout
            out = bytearray()
            err = bytearray()
            while True:
                _drain(chan, out, err)
                if chan.eof_received or chan.closed:
                    break
                _wait(chan, conn, deadline, command, timeout, self.endpoint)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not chan.status_event.wait(left):
                raise TransportError(
                    f"command {command!r} timed out after {timeout} s on {self.endpoint.describe()}"
                )
            _drain(chan, out, err)
            code = chan.exit_status
            if code == -1:
                if not conn.active:
                    raise _Interrupted(
                        "the connection closed before the exit status arrived"
                    ) from EOFError("connection closed")
                err += b"\n(the remote command ended without an exit status: killed by a signal?)\n"
            return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        finally:
            chan.close()
            if writer is not None:
                writer.join(timeout=1)

    # ------------------------------------------------------------ files
    def home(self) -> str:
        if self._home is None:
            self._home = self._sftp("finding the home directory", lambda s: s.normalize("."))
        return self._home

    def uid(self) -> int:
        return self._identity()[0]

    def user_name(self) -> str:
        return self._identity()[1]

    def _identity(self) -> tuple[int, str]:
        """The remote user's uid and name (``id``, once per transport: the endpoint's user)."""
        if self._ident is None:
            result = self.run(
                ["sh", "-c", "id -u && id -un"], timeout=self.endpoint.connect_timeout + 30
            )
            lines = result.stdout.split()
            if result.returncode == 0 and not result.stdout.strip():
                raise TransportError(
                    f"commands do not run on {self.endpoint.describe()}: `id -u` printed "
                    "nothing and exited 0, so the remote login shell ends before running "
                    "them; its startup files (~/.bashrc, ~/.profile, ...) probably `exit` or "
                    "`exec` another program for non-interactive shells: guard such lines with "
                    "a check for an interactive shell (case $- in *i*)"
                )
            if result.returncode != 0 or len(lines) < 2 or not lines[0].isdigit():
                raise TransportError(
                    f"cannot find the remote user id on {self.endpoint.describe()} "
                    f"(id -u exited {result.returncode}: {(result.stderr or result.stdout).strip()})"
                )
            self._ident = (int(lines[0]), lines[1])
        return self._ident

    def _where(self) -> str:
        return self.endpoint.target.hostname

    def lstat(self, path: str) -> PathInfo | None:
        path = self.expand(path)
        return self._sftp(f"inspecting {path}", lambda sftp: _sftp_lstat(sftp, path))

    def _walk(self, sftp: Any, path: str) -> Walk:
        return walk_path(
            path,
            uid=self.uid(),
            lstat=lambda p: _sftp_lstat(sftp, p),
            readlink=lambda p: str(sftp.readlink(p)),
            where=self._where(),
        )

    def _private_parent(self, sftp: Any, path: str) -> None:
        parent = posixpath.dirname(path) or "/"
        info = _sftp_lstat(sftp, parent)
        problem = "does not exist" if info is None else private_info_problem(info, self.uid())
        if problem:
            raise TransportError(
                f"{parent} on {self._where()} {problem}: clustrix writes only into directories "
                "you privately own (use Transport.private_dir to get one)"
            )

    def put_bytes(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` atomically: a new file under a random name (exclusive
        create), its mode set before any byte is written, renamed over ``path``."""
        path = self.expand(path)
        self.uid()
        earlier: list[str] = []  # temporaries of attempts cut by a dropped connection

        def op(sftp: Any) -> None:
            for stale in earlier:
                try:
                    sftp.remove(stale)
                except OSError:
                    pass
            self._private_parent(sftp, path)
            tmp = f"{path}.clustrix-tmp-{secrets.token_hex(8)}"  # new per attempt: exclusive
            earlier.append(tmp)
            try:
                with sftp.open(tmp, "wx") as fh:  # O_CREAT|O_EXCL: never an existing file or link
                    fh.chmod(mode)  # before any byte is written
                    fh.set_pipelined(True)
                    fh.write(data)
                try:
                    sftp.posix_rename(tmp, path)
                except OSError as exc:
                    if "unsupported" not in str(exc).lower():  # no posix-rename@openssh.com
                        raise
                    try:
                        sftp.remove(path)
                    except FileNotFoundError:
                        pass
                    sftp.rename(tmp, path)
            except BaseException:
                try:
                    sftp.remove(tmp)
                except Exception:  # noqa: BLE001 - best effort (the connection may be gone)
                    pass
                raise

        self._sftp(f"writing {path}", op)

    def get_bytes(self, path: str) -> bytes:
        path = self.expand(path)

        def op(sftp: Any) -> bytes:
            with sftp.open(path, "rb") as fh:
                size = fh.stat().st_size or 0
                if size > 256 * 1024:
                    fh.prefetch(size)
                return bytes(fh.read())

        return self._sftp(f"reading {path}", op)

    def makedirs(self, path: str, *, mode: int = 0o700) -> None:
        path = self.expand(path)
        self.uid()
        self._sftp(f"creating {path}", lambda sftp: self._makedirs(sftp, path, mode))

    def _makedirs(self, sftp: Any, path: str, mode: int) -> str:
        uid, where = self.uid(), self._where()
        walk = self._walk(sftp, path)
        real = walk.real
        if not walk.missing:
            assert walk.info is not None
            trusted_dir(real, walk.info, uid=uid, where=where)
            return real
        for name in walk.missing:
            real = posixpath.join(real, name)
            try:
                sftp.mkdir(real, mode)
            except OSError:
                # made meanwhile by someone else: trust it only as an existing one
                info = _sftp_lstat(sftp, real)
                if info is None:
                    raise
                trusted_dir(real, info, uid=uid, where=where)
                continue
            sftp.chmod(real, mode)  # mkdir's mode is subject to the server's umask
        return real

    def private_dir(self, path: str) -> str:
        path = self.expand(path)
        uid, user, where = self.uid(), self.user_name(), self._where()

        def op(sftp: Any) -> str:
            walk = self._walk(sftp, path)
            if walk.missing:
                return self._makedirs(sftp, path, 0o700)
            assert walk.info is not None
            real, info = walk.real, walk.info
            if not info.is_dir:
                raise TransportError(f"{real} on {where} is not a directory")
            if info.uid == uid and not info.shared_writable:
                return real
            refuse_shared_host(real, info, uid, where=where)
            sub = posixpath.join(real, f"clustrix-{user}")
            if _sftp_lstat(sftp, sub) is None:
                try:
                    sftp.mkdir(sub, 0o700)
                except OSError as exc:
                    if _sftp_lstat(sftp, sub) is None:
                        raise TransportError(
                            f"{real} on {where} (owner uid {info.uid}, mode "
                            f"{describe_mode(info)}) is shared, and clustrix cannot create its "
                            f"private directory clustrix-{user} in it: {exc}"
                        ) from exc
                else:
                    sftp.chmod(sub, 0o700)
            check_private(sub, _sftp_lstat(sftp, sub), uid, where=where)
            return sub

        return self._sftp(f"finding a private directory in {path}", op)

    def mkdir_exclusive(self, path: str, *, mode: int = 0o700) -> None:
        path = self.expand(path)
        self.uid()

        def op(sftp: Any) -> None:
            self._private_parent(sftp, path)
            try:
                sftp.mkdir(path, mode)
            except OSError as exc:
                if _sftp_lstat(sftp, path) is not None:
                    raise FileExistsError(f"{path} already exists on {self._where()}") from exc
                raise
            sftp.chmod(path, mode)

        self._sftp(f"creating {path}", op)

    def listdir(self, path: str) -> list[str]:
        path = self.expand(path)

        def op(sftp: Any) -> list[str]:
            try:
                return list(sftp.listdir(path))
            except FileNotFoundError:
                return []

        return self._sftp(f"listing {path}", op)

    def remove_tree(self, path: str) -> None:
        path = posixpath.normpath(self.expand(path))
        if path in ("/", ".", "") or path == posixpath.normpath(self.home()):
            raise TransportError(f"refusing to remove {path!r} on {self.endpoint.target}")
        uid = self.uid()
        info = self.lstat(path)
        if info is None:
            return
        if info.is_link:
            raise TransportError(
                f"{path} on {self._where()} is a symbolic link: clustrix does not remove through it"
            )
        if info.uid != uid:
            raise TransportError(
                f"{path} on {self._where()} belongs to uid {info.uid}, not to you (uid {uid}): "
                "clustrix removes only what it made"
            )

        def op(conn: Connection) -> None:
            # rm never follows symlinks inside the tree, nor ``path`` itself (no trailing slash)
            code, out, err = self._run_on(conn, shell_join(["rm", "-rf", "--", path]), None, None)
            if code != 0:
                raise TransportError(
                    f"removing {path} on {self.endpoint.target} failed: {(err or out).strip()}"
                )

        self._do(f"removing {path}", op)


def _sftp_lstat(sftp: Any, path: str) -> PathInfo | None:
    try:
        attrs = sftp.lstat(path)
    except FileNotFoundError:
        return None
    if attrs.st_uid is None or attrs.st_mode is None:
        raise TransportError(f"the SFTP server did not report the owner and mode of {path}")
    return PathInfo(uid=int(attrs.st_uid), mode=int(attrs.st_mode))


def _open_session(conn: Connection, endpoint: Endpoint) -> Any:
    import paramiko

    try:
        return conn.transport.open_session(timeout=endpoint.connect_timeout)
    except paramiko.ChannelException as exc:
        if conn.active:
            raise TransportError(
                f"{endpoint.describe()} refused a new session ({exc}); the server's MaxSessions "
                f"may be lower than max_sessions={endpoint.max_sessions}"
            ) from exc
        raise


def _drain(chan: Any, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(1 << 16)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(1 << 16)


def _wait(
    chan: Any,
    conn: Connection,
    deadline: float | None,
    command: str,
    timeout: float | None,
    endpoint: Endpoint,
) -> None:
    """Wait for data, EOF or close on ``chan`` (checking the connection and the deadline)."""
    import select

    wait = 1.0
    if deadline is not None:
        wait = min(wait, deadline - time.monotonic())
        if wait <= 0:
            raise TransportError(
                f"command {command!r} timed out after {timeout} s on {endpoint.describe()}"
            )
    select.select([chan], [], [], wait)
    if not conn.active and not chan.recv_ready() and not chan.recv_stderr_ready():
        raise _Interrupted("the connection closed") from EOFError("connection closed")


class _ShellUnavailable(Exception):
    """The host's login shell could not start a persistent ``sh``."""


class _Shell:
    """A persistent ``/bin/sh`` on one channel that runs commands one after the other.

    Opening a channel makes sshd start the user's login shell, which reads its rc files (often
    tens to hundreds of milliseconds: pyenv, conda, module systems). A persistent shell pays that
    once; each command then runs in a subshell, ``( COMMAND ) <stdin``, and is followed by a
    random end marker carrying its exit status on stdout and the same marker on stderr. The
    commands are POSIX ``sh`` whatever the login shell is. Standard input comes from a here-document
    (text ending in a newline) or through ``base64 -d`` (anything else); the shell's own input
    never reaches a command."""

    def __init__(self, conn: Connection, chan: Any, endpoint: Endpoint) -> None:
        self.conn = conn
        self.chan = chan
        self.endpoint = endpoint
        self.base64 = False

    @classmethod
    def start(cls, conn: Connection, endpoint: Endpoint) -> _Shell:
        chan = _open_session(conn, endpoint)  # connection errors propagate: nothing started
        shell = cls(conn, chan, endpoint)
        try:
            chan.exec_command("exec /bin/sh -s")
            code, out, _ = shell.run(
                "command -v base64 >/dev/null 2>&1 && echo base64",
                None,
                endpoint.connect_timeout + 30,
                discard_before=True,
            )
        except _Interrupted:
            shell.close()
            raise
        except Exception as exc:
            shell.close()
            raise _ShellUnavailable(str(exc)) from exc
        shell.base64 = out.strip() == "base64"
        return shell

    @property
    def alive(self) -> bool:
        return not (self.chan.closed or self.chan.eof_received) and self.conn.active

    def accepts(self, stdin: bytes | None) -> bool:
        return not stdin or self.base64 or _heredoc_safe(stdin)

    def close(self) -> None:
        try:
            self.chan.close()
        except Exception:  # noqa: BLE001
            pass

    def run(
        self,
        command: str,
        stdin: bytes | None,
        timeout: float | None,
        *,
        discard_before: bool = False,
    ) -> tuple[int, str, str]:
        chan, conn = self.chan, self.conn
        token = "CLUSTRIX_END_" + secrets.token_hex(12)
        if not stdin:
            script = f"( {command} ) </dev/null\n"
        elif _heredoc_safe(stdin):
            body = stdin.decode("utf-8", "surrogateescape")  # the bytes, exactly, below
            script = f"( {command} ) <<'{token}_IN'\n{body}{token}_IN\n"
        else:
            encoded = base64.encodebytes(stdin).decode("ascii")
            script = f"base64 -d <<'{token}_IN' | ( {command} )\n{encoded}{token}_IN\n"
        script += f"printf '%s:%s\\n' {token} $?; printf '%s' {token} >&2\n"
        out = bytearray()
        err = bytearray()
        _drain(chan, out, err)  # stray output of an earlier command's background process
        out.clear()
        err.clear()
        mark = token.encode()
        try:
            chan.sendall(script.encode("utf-8", "surrogateescape"))  # a command may be UTF-8
        except Exception as exc:
            raise _Interrupted(str(exc)) from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        code = None
        while True:
            _drain(chan, out, err)
            if code is None:
                at = out.find(mark + b":")
                if at >= 0:
                    nl = out.find(b"\n", at)
                    if nl >= 0:
                        code = int(out[at + len(mark) + 1 : nl])
                        del out[at:]
            if code is not None and err.endswith(mark):
                del err[-len(mark) :]
                break
            if chan.closed or chan.eof_received:
                if not conn.active:
                    raise _Interrupted("the connection closed") from EOFError("connection closed")
                raise TransportError(
                    f"the remote shell on {self.endpoint.describe()} ended while running "
                    f"{command!r}: {err.decode('utf-8', 'replace')[-2000:]}"
                )
            _wait(chan, conn, deadline, command, timeout, self.endpoint)
        if discard_before:
            start = out.rfind(b"\n", 0, max(0, len(out) - 1))
            out = out[start + 1 :] if start >= 0 else out
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _heredoc_safe(data: bytes) -> bool:
    return (
        data.endswith(b"\n")
        and b"\0" not in data
        and b"CLUSTRIX_END_" not in data
        and b"\r" not in data
    )


def _send_stdin(chan: Any, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except Exception as exc:  # noqa: BLE001 - the reader sees the failure too
        logger.debug("clustrix: sending stdin failed: %s", exc)
