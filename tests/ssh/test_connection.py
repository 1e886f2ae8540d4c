"""The ssh transport's connection handling against the real sshd: sharing, SSH config, ProxyJump,
agent, timeouts, options, concurrency, the persistent shell."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clustrix_ssh.errors import ConnectError
from clustrix_ssh.transport import SshTransport

from clustrix_core.config import build_profile, load_profile
from clustrix_core.errors import ConfigError, TransportError
from clustrix_core.executor import ClusterExecutor


def ssh_values() -> dict[str, Any]:
    """The test sshd's settings (profile "ssh") as a dict."""
    from clustrix_core.config import profile_to_dict

    return {
        k: v for k, v in profile_to_dict(load_profile("ssh")).items() if v not in (None, (), {}, [])
    }


def make_profile(name: str = "t", **values: Any) -> Any:
    merged = {**ssh_values(), **values}
    return build_profile(name, {k: v for k, v in merged.items() if v is not None})


@pytest.fixture
def transport(ssh_config: Path) -> Iterator[SshTransport]:
    t = SshTransport(profile=load_profile("ssh"))
    yield t
    t.close()


def add(a: int, b: int) -> int:
    return a + b


def test_executors_share_one_connection(make_executor) -> None:
    first, second = make_executor(cleanup="always"), make_executor(cleanup="always", cores=2)
    assert first.backend.transport is second.backend.transport
    assert first.submit(add, 1, 2).result(timeout=60) == 3
    connects = first.backend.transport.stats["connects"]
    assert second.submit(add, 3, 4).result(timeout=60) == 7
    assert first.backend.transport.stats["connects"] == connects


def test_ssh_config_host_alias(ssh_config: Path, tmp_path: Path) -> None:
    v = ssh_values()
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host clustrix-alias\n    HostName {v['host']}\n    Port {v['port']}\n"
        f"    User {v['user']}\n    IdentityFile {v['key_file']}\n"
    )
    profile = make_profile(
        host="clustrix-alias", port=None, user=None, key_file=None, ssh_config=str(config)
    )
    t = SshTransport(profile=profile)
    try:
        assert (t.endpoint.target.hostname, t.endpoint.target.port) == (v["host"], v["port"])
        assert t.run(["id", "-un"]).stdout.strip() == v["user"]
    finally:
        t.close()
    ex = ClusterExecutor(profile, cleanup="always")
    try:
        assert ex.submit(add, 20, 22).result(timeout=60) == 42
    finally:
        ex.shutdown()


@pytest.mark.parametrize("how", ["profile", "ssh_config"])
def test_proxy_jump(ssh_config: Path, tmp_path: Path, how: str) -> None:
    v = ssh_values()
    jump = f"{v['user']}@{v['host']}:{v['port']}"  # the test sshd forwards to itself
    if how == "profile":
        profile = make_profile(proxy_jump=jump)
    else:
        config = tmp_path / "ssh_config"
        config.write_text(f"Host {v['host']}\n    ProxyJump {jump}\n")
        profile = make_profile(ssh_config=str(config))
    t = SshTransport(profile=profile)
    try:
        assert [str(h) for h in t.endpoint.jumps] == [jump]
        assert t.run(["echo", "through the bastion"]).stdout == "through the bastion\n"
        assert len(t._conn.clients) == 2  # type: ignore[union-attr]
        t.put_bytes(f"{tmp_path}/via-jump", b"data")
        assert t.get_bytes(f"{tmp_path}/via-jump") == b"data"
    finally:
        t.close()


