from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_core import ClusterExecutor, ConfigError, cluster, configure
from clustrix_core.config import load_profile
from clustrix_core.resources import format_dhms, parse_memory, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GB", 8 * 1000**3),
        ("512M", 512 * 1024**2),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("100", 100),
        (4096, 4096),
        ("2 TiB", 2 * 1024**4),
        ("64k", 64 * 1024),
    ],
)
def test_memory_parsing(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "8XB", "-1G", "", "0", True, 0, "1.2.3G"])
def test_memory_errors_name_value_and_accepted_forms(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_memory(bad)
    assert repr(bad) in str(info.value)
    assert "GiB" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:00:00", 3600),
        ("90m", 5400),
        ("2-00:00:00", 172800),
        ("1h30m", 5400),
        ("45s", 45),
        ("10:30", 630),
        ("1-12", 129600),
        ("2d", 172800),
        (120, 120),
        ("300", 300),
    ],
)
def test_time_parsing(text: object, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("bad", ["soon", "1h1h", "00:00:00", "1:2:3:4", "-5", "", 0])
def test_time_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="time"):
        parse_time(bad)


def test_format_dhms() -> None:
    assert format_dhms(3725) == "01:02:05"
    assert format_dhms(90061) == "1-01:01:01"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clustrix.toml"
    path.write_text(text)
    return path


def test_profile_file_env_configure_and_call_site_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '[profiles.hpc]\nscheduler = "local"\ncores = 2\nmemory = "1GB"\ntime = "10m"\n'
        '[profiles.hpc.env]\nOMP_NUM_THREADS = "2"\n',
    )
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    p = load_profile("hpc")
    assert (p.cores, p.memory, p.time, p.env) == (2, 10**9, 600, {"OMP_NUM_THREADS": "2"})
    configure(profile="hpc", cores=3)
    assert load_profile("hpc").cores == 3
    assert load_profile("hpc", cores=8, memory="2GiB").cores == 8
    assert load_profile("hpc", memory="2GiB").memory == 2 * 1024**3


def test_cwd_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[profiles.here]\nscheduler = "local"\ncores = 5\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing"))
    assert load_profile("here").cores == 5


def test_unknown_profile_lists_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(write(tmp_path, "[profiles.hpc]\ncores = 2\n")))
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*hpc"):
        ClusterExecutor("nope")


def test_unknown_key_names_key_and_accepted_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(write(tmp_path, "[profiles.hpc]\ncorez = 2\n")))
    with pytest.raises(ConfigError, match=r"'corez'.*accepted keys:.*cores"):
        load_profile("hpc")


def test_bad_values_fail_at_decoration_time() -> None:
    with pytest.raises(ConfigError, match=r"memory='8 gigs'"):
        cluster(memory="8 gigs")(lambda: None)
    with pytest.raises(ConfigError, match=r"time='forever'"):
        cluster(time="forever")(lambda: None)
    with pytest.raises(ConfigError, match="cores"):
        cluster(cores=-1)(lambda: None)
    with pytest.raises(ConfigError, match="serializer"):
        cluster(serializer="json")(lambda: None)


def test_bad_toml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[profiles.hpc\n")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile("hpc")


def test_local_scheduler_rejects_partition() -> None:
    with pytest.raises(ConfigError, match="partition"):
        ClusterExecutor("local", partition="debug")


def test_environment_variables_beat_files_and_lose_to_call_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[profiles.hpc]\nscheduler = "local"\ncores = 2\nmemory = "1GB"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    monkeypatch.setenv("CLUSTRIX_CORES", "6")
    monkeypatch.setenv("CLUSTRIX_SETUP", "echo a\necho b")
    p = load_profile("hpc")
    assert (p.cores, p.memory, p.setup) == (6, 10**9, ("echo a", "echo b"))
    assert load_profile("hpc", cores=3).cores == 3
    monkeypatch.setenv("CLUSTRIX_MEMORY", "a lot")
    with pytest.raises(ConfigError, match="memory='a lot'"):
        load_profile("hpc")
