"""Issue 14 item 8: host, user and proxy_jump values reach shells through ssh_config tokens
(``Match exec``, ``ProxyCommand``); values OpenSSH refuses are refused before any of that runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clustrix_ssh.transport import SshTransport

from clustrix_core.config import build_profile, load_profile, reset_configuration
from clustrix_core.errors import ConfigError
from clustrix_core.transport import shared_transport

from .conftest import MALLORY, ssh_profile

_MATCH_EXEC = 'Match exec "true %h %r"\n    ServerAliveInterval 30\n'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("host", "127.0.0.1;touch {m}"),
        ("host", "$(touch {m})"),
        ("host", "`touch {m}`"),
        ("host", "127.0.0.1 -oProxyCommand=touch{m}"),
        ("host", "-oProxyCommand=touch {m}"),
        ("host", "127.0.0.1\ntouch {m}"),
        ("user", "root;touch {m}"),
        ("user", "root$(touch {m})"),
        ("user", "-oProxyCommand=touch{m}"),
        ("proxy_jump", "127.0.0.1;touch {m}"),
        ("proxy_jump", "root;touch {m}@127.0.0.1"),
        ("proxy_jump", "127.0.0.1,|touch {m}"),
    ],
)
def test_shell_metacharacters_in_endpoint_fields_are_refused(
    field: str, value: str, arena: Path, users: dict[str, int]
) -> None:
    marker = arena / "M"
    config = arena / "ssh_config"
    config.write_text(_MATCH_EXEC)
    values = {
        "scheduler": "ssh",
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": 1,  # nothing listens: a connection attempt would fail differently
        "ssh_config": str(config),
        field: value.format(m=marker),
    }
    profile = build_profile("evil", values)
    with pytest.raises(ConfigError, match=rf"profile 'evil'.*{field}.*OpenSSH refuses"):
        shared_transport(SshTransport, profile)
    with pytest.raises(ConfigError):
        SshTransport(profile=profile)
    assert not marker.exists()


def test_planted_config_with_a_malicious_host_does_nothing(
    arena: Path, monkeypatch: pytest.MonkeyPatch, users: dict[str, int]
) -> None:
    """Mallory's project config (that the victim points CLUSTRIX_CONFIG at) names a host that
    would run her command through the victim's ssh_config ``Match exec``."""
    marker = arena / "M"
    ssh_config = arena / "ssh_config"
    ssh_config.write_text(_MATCH_EXEC)
    toml = arena / "project.toml"
    text = (
        '[profiles.hpc]\nscheduler = "ssh"\ntransport = "ssh"\n'
        f'host = "127.0.0.1;touch {marker}"\nssh_config = "{ssh_config}"\n'
    )
    done = subprocess.run(
        ["runuser", "-u", MALLORY, "--", "sh", "-c", 'cat > "$1"', "sh", str(toml)],
        input=text,
        text=True,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(toml))
    reset_configuration()
    from clustrix_core import ClusterExecutor

    with pytest.raises(ConfigError, match="host="):
        ClusterExecutor("hpc").submit(pow, 2, 3).result(timeout=60)
    assert not marker.exists()
    reset_configuration()


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost", "::1", "fe80::1%eth0", "a-b.c_d"])
def test_ordinary_host_names_are_accepted(value: str, users: dict[str, int]) -> None:
    profile = ssh_profile("root").evolve(host=value)
    SshTransport(profile=profile).close()
    assert load_profile  # the real endpoint still works:
    t = SshTransport(profile=ssh_profile("root"))
    try:
        assert t.run(["true"]).ok
    finally:
        t.close()
