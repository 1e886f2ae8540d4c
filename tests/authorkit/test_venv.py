"""The example plugin as a user gets it: a fresh virtual environment, ``pip install`` of the core
(from this repository, not editable) and of the example, ``clustrix plugins``, and the shared
conformance suite run by pytest from inside that environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .conftest import EXAMPLE, ROOT

pytestmark = pytest.mark.skipif(
    os.environ.get("CLUSTRIX_SKIP_VENV_TESTS") == "1", reason="CLUSTRIX_SKIP_VENV_TESTS=1"
)


@attrs.frozen(kw_only=True)
class Venv:
    root: Path
    tmp: Path
    example: Path  # the copy of the example that was installed

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "PYTHONPATH",
                "PYTHONHOME",
                "VIRTUAL_ENV",
                "CLUSTRIX_CONFIG",
                "CLUSTRIX_PROFILE",
                "PYTEST_ADDOPTS",
                "CLUSTRIX_DISABLE_PLUGINS",
            )
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env["CLUSTRIX_STATE_DIR"] = str(self.tmp / "state")
        env["CLUSTRIX_TEST_ROOT"] = str(self.tmp / "clusters")
        env.update(extra)
        return env

    def run(
        self, *argv: str | Path, cwd: Path | None = None, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            cwd=cwd or self.tmp,
            env=self.env(**extra),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def _copy_core(dest: Path) -> Path:
    """The core's distribution files, copied so that building it never writes into the shared tree."""
    dest.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", dest)
    for name in ("README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest)
    shutil.copytree(
        ROOT / "clustrix_core",
        dest / "clustrix_core",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    tmp = tmp_path_factory.mktemp("authorkit-venv")
    core = _copy_core(tmp / "clustrix-core")
    example = tmp / "clustrix-spool"
    shutil.copytree(
        EXAMPLE,
        example,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"),
    )
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    v = Venv(root=root, tmp=tmp, example=example)
    pip = v.run(
        v.bin / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        str(core),
        f"{example}[test]",
        timeout=600,
    )
    if pip.returncode != 0:
        pytest.fail(
            f"pip install failed (exit {pip.returncode}):\n{pip.stderr[-4000:]}", pytrace=False
        )
    yield v
    down = ROOT / "tests" / "clusters" / "spool" / "down"
    v.run(down, timeout=60)


def test_core_is_not_editable_and_the_example_is_installed(venv: Venv) -> None:
    out = venv.run(
        venv.bin / "python",
        "-c",
        "import clustrix_core, clustrix_spool, shutil; print(clustrix_core.__file__); "
        "print(shutil.which('spool-submit'))",
    )
    assert out.returncode == 0, out.stderr
    core_file, submit = out.stdout.split()
    assert core_file.startswith(str(venv.root)), core_file
    assert submit == str(venv.bin / "spool-submit")


def test_clustrix_plugins_lists_spool(venv: Venv) -> None:
    out = venv.run(venv.bin / "clustrix", "plugins")
    assert out.returncode == 0, out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if ln.split()[:2] == ["spool", "scheduler"]]
    assert line.split()[2:5] == ["clustrix-spool", "0.1.0", "ok"], line


def test_disabled_plugin_is_reported_and_named(venv: Venv) -> None:
    out = venv.run(venv.bin / "clustrix", "plugins", CLUSTRIX_DISABLE_PLUGINS="spool")
    assert out.returncode == 0, out.stderr
    assert [ln.split()[:5] for ln in out.stdout.splitlines() if ln.startswith("spool ")] == [
        ["spool", "?", "clustrix-spool", "0.1.0", "disabled"]
    ]


def test_plugin_module_is_cheap(venv: Venv) -> None:
    code = (
        "import sys, clustrix_core\n"
        "assert not any(m.startswith('clustrix_spool') for m in sys.modules), 'imported by clustrix_core'\n"
        "from clustrix_core.plugins import ClustrixPluginManager\n"
        "pm = ClustrixPluginManager(); pm.load_builtins(); pm.load_entrypoints()\n"
        "assert 'clustrix_spool.plugin' in sys.modules\n"
        "assert 'clustrix_spool.scheduler' not in sys.modules, 'plugin.py imports the scheduler eagerly'\n"
        "assert pm.get('scheduler', 'spool').cls.__module__ == 'clustrix_spool.scheduler'\n"
    )
    out = venv.run(venv.bin / "python", "-c", code)
    assert out.returncode == 0, out.stderr


def test_conformance_suite_passes_inside_the_venv(venv: Venv) -> None:
    out = venv.run(
        venv.bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=venv.example
    )
    tail = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert "failed" not in out.stdout.splitlines()[-1], tail
    assert (
        "test_conformance.py"
        in venv.run(
            venv.bin / "python",
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            cwd=venv.example,
        ).stdout
    )


def test_test_cluster_up_and_clustrix_doctor(venv: Venv) -> None:
    up = venv.run(ROOT / "tests" / "clusters" / "spool" / "up")
    assert up.returncode == 0, up.stderr
    config = up.stdout.strip().splitlines()[-1]
    assert "[profiles.spool]" in Path(config).read_text()
    assert (
        venv.run(ROOT / "tests" / "clusters" / "spool" / "up").stdout.strip().splitlines()[-1]
        == config
    )
    doctor = venv.run(
        venv.bin / "clustrix", "doctor", "spool", "--timeout", "60", CLUSTRIX_CONFIG=config
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "round trip" in doctor.stdout and "'pong'" in doctor.stdout
