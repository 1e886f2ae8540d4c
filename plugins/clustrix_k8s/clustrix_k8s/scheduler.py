"""The Kubernetes scheduler: a call is a ``batch/v1`` Job, a ``map`` one Indexed Job.

A job's inputs (key, runner, payload, calls) go into one Secret, mounted read-only into its pods;
the runner writes the sealed outcome framed on stdout, which comes back through the pod log
(:func:`clustrix_core.store.split_framed_output`). Everything created carries the labels
``app.kubernetes.io/managed-by=clustrix`` and ``clustrix.io/job-id=<id>``.

A poll of every watched job costs one or two API calls: one Job list (by label) and, when a
watched Job shows a new failure or every ``POD_LIST_INTERVAL`` seconds while one is unfinished,
one Pod list (by label, pods not ``Succeeded``) that tells running tasks and the pod-level reasons of failures (OOMKilled, DeadlineExceeded, exit statuses) and of
pods stuck pending (Unschedulable, ErrImagePull/ImagePullBackOff, CreateContainerConfigError);
a job whose pods stay stuck for the profile's ``pending_timeout`` is deleted and fails with that
reason.

The official ``kubernetes`` client is imported only when a profile talks to a cluster."""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clustrix_core.errors import ConfigError, SerializationError, SubmissionError, TransportError
from clustrix_core.scheduler import (
    JobSpec,
    JobState,
    JobStatus,
    Scheduler,
    Submission,
    runs_of,
)
from clustrix_core.store import JobStore, split_framed_output

if TYPE_CHECKING:
    from clustrix_core.config import Profile
    from clustrix_core.serialization import RemoteInfo

MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_ID = "clustrix.io/job-id"
TASK_OFFSET = "clustrix.io/task-offset"
INDEX = "batch.kubernetes.io/job-completion-index"
JOB_NAME = "batch.kubernetes.io/job-name"
MOUNT = "/clustrix/job"
DEFAULT_IMAGE = "python:3.11-slim"
SECRET_BYTES = 1024 * 1024
"""The API server's limit on a Secret's data (``MaxSecretSize``)."""
MAX_TASK_BYTES = SECRET_BYTES - 8 * 1024
GPU_RESOURCE = "nvidia.com/gpu"
POD_LIST_INTERVAL = 5.0
"""Seconds between Pod lists while no watched job has a new failure (pods pending or running are
looked at that often; a failure is explained at the poll that sees it)."""
DEFAULT_PENDING_TIMEOUT = 300.0
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Container waiting reasons that do not pass by themselves (the kubelet retries for ever)."""
GAVE_UP = "failed.clustrix.io/"
"""Annotation prefix on a job's Secret naming each Job clustrix deleted after its pods stayed
stuck pending for ``pending_timeout`` (the value is the reason)."""
CANCELLED = "cancelled.clustrix.io/"
"""Annotation prefix on a job's Secret naming each Job clustrix cancelled (another process, or
another scheduler object, still answers CANCELLED once the Job is gone)."""
_cancelled: set[tuple[str, str]] = set()
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

# Runner exit 1 means "a call raised": its outcome is in the log, so the pod has succeeded (a
# failed pod would count against backoffLimit and end the other indexes of a map).
_WRAPPER = '"$0" "$@"; s=$?; if [ "$s" -eq 1 ]; then exit 0; fi; exit "$s"'

ENV_MOUNT = "/clustrix/env"
"""Where the profile's ``environment_pvc`` is mounted (its subdirectory ``ENV_SUBDIR``)."""
ENV_SUBDIR = "clustrix-envs"
INPUTS_MOUNT = "/clustrix/inputs"
"""Where a job's directory on the profile's ``inputs_pvc`` is mounted (read-only)."""
INPUTS_SUBDIR = "clustrix-inputs"
INPUTS_DIR = "clustrix.io/inputs-dir"
"""Annotation on a job's Secret: its inputs directory, relative to the ``inputs_pvc`` root."""
SECRET_INPUTS = ("key", "runner.py")
"""What stays in the Secret when the inputs go to a volume (the HMAC key never goes there)."""
EXIT_ENVIRONMENT = 97
"""The pod's exit status when preparing the environment (or the inputs) failed."""
_INPUTS_DIR_NAME = re.compile(r"clustrix-[a-z0-9-]+-[0-9a-f]{16}")

# Pod start with an environment and/or inputs on a volume. $0 is the Python; the environment's
# requirements, digest and cache come in CLUSTRIX_REQUIREMENTS / CLUSTRIX_ENV_DIGEST /
# CLUSTRIX_ENV_CACHE, the inputs directory in CLUSTRIX_INPUTS. pip's output goes to a file
# (shown only when it fails), so the pod log holds the function's output and the result only.
_SETUP = r"""set -u
PY=$0
T=$(mktemp -d "${TMPDIR:-/tmp}/clustrix.XXXXXX") || { echo "clustrix: mktemp failed" >&2; exit 97; }
fail() { echo "clustrix: $*" >&2; rm -rf "$T"; exit 97; }
if [ -n "${CLUSTRIX_REQUIREMENTS:-}" ]; then
  printf '%s\n' "$CLUSTRIX_REQUIREMENTS" > "$T/requirements.txt" || fail "cannot write $T"
  pipi() {
    "$PY" -m pip install --disable-pip-version-check --no-input -q --target "$1" \
      -r "$T/requirements.txt" > "$T/pip.log" 2>&1 && return 0
    tail -n 40 "$T/pip.log" >&2; return 1
  }
  what=$(tr '\n' ' ' < "$T/requirements.txt")
  if [ -n "${CLUSTRIX_ENV_CACHE:-}" ]; then
    tag=$("$PY" -c 'import sys, platform; print("%s-%s" % (sys.implementation.cache_tag, platform.machine()))') \
      || fail "the image's Python $PY does not run"
    E="$CLUSTRIX_ENV_CACHE/env-$CLUSTRIX_ENV_DIGEST-$tag"
    while [ ! -e "$E/.clustrix-ready" ]; do
      if mkdir "$E.lock" 2>/dev/null; then
        if [ ! -e "$E/.clustrix-ready" ]; then
          rm -rf "$E"
          if pipi "$E"; then
            echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) by pod ${HOSTNAME:-?}: $what" > "$E/.clustrix-building" \
              && mv "$E/.clustrix-building" "$E/.clustrix-ready" || { rmdir "$E.lock"; fail "cannot write $E"; }
          else
            rm -rf "$E"; rmdir "$E.lock"; fail "installing the environment ($what) into $E failed"
          fi
        fi
        rmdir "$E.lock"
      else
        # a lock left by a pod killed while building (older than 30 min) is broken
        if [ -n "$(find "$E.lock" -maxdepth 0 -mmin +30 2>/dev/null)" ]; then rmdir "$E.lock" 2>/dev/null; fi
        sleep 1
      fi
    done
  else
    E="$T/env"
    pipi "$E" || fail "installing the environment ($what) failed"
  fi
  PYTHONPATH="$E${PYTHONPATH:+:$PYTHONPATH}"; CLUSTRIX_ENV=$E; export PYTHONPATH CLUSTRIX_ENV
fi
"""
_JOB_SCRIPT = (
    _SETUP
    + r"""RUNNER=$1; IN=$2; shift 2
if [ -n "${CLUSTRIX_INPUTS:-}" ]; then
  mkdir "$T/in" || fail "cannot write $T"
  for f in "$CLUSTRIX_INPUTS"/*; do ln -s "$f" "$T/in/" || fail "cannot link $f"; done
  ln -s "$IN/key" "$T/in/key" || fail "cannot link the key"
  IN="$T/in"
fi
"$PY" "$RUNNER" --inputs "$IN" "$@"; s=$?
rm -rf "$T"
if [ "$s" -eq 1 ]; then exit 0; fi; exit "$s"
"""
)
_PROBE_SCRIPT = _SETUP + '"$PY" "$@"; s=$?; rm -rf "$T"; exit "$s"\n'


