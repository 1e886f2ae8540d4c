"""One authenticated paramiko connection (through jump hosts if any), with strict host keys."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import paramiko

from clustrix_core.errors import ConfigError, TransportError

from .endpoint import Endpoint, Hop
from .errors import ConnectError, HostKeyError

logger = logging.getLogger(__name__)


def fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"  # "ssh-ed25519 SHA256:..."


class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown host key: refuse (with instructions), or add it when the profile says so."""

    def __init__(self, endpoint: Endpoint, hop: Hop) -> None:
        self.endpoint = endpoint
        self.hop = hop

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        files = self.endpoint.known_hosts
        if not self.endpoint.auto_add:
            where = ", ".join(files + self.endpoint.system_known_hosts) or "(none)"
            port = f"-p {self.hop.port} " if self.hop.port != 22 else ""
            raise HostKeyError(
                f"refusing to connect to {self.hop.hostname}:{self.hop.port}: its host key "
                f"({fingerprint(key)}) is unknown; no entry for {hostname} in {where}. "
                f"Check the fingerprint with the server's administrator, then trust it with "
                f"`ssh-keyscan {port}{self.hop.hostname} >> {files[0] if files else '~/.ssh/known_hosts'}` "
                f"(or connect once with `ssh {port}{self.hop.user}@{self.hop.hostname}` and answer yes), "
                f"or set auto_add_host_keys = true in the profile to accept new hosts on first use",
                host=hostname,
                fingerprint=fingerprint(key),
                known_hosts=files,
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        if files:
            _append_known_host(files[0], hostname, key)
        logger.warning(
            "clustrix: added the host key of %s (%s) to %s (auto_add_host_keys = true)",
            hostname,
            fingerprint(key),
            files[0] if files else "memory",
        )


def _append_known_host(path: str, hostname: str, key: paramiko.PKey) -> None:
    line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line or "")


def _changed_key_error(
    endpoint: Endpoint, hop: Hop, exc: paramiko.BadHostKeyException
) -> HostKeyError:
    files = ", ".join(endpoint.known_hosts + endpoint.system_known_hosts)
    name = hop.known_hosts_name
    first = endpoint.known_hosts[0] if endpoint.known_hosts else "~/.ssh/known_hosts"
    return HostKeyError(
        f"REFUSING to connect to {hop.hostname}:{hop.port}: its host key has CHANGED. The server "
        f"presented {fingerprint(exc.key)}, but {files} lists {fingerprint(exc.expected_key)} for {name}. "
        f"Someone may be intercepting the connection (man in the middle), or the server was "
        f"reinstalled. If the administrator confirms the new key, remove the old entry with "
        f"`ssh-keygen -R '{name}' -f {first}` and add the new one (`ssh-keyscan"
        f"{' -p ' + str(hop.port) if hop.port != 22 else ''} {hop.hostname} >> {first}`)",
        host=name,
        fingerprint=fingerprint(exc.key),
        known_hosts=endpoint.known_hosts,
    )


def _client(endpoint: Endpoint, hop: Hop) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for path in endpoint.system_known_hosts:
        if os.path.isfile(path):
            client.load_system_host_keys(path)
    for path in endpoint.known_hosts:
        if os.path.isfile(path):
            try:
                client.get_host_keys().load(path)
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(f"cannot read the known_hosts file {path!r}: {exc}") from exc
    client.set_missing_host_key_policy(_Policy(endpoint, hop))
    return client


