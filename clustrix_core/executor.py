"""The executor: stages jobs, submits them, watches them all with one batched status query per
interval, completes futures, verifies and collects results, and cleans up."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import pickle
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from pathlib import Path
from typing import Any, TypeVar

import attrs

from . import runner
from ._typing import P, R, off_the_loop
from .config import Profile, load_profile, profile_to_dict
from .errors import (
    ClustrixError,
    CommandError,
    IntegrityError,
    JobFailedError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    StatusError,
)
from .plugins import get_plugin_manager
from .progress import OutputStream, Progress
from .registry import JobRecord, get_registry
from .scheduler import RETRYABLE, JobSpec, JobState, JobStatus, Scheduler, Submission
from .serialization import (
    Call,
    RemoteInfo,
    Serializer,
    choose_strategies,
    decode_result,
    encode_payload,
    loads_value,
)
from .store import LOG_TAIL_BYTES, JobStore, keep_log, kept_log, new_job_id
from .transport import Transport, shared_transport

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
RUNNER_SOURCE = Path(runner.__file__).read_bytes()
_LOST_GRACE_POLLS = 6
_FAST_POLL_SECONDS = 1.0
_FAILURES_BEFORE_GIVING_UP = 5
_STREAM_TASKS_PER_POLL = 64
"""Streaming output reads the logs of at most this many running tasks of a job per poll."""
FINAL_RECORD_STATES = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"})


def safe_name(name: str) -> str:
    """A job name reduced to characters that are inert everywhere (shell, directives, paths)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    return (cleaned or "job")[:40]


class Backend:
    """A profile's transport, scheduler and job store, resolved through the plugin manager."""

    def __init__(self, profile: Profile) -> None:
        pm = get_plugin_manager()
        self.profile = profile
        sched_spec = pm.get("scheduler", profile.scheduler)
        transport_spec = pm.get("transport", profile.transport)
        self.transport: Transport = shared_transport(transport_spec.cls, profile)
        self.scheduler: Scheduler = sched_spec.cls(
            profile=profile, transport=self.transport, hooks=pm.hook
        )
        self.scheduler.validate(profile)
        self.serializers: list[Serializer] = [s.cls() for s in pm.serializer_specs()]
        self._python: str | None = None
        self._remote: RemoteInfo | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> JobStore:
        return self.scheduler.store()

    @property
    def base_python(self) -> str:
        return self.profile.python or self.scheduler.default_python()

    def remote(self) -> tuple[str, RemoteInfo]:
        """The interpreter jobs run with (after preparing ``environment``) and what it can load."""
        with self._lock:
            if self._remote is None or self._python is None:
                import sys

                python = self.base_python
                info = self.scheduler.probe(python)
                if self.profile.environment:
                    from . import environment

                    reqs = environment.requirement_lines(self.profile.environment)
                    if info.minor == sys.version_info[:2] and not any(
                        r.startswith("cloudpickle") for r in reqs
                    ):
                        # the local version, so the cloudpickle strategy applies remotely
                        import cloudpickle

                        reqs.append(f"cloudpickle=={cloudpickle.__version__}")
                    python = self.scheduler.prepare_environment(python, info, reqs)
                    info = self.scheduler.probe(python)
                self._python, self._remote = python, info
            return self._python, self._remote


class ClusterFuture(cf.Future[_R]):
    """A future for one call, tied to the job that runs it. ``await fut`` waits for it in a
    coroutine without blocking the event loop (the shared monitor completes it)."""

    def __init__(self: ClusterFuture[Any], job: _Job, index: int) -> None:
        super().__init__()
        self.job = job
        self.index = index

    def __await__(self) -> Generator[Any, None, _R]:
        import asyncio

        return asyncio.wrap_future(self).__await__()

    @property
    def job_id(self) -> str:
        return self.job.record.job_id

    @property
    def native_id(self) -> str | None:
        ids = self.job.record.native_ids
        return ",".join(ids) if ids else None

    @property
    def task(self) -> int:
        return self.job.task_of(self.index)

    def cancel(self) -> bool:
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if not super().cancel():
                return False
            self.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED: cf.wait sees it
        self.job.executor._cancel_future(self)
        return True

    def _settle(self, value: Any = None, exc: BaseException | None = None) -> bool:
        """Complete the future unless it is already done or cancelled (atomic with cancel)."""
        with self._condition:
            if self._state not in (PENDING, RUNNING):
                return False
            self._state = RUNNING
            if exc is not None:
                self.set_exception(exc)
            else:
                self.set_result(value)
            return True

    def stdout(self) -> str:
        """The standard output of the task that ran this call (so far; kept after cleanup)."""
        return self.job.read_log("out", self.task)

    def stderr(self) -> str:
        return self.job.read_log("err", self.task)


