"""clustrix's pytest plugin for plugin authors (registered through the ``pytest11`` entry point).

Fixtures: ``clustrix_plugin_manager`` (a fresh manager), ``clustrix_register_plugin`` (register a
plugin object for one test), ``clustrix_config`` (write a temporary config with profiles),
``recording_transport`` (a transport that records commands and answers from a script), and
``clustrix_state_dir`` (a private job registry). Conformance suites live in
:mod:`clustrix_core.testing.conformance`; test clusters are started with :func:`start_cluster`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ..transport import CommandResult, LocalTransport

__all__ = [
    "RecordingTransport",
    "assert_golden",
    "forget_cluster_facts",
    "start_cluster",
    "write_config",
]


def forget_cluster_facts() -> None:
    """Forget the cluster facts this process cached (``Scheduler.cluster_fact``: MaxArraySize,
    CPU counts, the remote Python), as a new process would: for a test that reconfigures its
    test cluster and then expects a fresh executor to see the change."""
    from .. import scheduler

    with scheduler._facts_lock:
        scheduler._facts.clear()


def assert_golden(text: str, path: Path) -> None:
    """Assert that ``text`` (e.g. a rendered job script) equals the golden file ``path``; with
    ``CLUSTRIX_UPDATE_GOLDEN=1`` the file is (re)written first."""
    if os.environ.get("CLUSTRIX_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with CLUSTRIX_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"differs from the golden file {path}"


def write_config(path: Path, profiles: dict[str, dict[str, Any]]) -> Path:
    """Write a clustrix.toml with ``profiles`` (simple values, lists and tables)."""
    lines = []
    for name, values in profiles.items():
        lines.append(f'[profiles."{name}"]')
        tables = {}
        for key, value in values.items():
            if isinstance(value, dict):
                tables[key] = value
            else:
                lines.append(f"{key} = {_toml(value)}")
        for key, table in tables.items():
            lines.append(f'[profiles."{name}".{key}]')
            lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


_started: dict[str, Path] = {}
cluster_starts: list[tuple[str, float, str]] = []
"""(up script, seconds, outcome) of every :func:`start_cluster` run in this process, in order."""


def start_cluster(
    up_script: str | os.PathLike[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
) -> Path:
    """Run a test cluster's ``up`` script once per session and return its config file.

    The script's standard error goes to ``$CLUSTRIX_TEST_ROOT/logs/NAME-up.log`` (default root
    ``/tmp/clustrix-test``; NAME is the script's directory), and its tail into any failure. A
    first start may build a scheduler from source: it is bounded by ``timeout``, not by the
    test's own pytest-timeout, whose clock stops while the script runs. When the cluster cannot
    start, the test fails under CI (``CI=true``) and is skipped elsewhere."""
    key = str(up_script) + repr(sorted((env or {}).items()))
    if key in _started:
        return _started[key]
    name = Path(up_script).parent.name or Path(up_script).name
    logs = Path(os.environ.get("CLUSTRIX_TEST_ROOT", "/tmp/clustrix-test")) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}-up.log"
    t0 = time.monotonic()
    outcome = "failed"
    try:
        # files, not pipes: a daemon the script starts may keep a pipe open for ever (OpenPBS's
        # qsub leaves a helper process behind for a minute), and the script's end is what counts
        with _test_clock_stopped(), open(log_path, "w") as log, tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.run(
                    [str(up_script)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=log,
                    timeout=timeout,
                    env={**os.environ, **(env or {})},
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                _unavailable(f"{up_script} could not run: {exc}\n{_tail(log_path)}")
            out.seek(0)
            stdout = out.read().decode(errors="replace")
        lines = stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
            _unavailable(
                f"{up_script} failed (exit {proc.returncode}); its log {log_path} ends:\n"
                f"{_tail(log_path)}\n{stdout[-2000:]}"
            )
        outcome = "up"
    finally:
        cluster_starts.append((str(up_script), time.monotonic() - t0, outcome))
    path = Path(lines[-1])
    _started[key] = path
    return path


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError as exc:
        return f"({path}: {exc})"


@contextlib.contextmanager
def _test_clock_stopped() -> Iterator[None]:
    """Pause a running pytest-timeout (signal method: ITIMER_REAL) and resume it with the time
    it had left."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return
    left, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"test cluster unavailable in CI: {message}", pytrace=False)
    pytest.skip(f"test cluster unavailable: {message}")


