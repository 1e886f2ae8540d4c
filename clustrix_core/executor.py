"""The executor: stages jobs, submits them, watches them all with one batched status query per
interval, completes futures, verifies and collects results, and cleans up."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import pickle
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import environment, runner
from .config import Profile, load_profile, profile_to_dict
from .errors import (
    ClustrixError,
    IntegrityError,
    JobFailedError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    TransportError,
)
from .plugins import get_plugin_manager
from .progress import Progress
from .registry import JobRecord, get_registry
from .scheduler import RETRYABLE, JobSpec, JobState, JobStatus, Scheduler, Submission
from .serialization import (
    PROBE_SNIPPET,
    Call,
    RemoteInfo,
    Serializer,
    choose_strategies,
    decode_result,
    encode_payload,
    loads_value,
)
from .transport import Transport, shared_transport

logger = logging.getLogger(__name__)
RUNNER_SOURCE = Path(runner.__file__).read_bytes()
_LOST_GRACE_POLLS = 6
_FAST_POLL_SECONDS = 1.0

_probe_cache: dict[tuple[Any, ...], RemoteInfo] = {}
_probe_lock = threading.Lock()


def safe_name(name: str) -> str:
    """A job name reduced to characters that are inert everywhere (shell, directives, paths)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    return (cleaned or "job")[:40]


def probe_remote(transport: Transport, python: str) -> RemoteInfo:
    """The remote Python's version and what it can unpickle (cached per transport and interpreter)."""
    key = (id(transport), python)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    result = transport.run([python, "-c", PROBE_SNIPPET], timeout=120)
    if result.returncode != 0:
        raise TransportError(
            f"the remote Python {python!r} did not run (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-1000:]}"
        )
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise TransportError(
            f"unexpected answer from the remote Python {python!r}: {result.stdout!r}"
        ) from exc
    info = RemoteInfo(**data)
    with _probe_lock:
        _probe_cache[key] = info
    return info


class Backend:
    """A profile's transport and scheduler, resolved through the plugin manager."""

    def __init__(self, profile: Profile) -> None:
        pm = get_plugin_manager()
        self.profile = profile
        sched_spec = pm.get("scheduler", profile.scheduler)
        transport_spec = pm.get("transport", profile.transport)
        self.transport: Transport = shared_transport(transport_spec.cls, profile)
        self.scheduler: Scheduler = sched_spec.cls(profile=profile, transport=self.transport)
        self.scheduler.validate(profile)
        self.serializers: list[Serializer] = [s.cls() for s in pm.serializer_specs()]
        self._python: str | None = None
        self._remote: RemoteInfo | None = None
        self._lock = threading.Lock()
        self._work_dir: str | None = None

    @property
    def base_python(self) -> str:
        if self.profile.python:
            return self.profile.python
        return sys.executable if self.profile.transport == "local" else "python3"

    def work_dir(self) -> str:
        if self._work_dir is None:
            path = self.transport.expand(self.profile.work_dir).rstrip("/")
            self.transport.makedirs(path, mode=0o700)
            self._work_dir = path
        return self._work_dir

    def remote(self) -> tuple[str, RemoteInfo]:
        """The interpreter jobs run with (after preparing ``environment``) and what it can load."""
        with self._lock:
            if self._remote is None or self._python is None:
                python = self.base_python
                info = probe_remote(self.transport, python)
                if self.profile.environment:
                    reqs = environment.requirement_lines(self.profile.environment)
                    if info.minor == sys.version_info[:2] and not any(
                        r.startswith("cloudpickle") for r in reqs
                    ):
                        # the local version, so the cloudpickle strategy applies remotely
                        import cloudpickle

                        reqs.append(f"cloudpickle=={cloudpickle.__version__}")
                    base = self.work_dir().rsplit("/", 1)[0] + "/envs"
                    python = environment.prepare(self.transport, python, info.minor, reqs, base)
                    info = probe_remote(self.transport, python)
                self._python, self._remote = python, info
            return self._python, self._remote