def object_name(job_id: str, suffix: str = "") -> str:
    """A DNS-1123 name (at most 63 characters, a label value too) for the objects of a job."""
    base = re.sub(r"[^a-z0-9-]+", "-", job_id.lower()).strip("-") or "job"
    name = f"clustrix-{base}{suffix}"[:63].rstrip("-")
    if not _DNS1123.fullmatch(name):  # pragma: no cover - the substitution above guarantees it
        raise SubmissionError(f"cannot derive a Kubernetes name from job id {job_id!r}")
    return name


def parse_indexes(text: str | None) -> list[int]:
    """``"0-2,5"`` (completedIndexes/failedIndexes) as ``[0, 1, 2, 5]``."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


_CPU_QUANTITY = re.compile(r"(\d+(\.\d{1,3})?|\d+m)")


def memory_quantity(nbytes: int) -> str:
    """Bytes as a Kubernetes quantity, exact: the largest binary (``Gi``, ``Mi``) or decimal
    (``G``, ``M``) suffix that divides it, else plain bytes (``"1.5GiB"`` -> ``1536Mi``,
    ``"8GB"`` -> ``8G``, ``1000`` -> ``1k``)."""
    units = (
        ("Ti", 1024**4),
        ("T", 1000**4),
        ("Gi", 1024**3),
        ("G", 1000**3),
        ("Mi", 1024**2),
        ("M", 1000**2),
        ("Ki", 1024),
        ("k", 1000),
    )
    for unit, size in units:
        if nbytes % size == 0:
            return f"{nbytes // size}{unit}"
    return str(nbytes)


def cpu_quantity(value: Any) -> str:
    """Cores as a Kubernetes quantity: whole cores as such, fractions as millicores
    (``0.5`` -> ``500m``, ``"250m"`` as is)."""
    if isinstance(value, bool):
        raise ConfigError(f"cpu={value!r} is not a number of cores")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"cpu={value!r} must be positive")
        return str(value)
    if isinstance(value, float):
        milli = round(value * 1000)
        if milli <= 0 or abs(milli - value * 1000) > 1e-6:
            raise ConfigError(f"cpu={value!r} must be positive, in steps of 0.001 cores")
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    text = str(value).strip()
    if not _CPU_QUANTITY.fullmatch(text):
        raise ConfigError(f"cpu={value!r} is not a CPU quantity like 2, 0.5 or '500m'")
    if text.endswith("m"):
        if int(text[:-1]) <= 0:
            raise ConfigError(f"cpu={value!r} must be positive")
        return text
    return cpu_quantity(float(text)) if "." in text else cpu_quantity(int(text))


def task_of(pod: Mapping[str, Any]) -> int | None:
    """The clustrix task a pod of a job runs (task offset + completion index), or None."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get(TASK_OFFSET, "0")) + int(labels.get(INDEX, "0"))
    except ValueError:
        return None


def describe_pod(pod: Mapping[str, Any]) -> tuple[str, JobState | None, str, int | None]:
    """What a pod says about its task: ``(kind, state, text, exit_code)`` with ``kind`` one of
    ``"stuck"`` (pending on something that does not pass by itself: Unschedulable, an image
    that cannot be pulled, a container that cannot be configured), ``"failed"``, ``"running"``,
    ``"pending"``, ``"succeeded"``; ``state`` the task's state for a failure."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return "succeeded", None, "", 0
    images = {
        c.get("name"): c.get("image", "")
        for key in ("initContainers", "containers")
        for c in (pod.get("spec") or {}).get(key) or []
    }
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    if phase == "Failed":
        if status.get("reason") == "DeadlineExceeded":
            text = f"DeadlineExceeded: {status.get('message') or 'the pod ran out of time'}"
            return "failed", JobState.TIMEOUT, text, None
        for cs in statuses:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("reason") == "OOMKilled":
                code = term.get("exitCode")
                return "failed", JobState.OUT_OF_MEMORY, f"OOMKilled (exit status {code})", code
        for cs in statuses:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("exitCode"):
                code = int(term["exitCode"])
                why = term.get("reason") or "Error"
                msg = f": {term['message']}" if term.get("message") else ""
                if code == EXIT_ENVIRONMENT and not msg:
                    job_id = ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_ID)
                    msg = (
                        ": preparing the profile's environment or inputs at pod start failed "
                        f"(pip's error is in the pod log: clustrix logs {job_id or 'JOB_ID'})"
                    )
                return "failed", JobState.FAILED, f"{why} (exit status {code}){msg}", code
        why = status.get("reason") or "Failed"
        return "failed", JobState.FAILED, f"{why}: {status.get('message') or ''}".rstrip(": "), None
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return "stuck", JobState.FAILED, f"Unschedulable: {cond.get('message') or ''}", None
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason")
        if why in STUCK_WAITING:
            image = images.get(cs.get("name")) or cs.get("image") or "?"
            text = f"{why} (image {image!r}): {waiting.get('message') or ''}".rstrip(": ")
            return "stuck", JobState.FAILED, text, None
    if phase == "Running":
        return "running", None, "", None
    return "pending", None, "", None


def _conditions(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A Job's conditions that hold, by type."""
    status = job.get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}