class _Job:
    def __init__(self, executor: ClusterExecutor, record: JobRecord, calls: int) -> None:
        self.executor = executor
        self.record = record
        self.futures = [ClusterFuture(self, i) for i in range(calls)]
        self.submissions: list[Submission] = []
        self.collected: set[int] = set()
        self.finished = False
        self.lost_polls = 0
        self.lost_since: float | None = None
        self.retries_left = executor.profile.retries
        self.last_status: dict[str, JobStatus] = {}
        self.spec: JobSpec | None = None
        self.progress: Progress | None = None
        self.stream: OutputStream | None = None
        """Set when the job's output is shown here as it arrives (``stream_output``)."""
        self.done_calls = 0
        """Calls finished so far by the runner (its ``progress.N``), delivered or not."""
        self.settled = threading.Event()
        """Set once the job is finished and cleaned up (``shutdown(wait=True)`` waits for it)."""

    @property
    def location(self) -> str:
        return self.record.job_dir

    def task_of(self, index: int) -> int:
        for t, (start, stop) in enumerate(self.record.tasks):
            if start <= index < stop:
                return t
        raise IndexError(index)

    def read_log(self, kind: str, task: int, tail: int | None = None) -> str:
        """A task's output: what was kept locally once the job finished, else the store's."""
        return self.executor.read_log(self.record, kind, task, tail=tail)


def split_tasks(ncalls: int, ntasks: int) -> list[tuple[int, int]]:
    """Contiguous, balanced slices of ``ncalls`` calls over ``ntasks`` tasks."""
    ntasks = max(1, min(ntasks, ncalls))
    base, extra = divmod(ncalls, ntasks)
    out, start = [], 0
    for t in range(ntasks):
        stop = start + base + (1 if t < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def rebuild_exception(outcome: dict[str, Any]) -> BaseException:
    """The remote exception as its own type (a class of the caller's own included: the runner
    defines the caller's classes under their module names) with the remote traceback attached;
    a :class:`RemoteError` when no such class exists here. A remote ``sys.exit`` or
    ``KeyboardInterrupt`` never ends or interrupts the caller: it is a RemoteError that says so."""
    tb = outcome.get("traceback", "")
    exc: BaseException | None = None
    if outcome.get("exc"):
        try:
            exc = pickle.loads(outcome["exc"])  # noqa: S301 - authenticated result
        except Exception:
            exc = None
    if not isinstance(exc, BaseException) or not _named_here(type(exc)):
        exc = _exception_by_name(outcome)  # not a class rebuilt by value that exists nowhere here
    type_name = f"{outcome.get('module', '')}.{outcome['type']}".lstrip(".")
    if isinstance(exc, (SystemExit, KeyboardInterrupt)) or (
        exc is None and outcome.get("module") == "builtins" and outcome["type"] in _EXITS
    ):
        message = outcome["message"]
        if isinstance(exc, SystemExit) and not message.startswith("the function"):
            message = f"the function called sys.exit({'' if exc.code is None else repr(exc.code)})"
        err = RemoteError(outcome["type"], message, tb)
        err.exit_code = getattr(exc, "code", None)  # type: ignore[attr-defined]
        return err
    if not isinstance(exc, Exception):  # GeneratorExit and other non-Exceptions: never re-raised
        return RemoteError(type_name, outcome["message"], tb)
    exc.__cause__ = RemoteTraceback(tb)
    exc.remote_traceback = tb  # type: ignore[attr-defined]
    return exc


_EXITS = ("SystemExit", "KeyboardInterrupt")


def _named_here(cls: type) -> bool:
    """Whether ``cls`` is what its module and qualified name name in this process."""
    import sys

    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _exception_by_name(outcome: dict[str, Any]) -> BaseException | None:
    """The remote exception rebuilt from its class name when it could not travel as a pickle
    (say, it held an unpicklable attribute) and that class exists here."""
    import sys

    module = sys.modules.get(outcome.get("module") or "")
    cls: Any = module
    for part in str(outcome.get("qualname") or outcome["type"]).split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    try:
        return cls(outcome["message"])  # type: ignore[no-any-return]
    except Exception:
        try:
            exc = cls.__new__(cls)
            exc.args = (outcome["message"],)
            return exc  # type: ignore[no-any-return]
        except Exception:
            return None


class Monitor:
    """Watches the jobs of every executor of one profile in this process with one status query
    per interval: every ``poll_min`` seconds while something changed in the last second, then
    backing off by 1.5x to ``poll_max``. Its thread runs while there are jobs to watch. Status
    queries that keep failing (5 times and ``status_patience`` seconds) fail the waiting futures
    with a :class:`StatusError` that says how to re-attach; the jobs keep their records."""

    def __init__(self, scheduler: Scheduler, profile: Profile) -> None:
        self.scheduler = scheduler
        self.poll_min = profile.poll_min or scheduler.poll_min
        self.poll_max = profile.poll_max
        self.patience = profile.status_patience
        self.polls = 0
        self.jobs: list[_Job] = []
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.thread: threading.Thread | None = None
        self._failures = 0
        self._failing_since: float | None = None

    def track(self, job: _Job) -> None:
        with self.lock:
            self.jobs.append(job)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._watch, name="clustrix-monitor", daemon=True
                )
                self.thread.start()
        self.wakeup.set()

    def cancel(self, submissions: Sequence[Submission], done: Collection[int] = ()) -> None:
        """Cancel through the watching scheduler, which then knows a vanished job was cancelled.
        Tasks in ``done`` have delivered their result and are left alone: a submission with
        nothing else is not cancelled, one with some is narrowed where the scheduler can."""
        whole = []
        for sub in submissions:
            tasks = [t for t in range(sub.first, sub.first + sub.count) if t not in done]
            if not tasks:
                continue
            if len(tasks) < sub.count and self.scheduler.cancel_tasks(sub, tasks):
                continue
            whole.append(sub)
        if whole:
            self.scheduler.cancel(whole)

    def _watch(self) -> None:
        interval = self.poll_min
        last_change = time.monotonic()
        while True:
            with self.lock:
                self.jobs = [j for j in self.jobs if not j.finished]
                active = list(self.jobs)
                if not active:
                    self.thread = None
                    return
            changed = False
            try:
                changed = self._poll(active)
                self._failures, self._failing_since = 0, None
            except Exception as exc:  # nothing is lost: the registry has every job
                self._failed(active, exc)
            if changed:
                last_change = time.monotonic()
            if time.monotonic() - last_change < _FAST_POLL_SECONDS:
                interval = self.poll_min
            else:
                interval = min(interval * 1.5, self.poll_max)
            self.wakeup.wait(interval)
            self.wakeup.clear()

    def _poll(self, active: list[_Job]) -> bool:
        subs = [s for j in active for s in j.submissions]
        self.polls += 1
        statuses = self.scheduler.statuses(subs)
        changed = False
        for job in active:
            try:
                changed |= job.executor._update(job, statuses)
            except Exception as exc:  # one job's trouble must not stop the others
                logger.exception("clustrix: handling job %s failed", job.record.job_id)
                job.executor._fail_job(job, exc)
                changed = True
        return changed

    def _failed(self, active: list[_Job], exc: Exception) -> None:
        now = time.monotonic()
        self._failures += 1
        self._failing_since = self._failing_since or now
        logger.warning(
            "clustrix: status query failed (%d in a row, will retry): %s", self._failures, exc
        )
        if self._failures < _FAILURES_BEFORE_GIVING_UP or now - self._failing_since < self.patience:
            return
        if isinstance(exc, CommandError):
            what = (
                f"the status command {' '.join(exc.argv)!r} exited {exc.returncode}: "
                f"{(exc.stderr or exc.stdout).strip()[-1000:]}"
            )
        else:
            what = f"{type(exc).__name__}: {exc}"
        ids = ", ".join(j.record.job_id for j in active)
        err = StatusError(
            f"cannot learn the state of job(s) {ids}: {self._failures} status queries in "
            f"{now - self._failing_since:.0f} s failed; last: {what}. The jobs may still run: "
            "re-attach later with clustrix_core.attach(JOB_ID) or `clustrix result JOB_ID`"
        )
        err.__cause__ = exc
        for job in active:
            job.executor._fail_job(job, err)
        self._failures, self._failing_since = 0, None


