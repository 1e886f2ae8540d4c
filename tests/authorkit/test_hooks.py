"""Every hookspec is documented in docs/writing-a-plugin.md with its signature and an example, and
every hookspec is exercised: one plugin implements them all and a real job runs through them."""

from __future__ import annotations

import inspect
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustrix_core import hookimpl
from clustrix_core.errors import JobFailedError
from clustrix_core.executor import ClusterExecutor
from clustrix_core.hookspecs import ClustrixSpecs
from clustrix_core.plugins import SchedulerSpec, SerializerSpec, TransportSpec
from clustrix_core.registry import JobRecord
from clustrix_core.scheduler import BatchScheduler, JobSpec, ProcessScheduler
from clustrix_core.serialization import RemoteInfo, Serializer
from clustrix_core.specs import JobScript
from clustrix_core.transport import LocalTransport

from .conftest import GUIDE

HOOKS = sorted(name for name in vars(ClustrixSpecs) if name.startswith("clustrix_"))


def hook_signature(name: str) -> str:
    """``def clustrix_job_script(profile: Profile, job_name: str, script: str) -> str | None``:
    the hookspec as a plugin writes it (no ``self``; annotations as written in hookspecs.py)."""
    sig = inspect.signature(getattr(ClustrixSpecs, name))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    text = ", ".join(
        p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}" for p in params
    )
    return f"def {name}({text}) -> {sig.return_annotation}"


def test_there_are_hooks() -> None:
    assert "clustrix_schedulers" in HOOKS and "clustrix_job_script" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_signature_and_example(name: str) -> None:
    guide = GUIDE.read_text()
    assert hook_signature(name) in guide, f"{hook_signature(name)!r} is not in {GUIDE.name}"
    assert re.search(rf"@hookimpl\n(?:@[^\n]+\n)*def {name}\(", guide), (
        f"no example hookimpl of {name} in {GUIDE.name}"
    )


def test_guide_names_no_hook_that_does_not_exist() -> None:
    mentioned = set(re.findall(r"\bdef (clustrix_\w+)\(", GUIDE.read_text()))
    assert mentioned <= set(HOOKS), mentioned - set(HOOKS)


TEMPLATE_METHODS = [
    "directives",
    "submit_argv",
    "parse_submit",
    "status_argv",
    "parse_status",
    "final_status",
    "cancel_argv",
    "max_array_size",
    "STATES",
    "task_var",
    "task_base",
    "directive_prefix",
    "validate",
    "parallelism",
    "accounting_lag",
    "lost_reason",
    "classify",
    "normalize_id",
    "summarize",
    "single_task_arrays",
    "cluster_fact",
    "store",
    "supports_arrays",
    "final_statuses",
    "chunk_directives",
    "submit_stdin",
    "prefixed",
    "error_reason",
]


@pytest.mark.parametrize("name", TEMPLATE_METHODS)
def test_batch_scheduler_template_is_documented(name: str) -> None:
    if not hasattr(BatchScheduler, name):
        pytest.skip(f"BatchScheduler has no {name} (yet)")
    assert f"`{name}" in GUIDE.read_text()


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, v in vars(BatchScheduler).items()
        if callable(v) and "raise NotImplementedError" in inspect.getsource(v)
    ],
)
def test_every_abstract_template_method_is_in_the_guide(name: str) -> None:
    assert f"`{name}(" in GUIDE.read_text()


# ------------------------------------------------------------------ every hook, exercised


class CountingTransport(LocalTransport):
    name = "authorkit-transport"
    runs = 0

    def run(self, argv: Any, **kwargs: Any) -> Any:
        type(self).runs += 1
        return super().run(argv, **kwargs)


class AuthorkitScheduler(ProcessScheduler):
    name = "authorkit-scheduler"


class NeverSerializer(Serializer):
    """Offered by the plugin, consulted by the core, never chosen."""

    name = "authorkit-never"
    asked = 0

    def applies(self, remote: RemoteInfo) -> bool:
        type(self).asked += 1
        return False


class EveryHook:
    """A plugin object that implements every hook and records each call."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.submitted: list[JobRecord] = []
        self.finished: list[tuple[JobRecord, str]] = []
        self.done = threading.Event()

    @hookimpl
    def clustrix_schedulers(self) -> Iterator[SchedulerSpec]:
        self.calls["clustrix_schedulers"] += 1
        yield SchedulerSpec(
            name="authorkit-scheduler",
            cls=AuthorkitScheduler,
            summary="test scheduler",
            options={"authorkit_colour": "a made-up option the plugin accepts"},
        )

    @hookimpl
    def clustrix_transports(self) -> Iterator[TransportSpec]:
        self.calls["clustrix_transports"] += 1
        yield TransportSpec(
            name="authorkit-transport", cls=CountingTransport, summary="counting local"
        )

    @hookimpl
    def clustrix_serializers(self) -> Iterator[SerializerSpec]:
        self.calls["clustrix_serializers"] += 1
        yield SerializerSpec(
            name="authorkit-never", cls=NeverSerializer, summary="never applies", priority=1
        )

    @hookimpl
    def clustrix_job_script(self, profile: Any, job_name: str, script: JobScript) -> str | None:
        self.calls["clustrix_job_script"] += 1
        if profile.options.get("authorkit_colour") != "blue":
            return None
        first, rest = script.text.split("\n", 1)
        script.text = f"{first}\nexport AUTHORKIT_HOOKED={job_name}\n{rest}"
        return None

    @hookimpl
    def clustrix_job_submitted(self, record: JobRecord) -> None:
        self.calls["clustrix_job_submitted"] += 1
        self.submitted.append(record)

    @hookimpl
    def clustrix_job_finished(self, record: JobRecord, state: str) -> None:
        self.calls["clustrix_job_finished"] += 1
        self.finished.append((record, state))
        self.done.set()


class LeaveScriptAlone:
    """Takes only some of the hook's arguments, as pluggy allows."""

    seen: list[str] = []

    @hookimpl
    def clustrix_job_script(self, script: JobScript) -> str | None:
        self.seen.append(script.text)
        return None


