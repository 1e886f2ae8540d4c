"""The ssh connection keys are the ssh plugin's declared options (issue 9: plugin-specific
profile keys live with their plugin), with the TOML spelling users write today."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_ssh_connection_keys_are_the_ssh_plugins_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """host, port, ... are declared by the ssh transport (same TOML spelling), read with
    ``profile.option``; a local profile refuses them; ``CLUSTRIX_<OPTION>`` works for them."""
    from clustrix_core.config import FIELD_NAMES, build_profile, load_profile
    from clustrix_core.errors import ConfigError

    assert not {"host", "port", "user", "key_file", "proxy_jump"} & FIELD_NAMES
    p = build_profile("s", {"transport": "ssh", "host": "login", "port": 2222})
    assert (p.option("host"), p.option("port"), p.option("user", "me")) == ("login", 2222, "me")
    with pytest.raises(ConfigError, match="host"):
        build_profile("l", {"transport": "local", "host": "login"})
    config = tmp_path / "c.toml"
    config.write_text('[profiles.s]\ntransport = "ssh"\nhost = "from-file"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config))
    monkeypatch.setenv("CLUSTRIX_HOST", "from-env")
    assert load_profile("s").option("host") == "from-env"
    assert load_profile("s", host="call-site").option("host") == "call-site"
