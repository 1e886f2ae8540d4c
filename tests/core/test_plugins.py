"""Plugin discovery with fake installed distributions (real dist-info directories on sys.path)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = """
from clustrix_core import hookimpl
from clustrix_core.plugins import SchedulerSpec
from clustrix_core.scheduler import ProcessScheduler

class Fancy(ProcessScheduler):
    name = "fancy"

@hookimpl
def clustrix_schedulers():
    yield SchedulerSpec(name="fancy", cls=Fancy, summary="a fake scheduler", options={"colour": "a colour"})
"""
BROKEN = "raise ImportError('this plugin is broken on purpose')\n"
DUPLICATE = GOOD.replace("a fake scheduler", "a second fancy")


def make_dist(site: Path, dist: str, module: str, source: str, ep_name: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[clustrix]\n{ep_name} = {module}\n")


def run_python(site: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "clustrix-fancy", "clustrix_fancy_plugin", GOOD, "fancy")
    make_dist(site, "clustrix-broken", "clustrix_broken_plugin", BROKEN, "broken")
    return site


def test_good_plugin_found_and_broken_one_reported(site: Path) -> None:
    out = run_python(
        site,
        """
        import clustrix_core
        from clustrix_core.plugins import get_plugin_manager
        pm = get_plugin_manager()
        spec = pm.get("scheduler", "fancy")
        print("FOUND", spec.name, spec.options)
        for info in pm.infos:
            print("INFO", info.name, info.distribution, info.status)
        from clustrix_core.config import load_profile
        print("OPTION", load_profile("local", scheduler="fancy", colour="red").options)
    """,
    )
    assert out.returncode == 0, out.stderr
    assert "FOUND fancy {'colour': 'a colour'}" in out.stdout
    assert (
        "INFO broken clustrix-broken failed: ImportError: this plugin is broken on purpose"
        in out.stdout
    )
    assert "OPTION {'colour': 'red'}" in out.stdout


def test_cli_lists_plugins_with_distribution_and_status(site: Path) -> None:
    out = run_python(
        site, "from clustrix_core.cli import main; raise SystemExit(main(['plugins']))"
    )
    assert out.returncode == 0, out.stderr
    fancy = [line for line in out.stdout.splitlines() if line.startswith("fancy")]
    assert fancy and "clustrix-fancy" in fancy[0] and "1.0" in fancy[0] and " ok " in fancy[0]
    broken = [line for line in out.stdout.splitlines() if line.startswith("broken")]
    assert broken and "failed: ImportError" in broken[0]


def test_duplicate_name_is_an_error_naming_both(site: Path) -> None:
    make_dist(site, "clustrix-fancy2", "clustrix_fancy2_plugin", DUPLICATE, "fancy2")
    out = run_python(
        site,
        """
        from clustrix_core.plugins import get_plugin_manager
        from clustrix_core.errors import PluginError
        try:
            get_plugin_manager().get("scheduler", "fancy")
        except PluginError as exc:
            print("ERR", exc)
    """,
    )
    assert "ERR two plugins provide the scheduler 'fancy'" in out.stdout, out.stderr
    assert "clustrix-fancy)" in out.stdout and "clustrix-fancy2)" in out.stdout


def test_disabled_plugin_is_not_loaded(site: Path) -> None:
    out = run_python(
        site,
        """
        from clustrix_core.plugins import get_plugin_manager
        from clustrix_core.errors import PluginError
        pm = get_plugin_manager()
        print("STATUS", [i.status for i in pm.infos if i.name == "fancy"])
        try:
            pm.get("scheduler", "fancy")
        except PluginError as exc:
            print("ERR", exc)
    """,
        CLUSTRIX_DISABLE_PLUGINS="fancy,other",
    )
    assert "STATUS ['disabled']" in out.stdout, out.stderr
    assert "disabled by CLUSTRIX_DISABLE_PLUGINS" in out.stdout


def test_unknown_backend_names_package_and_installed_ones() -> None:
    from clustrix_core import ClusterExecutor, PluginError

    with pytest.raises(PluginError) as info:
        ClusterExecutor("local", scheduler="lsf-nonexistent")
    assert "clustrix-lsf-nonexistent" in str(info.value)
    assert "local" in str(info.value)
    import clustrix_core.plugins as plugins

    if plugins.get_plugin_manager().find("scheduler", "pbs") is None:
        with pytest.raises(PluginError, match="pip install clustrix-pbs"):
            ClusterExecutor("local", scheduler="pbs")


def test_import_loads_no_plugin_and_no_heavy_module() -> None:
    code = (
        "import sys; import clustrix_core; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('paramiko', 'kubernetes', 'clustrix_ssh', 'clustrix_slurm', 'clustrix_sge', 'pluggy', 'cloudpickle')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