class ClusterFuture(cf.Future):
    """A future for one call, tied to the job that runs it."""

    def __init__(self, job: _Job, index: int) -> None:
        super().__init__()
        self.job = job
        self.index = index

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
        if self.cancelled():
            return True
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED, so concurrent.futures.wait sees it
        self.job.executor._cancel_future(self)
        return True

    def stdout(self) -> str:
        """The job's standard output for the task that ran this call (so far)."""
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

    def task_of(self, index: int) -> int:
        for t, (start, stop) in enumerate(self.record.tasks):
            if start <= index < stop:
                return t
        raise IndexError(index)

    def read_log(self, kind: str, task: int, tail: int | None = None) -> str:
        return self.executor.backend.transport.get_text(
            f"{self.record.job_dir}/{kind}.{task}", tail=tail
        )


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
    """The remote exception as its own type when it can be rebuilt, else a RemoteError."""
    tb = outcome.get("traceback", "")
    exc: BaseException | None = None
    if outcome.get("exc"):
        try:
            exc = pickle.loads(outcome["exc"])  # noqa: S301 - authenticated result
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        return RemoteError(
            f"{outcome.get('module', '')}.{outcome['type']}".lstrip("."), outcome["message"], tb
        )
    exc.__cause__ = RemoteTraceback(tb)
    exc.remote_traceback = tb  # type: ignore[attr-defined]
    return exc


class ClusterExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` that runs calls as cluster jobs of a profile.

    ``ClusterExecutor("hpc", cores=4)``: the profile ``hpc`` with ``cores`` overridden."""

    def __init__(self, profile: str | Profile | None = None, **overrides: Any) -> None:
        if isinstance(profile, Profile):
            self.profile = profile.evolve(**overrides) if overrides else profile
        else:
            self.profile = load_profile(profile, **overrides)
        self.backend = Backend(self.profile)
        self._jobs: list[_Job] = []
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._shutdown = False
        self._monitor: threading.Thread | None = None
        self.polls = 0
        self._poll_min = self.profile.poll_min or self.backend.scheduler.poll_min

    # ------------------------------------------------------------ public API
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ClusterFuture:
        job = self._start(fn, [(args, kwargs)], ntasks=1, name=getattr(fn, "__name__", "call"))
        return job.futures[0]

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        futures = self.map_futures(fn, *iterables, chunksize=chunksize)
        deadline = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            for fut in futures:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                yield fut.result(left)

        return results()

    def map_futures(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], chunksize: int | None = None
    ) -> list[ClusterFuture]:
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
        return self._start(fn, calls, ntasks=ntasks, name=getattr(fn, "__name__", "map")).futures

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            jobs = list(self._jobs)
        if cancel_futures:
            for job in jobs:
                for fut in job.futures:
                    fut.cancel()
        self._wakeup.set()
        if wait:
            for job in jobs:
                cf.wait(job.futures)
            if self._monitor is not None:
                self._monitor.join()

    # ------------------------------------------------------------ submission
    def _start(self, fn: Callable[..., Any], calls: list[Call], *, ntasks: int, name: str) -> _Job:
        if self._shutdown:
            raise RuntimeError("cannot submit after shutdown")
        fn = getattr(fn, "__clustrix_function__", fn)
        backend = self.backend
        python, remote = backend.remote()
        strategies = choose_strategies(remote, self.profile.serializer, backend.serializers)
        tasks = split_tasks(len(calls), ntasks)
        key = secrets.token_bytes(32)
        payload = encode_payload(fn, calls, tasks, key=key, remote=remote, strategies=strategies)
        job_name = safe_name(
            self.profile.job_name if self.profile.job_name != "clustrix" else f"clustrix-{name}"
        )
        job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)
        job_dir = f"{backend.work_dir()}/{job_name}-{job_id}-{secrets.token_hex(8)}"
        values = {
            k: v for k, v in profile_to_dict(self.profile).items() if v not in (None, (), {}, [])
        }
        record = JobRecord(
            job_id=job_id,
            profile=self.profile.name,
            profile_values=json.loads(json.dumps(values, default=list)),
            scheduler=self.profile.scheduler,
            transport=self.profile.transport,
            job_dir=job_dir,
            key=key.hex(),
            function=f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', name)}",
            ncalls=len(calls),
            ntasks=len(tasks),
            tasks=[list(t) for t in tasks],
            python=python,
        )
        t = backend.transport
        t.makedirs(job_dir, mode=0o700)
        t.put_bytes(f"{job_dir}/key", key.hex().encode(), mode=0o600)
        t.put_bytes(f"{job_dir}/runner.py", RUNNER_SOURCE, mode=0o600)
        t.put_bytes(f"{job_dir}/payload.bin", payload, mode=0o600)
        registry = get_registry()
        registry.add(record)
        job = _Job(self, record, len(calls))
        if len(tasks) > 1:
            job.progress = Progress(f"{name} map", len(calls), len(tasks))
        spec = JobSpec(
            job_id=job_id,
            name=job_name,
            job_dir=job_dir,
            ntasks=len(tasks),
            python=python,
            profile=self.profile,
        )
        try:
            job.submissions = backend.scheduler.submit(spec)
        except BaseException as exc:
            registry.update(
                job_id, state="SUBMIT_FAILED", reason=str(exc)[:1000], finished_at=time.time()
            )
            raise
        record.submissions = [_sub_dict(s) for s in job.submissions]
        record.state = "SUBMITTED"
        registry.update(job_id, submissions=record.submissions, state="SUBMITTED")
        job.spec = spec
        get_plugin_manager().hook.clustrix_job_submitted(record=record)
        logger.info(
            "submitted %s (%d calls in %d tasks) as %s",
            job_id,
            len(calls),
            len(tasks),
            ",".join(record.native_ids),
        )
        return self._track(job)

    def _track(self, job: _Job) -> _Job:
        """Hand a submitted job to the monitor thread (started on first use)."""
        with self._lock:
            self._jobs.append(job)
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._watch, name="clustrix-monitor", daemon=True
                )
                self._monitor.start()
        self._wakeup.set()
        return job

    def _adopt(self, record: JobRecord) -> _Job:
        """Watch a job submitted by another process (re-attach by id)."""
        job = _Job(self, record, record.ncalls)
        job.submissions = [
            Submission(
                native_id=s["native_id"], job_dir=record.job_dir, first=s["first"], count=s["count"]
            )
            for s in record.submissions
        ]
        python = record.python or self.backend.base_python
        job.spec = JobSpec(
            job_id=record.job_id,
            name=safe_name(record.function.rsplit(".", 1)[-1]),
            job_dir=record.job_dir,
            ntasks=record.ntasks,
            python=python,
            profile=self.profile,
        )
        if not job.submissions:
            raise ClustrixError(
                f"job {record.job_id} was never accepted by the scheduler ({record.state}: {record.reason})"
            )
        return self._track(job)

    def _cancel_future(self, fut: ClusterFuture) -> None:
        job = fut.job
        others = [f for f in job.futures if f is not fut and not f.done()]
        if not others and not job.finished:
            self._cancel_job(job)

    def _cancel_job(self, job: _Job) -> None:
        """Cancel the real job (every submission of it) and record that."""
        self.backend.scheduler.cancel(job.submissions)
        get_registry().update(job.record.job_id, state="CANCELLED", finished_at=time.time())

    # ------------------------------------------------------------ monitoring
    def _watch(self) -> None:
        """Poll all active jobs with one status query per interval: every ``poll_min`` seconds
        while something changed in the last second, then backing off by 1.5x to ``poll_max``."""
        interval = self._poll_min
        last_change = time.monotonic()
        while True:
            with self._lock:
                active = [j for j in self._jobs if not j.finished]
                if not active:
                    if self._shutdown:
                        return
                    self._wakeup.clear()
            if not active:
                self._wakeup.wait(1.0)
                interval, last_change = self._poll_min, time.monotonic()
                continue
            changed = False
            try:
                changed = self._poll(active)
            except Exception as exc:  # keep watching: nothing is lost, the registry has every job
                logger.warning("clustrix: status query failed (will retry): %s", exc)
            if changed:
                last_change = time.monotonic()
            if time.monotonic() - last_change < _FAST_POLL_SECONDS:
                interval = self._poll_min
            else:
                interval = min(interval * 1.5, self.profile.poll_max)
            self._wakeup.wait(interval)
            self._wakeup.clear()

    def _poll(self, active: list[_Job]) -> bool:
        subs = [s for j in active for s in j.submissions]
        self.polls += 1
        statuses = self.backend.scheduler.statuses(subs)
        changed = False
        for job in active:
            job_status = {s.native_id: statuses.get(s.native_id) for s in job.submissions}
            if any(st is None for st in job_status.values()):
                continue
            if job.last_status != job_status:
                changed = True
            job.last_status = job_status  # type: ignore[assignment]
            if all(st.final for st in (v.state for v in job_status.values())):  # type: ignore[union-attr]
                self._finalize(job, job_status)  # type: ignore[arg-type]
                changed |= job.finished or job.lost_polls == 0  # waiting out a lag backs off
            elif job.record.ntasks > 1:
                changed |= self._collect_ready(job)
            if job.progress is not None:
                self._report_progress(job)
        return changed

    def _report_progress(self, job: _Job) -> None:
        assert job.progress is not None
        done = [f for f in job.futures if f.done()]
        failed = sum(1 for f in done if f.cancelled() or f.exception() is not None)
        running = sum(
            1
            for st in job.last_status.values()
            for t, s in st.tasks.items()
            if s is JobState.RUNNING and t not in job.collected
        )
        if not running:
            running = sum(1 for st in job.last_status.values() if st.state is JobState.RUNNING)
        job.progress.update(
            done=len(done), failed=failed, running=running, finished_tasks=len(job.collected)
        )
        if job.finished:
            job.progress.close()

    def _collect_ready(self, job: _Job) -> bool:
        names = set(self.backend.transport.listdir(job.record.job_dir))
        ready = [
            t for t in range(job.record.ntasks) if t not in job.collected and f"result.{t}" in names
        ]
        for t in ready:
            _deliver_all(self._collect_task(job, t) or ())
        return bool(ready)

    def _collect_task(
        self, job: _Job, task: int
    ) -> list[tuple[ClusterFuture, Any, BaseException | None]] | None:
        """Read and verify result.TASK: what to deliver to each of its futures; None when absent."""
        path = f"{job.record.job_dir}/result.{task}"
        try:
            blob = self.backend.transport.get_bytes(path)
        except (FileNotFoundError, OSError, TransportError):
            return None
        start, stop = job.record.tasks[task]
        futures = job.futures[start:stop]
        job.collected.add(task)
        try:
            report = decode_result(blob, bytes.fromhex(job.record.key), f"{path}")
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
        scheduler's ``lost_grace`` seconds) before calling a job without results lost."""
        now = time.monotonic()
        job.lost_since = job.lost_since or now
        job.lost_polls += 1
        return (
            job.lost_polls <= _LOST_GRACE_POLLS
            or now - job.lost_since < self.backend.scheduler.lost_grace
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
                "job %s ended %s; resubmitting (%d retries left)",
                job.record.job_id,
                worst.state,
                job.retries_left,
            )
            assert job.spec is not None
            job.submissions = self.backend.scheduler.submit(job.spec)
            job.record.submissions = [_sub_dict(s) for s in job.submissions]
            get_registry().update(job.record.job_id, submissions=job.record.submissions)
            job.lost_polls, job.lost_since = 0, None
            return
        for t in missing:
            start, stop = job.record.tasks[t]
            state = worst.state
            for sub in job.submissions:
                if sub.first <= t < sub.first + sub.count:
                    st = statuses[sub.native_id]
                    state = st.tasks.get(t, st.state)
            if state is JobState.COMPLETED:
                state = JobState.LOST
            tail = job.read_log("err", t, tail=3000)
            reason = worst.reason or ""
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
        get_registry().update(
            job.record.job_id, state=final, reason=worst.reason[:1000], finished_at=time.time()
        )
        _deliver_all(deliveries)  # after the registry knows, so a process may exit at once
        get_plugin_manager().hook.clustrix_job_finished(record=job.record, state=final)
        if self.profile.cleanup == "always" or (
            self.profile.cleanup == "on_success" and final == "COMPLETED"
        ):
            self.backend.transport.remove_tree(job.record.job_dir)


def _worst(statuses: dict[str, JobStatus]) -> JobStatus:
    values = list(statuses.values())
    bad = [s for s in values if s.state is not JobState.COMPLETED]
    return bad[0] if bad else values[0]


def _deliver(fut: ClusterFuture, *, value: Any = None, exc: BaseException | None = None) -> None:
    if fut.done() or not fut.set_running_or_notify_cancel():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def _deliver_all(deliveries: Iterable[tuple[ClusterFuture, Any, BaseException | None]]) -> None:
    for fut, value, exc in deliveries:
        _deliver(fut, value=value, exc=exc)


def _sub_dict(s: Submission) -> dict[str, Any]:
    return {"native_id": s.native_id, "first": s.first, "count": s.count}


__all__ = ["ClusterExecutor", "ClusterFuture"]