_recordings = itertools.count()


class _ClassOrInstanceMethod:
    """A method that gets the instance when called on one, else the class."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        return self.func.__get__(owner if obj is None else obj, owner)


class RecordingTransport(LocalTransport):
    """A local transport that records every command (``calls``) and can answer chosen commands
    from a table: ``answers[program] = (returncode, stdout, stderr)``, or a callable that takes the
    argv and returns such a tuple. ``program`` is ``argv[0]`` or its base name (so ``answers["qsub"]``
    also answers ``/opt/sge/bin/qsub``). Commands without an answer really run, locally."""

    name = "recording"

    def __init__(self, *, profile: Any = None, answers: dict[str, Any] | None = None) -> None:
        super().__init__(profile=profile)
        self.calls: list[list[str]] = []
        self.answers: dict[str, Any] = dict(answers or {})
        self.cluster = next(_recordings)
        """Each recording is its own made-up cluster: facts a scheduler caches per cluster
        (``cluster_fact``) are not carried over from another recording's scripted answers."""

    @_ClassOrInstanceMethod
    def connection_key(owner: Any, profile: Any) -> tuple[Any, ...]:  # type: ignore[override]  # noqa: N805
        """On an instance, this recording's own cluster; on the class (``shared_transport``
        when a test registers the class as a transport), one for all."""
        if isinstance(owner, RecordingTransport):
            return (owner.name, owner.cluster)
        return (owner.name,)

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        self.calls.append(list(argv))
        answer = self.answers.get(argv[0])
        if answer is None:
            answer = self.answers.get(os.path.basename(argv[0]))
        if answer is None:
            return super().run(argv, stdin=stdin, timeout=timeout)
        if callable(answer):
            answer = answer(list(argv))
        code, out, err = answer
        return CommandResult(argv=tuple(argv), returncode=code, stdout=out, stderr=err)

    def commands(self, program: str) -> list[list[str]]:
        """The recorded commands whose ``argv[0]`` is ``program`` or ends in ``/program``."""
        return [c for c in self.calls if c and (c[0] == program or c[0].endswith("/" + program))]


@pytest.fixture
def clustrix_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private job registry for one test."""
    path = tmp_path / "clustrix-state"
    monkeypatch.setenv("CLUSTRIX_STATE_DIR", str(path))
    return path


@pytest.fixture
def clustrix_plugin_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh plugin manager (entry points loaded again), restored after the test."""
    from .. import plugins

    plugins.reset_plugin_manager()
    pm = plugins.get_plugin_manager()
    yield pm
    plugins.reset_plugin_manager()


@pytest.fixture
def clustrix_register_plugin(clustrix_plugin_manager: Any) -> Iterator[Callable[..., None]]:
    """``clustrix_register_plugin(obj, name="x")`` registers a plugin object for one test."""
    names: list[str] = []

    def register(plugin: object, name: str = "test-plugin", distribution: str = "test") -> None:
        clustrix_plugin_manager.register_plugin(
            plugin, name, distribution=distribution, version="0"
        )
        names.append(name)

    yield register
    for name in names:
        clustrix_plugin_manager.unregister_plugin(name)


@pytest.fixture
def clustrix_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clustrix_state_dir: Path
) -> Callable[..., Path]:
    """``clustrix_config({"name": {...}})`` writes a config file and points CLUSTRIX_CONFIG at it."""
    from ..config import reset_configuration

    def make(profiles: dict[str, dict[str, Any]]) -> Path:
        path = write_config(tmp_path / "clustrix.toml", profiles)
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
        reset_configuration()
        return path

    return make


@pytest.fixture
def recording_transport() -> RecordingTransport:
    """A :class:`RecordingTransport` for unit tests of command builders and parsers."""
    return RecordingTransport()