def _api_error(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)[:1000]
    return str(exc)


def _status_code(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


_calls = threading.Condition()
_inflight = 0
_exiting = False


def _at_exit() -> None:
    """Let API requests in flight end before the interpreter finalizes, and hold daemon threads
    (the executor's monitor) that would start new ones. A daemon thread still inside an SSL read
    when the interpreter finalizes aborts the process (exit status 134, "Fatal Python error:
    Aborted") at the end of a script that did not shut its executor down."""
    global _exiting
    with _calls:
        _exiting = True
        _calls.wait_for(lambda: _inflight == 0, timeout=10)


atexit.register(_at_exit)


class _Counted:
    """An API object whose calls are counted (see :func:`_at_exit`)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            global _inflight
            with _calls:
                if _exiting and threading.current_thread().daemon:
                    _calls.wait_for(lambda: False)  # the process is ending: never returns
                _inflight += 1
            try:
                return attr(*args, **kwargs)
            finally:
                with _calls:
                    _inflight -= 1
                    _calls.notify_all()

        return call


class _Api:
    """The official client, bound to the profile's kubeconfig/context (or in-cluster)."""

    def __init__(self, profile: Profile) -> None:
        from kubernetes import client, config

        kubeconfig = profile.option("kubeconfig")
        context = profile.option("context")
        in_cluster = profile.option("in_cluster")
        if in_cluster is None:
            in_cluster = not (kubeconfig or context) and bool(
                os.environ.get("KUBERNETES_SERVICE_HOST")
            )
        if not in_cluster:
            api = config.new_client_from_config(
                config_file=os.path.expanduser(kubeconfig) if kubeconfig else None,
                context=context,
            )
        else:
            conf = client.Configuration()
            config.load_incluster_config(client_configuration=conf)
            api = client.ApiClient(conf)
        # Any: manifests are plain dicts, and raw responses (_preload_content=False) are read
        self.client: Any = api
        self.core: Any = _Counted(client.CoreV1Api(api))
        self.batch: Any = _Counted(client.BatchV1Api(api))
        from kubernetes.client.exceptions import ApiException

        self.ApiException = ApiException

    @staticmethod
    def raw(resp: Any) -> Any:
        return json.loads(resp.data)


class SecretStore(JobStore):
    """A job's inputs in one Secret (its name is the location); results and output from the logs
    of the job's pods (found by the ``clustrix.io/job-id`` label)."""

    max_task_bytes: int | None = MAX_TASK_BYTES

    def __init__(self, scheduler: K8sScheduler) -> None:
        self.scheduler = scheduler
        if scheduler.inputs_volume() is not None:
            self.max_task_bytes = None  # inputs go to the volume: no Secret limit
        self._job_ids: dict[str, str] = {}
        self._inputs_dirs: dict[str, str | None] = {}
        self._results: dict[tuple[str, int], tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def api(self) -> _Api:
        return self.scheduler.api

    @property
    def namespace(self) -> str:
        return self.scheduler.namespace

    def stage(self, *, job_id: str, name: str, inputs: Mapping[str, bytes]) -> str:
        secret_name = object_name(job_id)
        annotations = {"clustrix.io/name": name}
        inputs_dir: str | None = None
        if self.scheduler.inputs_volume() is not None:
            inputs_dir = self._stage_on_volume(secret_name, inputs)
            annotations[INPUTS_DIR] = inputs_dir
            inputs = {k: v for k, v in inputs.items() if k in SECRET_INPUTS}
        total = sum(len(v) for v in inputs.values())
        if total > MAX_TASK_BYTES:
            raise SerializationError(
                f"the job's inputs take {total} bytes, more than the {MAX_TASK_BYTES} bytes a "
                "Kubernetes Secret can hold: pass smaller arguments (load large data remotely), "
                "split the map into several smaller maps, or name a volume for inputs in the "
                "profile (inputs_pvc = CLAIM and inputs_local_path = where this host sees it)"
            )
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "labels": self.scheduler.labels(job_id),
                "annotations": annotations,
            },
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in inputs.items()},
        }
        try:
            self.api.core.create_namespaced_secret(self.namespace, body)
        except self.api.ApiException as exc:
            if inputs_dir is not None:
                self._remove_inputs(inputs_dir)
            raise TransportError(
                f"k8s: creating Secret {self.namespace}/{secret_name} failed: {_api_error(exc)}"
            ) from exc
        self._job_ids[secret_name] = job_id
        self._inputs_dirs[secret_name] = inputs_dir
        return secret_name

    # ---- large inputs on a volume (inputs_pvc, seen here at inputs_local_path)
    def _inputs_root(self) -> tuple[str, str]:
        """(the volume's root as this host sees it, the private directory for job inputs in it)."""
        volume = self.scheduler.inputs_volume()
        assert volume is not None
        local = os.path.realpath(os.path.expanduser(volume[1]))
        if not os.path.isdir(local):
            raise ConfigError(
                f"inputs_local_path={volume[1]!r} is not a directory: it must be where this host "
                f"sees the volume of the claim {volume[0]!r} (e.g. an NFS mount of it)"
            )
        transport = self.scheduler.transport
        root = transport.private_dir(f"{local}/{INPUTS_SUBDIR}")
        return local, root

    def _stage_on_volume(self, secret_name: str, inputs: Mapping[str, bytes]) -> str:
        """Write the inputs but the key and runner into a new private directory on the inputs
        volume; its path relative to the volume's root (the pods' ``subPath``)."""
        local, root = self._inputs_root()
        transport = self.scheduler.transport
        path = f"{root}/{secret_name}-{secrets.token_hex(8)}"
        transport.mkdir_exclusive(path, mode=0o700)
        rel = os.path.relpath(path, local)
        try:
            for file, data in inputs.items():
                if file not in SECRET_INPUTS:
                    transport.put_bytes(f"{path}/{file}", data, mode=0o600)
        except (OSError, TransportError) as exc:
            self._remove_inputs(rel)
            raise TransportError(f"staging the job's inputs in {path} failed: {exc}") from exc
        return rel

    def inputs_dir(self, location: str) -> str | None:
        """The job's inputs directory relative to the inputs volume's root, or None (all its
        inputs are in the Secret). Asked of the Secret when this process did not stage it."""
        if self.scheduler.inputs_volume() is None:
            return None
        if location not in self._inputs_dirs:
            try:
                secret = self.api.raw(
                    self.api.core.read_namespaced_secret(
                        location, self.namespace, _preload_content=False
                    )
                )
            except self.api.ApiException:
                return None  # gone: nothing to mount or clean (not remembered: may be transient)
            annotations = secret["metadata"].get("annotations") or {}
            self._inputs_dirs[location] = annotations.get(INPUTS_DIR)
        return self._inputs_dirs[location]

    def _remove_inputs(self, rel: str) -> None:
        """Remove a job's inputs directory (only a clustrix job directory in the private root)."""
        local, root = self._inputs_root()
        path = os.path.join(local, rel)
        if os.path.dirname(path) != root or not _INPUTS_DIR_NAME.fullmatch(os.path.basename(path)):
            raise ConfigError(f"refusing to remove {path!r}: not a clustrix inputs directory")
        try:
            self.scheduler.transport.remove_tree(path)
        except (OSError, TransportError):
            pass

    def job_id(self, location: str) -> str:
        known = self._job_ids.get(location)
        if known:
            return known
        try:
            secret = self.api.raw(
                self.api.core.read_namespaced_secret(
                    location, self.namespace, _preload_content=False
                )
            )
            job_id = secret["metadata"]["labels"][JOB_ID]
        except (self.api.ApiException, KeyError):
            job_id = location[len("clustrix-") :] if location.startswith("clustrix-") else location
        self._job_ids[location] = job_id
        return job_id

    def pods(
        self, location: str, indexes: Sequence[int] | None = None
    ) -> dict[int, list[dict[str, Any]]]:
        """The job's pods by task, newest first (one list call); only those with these
        completion ``indexes`` when given."""
        job_id = self.job_id(location)
        selector = f"{MANAGED_BY}=clustrix,{JOB_ID}={job_id}"
        if indexes:
            selector += f",{INDEX} in ({','.join(str(i) for i in sorted(set(indexes)))})"
        resp = self.api.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for pod in self.api.raw(resp).get("items", []):
            task = task_of(pod)
            if task is not None:
                out.setdefault(task, []).append(pod)
        for group in out.values():
            group.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        return out

    def pod_log(self, pod: dict[str, Any]) -> str:
        try:
            resp = self.api.core.read_namespaced_pod_log(
                pod["metadata"]["name"], self.namespace, _preload_content=False
            )
        except self.api.ApiException:
            return ""
        return bytes(resp.data).decode("utf-8", "replace")

    def _scan(self, location: str, tasks: Sequence[int]) -> None:
        want = [t for t in tasks if (location, t) not in self._results]
        if not want:
            return
        # the scheduler's last poll says which tasks ended (completedIndexes/failedIndexes):
        # only their pods are listed, and nothing when none ended since the last scan
        ended = self.scheduler.ended_tasks(location)
        indexes: list[int] | None = None
        if ended is not None:
            want = [t for t in want if t in ended]
            if not want:
                return
            found = [ended[t] for t in want]
            if all(i is not None for i in found) and len(found) <= 200:
                indexes = [i for i in found if i is not None]
        job_id = self.job_id(location)
        by_task = self.pods(location, indexes)

        def read(t: int) -> None:
            for pod in by_task.get(t, []):
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    continue
                printed, blob = split_framed_output(self.pod_log(pod), job_id, t)
                if blob is not None:
                    with self._lock:
                        self._results[(location, t)] = (printed, blob)
                    return

        if len(want) < 4:
            for t in want:
                read(t)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="clustrix-k8s-log") as pool:
            list(pool.map(read, want))

    def ready(self, location: str, tasks: Sequence[int]) -> set[int]:
        self._scan(location, tasks)
        return {t for t in tasks if (location, t) in self._results}

    def fetch(self, location: str, task: int) -> bytes | None:
        # the executor fetches the tasks of a finished job one by one: read every ended task's
        # log at the first (one pod list for all, logs read concurrently)
        ended = self.scheduler.ended_tasks(location)
        self._scan(location, sorted({task, *(ended or ())}))
        got = self._results.get((location, task))
        return got[1] if got else None

    def log(self, location: str, stream: str, task: int, *, tail: int | None = None) -> str:
        """The pod log holds stdout and stderr together: both streams answer with it (what the
        function printed, without the outcome frame)."""
        got = self._results.get((location, task))
        if got is not None:
            text = got[0]
        else:
            pods = self.pods(location).get(task, [])
            if not pods:
                return ""
            text, _ = split_framed_output(self.pod_log(pods[0]), self.job_id(location), task)
        if tail is not None:
            data = text.encode("utf-8", "replace")[-tail:]
            text = data.decode("utf-8", "replace")
        return text

    def cleanup(self, location: str) -> None:
        if not location.startswith("clustrix-") or not _DNS1123.fullmatch(location):
            raise ConfigError(f"refusing to remove {location!r}: not a clustrix Secret name")
        job_id = self.job_id(location)
        try:
            jobs = self.api.raw(
                self.api.batch.list_namespaced_job(
                    self.namespace,
                    label_selector=f"{MANAGED_BY}=clustrix,{JOB_ID}={job_id}",
                    _preload_content=False,
                )
            )
            for job in jobs.get("items", []):
                self.scheduler.delete_job(job["metadata"]["name"])
        except self.api.ApiException as exc:
            raise TransportError(f"k8s: listing the Jobs of {job_id} failed: {_api_error(exc)}")
        inputs_dir = self.inputs_dir(location)
        if inputs_dir is not None:
            self._remove_inputs(inputs_dir)
        try:
            self.api.core.delete_namespaced_secret(location, self.namespace)
        except self.api.ApiException as exc:
            if _status_code(exc) != 404:
                raise TransportError(
                    f"k8s: deleting Secret {location} failed: {_api_error(exc)}"
                ) from exc
        with self._lock:
            for key in [k for k in self._results if k[0] == location]:
                del self._results[key]
        self._inputs_dirs.pop(location, None)

    def describe(self) -> str:
        where = f"Secrets in namespace {self.namespace}"
        volume = self.scheduler.inputs_volume()
        if volume is not None:
            where += f" and the volume {volume[0]} (at {volume[1]})"
        return f"{where} (results from pod logs)"