_monitors: dict[tuple[Any, ...], Monitor] = {}
_monitors_lock = threading.Lock()


def shared_monitor(backend: Backend) -> Monitor:
    """The one monitor of this process for ``backend``'s profile: its name, cluster, plugin
    options and polling settings (what status queries depend on; call-site resource overrides
    do not count)."""
    profile = backend.profile
    key = (
        profile.name,
        profile.scheduler,
        type(backend.transport),
        *backend.transport.connection_key(profile),
        json.dumps(profile.options, sort_keys=True, default=str),
        profile.command_timeout,
        profile.poll_min,
        profile.poll_max,
        profile.status_patience,
    )
    with _monitors_lock:
        monitor = _monitors.get(key)
        if monitor is None:
            monitor = _monitors[key] = Monitor(backend.scheduler, profile)
        return monitor


class ClusterExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` that runs calls as cluster jobs of a profile.

    ``ClusterExecutor("hpc", cores=4)``: the profile ``hpc`` with ``cores`` overridden. Executors
    of one profile in a process share one monitor (one status query per interval)."""

    def __init__(self, profile: str | Profile | None = None, **overrides: Any) -> None:
        if isinstance(profile, Profile):
            self.profile = profile.evolve(**overrides) if overrides else profile
        else:
            self.profile = load_profile(profile, **overrides)
        self.backend = Backend(self.profile)
        self.monitor = shared_monitor(self.backend)
        self._jobs: list[_Job] = []
        self._lock = threading.Lock()
        self._shutdown = False

    @property
    def polls(self) -> int:
        """Status queries made so far by this executor's (shared) monitor."""
        return self.monitor.polls

    # ------------------------------------------------------------ public API
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> ClusterFuture[R]:
        """Run ``fn(*args, **kwargs)`` as a job; a future of its value."""
        job = self._start(fn, [(args, kwargs)], ntasks=1, name=getattr(fn, "__name__", "call"))
        return job.futures[0]

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` as a job and wait for its value (what ``f(x)`` of
        ``@cluster`` does): the job's output is shown here as it arrives unless the profile says
        ``stream_output = false``, and Ctrl-C while waiting cancels the job (or detaches from it,
        ``on_interrupt = "detach"``), says which, and raises KeyboardInterrupt."""
        job = self._start(
            fn,
            [(args, kwargs)],
            ntasks=1,
            name=getattr(fn, "__name__", "call"),
            stream=self.profile.stream_output is not False,
        )
        future: ClusterFuture[R] = job.futures[0]
        try:
            return future.result()
        except KeyboardInterrupt:
            self._interrupt([job])
            raise

    async def asubmit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await ex.asubmit(fn, x)``: the value of one call, from a coroutine; staging and
        submitting run in a worker thread, so the event loop is never blocked."""
        future = await off_the_loop(functools.partial(self.submit, fn, *args, **kwargs))
        return await future

    async def amap(
        self, fn: Callable[..., R], *iterables: Iterable[Any], chunksize: int | None = None
    ) -> list[R]:
        """``await ex.amap(fn, xs)``: like :meth:`map` (one array job), from a coroutine."""
        import asyncio

        futures = await off_the_loop(
            functools.partial(self.map_futures, fn, *iterables, chunksize=chunksize)
        )
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        stream_output: bool | None = None,
    ) -> Iterator[R]:
        """``fn`` over the items of ``iterables`` as one array job (``chunksize`` calls per task,
        default: spread over the cluster's parallelism); the values, in order. The progress
        (per call) shows while it runs; ``stream_output`` (default: the profile's) shows the
        tasks' output here as it arrives. Ctrl-C while iterating cancels the job (or detaches
        from it: ``on_interrupt = "detach"``), says which, and raises KeyboardInterrupt."""
        futures = self.map_futures(fn, *iterables, chunksize=chunksize, stream_output=stream_output)
        deadline = None if timeout is None else time.monotonic() + timeout
        jobs = list({id(f.job): f.job for f in futures}.values())

        def results() -> Iterator[R]:
            try:
                for fut in futures:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    yield fut.result(left)
            except KeyboardInterrupt:
                self._interrupt(jobs)
                raise
            finally:
                for job in jobs:
                    if job.progress is not None:
                        job.progress.close()

        return results()

    def map_futures(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        stream_output: bool | None = None,
    ) -> list[ClusterFuture[R]]:
        """Like ``map`` but returns the futures (one array job for all calls)."""
        calls: list[Call] = [(tuple(args), {}) for args in zip(*iterables)]
        if not calls:
            return []
        chunksize = chunksize or self.profile.chunksize
        if chunksize:
            ntasks = -(-len(calls) // chunksize)
        elif self.backend.scheduler.supports_arrays:
            ntasks = min(len(calls), self.backend.scheduler.parallelism())
        else:
            ntasks = 1
        name = getattr(fn, "__name__", "map")
        return self._start(fn, calls, ntasks=ntasks, name=name, stream=stream_output).futures

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; ``cancel_futures``: cancel the jobs of calls not finished;
        ``wait``: wait until every job has ended (Ctrl-C while waiting: ``on_interrupt``)."""
        with self._lock:
            self._shutdown = True
            jobs = list(self._jobs)
        if cancel_futures:
            for job in jobs:
                for fut in job.futures:
                    fut.cancel()
        if wait:
            try:
                for job in jobs:
                    cf.wait(job.futures)
                    if not any(f.cancelled() for f in job.futures):
                        job.settled.wait(60)  # its cleanup, after the last delivery
            except KeyboardInterrupt:
                self._interrupt(jobs)
                raise

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """The ``with`` block ended: wait for every job; when it ended by an exception (Ctrl-C
        included), do not wait: cancel the unfinished jobs (or detach from them, per
        ``on_interrupt``) and say which."""
        if exc_type is None:
            self.shutdown(wait=True)
            return
        with self._lock:
            jobs = list(self._jobs)
        if issubclass(exc_type, KeyboardInterrupt):
            self._interrupt(jobs)
        else:
            self._interrupt(jobs, f"{exc_type.__name__} left the `with ClusterExecutor()` block")
        self.shutdown(wait=False)

    def _interrupt(self, jobs: Sequence[_Job], why: str = "interrupted (Ctrl-C)") -> None:
        """Ctrl-C (or an exception) while waiting for ``jobs``: cancel those not finished on the
        scheduler, or leave them running (``on_interrupt = "detach"``); one line on stderr says
        which and how to get them later. A second Ctrl-C meanwhile ends this at once."""
        import sys

        live = [j for j in jobs if not j.finished and not all(f.done() for f in j.futures)]
        for job in jobs:
            if job.progress is not None:
                job.progress.close()
        if not live:
            return
        names = ", ".join(_job_label(j) for j in live)
        several = "s" if len(live) > 1 else ""
        if self.profile.on_interrupt == "detach":
            if several:
                how = (
                    "`clustrix result ID` or clustrix_core.attach(ID).result(), ID one of "
                    + " ".join(j.record.job_id for j in live)
                )
            else:
                first = live[0].record.job_id
                how = f'`clustrix result {first}` or clustrix_core.attach("{first}").result()'
            line = (
                f"clustrix: {why}: detached from job{several} {names}, still running; "
                f"get the result{several} later with {how}\n"
            )
        else:
            for job in live:
                if job.stream is not None:
                    job.stream.drained.update(range(job.record.ntasks))  # no more output
                for fut in job.futures:
                    fut.cancel()  # the last one not done cancels the job on the scheduler
            line = f"clustrix: {why}: cancelled job{several} {names}\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except Exception:
            pass

    def adopt(self, record: JobRecord) -> list[ClusterFuture]:
        """Watch a job recorded by another process (re-attach by id): its futures, in call order."""
        if not record.submissions:
            raise ClustrixError(
                f"job {record.job_id} was never accepted by the scheduler "
                f"({record.state}: {record.reason})"
            )
        job = _Job(self, record, record.ncalls)
        job.submissions = _submissions(record)
        job.spec = JobSpec(
            job_id=record.job_id,
            name=safe_name(record.function.rsplit(".", 1)[-1]),
            location=record.job_dir,
            ntasks=record.ntasks,
            python=record.python or self.backend.base_python,
            profile=self.profile,
        )
        return self._track(job).futures

    def job_statuses(self, record: JobRecord) -> dict[str, JobStatus]:
        """The scheduler's status of each submission of a recorded job (one query)."""
        subs = _submissions(record)
        return self.monitor.scheduler.statuses(subs) if subs else {}

    def cancel_record(self, record: JobRecord) -> None:
        """Cancel a recorded job on the scheduler and record that."""
        self.monitor.cancel(_submissions(record))
        _record(record, "cancelled", state="CANCELLED", finished_at=time.time())

    def results_ready(self, record: JobRecord) -> set[int]:
        """The tasks of a recorded job whose results are in the store."""
        return self.backend.store.ready(record.job_dir, list(range(record.ntasks)))

    def read_log(
        self, record: JobRecord, stream: str, task: int, *, tail: int | None = None
    ) -> str:
        """A recorded job's output of ``task`` (its last ``tail`` bytes when given): what was
        kept locally once the job finished and was cleaned up, else the store's."""
        kept = kept_log(record.job_id, stream, task)
        if kept is None:
            kept = self.backend.store.log(record.job_dir, stream, task, tail=tail)
        return kept[-tail:] if tail else kept

    # ------------------------------------------------------------ submission
    def _start(
        self,
        fn: Callable[..., Any],
        calls: list[Call],
        *,
        ntasks: int,
        name: str,
        stream: bool | None = None,
    ) -> _Job:
        if self._shutdown:
            raise RuntimeError("cannot submit after shutdown")
        fn = getattr(fn, "__clustrix_function__", fn)
        backend = self.backend
        store = backend.store
        python, remote = backend.remote()
        strategies = choose_strategies(remote, self.profile.serializer, backend.serializers)
        tasks = split_tasks(len(calls), ntasks)
        key = secrets.token_bytes(32)
        job_id = new_job_id()
        payload = encode_payload(
            fn, calls, tasks, job_id=job_id, key=key, remote=remote, strategies=strategies
        )
        inputs = {"key": key.hex().encode(), "runner.py": RUNNER_SOURCE, **payload.files()}
        _check_task_size(store, inputs, len(tasks))
        job_name = safe_name(
            self.profile.job_name if self.profile.job_name != "clustrix" else f"clustrix-{name}"
        )
        location = store.stage(job_id=job_id, name=job_name, inputs=inputs)
        values = {
            k: v for k, v in profile_to_dict(self.profile).items() if v not in (None, (), {}, [])
        }
        record = JobRecord(
            job_id=job_id,
            profile=self.profile.name,
            profile_values=json.loads(json.dumps(values, default=list)),
            scheduler=self.profile.scheduler,
            transport=self.profile.transport,
            job_dir=location,
            key=key.hex(),
            function=f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', name)}",
            ncalls=len(calls),
            ntasks=len(tasks),
            tasks=[list(t) for t in tasks],
            python=python,
        )
        _record(record, "staged", add=True)
        job = _Job(self, record, len(calls))
        if len(calls) > 1:
            job.progress = Progress(f"{name} map", len(calls), len(tasks))
        if stream if stream is not None else self.profile.stream_output is True:
            job.stream = OutputStream(job_id, len(tasks), progress=job.progress)
        spec = JobSpec(
            job_id=job_id,
            name=job_name,
            location=location,
            ntasks=len(tasks),
            python=python,
            profile=self.profile,
        )
        try:
            job.submissions = backend.scheduler.submit(spec)
        except BaseException as exc:
            _record(
                record,
                "refused by the scheduler",
                state="SUBMIT_FAILED",
                reason=str(exc)[:1000],
                finished_at=time.time(),
            )
            raise
        # cancelled (`clustrix cancel` from another process) while being submitted: the
        # scheduler's job is cancelled as soon as its id is known, never left running
        cancelled = _cancelled_meanwhile(record)
        _record(
            record,
            f"submitted as {','.join(s.native_id for s in job.submissions)}",
            submissions=[_sub_dict(s) for s in job.submissions],
            state="CANCELLED" if cancelled else "SUBMITTED",
        )
        job.spec = spec
        get_plugin_manager().hook.clustrix_job_submitted(record=record)
        logger.info(
            "submitted %s (%d calls in %d tasks) as %s",
            job_id,
            len(calls),
            len(tasks),
            ",".join(record.native_ids),
        )
        self._track(job)
        if cancelled:
            logger.warning("clustrix: job %s was cancelled while being submitted", job_id)
            for fut in job.futures:
                fut.cancel()
        return job

    def _track(self, job: _Job) -> _Job:
        with self._lock:
            self._jobs = [j for j in self._jobs if not j.finished]
            self._jobs.append(job)
        self.monitor.track(job)
        return job

    def _cancel_future(self, fut: ClusterFuture) -> None:
        job = fut.job
        others = [f for f in job.futures if f is not fut and not f.done()]
        if not others and not job.finished:
            self._cancel_job(job)

    def _cancel_job(self, job: _Job) -> None:
        """Cancel the real job (every submission of it) and record that."""
        self.monitor.cancel(job.submissions, done=set(job.collected))
        _record(job.record, "cancelled", state="CANCELLED", finished_at=time.time())

    # ------------------------------------------------------------ the monitor's side
    def _update(self, job: _Job, statuses: dict[str, JobStatus]) -> bool:
        """Act on one poll's statuses of ``job``; whether anything changed."""
        job_status = {s.native_id: statuses.get(s.native_id) for s in job.submissions}
        if any(st is None for st in job_status.values()):
            return False
        changed = job.last_status != job_status
        job.last_status = job_status  # type: ignore[assignment]
        if all(st.state.final for st in job_status.values()):  # type: ignore[union-attr]
            self._finalize(job, job_status)  # type: ignore[arg-type]
            changed |= job.finished or job.lost_polls == 0  # waiting out a lag backs off
        elif job.record.ntasks > 1:
            changed |= self._collect_ready(job)
        if job.stream is not None and not job.finished:
            if any(st.state is not JobState.PENDING for st in job_status.values()):  # type: ignore[union-attr]
                self._stream_output(job, final=False)
        if job.progress is not None:
            changed |= self._report_progress(job)
        return changed

    def _stream_output(self, job: _Job, *, final: bool, tasks: Sequence[int] | None = None) -> None:
        """Show what the job's tasks printed since the last read (one read of each running
        task's logs per poll, at most _STREAM_TASKS_PER_POLL tasks); ``final``: everything left
        of ``tasks`` (default: all not yet drained), which then end their stream."""
        stream = job.stream
        if stream is None:
            return
        if tasks is None:
            tasks = [t for t in range(job.record.ntasks) if t not in stream.drained]
        tasks = [t for t in tasks if t not in stream.drained]
        if not final:
            tasks = stream.pick(tasks, _STREAM_TASKS_PER_POLL)
        store = self.backend.store
        for _ in range(64 if final else 1):  # a large rest arrives in bounded pieces
            if not tasks:
                break
            try:
                got = store.read_new(job.location, stream.reads(tasks))
            except Exception as exc:  # showing output must never cost a result
                logger.debug(
                    "clustrix: reading the output of %s failed: %s", job.record.job_id, exc
                )
                break
            for (name, task), data in sorted(got.items()):
                stream.feed(name, task, data)
            if not final or not got:
                break
        if final:
            for t in tasks:
                for name in stream.STREAMS:
                    stream.feed(name, t, b"", final=True)
                stream.drained.add(t)

    def _fail_job(self, job: _Job, exc: BaseException) -> None:
        job.finished = True
        _deliver_all((fut, None, exc) for fut in job.futures)
        job.settled.set()

    def _report_progress(self, job: _Job) -> bool:
        """Calls done: delivered, plus those the runner counted in tasks not yet collected
        (``progress.N``, read once per poll); tasks running: started and not ended. Whether
        the count moved."""
        assert job.progress is not None
        done = [f for f in job.futures if f.done()]
        failed = sum(1 for f in done if f.cancelled() or f.exception() is not None)
        ended = set(job.collected) | {
            t for st in job.last_status.values() for t, s in st.tasks.items() if s.final
        }
        counted: dict[int, int] = {}
        # per-call counts cost a store read per job and poll (a command over ssh): only for a
        # bar someone watches; log lines keep per-task granularity from the status query
        if not job.finished and job.progress.bar is not None:
            open_tasks = [t for t in range(job.record.ntasks) if t not in job.collected]
            try:
                counted = self.backend.store.progress(job.location, open_tasks)
            except Exception as exc:  # progress must never cost a result
                logger.debug("clustrix: reading the progress of %s failed: %s", job, exc)
        ndone = len(done)
        for t, n in counted.items():
            start, stop = job.record.tasks[t]
            ndone += max(
                0, min(n, stop - start) - sum(1 for f in job.futures[start:stop] if f.done())
            )
        if counted:
            running = sum(1 for t in counted if t not in ended)
        else:
            running = sum(
                1
                for st in job.last_status.values()
                for t, s in st.tasks.items()
                if s is JobState.RUNNING and t not in job.collected
            )
            if not running:
                running = sum(1 for st in job.last_status.values() if st.state is JobState.RUNNING)
        moved = ndone != job.done_calls
        job.done_calls = ndone
        if job.finished:
            running = 0
        job.progress.update(done=ndone, failed=failed, running=running, finished_tasks=len(ended))
        if job.finished:
            job.progress.close()
        return moved

    def _collect_ready(self, job: _Job) -> bool:
        pending = [t for t in range(job.record.ntasks) if t not in job.collected]
        ready = sorted(self.backend.store.ready(job.location, pending))
        deliveries: list[tuple[ClusterFuture, Any, BaseException | None]] = []
        for t in ready:
            deliveries.extend(self._collect_task(job, t) or ())
        if ready and len(job.collected) == job.record.ntasks:
            # every result is in before the scheduler says the job ended: record the outcome
            # before the last delivery, since the caller's process may exit at once
            raised = any(exc is not None for _, _, exc in deliveries) or any(
                f.done() and not f.cancelled() and f.exception() is not None for f in job.futures
            )
            final = "COMPLETED_WITH_ERRORS" if raised else "COMPLETED"
            _record(job.record, final, state=final, finished_at=time.time())
        if ready:
            self._stream_output(job, final=True, tasks=ready)
            if len(job.collected) == job.record.ntasks:
                _finish_progress(job, deliveries)  # before the last delivery: the caller prints
        _deliver_all(deliveries)
        return bool(ready)

    def _collect_task(
        self, job: _Job, task: int
    ) -> list[tuple[ClusterFuture, Any, BaseException | None]] | None:
        """Fetch and verify task ``task``'s result: what to deliver to each of its futures;
        None when there is none yet."""
        blob = self.backend.store.fetch(job.location, task)
        if blob is None:
            return None
        start, stop = job.record.tasks[task]
        futures = job.futures[start:stop]
        job.collected.add(task)
        try:
            report = decode_result(
                blob,
                bytes.fromhex(job.record.key),
                job_id=job.record.job_id,
                task=task,
                ncalls=stop - start,
                what=f"the result of task {task} ({self.backend.store.result_name(job.location, task)})",
            )
        except IntegrityError as exc:
            return [(fut, None, exc) for fut in futures]
        if report.get("error"):
            err = rebuild_exception(report["error"])
            failure = SerializationError(f"the runner on the remote could not load the job: {err}")
            failure.__cause__ = err
            return [(fut, None, failure) for fut in futures]
        out: list[tuple[ClusterFuture, Any, BaseException | None]] = []
        for fut, outcome in zip(futures, report["outcomes"]):
            if outcome["ok"]:
                try:
                    out.append((fut, loads_value(outcome["value"]), None))
                except Exception as exc:
                    out.append(
                        (
                            fut,
                            None,
                            SerializationError(f"cannot unpickle the result locally: {exc}"),
                        )
                    )
            else:
                out.append((fut, None, rebuild_exception(outcome)))
        return out

    def _lost_grace(self, job: _Job) -> bool:
        """Accounting or file system lag: look again (at least _LOST_GRACE_POLLS polls and the
        scheduler's ``accounting_lag`` seconds) before calling a job without results lost."""
        now = time.monotonic()
        job.lost_since = job.lost_since or now
        job.lost_polls += 1
        return (
            job.lost_polls <= _LOST_GRACE_POLLS
            or now - job.lost_since < self.backend.scheduler.accounting_lag
        )

    def _finalize(self, job: _Job, statuses: dict[str, JobStatus]) -> None:
        missing = [t for t in range(job.record.ntasks) if t not in job.collected]
        deliveries: list[tuple[ClusterFuture, Any, BaseException | None]] = []
        for t in list(missing):
            got = self._collect_task(job, t)
            if got is not None:
                deliveries.extend(got)
                missing.remove(t)
        worst = _worst(statuses)
        if missing and worst.state in (JobState.LOST, JobState.COMPLETED) and self._lost_grace(job):
            _deliver_all(deliveries)
            return
        if missing and worst.state in RETRYABLE and job.retries_left > 0:
            _deliver_all(deliveries)
            job.retries_left -= 1
            logger.warning(
                "job %s ended %s; resubmitting its %d unfinished task(s) (%d retries left)",
                job.record.job_id,
                worst.state,
                len(missing),
                job.retries_left,
            )
            assert job.spec is not None
            job.submissions = self.backend.scheduler.submit(
                attrs.evolve(job.spec, only=tuple(missing))
            )
            _record(
                job.record,
                f"resubmitted as {','.join(s.native_id for s in job.submissions)}",
                submissions=[_sub_dict(s) for s in job.submissions],
            )
            job.lost_polls, job.lost_since = 0, None
            return
        for t in missing:
            start, stop = job.record.tasks[t]
            state = worst.state
            code = worst.exit_code
            for sub in job.submissions:
                if sub.first <= t < sub.first + sub.count:
                    st = statuses[sub.native_id]
                    state = st.tasks.get(t, st.state)
                    code = st.exit_code
            if state is JobState.COMPLETED:
                state = JobState.LOST
            tail = job.read_log("err", t, tail=3000)
            extra = self.backend.scheduler.failure_details(job.location, t)
            if extra.strip():
                tail = f"{tail.rstrip()}\n{extra.strip()}".strip()
            reason = worst.reason or ""
            if code in _RUNNER_WRITE_FAILURES and state is JobState.FAILED:
                reason = f"{reason}; " if reason else ""
                reason += _RUNNER_WRITE_FAILURES[code].format(location=job.location)
            msg = (
                f"job {job.record.job_id} (native id {','.join(job.record.native_ids)}, task {t}) "
                f"ended {state} without a result" + (f": {reason}" if reason else "")
            )
            err = JobFailedError(
                msg,
                state=str(state),
                job_id=job.record.job_id,
                native_id=",".join(job.record.native_ids),
                stderr_tail=tail,
            )
            deliveries.extend((fut, None, err) for fut in job.futures[start:stop])
        job.finished = True
        raised = any(exc is not None for _, _, exc in deliveries)
        if missing:
            final = "CANCELLED" if worst.state is JobState.CANCELLED else "FAILED"
        else:
            final = "COMPLETED_WITH_ERRORS" if raised else "COMPLETED"
        job.record.state = final
        clean = self.profile.cleanup == "always" or (
            self.profile.cleanup == "on_success" and final == "COMPLETED"
        )
        if clean:
            self._keep_logs(job)  # before delivery: fut.stdout() works at once and after cleanup
        _record(job.record, final, state=final, reason=worst.reason[:1000], finished_at=time.time())
        self._stream_output(job, final=True)  # the rest of the output before the value
        _finish_progress(job, deliveries)  # before delivery: the caller prints next
        _deliver_all(deliveries)  # after the registry knows, so a process may exit at once
        get_plugin_manager().hook.clustrix_job_finished(record=job.record, state=final)
        try:
            if clean:
                self.backend.store.cleanup(job.location)
        finally:
            job.settled.set()

    def _keep_logs(self, job: _Job) -> None:
        store = self.backend.store
        for t in range(job.record.ntasks):
            for stream in ("out", "err"):
                try:
                    text = store.log(job.location, stream, t, tail=LOG_TAIL_BYTES)
                    keep_log(job.record.job_id, stream, t, text)
                except Exception as exc:  # keeping a copy must never cost a result
                    logger.warning("clustrix: could not keep the %s of %s: %s", stream, job, exc)


def _finish_progress(
    job: _Job, deliveries: Sequence[tuple[ClusterFuture, Any, BaseException | None]]
) -> None:
    """The final count of a job whose last results are about to be delivered, and its bar
    closed, so that nothing the caller prints next lands on the bar's line."""
    if job.progress is None:
        return
    failed = sum(1 for _, _, exc in deliveries if exc is not None) + sum(
        1 for f in job.futures if f.done() and (f.cancelled() or f.exception() is not None)
    )
    job.progress.update(
        done=job.record.ncalls, failed=failed, running=0, finished_tasks=job.record.ntasks
    )
    job.progress.close()


def _job_label(job: _Job) -> str:
    """``ID (slurm job 1234)``: the job as clustrix and the scheduler know it."""
    native = ",".join(job.record.native_ids)
    return (
        f"{job.record.job_id} ({job.record.scheduler} job {native})"
        if native
        else job.record.job_id
    )


def _cancelled_meanwhile(record: JobRecord) -> bool:
    """Whether the registry says the job was cancelled (by another process) since it was staged."""
    try:
        return get_registry().get(record.job_id).state == "CANCELLED"
    except Exception:  # an unreadable registry must not cost the job
        return False


def _record(record: JobRecord, what: str, *, add: bool = False, **changes: Any) -> None:
    """Apply ``changes`` to ``record`` and write them to the registry (``add``: the whole new
    record). The registry never costs a job or a result: when it cannot be written (locked for
    too long, deleted, read-only) the user is told what was not recorded, and a record that
    vanished with a deleted registry file is written again whole."""
    for key, value in changes.items():
        setattr(record, key, value)
    registry = get_registry()
    try:
        if add or registry.update(record.job_id, **changes) == 0:
            if not add:
                logger.warning(
                    "clustrix: job %s was missing from the job registry %s (deleted?); "
                    "recording it again",
                    record.job_id,
                    registry.path,
                )
            registry.add(record)
    except (sqlite3.Error, ClustrixError, OSError) as exc:
        logger.warning(
            "clustrix: job %s %s: not recorded in the job registry %s (%s). The job runs and "
            "this process collects its results, but `clustrix jobs` and attach() will not "
            "know this",
            record.job_id,
            what,
            registry.path,
            exc,
        )


_RUNNER_WRITE_FAILURES = {
    runner.EXIT_UNWRITABLE: "the runner could not write the result into {location} (exit status "
    f"{runner.EXIT_UNWRITABLE}; the reason is in the job's stderr, if that could be written)",
    runner.EXIT_NO_SPACE: "the runner could not write the result into {location}: no space left "
    f"on the device or a disk quota exceeded (exit status {runner.EXIT_NO_SPACE})",
}
"""What the runner's own exit statuses for an unwritable outcome tell (its stderr may be on the
same full disk)."""


def _check_task_size(store: JobStore, inputs: dict[str, bytes], ntasks: int) -> None:
    """Refuse, before anything is created, a task whose inputs exceed the store's limit."""
    limit = store.max_task_bytes
    if limit is None:
        return
    shared = sum(len(v) for k, v in inputs.items() if not k.startswith("calls."))
    for t in range(ntasks):
        size = shared + len(inputs[f"calls.{t}"])
        if size > limit:
            raise SerializationError(
                f"task {t} needs {size} bytes of inputs, more than the {limit} bytes the "
                f"{type(store).__name__} can hold per task: pass smaller arguments (load large "
                "data remotely from a path), use more tasks (chunksize), or configure the "
                "store's volume for large inputs"
            )


def _worst(statuses: dict[str, JobStatus]) -> JobStatus:
    values = list(statuses.values())
    bad = [s for s in values if s.state is not JobState.COMPLETED]
    return bad[0] if bad else values[0]


def _deliver_all(deliveries: Iterable[tuple[ClusterFuture, Any, BaseException | None]]) -> None:
    for fut, value, exc in deliveries:
        fut._settle(value, exc)


def _sub_dict(s: Submission) -> dict[str, Any]:
    return {"native_id": s.native_id, "first": s.first, "count": s.count}


def _submissions(record: JobRecord) -> list[Submission]:
    """A recorded job's submissions."""
    return [
        Submission(
            native_id=s["native_id"], location=record.job_dir, first=s["first"], count=s["count"]
        )
        for s in record.submissions
    ]


__all__ = ["ClusterExecutor", "ClusterFuture", "Monitor"]