def _connect_hop(endpoint: Endpoint, hop: Hop, sock: Any | None) -> paramiko.SSHClient:
    client = _client(endpoint, hop)
    timeout = endpoint.connect_timeout
    try:
        client.connect(
            hop.hostname,
            port=hop.port,
            username=hop.user,
            key_filename=list(hop.identity_files) or None,  # type: ignore[arg-type]  # str or list
            look_for_keys=not hop.identity_files,
            allow_agent=endpoint.allow_agent,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=sock,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _changed_key_error(endpoint, hop, exc) from None
    except paramiko.PasswordRequiredException as exc:
        client.close()
        raise ConnectError(
            f"the key file {', '.join(hop.identity_files) or '(default keys)'} for {hop} is encrypted; "
            f"load it into ssh-agent (`ssh-add KEYFILE`). clustrix never stores passwords or passphrases",
            transient=False,
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        return _connect_failed_auth(endpoint, hop, exc)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        if "no authentication methods" in str(exc).lower():  # not a single key or agent to try
            return _connect_failed_auth(endpoint, hop, exc)
        raise ConnectError(
            f"cannot connect to {hop.hostname}:{hop.port}: {type(exc).__name__}: {exc}",
            transient=True,
        ) from exc
    return client


def _connect_failed_auth(endpoint: Endpoint, hop: Hop, exc: BaseException) -> paramiko.SSHClient:
    tried = ", ".join(hop.identity_files) or "the default keys in ~/.ssh"
    agent = " and ssh-agent" if endpoint.allow_agent and os.environ.get("SSH_AUTH_SOCK") else ""
    raise ConnectError(
        f"authentication as {hop.user} on {hop.hostname}:{hop.port} failed "
        f"(tried {tried}{agent}): {exc}. Set key_file in the profile, IdentityFile "
        f"in ~/.ssh/config, or load the key into ssh-agent",
        transient=False,
    ) from exc


class Connection:
    """An open connection: the target's client and transport, the jump hosts' clients, and the
    one SFTP session (used under :attr:`sftp_lock`, as paramiko's SFTP client is not thread-safe)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.clients: list[paramiko.SSHClient] = []
        self.sftp_lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        sock = None
        try:
            for hop in (*endpoint.jumps, endpoint.target):
                if self.clients:
                    previous = self.clients[-1].get_transport()
                    assert previous is not None
                    try:
                        sock = previous.open_channel(
                            "direct-tcpip",
                            (hop.hostname, hop.port),
                            ("127.0.0.1", 0),
                            timeout=endpoint.connect_timeout,
                        )
                    except (OSError, EOFError, paramiko.SSHException) as exc:
                        raise ConnectError(
                            f"the jump host {self.clients[-1]._clustrix_hop} could not reach "  # type: ignore[attr-defined]
                            f"{hop.hostname}:{hop.port}: {exc}",
                            transient=True,
                        ) from exc
                client = _connect_hop(endpoint, hop, sock)
                client._clustrix_hop = hop  # type: ignore[attr-defined]
                self.clients.append(client)
        except BaseException:
            self.close()
            raise
        self.transport: paramiko.Transport = self.clients[-1].get_transport()  # type: ignore[assignment]
        if endpoint.keepalive:
            for c in self.clients:
                t = c.get_transport()
                if t is not None:
                    t.set_keepalive(int(max(1, endpoint.keepalive)))

    def sftp_broken(self) -> bool:
        """True when the SFTP session was opened and its channel has closed since."""
        return self._sftp is not None and self._sftp.sock.closed

    @property
    def active(self) -> bool:
        for client in self.clients:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                return False
        return True

    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session (opened on first use). Call with :attr:`sftp_lock` held."""
        if self._sftp is None or self._sftp.sock.closed:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            except paramiko.SSHException as exc:
                raise TransportError(
                    f"cannot open an SFTP session on {self.endpoint.describe()}: {exc} "
                    "(does the server enable the sftp subsystem?)"
                ) from exc
            assert self._sftp is not None
            self._sftp.get_channel().settimeout(self.endpoint.io_timeout)  # type: ignore[union-attr]
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001 - closing a dead session
                pass
            self._sftp = None
        for client in reversed(self.clients):
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass


def is_connection_failure(exc: BaseException) -> bool:
    """True for errors that mean the connection is gone (not an answer from the server)."""
    # (not EOFError: paramiko's SFTP client also raises it for an SFTP "end of file" status)
    if isinstance(exc, (paramiko.SSHException, socket.timeout, ConnectionError)):
        return not isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException))
    return False