@pytest.fixture
def every_hook(
    clustrix_register_plugin: Callable[..., None],
    clustrix_config: Callable[..., Path],
    tmp_path: Path,
) -> EveryHook:
    plugin = EveryHook()
    clustrix_register_plugin(plugin, name="authorkit-every-hook")
    clustrix_register_plugin(LeaveScriptAlone(), name="authorkit-no-op")
    clustrix_config(
        {
            "hooked": {
                "scheduler": "authorkit-scheduler",
                "transport": "authorkit-transport",
                "python": sys.executable,
                "work_dir": str(tmp_path / "jobs"),
                "authorkit_colour": "blue",
                "cleanup": "never",
            }
        }
    )
    return plugin


def test_every_hook_is_called_by_a_real_job(
    every_hook: EveryHook, clustrix_plugin_manager: Any
) -> None:
    CountingTransport.runs = NeverSerializer.asked = 0
    ex = ClusterExecutor("hooked")
    assert type(ex.backend.scheduler) is AuthorkitScheduler
    assert type(ex.backend.transport) is CountingTransport
    assert [s.name for s in clustrix_plugin_manager.serializer_specs()][0] == "authorkit-never"

    def hooked() -> str | None:
        import os as _os

        return _os.environ.get("AUTHORKIT_HOOKED")

    try:
        fut = ex.submit(hooked)
        assert fut.result(timeout=60) == "clustrix-hooked"  # the script the hook adjusted ran
        assert every_hook.done.wait(30), "clustrix_job_finished was not called"
    finally:
        ex.shutdown(wait=False)
    assert CountingTransport.runs > 0 and NeverSerializer.asked > 0
    [record] = every_hook.submitted
    assert record.native_ids and record.job_id == fut.job_id
    [(finished, state)] = every_hook.finished
    assert (finished.job_id, state) == (fut.job_id, "COMPLETED")
    script = (Path(record.job_dir) / "job.sh").read_text()
    assert script.splitlines()[1] == "export AUTHORKIT_HOOKED=clustrix-hooked"
    missing = set(HOOKS) - set(every_hook.calls)
    assert not missing, f"hookspecs not exercised: {sorted(missing)}; implement them in EveryHook"


def test_job_finished_reports_a_failed_job(every_hook: EveryHook) -> None:
    ex = ClusterExecutor("hooked")

    def die() -> None:
        import os as _os
        import signal as _signal

        _os.kill(_os.getpid(), _signal.SIGKILL)

    try:
        with pytest.raises(JobFailedError):
            ex.submit(die).result(timeout=60)
        assert every_hook.done.wait(30)
    finally:
        ex.shutdown(wait=False)
    [(_, state)] = every_hook.finished
    assert state == "FAILED"


def test_script_hook_returning_none_changes_nothing(
    every_hook: EveryHook, clustrix_plugin_manager: Any
) -> None:
    from clustrix_core.config import load_profile

    plain = load_profile("hooked", authorkit_colour="red")
    script = JobScript(text="#!/bin/sh\ntrue\n", job_id="j-1")
    results = clustrix_plugin_manager.hook.clustrix_job_script(
        profile=plain, job_name="j", script=script
    )
    assert results == [] and script.text == "#!/bin/sh\ntrue\n"
    assert LeaveScriptAlone.seen[-1] == "#!/bin/sh\ntrue\n"
    blue = load_profile("hooked")
    script = JobScript(text="#!/bin/sh\ntrue\n", job_id="j-2")
    clustrix_plugin_manager.hook.clustrix_job_script(profile=blue, job_name="j", script=script)
    assert "AUTHORKIT_HOOKED=j" in script.text


def test_script_hook_returning_none_leaves_a_real_job_alone(every_hook: EveryHook) -> None:
    ex = ClusterExecutor("hooked", authorkit_colour="red")

    def hooked() -> str | None:
        import os as _os

        return _os.environ.get("AUTHORKIT_HOOKED")

    try:
        fut = ex.submit(hooked)
        assert fut.result(timeout=60) is None
    finally:
        ex.shutdown(wait=True)
    assert every_hook.calls["clustrix_job_script"] == 1
    [record] = every_hook.submitted
    script = (Path(record.job_dir) / "job.sh").read_text()
    assert "AUTHORKIT_HOOKED" not in script
    spec = JobSpec(
        job_id=record.job_id,
        name="clustrix-hooked",
        location=record.job_dir,
        ntasks=1,
        python=record.python,
        profile=ex.profile,
    )
    assert script == ex.backend.scheduler.render_script(spec)  # unchanged by the hooks


def test_plugin_options_are_accepted_only_for_their_backend(every_hook: EveryHook) -> None:
    from clustrix_core.config import build_profile
    from clustrix_core.errors import ConfigError

    build_profile("x", {"scheduler": "authorkit-scheduler", "authorkit_colour": "blue"})
    with pytest.raises(ConfigError, match="authorkit_colour"):
        build_profile("x", {"scheduler": "local", "authorkit_colour": "blue"})
