"""clustrix_core.testing itself: the fixtures and helpers plugin authors get from the pytest11
entry point, and the transport suite run against the core's local transport."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core.config import load_profile
from clustrix_core.hookspecs import hookimpl
from clustrix_core.plugins import SchedulerSpec
from clustrix_core.scheduler import ProcessScheduler
from clustrix_core.testing import RecordingTransport, start_cluster, write_config
from clustrix_core.testing.conformance import TransportConformance
from clustrix_core.transport import LocalTransport


class TestLocalTransportConformance(TransportConformance):
    @pytest.fixture
    def transport(self) -> Iterator[LocalTransport]:
        t = LocalTransport(profile=load_profile("local"))
        yield t
        t.close()


def test_recording_transport_answers_records_and_runs(
    recording_transport: RecordingTransport,
) -> None:
    recording_transport.answers["qsub"] = (0, "4242\n", "")
    recording_transport.answers["qstat"] = lambda argv: (0, " ".join(argv[1:]), "")
    assert (
        recording_transport.run(["/opt/sge/bin/qsub", "job.sh"]).stdout == "4242\n"
    )  # by base name
    assert recording_transport.run(["qstat", "-u", "me"]).stdout == "-u me"
    real = recording_transport.run(["sh", "-c", "echo real; exit 3"])  # no answer: really runs
    assert (real.returncode, real.stdout) == (3, "real\n")
    assert recording_transport.calls == [
        ["/opt/sge/bin/qsub", "job.sh"],
        ["qstat", "-u", "me"],
        ["sh", "-c", "echo real; exit 3"],
    ]
    assert recording_transport.commands("qsub") == [["/opt/sge/bin/qsub", "job.sh"]]


class _Plugin:
    @hookimpl
    def clustrix_schedulers(self) -> Iterator[SchedulerSpec]:
        yield SchedulerSpec(
            name="authorkit-temporary", cls=ProcessScheduler, summary="t", options={"flavour": "x"}
        )


def test_register_plugin_and_config(
    clustrix_register_plugin: Callable[..., None],
    clustrix_plugin_manager: Any,
    clustrix_config: Callable[..., Path],
    clustrix_state_dir: Path,
) -> None:
    clustrix_register_plugin(_Plugin(), name="authorkit-temporary")
    assert clustrix_plugin_manager.find("scheduler", "authorkit-temporary") is not None
    path = clustrix_config(
        {
            "tmp": {
                "scheduler": "authorkit-temporary",
                "flavour": "mint",
                "cores": 2,
                "setup": ["a", "b"],
                "env": {"X": "1 2"},
            }
        }
    )
    profile = load_profile("tmp")
    assert (profile.cores, profile.setup, profile.env, profile.options) == (
        2,
        ("a", "b"),
        {"X": "1 2"},
        {"flavour": "mint"},
    )
    assert path.is_file() and os.environ["CLUSTRIX_CONFIG"] == str(path)
    assert os.environ["CLUSTRIX_STATE_DIR"] == str(clustrix_state_dir)


def test_write_config_quotes_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.toml", {"a b": {"work_dir": 'C:\\x "y"', "retries": 1, "cleanup": "never"}}
    )
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads(path.read_text())
    assert data["profiles"]["a b"] == {"work_dir": 'C:\\x "y"', "retries": 1, "cleanup": "never"}


def test_start_cluster_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = tmp_path / "up"
    up.write_text("#!/bin/sh\necho 'no cluster here' >&2\nexit 1\n")
    up.chmod(0o755)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no cluster here"):
        start_cluster(up)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="unavailable in CI"):
        start_cluster(up)


def test_start_cluster_runs_up_once(tmp_path: Path) -> None:
    config = tmp_path / "clustrix.toml"
    counter = tmp_path / "count"
    up = tmp_path / "up"
    up.write_text(f"#!/bin/sh\necho x >> {counter}\ntouch {config}\necho starting\necho {config}\n")
    up.chmod(0o755)
    assert start_cluster(up) == config
    assert start_cluster(up) == config
    assert counter.read_text() == "x\n"
