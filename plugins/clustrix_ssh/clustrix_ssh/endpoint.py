"""Where an ``ssh`` profile connects to: the profile's values completed from ``~/.ssh/config``.

The profile wins over the SSH config file (it is the more specific setting); the config file fills
in what the profile leaves out (``HostName``, ``Port``, ``User``, ``IdentityFile``, ``ProxyJump``,
``UserKnownHostsFile``), as OpenSSH's ``ssh`` would. Only stdlib and paramiko's config parser.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from clustrix_core.errors import ConfigError

if TYPE_CHECKING:
    from clustrix_core.config import Profile

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

#: Extra profile keys the ``ssh`` transport accepts (declared through ``TransportSpec.options``).
OPTIONS: Mapping[str, str] = {
    "host": "host name, address, or a Host alias of ~/.ssh/config (required)",
    "port": "SSH port (default: the ssh config's, else 22)",
    "user": "remote user name (default: the ssh config's, else the local user)",
    "key_file": "private key file (default: the ssh config's IdentityFile, ssh-agent, ~/.ssh/id_*)",
    "known_hosts": "known_hosts file to check the host key against (default: ~/.ssh/known_hosts "
    "and the system's)",
    "auto_add_host_keys": "accept and remember an unknown host key on first use (default false: "
    "unknown or changed keys are refused)",
    "ssh_config": "OpenSSH client config file to read (default ~/.ssh/config)",
    "proxy_jump": "jump host(s), [user@]host[:port][,...], as ssh -J (default: the ssh config's "
    "ProxyJump; 'none' for no jump)",
    "connect_timeout": "seconds to wait for the connection (default 10)",
    "keepalive": "seconds between SSH keepalive messages on an idle connection (default 30; 0 turns them off)",
    "reconnect_timeout": "seconds to keep trying to reconnect after a connection dropped (default 60)",
    "io_timeout": "seconds without an answer from the server before the connection counts as dead (default 300)",
    "max_sessions": "command channels open at once on the one connection (default 8; sshd's MaxSessions is 10)",
    "allow_agent": "use keys from ssh-agent (SSH_AUTH_SOCK) as well (default true)",
    "persistent_shell": "run commands through a long-lived /bin/sh on the connection instead of a new "
    "login shell per command (default true; much faster when shell rc files are slow)",
}
DEFAULTS: Mapping[str, Any] = {
    "connect_timeout": 10.0,
    "auto_add_host_keys": False,
    "keepalive": 30.0,
    "reconnect_timeout": 60.0,
    "io_timeout": 300.0,
    "max_sessions": 8,
    "allow_agent": True,
    "persistent_shell": True,
}


# What OpenSSH 9.6+ refuses in a host name (valid_hostname) or a user name (valid_ruser) given on
# the command line, because ssh_config tokens (%h, %r, %u) reach shells through ``Match exec``,
# ``ProxyCommand`` and ``KnownHostsCommand``. clustrix applies the host rule (the stricter one: no
# whitespace, ``$``, ``\\`` or ``,`` at all) to both, before any ssh_config entry is evaluated.
_BAD_CHAR = re.compile(r"[\x00-\x20\x7f'`\"$\\;&<>|(){},]|\s")


def check_name(field: str, value: str, *, kind: str = "host", where: str = "") -> str:
    """``value`` if it is a safe SSH host (``kind="host"``) or user name, else :class:`ConfigError`
    naming ``field``."""
    bad = _BAD_CHAR.search(value)
    problem = ""
    if not value:
        problem = "is empty"
    elif value.startswith("-"):
        problem = "starts with '-' (it would be read as an ssh option)"
    elif bad:
        problem = (
            f"contains {bad.group()!r} (shell metacharacters, quotes and whitespace are refused)"
        )
    if problem:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}{field}={value!r} {problem}; OpenSSH refuses such {kind} names too"
        )
    return value


@attrs.frozen(kw_only=True)
class Hop:
    """One SSH server to authenticate to: the target, or a jump host in front of it."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()

    @property
    def known_hosts_name(self) -> str:
        """The name ``known_hosts`` lists this server under (``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


@attrs.frozen(kw_only=True)
class Endpoint:
    """Everything needed to open (and to share) one SSH connection."""

    target: Hop
    jumps: tuple[Hop, ...] = ()
    known_hosts: tuple[str, ...] = ()
    """User known_hosts files, the first one is where auto-added keys go."""
    system_known_hosts: tuple[str, ...] = ()
    auto_add: bool = False
    connect_timeout: float = 10.0
    keepalive: float = 30.0
    reconnect_timeout: float = 60.0
    io_timeout: float = 300.0
    max_sessions: int = 8
    allow_agent: bool = True
    persistent_shell: bool = True

    def key(self) -> tuple[Any, ...]:
        """Connections are shared between profiles only when all of this is equal: the same
        server and user, reached the same way, trusted and authenticated the same way."""
        return (
            self.target.hostname,
            self.target.port,
            self.target.user,
            self.jumps,
            self.known_hosts,
            self.auto_add,
            self.target.identity_files,
            self.allow_agent,
        )

    def describe(self) -> str:
        via = f" via {' -> '.join(str(j) for j in self.jumps)}" if self.jumps else ""
        return f"{self.target}{via}"


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def _ssh_config(profile: Profile) -> Any | None:
    """The parsed SSH config file: the profile's ``ssh_config``, else ``~/.ssh/config`` if any."""
    ssh_config = _text(profile, "ssh_config")
    if ssh_config:
        path = _expand(ssh_config)
        if not os.path.isfile(path):
            raise ConfigError(f"profile {profile.name!r}: ssh_config={ssh_config!r} does not exist")
    else:
        path = os.path.expanduser("~/.ssh/config")
        if not os.path.isfile(path):
            return None
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(path)
    except Exception as exc:
        raise ConfigError(
            f"profile {profile.name!r}: cannot read the SSH config file {path!r}: {exc}"
        ) from exc