def test_agent_keys_and_auth_errors(
    ssh_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = ssh_values()
    sock = tmp_path / "agent.sock"
    out = subprocess.run(
        ["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True
    ).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", v["key_file"]], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys to fall back on
        t = SshTransport(profile=make_profile(key_file=None))
        try:
            assert t.run(["true"]).ok  # authenticated with the agent's key
        finally:
            t.close()
        t = SshTransport(profile=make_profile(key_file=None, allow_agent=False))
        with pytest.raises(ConnectError, match="authentication as root.*key_file") as info:
            t.run(["true"])
        assert not info.value.transient
    finally:
        os.kill(pid, signal.SIGTERM)


def test_connect_timeout_on_a_silent_server(ssh_config: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    try:
        profile = make_profile(port=server.getsockname()[1], connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ConnectError, match="cannot connect"):
            SshTransport(profile=profile).run(["true"])
        assert time.monotonic() - started < 5
    finally:
        server.close()


def test_first_connection_to_a_closed_port_fails_fast(ssh_config: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        SshTransport(profile=make_profile(port=port)).run(["true"])
    assert time.monotonic() - started < 3  # no reconnect backoff before a first success


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("keepalive", -1),
        ("max_sessions", 0),
        ("max_sessions", 2.5),
        ("reconnect_timeout", "soon"),
        ("persistent_shell", "yes"),
    ],
)
def test_bad_options_are_refused(ssh_config: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        SshTransport(profile=make_profile(**{key: value}))


def test_unknown_option_names_accepted_keys(ssh_config: Path) -> None:
    with pytest.raises(ConfigError, match="keepalive"):
        make_profile(keep_alive=10)


def test_missing_host_and_key_file(ssh_config: Path) -> None:
    with pytest.raises(ConfigError, match="host"):
        SshTransport(profile=build_profile("nohost", {"transport": "ssh", "scheduler": "ssh"}))
    with pytest.raises(ConfigError, match="key_file"):
        SshTransport(profile=make_profile(key_file="/nonexistent/id_ed25519"))


def test_home_expansion(transport: SshTransport) -> None:
    home = transport.run(["sh", "-c", 'echo "$HOME"']).stdout.strip()
    assert transport.home() == home
    name = f"~/.clustrix-test-home-{os.getpid()}"
    transport.put_bytes(name, b"at home")
    try:
        assert transport.run(["cat", f"{home}/{name[2:]}"]).stdout == "at home"
        assert name[2:] in transport.listdir("~")
    finally:
        transport.remove_tree(name)
    with pytest.raises(TransportError, match="refusing"):
        transport.remove_tree("~")


def test_concurrent_use_from_many_threads(transport: SshTransport, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                data = os.urandom(1000 + n * 100 + i)
                path = f"{tmp_path}/w{n}-{i}"
                transport.put_bytes(path, data)
                assert transport.get_bytes(path) == data
                digest = transport.run(
                    ["sh", "-c", "sha256sum | cut -c1-64"], stdin=data
                ).stdout.strip()
                assert digest == hashlib.sha256(data).hexdigest()
                assert transport.run(["echo", str(n), str(i)]).stdout == f"{n} {i}\n"
                assert f"w{n}-{i}" in transport.listdir(str(tmp_path))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(n,)) for n in range(12)
    ]  # more than max_sessions
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert transport.stats["connects"] == 1


@pytest.mark.parametrize("persistent", [True, False])
def test_commands_big_output_stdin_builtins_timeout(ssh_config: Path, persistent: bool) -> None:
    t = SshTransport(profile=make_profile(persistent_shell=persistent))
    try:
        big = t.run(
            [
                "sh",
                "-c",
                "head -c 3000000 /dev/zero | tr '\\0' o; head -c 2500000 /dev/zero | tr '\\0' e >&2",
            ]
        )
        assert (big.returncode, len(big.stdout), len(big.stderr)) == (0, 3_000_000, 2_500_000)
        blob = os.urandom(3 << 20)  # binary and larger than the channel window
        echoed = t.run(["sh", "-c", "sha256sum | cut -c1-64"], stdin=blob)
        assert echoed.stdout.strip() == hashlib.sha256(blob).hexdigest()
        text = "line one\nCLUSTRIX_END_x\n'quotes' \"and\" $(dollar)\n"
        assert t.run(["cat"], stdin=text.encode()).stdout == text
        assert t.run(["exit", "7"]).returncode == 7
        assert t.run(["cd", "/"]).ok and t.run(["pwd"]).stdout.strip() == t.home()
        assert t.run(["exec", "true"]).ok
        assert t.run(["no-such-command-clustrix"]).returncode == 127
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            t.run(["sleep", "30"], timeout=0.5)
        assert time.monotonic() - started < 5
        assert t.run(["echo", "still fine"]).stdout == "still fine\n"
        assert t.run(["sh", "-c", "printf 'no newline'"]).stdout == "no newline"
        assert t.run(["printf", "%s", shlex.quote("a'b")]).stdout == "'a'\"'\"'b'"
    finally:
        t.close()


def test_forked_child_opens_its_own_connection(transport: SshTransport) -> None:
    assert transport.run(["true"]).ok
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's connection must not be used
        try:
            ok = (
                transport.run(["echo", "child"]).stdout == "child\n"
                and transport.stats["connects"] == 2
            )
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert transport.run(["echo", "parent"]).stdout == "parent\n"
    assert transport.stats["connects"] == 1
