"""Registration and cheap import of clustrix-ssh; endpoint resolution (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clustrix_ssh.endpoint import parse_jump, resolve
from clustrix_ssh.scheduler import SshScheduler
from clustrix_ssh.transport import SshTransport

from clustrix_core.config import build_profile
from clustrix_core.errors import ConfigError


def test_registered_through_the_entry_point(clustrix_plugin_manager) -> None:
    assert clustrix_plugin_manager.get("transport", "ssh").cls is SshTransport
    assert clustrix_plugin_manager.get("scheduler", "ssh").cls is SshScheduler
    assert "keepalive" in clustrix_plugin_manager.get("transport", "ssh").options
    info = [i for i in clustrix_plugin_manager.infos if i.name == "ssh"]
    assert info and info[0].distribution == "clustrix-ssh" and info[0].status == "ok"


def test_loading_the_plugin_does_not_import_paramiko() -> None:
    code = (
        "import sys\nfrom clustrix_core.plugins import get_plugin_manager\n"
        "pm = get_plugin_manager()\nassert pm.get('transport', 'ssh')\n"
        "assert 'paramiko' not in sys.modules, 'paramiko imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bastion", (None, "bastion", None)),
        ("alice@bastion:2200", ("alice", "bastion", 2200)),
        ("ssh://bob@10.0.0.1:22", ("bob", "10.0.0.1", 22)),
        ("[::1]:2222", (None, "::1", 2222)),
    ],
)
def test_parse_jump(spec: str, expected: tuple) -> None:
    assert parse_jump(spec) == expected


def test_bad_jump_port() -> None:
    with pytest.raises(ConfigError, match="port"):
        parse_jump("host:http")


def _profile(tmp_path: Path, **values) -> object:
    key = tmp_path / "id"
    key.write_text("not really a key")
    base = {
        "transport": "ssh",
        "scheduler": "ssh",
        "host": "h.example",
        "key_file": str(key),
        "known_hosts": str(tmp_path / "kh"),
    }
    return build_profile("p", {**base, **values})


def test_connections_are_shared_only_between_equal_trust_settings(tmp_path: Path) -> None:
    a = SshTransport.connection_key(_profile(tmp_path, cores=4))
    assert a == SshTransport.connection_key(_profile(tmp_path, cores=8, work_dir="/elsewhere"))
    assert a != SshTransport.connection_key(_profile(tmp_path, known_hosts=str(tmp_path / "other")))
    assert a != SshTransport.connection_key(_profile(tmp_path, auto_add_host_keys=True))
    assert a != SshTransport.connection_key(_profile(tmp_path, user="someone"))


def test_ssh_config_fills_what_the_profile_leaves_out(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host hpc\n  HostName login.hpc.example\n  Port 2200\n  User alice\n"
        "  ProxyJump bob@gateway.example:2022\n  UserKnownHostsFile ~/kh1 ~/kh2\n"
        "Host gateway.example\n  HostName 192.0.2.7\n"
    )
    ep = resolve(build_profile("p", {"transport": "ssh", "host": "hpc", "ssh_config": str(config)}))
    assert (ep.target.hostname, ep.target.port, ep.target.user) == (
        "login.hpc.example",
        2200,
        "alice",
    )
    assert [(j.hostname, j.port, j.user) for j in ep.jumps] == [("192.0.2.7", 2022, "bob")]
    assert [Path(p).name for p in ep.known_hosts] == ["kh1", "kh2"]
    assert not ep.auto_add
    ep = resolve(
        build_profile(
            "p",
            {
                "transport": "ssh",
                "host": "hpc",
                "ssh_config": str(config),
                "port": 22,
                "user": "carol",
                "proxy_jump": "none",
            },
        )
    )
    assert (ep.target.port, ep.target.user, ep.jumps) == (22, "carol", ())  # the profile wins