def _lookup(config: Any | None, alias: str) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        return dict(config.lookup(alias))
    except Exception as exc:
        raise ConfigError(f"the SSH config entry for {alias!r} cannot be evaluated: {exc}") from exc


def _port(value: Any, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {value!r} is not a TCP port")
    return port


def parse_jump(spec: str, *, field: str = "proxy_jump") -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (also ``ssh://user@host:port`` and ``[v6addr]:port``); the user and
    host must pass :func:`check_name`."""
    text = spec.strip()
    if text.startswith("ssh://"):
        text = text[6:]
    user = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
    port = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], f"proxy jump {spec!r}")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, f"proxy jump {spec!r}")
    else:
        host = text
    if not host:
        raise ConfigError(f"proxy jump {spec!r} names no host")
    check_name(f"{field} host", host, where=f"proxy jump {spec!r}")
    if user is not None:
        check_name(f"{field} user", user, kind="user", where=f"proxy jump {spec!r}")
    return user, host, port


def _hop(
    config: Any | None,
    alias: str,
    *,
    user: str | None,
    port: int | None,
    identity: tuple[str, ...],
    fallback: tuple[str, ...] = (),
) -> Hop:
    entry = _lookup(config, alias)
    hostname = str(entry.get("hostname") or alias)
    port = port or _port(entry.get("port", 22), f"ssh config entry {alias!r}")
    user = user or entry.get("user") or getpass.getuser()
    files = identity or tuple(
        _expand(p) for p in entry.get("identityfile", ()) if os.path.isfile(_expand(p))
    )
    files = files or fallback
    return Hop(alias=alias, hostname=hostname, port=port, user=str(user), identity_files=files)


def _text(profile: Profile, key: str) -> str | None:
    """An option that is a string (or unset)."""
    value = profile.option(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"profile {profile.name!r}: {key}={value!r} must be a string")
    return value


def _flag(profile: Profile, key: str) -> bool:
    """An option that is true or false (``"true"``/``"false"`` from an environment variable)."""
    value = profile.option(key, DEFAULTS[key])
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"  # CLUSTRIX_AUTO_ADD_HOST_KEYS=true
    if not isinstance(value, bool):
        raise ConfigError(f"profile {profile.name!r}: {key}={value!r} must be true or false")
    return value


def _number(profile: Profile, key: str, *, minimum: float, integer: bool = False) -> Any:
    value = profile.option(key, DEFAULTS.get(key))
    if isinstance(value, str):  # from an environment variable (CLUSTRIX_PORT=2222)
        try:
            value = float(value.strip())
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "whole number" if integer else "number"
        raise ConfigError(
            f"profile {profile.name!r}: {key}={value!r} must be a {kind} >= {minimum:g}"
        )
    return int(value) if integer else float(value)


def resolve(profile: Profile) -> Endpoint:
    """The endpoint an ``ssh`` profile names. Raises :class:`ConfigError` for bad settings."""
    host, user = _text(profile, "host"), _text(profile, "user")
    proxy_jump, key_file = _text(profile, "proxy_jump"), _text(profile, "key_file")
    known_hosts = _text(profile, "known_hosts")
    port = _number(profile, "port", minimum=1, integer=True) if profile.option("port") else None
    if port is not None and port > 65535:
        raise ConfigError(f"profile {profile.name!r}: port={port!r} must be at most 65535")
    if not host:
        raise ConfigError(
            f'profile {profile.name!r}: the ssh transport needs host = "NAME" '
            "(a host name, address, or a Host alias of ~/.ssh/config)"
        )
    # before anything evaluates an ssh_config entry (``Match exec`` runs a shell) or connects
    where = f"profile {profile.name!r}"
    check_name("host", host, where=where)
    if user is not None:
        check_name("user", user, kind="user", where=where)
    if proxy_jump is not None and proxy_jump.strip().lower() != "none":
        for part in proxy_jump.split(","):
            try:
                parse_jump(part)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    config = _ssh_config(profile)
    key_files: tuple[str, ...] = ()
    if key_file:
        path = _expand(key_file)
        if not os.path.isfile(path):
            raise ConfigError(f"profile {profile.name!r}: key_file={key_file!r} does not exist")
        key_files = (path,)
    target = _hop(config, host, user=user, port=port, identity=key_files)
    entry = _lookup(config, host)
    jump_spec = proxy_jump if proxy_jump is not None else entry.get("proxyjump")
    jumps: list[Hop] = []
    if jump_spec and str(jump_spec).strip().lower() != "none":
        for part in str(jump_spec).split(","):
            user, host, port = parse_jump(part)
            # a jump host uses its own IdentityFile from the SSH config, else the profile's key_file
            jumps.append(_hop(config, host, user=user, port=port, identity=(), fallback=key_files))
    if known_hosts:
        known: tuple[str, ...] = (_expand(known_hosts),)
        system: tuple[str, ...] = ()
    else:
        files = entry.get("userknownhostsfile")
        known = (
            tuple(_expand(p) for p in files.split())
            if isinstance(files, str)
            else (
                tuple(_expand(p) for p in files)
                if files
                else (os.path.expanduser("~/.ssh/known_hosts"),)
            )
        )
        system = (SYSTEM_KNOWN_HOSTS,)
    timeout = _number(profile, "connect_timeout", minimum=0.001)
    return Endpoint(
        target=target,
        jumps=tuple(jumps),
        known_hosts=known,
        system_known_hosts=system,
        auto_add=_flag(profile, "auto_add_host_keys"),
        connect_timeout=timeout,
        keepalive=_number(profile, "keepalive", minimum=0),
        reconnect_timeout=_number(profile, "reconnect_timeout", minimum=0),
        io_timeout=_number(profile, "io_timeout", minimum=1),
        max_sessions=_number(profile, "max_sessions", minimum=1, integer=True),
        allow_agent=_flag(profile, "allow_agent"),
        persistent_shell=_flag(profile, "persistent_shell"),
    )