class K8sScheduler(Scheduler):
    name = "k8s"
    poll_min = 0.1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api: _Api | None = None
        self._api_lock = threading.Lock()
        self._finals: dict[str, JobStatus] = {}
        self._stuck_since: dict[str, float] = {}
        self._seen_failed: dict[str, tuple[Any, Any]] = {}
        self._pods_listed = 0.0
        self._last_pods: dict[str, list[dict[str, Any]]] = {}
        self._ended: dict[str, dict[int, int | None]] = {}
        self._notes: dict[tuple[str, int], str] = {}
        self._requirements: list[str] | None = None

    # ---- options
    @property
    def api(self) -> _Api:
        with self._api_lock:
            if self._api is None:
                try:
                    self._api = _Api(self.profile)
                except ImportError as exc:
                    raise ConfigError(
                        "the k8s scheduler needs the official client: pip install kubernetes"
                    ) from exc
                except Exception as exc:
                    raise TransportError(f"k8s: cannot load the cluster's config: {exc}") from exc
            return self._api

    @property
    def namespace(self) -> str:
        return str(self.profile.option("namespace") or "default")

    @property
    def image(self) -> str:
        return str(self.profile.option("image") or DEFAULT_IMAGE)

    def _table(self, key: str) -> dict[str, str]:
        value = self.profile.option(key) or {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} must be a table of name = value")
        return {str(k): str(v) for k, v in value.items()}

    def inputs_volume(self) -> tuple[str, str] | None:
        """(claim, where this host sees it) of the profile's volume for inputs, or None."""
        claim = self.profile.option("inputs_pvc")
        if not claim:
            return None
        return str(claim), str(self.profile.option("inputs_local_path"))

    def requirements(self) -> list[str]:
        """The environment's requirements (with what :meth:`prepare_environment` added)."""
        if self._requirements is not None:
            return self._requirements
        if not self.profile.environment:
            return []
        from clustrix_core.environment import requirement_lines

        return requirement_lines(self.profile.environment)

    def _environment(self, requirements: Sequence[str]) -> tuple[list[dict[str, Any]], Any, Any]:
        """(env vars, volume, volume mount) that prepare ``requirements`` at pod start."""
        if not requirements:
            return [], None, None
        digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:16]
        env = [
            {"name": "CLUSTRIX_REQUIREMENTS", "value": "\n".join(requirements)},
            {"name": "CLUSTRIX_ENV_DIGEST", "value": digest},
        ]
        claim = self.profile.option("environment_pvc")
        if not claim:
            return env, None, None
        env.append({"name": "CLUSTRIX_ENV_CACHE", "value": ENV_MOUNT})
        volume = {"name": "clustrix-env", "persistentVolumeClaim": {"claimName": str(claim)}}
        mount = {"name": "clustrix-env", "mountPath": ENV_MOUNT, "subPath": ENV_SUBDIR}
        return env, volume, mount

    def labels(self, job_id: str, **more: str) -> dict[str, str]:
        return {**self._table("labels"), MANAGED_BY: "clustrix", JOB_ID: job_id, **more}

    def validate(self, profile: Profile) -> None:
        for field in ("partition", "queue", "account", "qos"):
            if getattr(profile, field):
                raise ConfigError(
                    f"{field}={getattr(profile, field)!r} has no meaning for the k8s scheduler"
                )
        if profile.nodes != 1:
            raise ConfigError("nodes: a k8s job runs each task in one pod (nodes = 1)")
        if profile.modules or profile.setup or profile.directives:
            raise ConfigError("modules, setup and directives have no meaning for the k8s scheduler")
        if profile.environment:
            from clustrix_core.environment import requirement_lines

            requirement_lines(profile.environment)  # a missing requirements file fails now
        for key in ("environment_pvc", "inputs_pvc"):
            value = profile.option(key)
            if value is not None and (
                not isinstance(value, str) or not _DNS1123.fullmatch(value) or len(value) > 253
            ):
                raise ConfigError(f"{key}={value!r} is not the name of a PersistentVolumeClaim")
        if profile.option("environment_pvc") and not profile.environment:
            raise ConfigError("environment_pvc: the profile names no environment to cache there")
        local = profile.option("inputs_local_path")
        if bool(profile.option("inputs_pvc")) != bool(local):
            raise ConfigError(
                "inputs_pvc and inputs_local_path go together: the claim the pods mount and "
                "where this host sees the same volume (to write the inputs there)"
            )
        if local is not None and not isinstance(local, str):
            raise ConfigError(f"inputs_local_path={local!r} must be a path")
        for key in ("labels", "annotations", "node_selector"):
            value = profile.option(key) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}={value!r} must be a table of name = value")
            if key != "annotations":
                for k, v in value.items():
                    if not _LABEL_VALUE.fullmatch(str(v)) or len(str(v)) > 63:
                        raise ConfigError(f"{key}: {k} = {v!r} is not a valid label value")
        tolerations = profile.option("tolerations") or []
        if not isinstance(tolerations, Sequence) or isinstance(tolerations, str):
            raise ConfigError(f"tolerations={tolerations!r} must be a list of tables")
        allowed = {"key", "operator", "value", "effect", "tolerationSeconds"}
        for tol in tolerations:
            if not isinstance(tol, Mapping) or set(tol) - allowed:
                raise ConfigError(
                    f"tolerations: {tol!r} must be a table with keys among {sorted(allowed)}"
                )
        for key in ("pending_timeout", "ttl_seconds_after_finished"):
            value = profile.option(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            ):
                raise ConfigError(f"{key}={value!r} must be a number of seconds >= 0")
        if profile.option("pending_timeout") == 0:
            raise ConfigError("pending_timeout=0 must be a positive number of seconds")
        if profile.option("cpu") is not None:
            cpu_quantity(profile.option("cpu"))
        gpu = profile.option("gpu_resource")
        if gpu is not None and not re.fullmatch(r"[a-z0-9.-]+/[A-Za-z0-9_.-]+", str(gpu)):
            raise ConfigError(
                f"gpu_resource={gpu!r} is not an extended resource like nvidia.com/gpu"
            )
        for key in ("service_account", "image", "image_pull_policy"):
            value = profile.option(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{key}={value!r} must be a string")
        policy = profile.option("image_pull_policy")
        if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(
                f"image_pull_policy={policy!r} is not one of Always, IfNotPresent, Never"
            )
        in_cluster = profile.option("in_cluster")
        if in_cluster is not None and not isinstance(in_cluster, bool):
            raise ConfigError(f"in_cluster={in_cluster!r} must be true or false")

    # ---- the job store and the remote Python
    def store(self) -> JobStore:
        if self._store is None:
            self._store = SecretStore(self)
        return self._store

    def default_python(self) -> str:
        return "python"

    def parallelism(self) -> int:
        return self.profile.max_parallel or 16

    def prepare_environment(self, python: str, info: RemoteInfo, requirements: list[str]) -> str:
        """Nothing is built here: every pod installs ``requirements`` when it starts (into the
        ``environment_pvc`` cache once, else into a temporary directory); the next
        :meth:`probe` runs in such a pod, so it sees what the environment provides."""
        self._requirements = sorted(set(requirements))
        return python

    def probe(self, python: str) -> RemoteInfo:
        from clustrix_core.serialization import RemoteInfo

        declared = self.profile.option("remote_python")
        if declared:
            version = str(declared)
            try:
                minor = tuple(int(x) for x in version.split(".")[:2])
            except ValueError:
                raise ConfigError(f"remote_python={declared!r} is not a version like '3.11'")
            # what the environment pins is there (the executor pins the local cloudpickle)
            pinned = {
                name: req.split("==", 1)[1].strip()
                for req in self._requirements or []
                for name in ("cloudpickle", "dill")
                if req.replace(" ", "").startswith(name + "==")
            }
            return RemoteInfo(
                python=version,
                pickle_protocol=5 if minor >= (3, 8) else 4,
                cloudpickle=pinned.get("cloudpickle"),
                dill=pinned.get("dill"),
            )
        reqs = list(self._requirements or [])
        key = (
            f"probe:{self.profile.option('kubeconfig')}:{self.profile.option('context')}:"
            f"{self.namespace}:{self.image}:{python}:{','.join(reqs)}"
        )
        return self.cluster_fact(key, lambda: self._probe_pod(python, reqs))

    def _probe_pod(self, python: str, requirements: Sequence[str] = ()) -> RemoteInfo:
        """A short-lived pod runs the probe snippet (after installing ``requirements`` as a
        job's pods do)."""
        from clustrix_core.serialization import PROBE_SNIPPET, RemoteInfo

        api = self.api
        name = f"clustrix-probe-{secrets.token_hex(4)}"
        env, volume, mount = self._environment(requirements)
        container: dict[str, Any] = {
            "name": "probe",
            "image": self.image,
            "command": [python, "-c", PROBE_SNIPPET],
        }
        if env:
            container["command"] = ["sh", "-c", _PROBE_SCRIPT, python, "-c", PROBE_SNIPPET]
            container["env"] = env
        if mount:
            container["volumeMounts"] = [mount]
        if self.profile.option("image_pull_policy"):
            container["imagePullPolicy"] = self.profile.option("image_pull_policy")
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {
                    **self._table("labels"),
                    MANAGED_BY: "clustrix",
                    "clustrix.io/probe": "true",
                },
            },
            "spec": {
                "restartPolicy": "Never",
                "activeDeadlineSeconds": 3600 if env else 600,
                "containers": [container],
                **({"volumes": [volume]} if volume else {}),
                **self._pod_extras(),
            },
        }
        try:
            api.core.create_namespaced_pod(self.namespace, body)
        except api.ApiException as exc:
            raise TransportError(f"k8s: creating the probe pod failed: {_api_error(exc)}") from exc
        try:
            deadline = time.monotonic() + float(self.profile.option("pending_timeout") or 300)
            if env:
                deadline += 3600  # installing the environment
            delay = 0.05
            while True:
                pod = api.raw(
                    api.core.read_namespaced_pod(name, self.namespace, _preload_content=False)
                )
                status = pod.get("status") or {}
                phase = status.get("phase")
                if phase in ("Succeeded", "Failed"):
                    break
                for cs in status.get("containerStatuses") or []:
                    waiting = (cs.get("state") or {}).get("waiting") or {}
                    if waiting.get("reason") in (
                        "ErrImagePull",
                        "ImagePullBackOff",
                        "InvalidImageName",
                        "CreateContainerConfigError",
                        "CreateContainerError",
                    ):
                        raise TransportError(
                            f"k8s: the probe pod of image {self.image!r} cannot start: "
                            f"{waiting.get('reason')}: {waiting.get('message', '')}"
                        )
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"k8s: the probe pod of image {self.image!r} did not finish "
                        f"(phase {phase}): {json.dumps(status.get('conditions') or [])[:500]}"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
            log = bytes(
                api.core.read_namespaced_pod_log(name, self.namespace, _preload_content=False).data
            ).decode("utf-8", "replace")
        finally:
            try:
                api.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
            except api.ApiException:
                pass
        for line in reversed(log.strip().splitlines()):
            try:
                return RemoteInfo(**json.loads(line))
            except (ValueError, TypeError):
                continue
        if env and "clustrix: installing the environment" in log:
            raise TransportError(
                f"k8s: installing the profile's environment in the probe pod of image "
                f"{self.image!r} failed:\n{log.strip()[-3000:]}"
            )
        raise TransportError(
            f"k8s: the Python {python!r} of image {self.image!r} did not answer the probe "
            f"(phase {phase}): {log[-1000:]!r}"
        )

    # ---- jobs
    @property
    def pending_timeout(self) -> float:
        return float(self.profile.option("pending_timeout") or DEFAULT_PENDING_TIMEOUT)

    def _pod_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if self.profile.option("service_account"):
            extras["serviceAccountName"] = str(self.profile.option("service_account"))
        if self.profile.option("node_selector"):
            extras["nodeSelector"] = self._table("node_selector")
        if self.profile.option("tolerations"):
            extras["tolerations"] = [dict(t) for t in self.profile.option("tolerations")]
        return extras

    def _resources(self) -> dict[str, Any]:
        """Requests and limits: ``cpu`` (the profile's ``cpu`` option, else ``cores``), memory
        (bytes, in Gi/Mi/Ki when exact) and GPUs (``gpu_resource``, limits only: the request
        defaults to it)."""
        p = self.profile
        cpu = p.option("cpu")
        amounts: dict[str, str] = {"cpu": cpu_quantity(cpu if cpu is not None else p.cores)}
        if p.memory:
            amounts["memory"] = memory_quantity(p.memory)
        limits = dict(amounts)
        if p.gpus:
            limits[str(p.option("gpu_resource") or GPU_RESOURCE)] = str(p.gpus)
        return {"requests": amounts, "limits": limits}

    def job_manifest(self, job: JobSpec, *, name: str, first: int, count: int) -> dict[str, Any]:
        """The batch/v1 Job for tasks ``first .. first+count-1`` of ``job``."""
        p = self.profile
        indexed = job.ntasks > 1
        task_args = (
            ["--task-env", "JOB_COMPLETION_INDEX", "--task-offset", str(first)]
            if indexed
            else ["--task", str(first)]
        )
        env, env_volume, env_mount = self._environment(self.requirements())
        store = self.store()
        inputs_dir = store.inputs_dir(job.location) if isinstance(store, SecretStore) else None
        volumes: list[dict[str, Any]] = [
            {
                "name": "clustrix-inputs",
                "secret": {"secretName": job.location, "defaultMode": 0o444},
            }
        ]
        mounts: list[dict[str, Any]] = [
            {"name": "clustrix-inputs", "mountPath": MOUNT, "readOnly": True}
        ]
        if env_volume is not None:
            volumes.append(env_volume)
            mounts.append(env_mount)
        volume = self.inputs_volume()
        if inputs_dir is not None and volume is not None:
            env.append({"name": "CLUSTRIX_INPUTS", "value": INPUTS_MOUNT})
            volumes.append(
                {
                    "name": "clustrix-large-inputs",
                    "persistentVolumeClaim": {"claimName": volume[0], "readOnly": True},
                }
            )
            mounts.append(
                {
                    "name": "clustrix-large-inputs",
                    "mountPath": INPUTS_MOUNT,
                    "subPath": inputs_dir,
                    "readOnly": True,
                }
            )
        if env:  # the environment or the inputs are prepared when the pod starts
            command = ["sh", "-c", _JOB_SCRIPT, job.python, f"{MOUNT}/runner.py", MOUNT]
        else:
            command = ["sh", "-c", _WRAPPER, job.python, f"{MOUNT}/runner.py", "--inputs", MOUNT]
        container: dict[str, Any] = {
            "name": "clustrix",
            "image": self.image,
            "command": [*command, *task_args, "--output", "-"],
            "resources": self._resources(),
            "volumeMounts": mounts,
        }
        if p.env or env:
            container["env"] = [{"name": k, "value": v} for k, v in p.env.items()] + env
        if p.option("image_pull_policy"):
            container["imagePullPolicy"] = str(p.option("image_pull_policy"))
        labels = self.labels(job.job_id, **{TASK_OFFSET: str(first)})
        annotations = {**self._table("annotations"), "clustrix.io/name": job.name}
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": volumes,
            **self._pod_extras(),
        }
        spec: dict[str, Any] = {
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": pod_spec,
            },
        }
        if indexed:
            spec.update(
                completionMode="Indexed",
                completions=count,
                parallelism=min(count, p.max_parallel or count),
                backoffLimitPerIndex=p.retries,
            )
            if p.time:  # a map's time limit is per task: each pod's
                pod_spec["activeDeadlineSeconds"] = int(p.time)
        else:
            spec.update(completions=1, parallelism=1, backoffLimit=p.retries)
            if p.time:
                spec["activeDeadlineSeconds"] = int(p.time)
        ttl = p.option("ttl_seconds_after_finished")
        if ttl is not None:
            spec["ttlSecondsAfterFinished"] = int(ttl)
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": spec,
        }

    def submit(self, job: JobSpec) -> list[Submission]:
        api = self.api
        submissions: list[Submission] = []
        runs = runs_of(job.tasks) if job.only is not None else [(0, job.ntasks)]
        for first, count in runs:
            suffix = "" if job.only is None else f"-r{first}-{secrets.token_hex(2)}"
            name = object_name(job.job_id, suffix)
            body = self.job_manifest(job, name=name, first=first, count=count)
            try:
                api.batch.create_namespaced_job(self.namespace, body)
            except api.ApiException as exc:
                if submissions:
                    self.cancel(submissions)
                raise SubmissionError(
                    f"k8s: creating Job {self.namespace}/{name} failed: {_api_error(exc)}"
                ) from exc
            submissions.append(
                Submission(native_id=name, location=job.location, first=first, count=count)
            )
        return submissions

    def statuses(self, submissions: Sequence[Submission]) -> dict[str, JobStatus]:
        """One Job list for every watched job; then, unless all of them are complete, one Pod
        list (the watched jobs' pods that did not succeed) for running tasks and pod-level
        reasons."""
        out = {
            s.native_id: self._finals[s.native_id]
            for s in submissions
            if s.native_id in self._finals
        }
        ask = [s for s in submissions if s.native_id not in out]
        if not ask:
            return out
        api = self.api
        try:
            listing = api.raw(
                api.batch.list_namespaced_job(
                    self.namespace,
                    label_selector=f"{MANAGED_BY}=clustrix",
                    _preload_content=False,
                )
            )
        except api.ApiException as exc:
            raise TransportError(f"k8s: listing Jobs failed: {_api_error(exc)}") from exc
        by_name = {j["metadata"]["name"]: j for j in listing.get("items", [])}
        unfinished: set[str] = set()
        urgent = False  # a failure to explain: list the pods now
        for sub in ask:
            job = by_name.get(sub.native_id)
            if job is None:
                continue
            conds = _conditions(job)
            if "Complete" in conds:
                continue
            unfinished.add(str((job["metadata"].get("labels") or {}).get(JOB_ID)))
            st = job.get("status") or {}
            failed = (st.get("failedIndexes"), st.get("failed"))
            if "Failed" in conds or failed != self._seen_failed.get(sub.native_id, (None, None)):
                urgent = True
                self._seen_failed[sub.native_id] = failed
        # pods waiting (pending or not ready) are looked at every few seconds, not every poll
        now = time.monotonic()
        due = now - self._pods_listed >= min(POD_LIST_INTERVAL, self.pending_timeout / 4)
        pods: dict[str, list[dict[str, Any]]] = {}
        if unfinished and (urgent or due):
            self._pods_listed = now
            try:
                got = api.raw(
                    api.core.list_namespaced_pod(
                        self.namespace,
                        label_selector=f"{MANAGED_BY}=clustrix,{JOB_ID} in "
                        f"({','.join(sorted(unfinished))})",
                        field_selector="status.phase!=Succeeded",
                        _preload_content=False,
                    )
                )
            except api.ApiException as exc:
                raise TransportError(f"k8s: listing Pods failed: {_api_error(exc)}") from exc
            for pod in got.get("items", []):
                owner = ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME)
                if owner:
                    pods.setdefault(owner, []).append(pod)
            for group in pods.values():
                group.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        listed = bool(unfinished and (urgent or due))
        for sub in ask:
            found = by_name.get(sub.native_id)
            if not listed and found is not None and sub.native_id in self._last_pods:
                group = self._last_pods[sub.native_id]  # the last look at its pods
            else:
                group = pods.get(sub.native_id, [])
                self._last_pods[sub.native_id] = group
            status = self._status_of(sub, found, group)
            if status.state.final:
                self._finals[sub.native_id] = status
                self._stuck_since.pop(sub.native_id, None)
                self._last_pods.pop(sub.native_id, None)
            out[sub.native_id] = status
        return out

    def ended_tasks(self, location: str) -> dict[int, int | None] | None:
        """Tasks of the job at ``location`` that the last poll saw end (completed or failed),
        each with its completion index (None: not an Indexed Job); None when not polled yet."""
        return self._ended.get(location)

    def failure_details(self, location: str, task: int) -> str:
        return self._notes.get((location, task), "")

    def _status_of(
        self, sub: Submission, job: dict[str, Any] | None, pods: Sequence[dict[str, Any]]
    ) -> JobStatus:
        cancelled = (self.namespace, sub.native_id) in _cancelled
        if job is None:
            marks = self._marks(sub)
            if cancelled or CANCELLED + sub.native_id in marks:
                return JobStatus(state=JobState.CANCELLED, reason="cancelled (the Job was deleted)")
            if GAVE_UP + sub.native_id in marks:
                return JobStatus(state=JobState.FAILED, reason=marks[GAVE_UP + sub.native_id])
            return JobStatus(state=JobState.LOST, reason="the Job no longer exists (deleted?)")
        status = job.get("status") or {}
        conds = _conditions(job)
        indexed = (job.get("spec") or {}).get("completionMode") == "Indexed"
        tasks: dict[int, JobState] = {}
        ended = self._ended.setdefault(sub.location, {})
        for i in parse_indexes(status.get("completedIndexes")):
            tasks[sub.first + i] = JobState.COMPLETED
        for i in parse_indexes(status.get("failedIndexes")):
            tasks[sub.first + i] = JobState.FAILED
        # pod-level facts: newest pod of each task first
        notes: dict[int, tuple[JobState, str, int | None]] = {}
        stuck: list[str] = []
        running = False
        for pod in pods:
            task = task_of(pod)
            if task is None:
                continue
            kind, state, text, code = describe_pod(pod)
            if kind == "running":
                running = True
                tasks.setdefault(task, JobState.RUNNING)
            elif kind == "stuck":
                stuck.append(text)
            elif kind == "failed" and state is not None and task not in notes:
                notes[task] = (state, f"pod {pod['metadata']['name']}: {text}", code)
        for task, (state, text, _) in notes.items():
            self._notes[(sub.location, task)] = text
            if tasks.get(task) is JobState.FAILED:
                tasks[task] = state
        if "Complete" in conds:
            for t in range(sub.first, sub.first + sub.count):
                if t not in tasks or not tasks[t].final:  # a pod seen running has finished
                    tasks[t] = JobState.COMPLETED
        for t, st in tasks.items():
            if st.final:
                ended[t] = t - sub.first if indexed else None
        if "Complete" in conds:
            return JobStatus(state=JobState.COMPLETED, exit_code=0, tasks=tasks)
        if "Failed" in conds:
            c = conds["Failed"]
            why = c.get("reason") or "Failed"
            state = JobState.TIMEOUT if why == "DeadlineExceeded" else JobState.FAILED
            exit_code = None
            if notes:
                first_state, _, exit_code = notes[min(notes)]
                if state is JobState.FAILED and first_state is not JobState.FAILED:
                    state = first_state  # OOMKilled, or a pod's own deadline
            reason = f"{why}: {c.get('message') or ''}".strip().rstrip(":")
            shown = [notes[t][1] for t in sorted(notes)[:3]]
            if shown:
                more = f" (and {len(notes) - 3} more)" if len(notes) > 3 else ""
                reason += "; " + "; ".join(shown) + more
            for t in range(sub.first, sub.first + sub.count):
                if t not in tasks or not tasks[t].final:
                    tasks[t] = state
                ended.setdefault(t, t - sub.first if indexed else None)
            return JobStatus(state=state, reason=reason, exit_code=exit_code, tasks=tasks)
        if cancelled or job["metadata"].get("deletionTimestamp"):
            return JobStatus(state=JobState.CANCELLED, reason="cancelled", tasks=tasks)
        if stuck and not running:
            now = time.monotonic()
            since = self._stuck_since.setdefault(sub.native_id, now)
            if now - since >= self.pending_timeout:
                reason = (
                    f"{stuck[0]} (a pod stayed pending for {self.pending_timeout:g} s, the "
                    "profile's pending_timeout; clustrix deleted the Job)"
                )
                self._give_up(sub, reason)
                for t in range(sub.first, sub.first + sub.count):
                    if t not in tasks or not tasks[t].final:
                        tasks[t] = JobState.FAILED
                return JobStatus(state=JobState.FAILED, reason=reason, tasks=tasks)
            return JobStatus(state=JobState.PENDING, reason=stuck[0], tasks=tasks)
        self._stuck_since.pop(sub.native_id, None)
        if status.get("active"):
            return JobStatus(state=JobState.RUNNING, tasks=tasks)
        return JobStatus(state=JobState.PENDING, tasks=tasks)

    def _give_up(self, sub: Submission, reason: str) -> None:
        """Delete a Job whose pods stayed stuck, marking why on its Secret (for re-attach)."""
        api = self.api
        try:
            api.core.patch_namespaced_secret(
                sub.location,
                self.namespace,
                {"metadata": {"annotations": {GAVE_UP + sub.native_id: reason[:4000]}}},
            )
        except api.ApiException:
            pass
        self.delete_job(sub.native_id)

    def delete_job(self, name: str) -> None:
        api = self.api
        try:
            api.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
        except api.ApiException as exc:
            if _status_code(exc) != 404:
                raise TransportError(f"k8s: deleting Job {name} failed: {_api_error(exc)}") from exc

    def _marks(self, sub: Submission) -> dict[str, str]:
        """The annotations of the job's Secret (clustrix's marks on Jobs that are gone)."""
        api = self.api
        try:
            secret = api.raw(
                api.core.read_namespaced_secret(
                    sub.location, self.namespace, _preload_content=False
                )
            )
        except api.ApiException:
            return {}
        return dict(secret["metadata"].get("annotations") or {})

    def cancel(self, submissions: Sequence[Submission]) -> None:
        api = self.api
        for sub in submissions:
            _cancelled.add((self.namespace, sub.native_id))
            try:
                api.core.patch_namespaced_secret(
                    sub.location,
                    self.namespace,
                    {"metadata": {"annotations": {CANCELLED + sub.native_id: "true"}}},
                )
            except api.ApiException:
                pass  # the Secret is gone (cleaned up): nothing to mark
            self.delete_job(sub.native_id)


__all__ = [
    "K8sScheduler",
    "SecretStore",
    "cpu_quantity",
    "describe_pod",
    "memory_quantity",
    "object_name",
    "parse_indexes",
]
