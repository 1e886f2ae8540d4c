"""Issue 14 items 4 and 5: a ``./clustrix.toml`` planted in a shared directory, and a state
directory or job registry another user can write, replace or link."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from clustrix_core.config import load_profile, reset_configuration
from clustrix_core.registry import Registry, RegistryError

from .conftest import GROUP, MALLORY, VICTIM, VictimPython, mallory, mode, names, run_as

_PLANTED = """\
default_profile = "local"
[profiles.local]
python = "{evil}"
setup = ["touch {pwned}"]
"""

_EVIL = """#!/bin/sh
touch {pwned}
exec python3 "$@"
"""


def _plant_config(where: Path, arena: Path) -> Path:
    pwned = arena / "pwned"
    evil = arena / "evil.sh"
    for path, text in ((evil, _EVIL), (where / "clustrix.toml", _PLANTED)):
        content = text.format(evil=evil, pwned=pwned)
        done = subprocess.run(
            ["runuser", "-u", MALLORY, "--", "sh", "-c", 'cat > "$1"', "sh", str(path)],
            input=content,
            text=True,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
    assert mallory("chmod", "0755", str(evil)).returncode == 0
    return pwned


def test_planted_cwd_config_is_ignored_by_root(
    arena: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pwned = _plant_config(arena, arena)
    monkeypatch.chdir(arena)
    reset_configuration()
    with caplog.at_level(logging.WARNING, logger="clustrix_core.config"):
        profile = load_profile()
    assert profile.python is None and profile.setup == ()
    assert f"ignoring {arena}/clustrix.toml" in caplog.text
    assert f"belongs to {MALLORY}" in caplog.text
    from clustrix_core import ClusterExecutor

    ex = ClusterExecutor("local")
    try:
        assert ex.submit(pow, 2, 5).result(timeout=120) == 32
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    assert not pwned.exists()


_SHOW_PROFILE = """
import json
from clustrix_core.config import load_profile
p = load_profile()
print(json.dumps({"python": p.python, "setup": list(p.setup), "cores": p.cores}))
"""


def test_planted_cwd_config_is_ignored_by_an_ordinary_user(
    arena: Path, project: Path, victim_python: VictimPython
) -> None:
    for where in (arena, project):  # a sticky /tmp-like directory and a group project directory
        _plant_config(where, arena)
        done = victim_python.run(_SHOW_PROFILE, cwd=where)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"python": None, "setup": [], "cores": 1}
        assert f"ignoring {where}/clustrix.toml: it belongs to {MALLORY}" in done.stderr


def test_own_cwd_config_is_read_unless_others_can_write_it(
    project: Path, victim_python: VictimPython
) -> None:
    mine = project / "mine"
    assert run_as(VICTIM, "mkdir", str(mine)).returncode == 0
    write = 'printf "[profiles.local]\\ncores = 3\\n" > clustrix.toml'
    assert run_as(VICTIM, "sh", "-c", write, cwd=mine).returncode == 0
    done = victim_python.run(_SHOW_PROFILE, cwd=mine)
    assert json.loads(done.stdout)["cores"] == 3, done.stderr
    assert run_as(VICTIM, "chmod", "0664", str(mine / "clustrix.toml")).returncode == 0
    done = victim_python.run(_SHOW_PROFILE, cwd=mine)
    assert json.loads(done.stdout)["cores"] == 1
    assert "writable by group or others (mode 0664)" in done.stderr


# ------------------------------------------------------------------ state directory and registry

_FORGED_ROW = (
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, profile, profile_values, scheduler, transport, "
    "job_dir, key, function, ncalls, ntasks, tasks, submissions, python, state, reason, "
    "submitted_at, finished_at);"
    "INSERT INTO jobs VALUES ('forged', 'local', '{\"cleanup\": \"always\"}', 'local', 'local', "
    "'/etc', '00', 'f', 1, 1, '[[0, 1]]', '[]', '', 'RUNNING', '', 0, NULL);"
)


def _forge_state_dir(state: Path) -> None:
    """Mallory's state directory (0777) holding a database with a forged job record."""
    assert mallory("mkdir", "-m", "0777", str(state)).returncode == 0
    db = state / "jobs.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(_FORGED_ROW)
    conn.close()
    os.chown(db, __import__("pwd").getpwnam(MALLORY).pw_uid, -1)
    db.chmod(0o666)


def test_state_dir_of_another_user_is_refused_by_root(
    arena: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = arena / "state"
    _forge_state_dir(state)
    monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(state))
    with pytest.raises(RegistryError, match=rf"{state}.*(not to you|uid).*CLUSTRIX_STATE_DIR"):
        Registry().get("forged")
    assert mode(state / "jobs.sqlite3") == 0o666


_GET = """
import sys
from clustrix_core.registry import Registry, RegistryError
try:
    print("GOT", Registry().get(sys.argv[1]).job_dir)
except RegistryError as exc:
    print("REFUSED", exc)
"""


def test_state_dir_of_another_user_is_refused_by_an_ordinary_user(
    arena: Path, victim_python: VictimPython
) -> None:
    state = arena / "state"
    _forge_state_dir(state)
    done = victim_python.run(_GET, "forged", env={"CLUSTRIX_STATE_DIR": str(state)})
    assert done.stdout.startswith(f"REFUSED clustrix's state directory {state}"), done.stderr


def test_symlinked_registry_in_a_group_writable_state_dir_chmods_nothing(
    arena: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root's state directory is group-writable: a member links the database to a root file."""
    state = arena / "state"
    state.mkdir()
    os.chown(state, 0, __import__("grp").getgrnam(GROUP).gr_gid)
    state.chmod(0o2770)
    precious = arena / "precious"
    precious.write_text("root's")
    precious.chmod(0o644)
    assert mallory("ln", "-s", str(precious), str(state / "jobs.sqlite3")).returncode == 0
    monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(state))
    with pytest.raises(RegistryError, match=r"mode 2770.*chmod 700"):
        Registry().list()
    assert (mode(precious), precious.read_text()) == (0o644, "root's")
    assert names(state) == ["jobs.sqlite3"]


def test_state_dir_in_a_project_dir_is_refused_by_an_ordinary_user(
    project: Path, victim_python: VictimPython
) -> None:
    """The victim's state directory sits in the project directory: a member replaces it."""
    state = project / "state"
    done = victim_python.run(
        "from clustrix_core.registry import Registry; Registry().list(); print('ok')",
        env={"CLUSTRIX_STATE_DIR": str(state)},
    )
    assert "REFUSED" not in done.stdout
    assert f"{project}" in done.stderr and "2775" in done.stderr  # refused: parent is shared
    assert not state.exists()
    _forge_state_dir(state)
    done = victim_python.run(_GET, "forged", env={"CLUSTRIX_STATE_DIR": str(state)})
    assert done.stdout.startswith("REFUSED"), done.stderr
