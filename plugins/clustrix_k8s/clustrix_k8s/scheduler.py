"""The Kubernetes scheduler: a call is a ``batch/v1`` Job, a ``map`` one Indexed Job.

A job's inputs (key, runner, payload, calls) go into one Secret, mounted read-only into its pods;
the runner writes the sealed outcome framed on stdout, which comes back through the pod log
(:func:`clustrix_core.store.split_framed_output`). Everything created carries the labels
``app.kubernetes.io/managed-by=clustrix`` and ``clustrix.io/job-id=<id>``. One Job list call
(by label) answers a poll for every watched job.

The official ``kubernetes`` client is imported only when a profile talks to a cluster."""

from __future__ import annotations

import base64
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
CANCELLED = "cancelled.clustrix.io/"
"""Annotation prefix on a job's Secret naming each Job clustrix cancelled (another process, or
another scheduler object, still answers CANCELLED once the Job is gone)."""
_cancelled: set[tuple[str, str]] = set()
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

# Runner exit 1 means "a call raised": its outcome is in the log, so the pod has succeeded (a
# failed pod would count against backoffLimit and end the other indexes of a map).
_WRAPPER = '"$0" "$@"; s=$?; if [ "$s" -eq 1 ]; then exit 0; fi; exit "$s"'


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


class _Api:
    """The official client, bound to the profile's kubeconfig/context (or in-cluster)."""

    def __init__(self, profile: Profile) -> None:
        from kubernetes import client, config

        kubeconfig = profile.option("kubeconfig")
        context = profile.option("context")
        if kubeconfig or context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
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
        self.core: Any = client.CoreV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        from kubernetes.client.exceptions import ApiException

        self.ApiException = ApiException

    @staticmethod
    def raw(resp: Any) -> Any:
        return json.loads(resp.data)


class SecretStore(JobStore):
    """A job's inputs in one Secret (its name is the location); results and output from the logs
    of the job's pods (found by the ``clustrix.io/job-id`` label)."""

    max_task_bytes = MAX_TASK_BYTES

    def __init__(self, scheduler: K8sScheduler) -> None:
        self.scheduler = scheduler
        self._job_ids: dict[str, str] = {}
        self._results: dict[tuple[str, int], tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def api(self) -> _Api:
        return self.scheduler.api

    @property
    def namespace(self) -> str:
        return self.scheduler.namespace

    def stage(self, *, job_id: str, name: str, inputs: Mapping[str, bytes]) -> str:
        total = sum(len(v) for v in inputs.values())
        if total > MAX_TASK_BYTES:
            raise SerializationError(
                f"the job's inputs take {total} bytes, more than the {MAX_TASK_BYTES} bytes a "
                "Kubernetes Secret can hold: pass smaller arguments (load large data remotely), "
                "or split the map into several smaller maps"
            )
        secret_name = object_name(job_id)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "labels": self.scheduler.labels(job_id),
                "annotations": {"clustrix.io/name": name},
            },
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in inputs.items()},
        }
        try:
            self.api.core.create_namespaced_secret(self.namespace, body)
        except self.api.ApiException as exc:
            raise TransportError(
                f"k8s: creating Secret {self.namespace}/{secret_name} failed: {_api_error(exc)}"
            ) from exc
        self._job_ids[secret_name] = job_id
        return secret_name

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

    def pods(self, location: str) -> dict[int, list[dict[str, Any]]]:
        """The job's pods by task, newest first (one list call)."""
        job_id = self.job_id(location)
        resp = self.api.core.list_namespaced_pod(
            self.namespace,
            label_selector=f"{MANAGED_BY}=clustrix,{JOB_ID}={job_id}",
            _preload_content=False,
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for pod in self.api.raw(resp).get("items", []):
            labels = pod["metadata"].get("labels") or {}
            try:
                task = int(labels.get(TASK_OFFSET, "0")) + int(labels.get(INDEX, "0"))
            except ValueError:
                continue
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
        job_id = self.job_id(location)
        by_task = self.pods(location)
        for t in want:
            for pod in by_task.get(t, []):
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    continue
                printed, blob = split_framed_output(self.pod_log(pod), job_id, t)
                if blob is not None:
                    with self._lock:
                        self._results[(location, t)] = (printed, blob)
                    break

    def ready(self, location: str, tasks: Sequence[int]) -> set[int]:
        self._scan(location, tasks)
        return {t for t in tasks if (location, t) in self._results}

    def fetch(self, location: str, task: int) -> bytes | None:
        self._scan(location, [task])
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

    def describe(self) -> str:
        return f"Secrets in namespace {self.namespace} (results from pod logs)"


class K8sScheduler(Scheduler):
    name = "k8s"
    poll_min = 0.1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api: _Api | None = None
        self._api_lock = threading.Lock()
        self._finals: dict[str, JobStatus] = {}

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
            raise ConfigError(
                "environment: not supported by clustrix-k8s yet; use an image with the packages"
            )
        for key in ("labels", "annotations"):
            value = profile.option(key) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}={value!r} must be a table of name = value")
            if key == "labels":
                for k, v in value.items():
                    if not _LABEL_VALUE.fullmatch(str(v)) or len(str(v)) > 63:
                        raise ConfigError(f"labels: {k} = {v!r} is not a valid label value")
        timeout = profile.option("pending_timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ConfigError(f"pending_timeout={timeout!r} must be a positive number of seconds")

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
        raise ConfigError("environment: not supported by clustrix-k8s yet")

    def probe(self, python: str) -> RemoteInfo:
        from clustrix_core.serialization import RemoteInfo

        declared = self.profile.option("remote_python")
        if declared:
            version = str(declared)
            try:
                minor = tuple(int(x) for x in version.split(".")[:2])
            except ValueError:
                raise ConfigError(f"remote_python={declared!r} is not a version like '3.11'")
            return RemoteInfo(python=version, pickle_protocol=5 if minor >= (3, 8) else 4)
        key = (
            f"probe:{self.profile.option('kubeconfig')}:{self.profile.option('context')}:"
            f"{self.namespace}:{self.image}:{python}"
        )
        return self.cluster_fact(key, lambda: self._probe_pod(python))

    def _probe_pod(self, python: str) -> RemoteInfo:
        from clustrix_core.serialization import PROBE_SNIPPET, RemoteInfo

        api = self.api
        name = f"clustrix-probe-{secrets.token_hex(4)}"
        container: dict[str, Any] = {
            "name": "probe",
            "image": self.image,
            "command": [python, "-c", PROBE_SNIPPET],
        }
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
                "activeDeadlineSeconds": 600,
                "containers": [container],
                **self._pod_extras(),
            },
        }
        try:
            api.core.create_namespaced_pod(self.namespace, body)
        except api.ApiException as exc:
            raise TransportError(f"k8s: creating the probe pod failed: {_api_error(exc)}") from exc
        try:
            deadline = time.monotonic() + float(self.profile.option("pending_timeout") or 300)
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
        raise TransportError(
            f"k8s: the Python {python!r} of image {self.image!r} did not answer the probe "
            f"(phase {phase}): {log[-1000:]!r}"
        )

    # ---- jobs
    def _pod_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if self.profile.option("service_account"):
            extras["serviceAccountName"] = str(self.profile.option("service_account"))
        return extras

    def _resources(self) -> dict[str, Any]:
        p = self.profile
        amounts: dict[str, str] = {"cpu": str(p.cores)}
        if p.memory:
            amounts["memory"] = str(p.memory)
        limits = dict(amounts)
        if p.gpus:
            limits["nvidia.com/gpu"] = str(p.gpus)
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
        container: dict[str, Any] = {
            "name": "clustrix",
            "image": self.image,
            "command": [
                "sh",
                "-c",
                _WRAPPER,
                job.python,
                f"{MOUNT}/runner.py",
                "--inputs",
                MOUNT,
                *task_args,
                "--output",
                "-",
            ],
            "resources": self._resources(),
            "volumeMounts": [{"name": "clustrix-inputs", "mountPath": MOUNT, "readOnly": True}],
        }
        if p.env:
            container["env"] = [{"name": k, "value": v} for k, v in p.env.items()]
        if p.option("image_pull_policy"):
            container["imagePullPolicy"] = str(p.option("image_pull_policy"))
        labels = self.labels(job.job_id, **{TASK_OFFSET: str(first)})
        annotations = {**self._table("annotations"), "clustrix.io/name": job.name}
        spec: dict[str, Any] = {
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "clustrix-inputs",
                            "secret": {"secretName": job.location, "defaultMode": 0o444},
                        }
                    ],
                    **self._pod_extras(),
                },
            },
        }
        if indexed:
            spec.update(
                completionMode="Indexed",
                completions=count,
                parallelism=min(count, p.max_parallel or count),
                backoffLimitPerIndex=p.retries,
            )
        else:
            spec.update(completions=1, parallelism=1, backoffLimit=p.retries)
        if p.time:
            spec["activeDeadlineSeconds"] = int(p.time)
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
        for sub in ask:
            found = by_name.get(sub.native_id)
            status = self._status_of(sub, found)
            if status.state.final:
                self._finals[sub.native_id] = status
            out[sub.native_id] = status
        return out

    def _status_of(self, sub: Submission, job: dict[str, Any] | None) -> JobStatus:
        cancelled = (self.namespace, sub.native_id) in _cancelled
        if job is None:
            if cancelled or self._marked_cancelled(sub):
                return JobStatus(state=JobState.CANCELLED, reason="cancelled (the Job was deleted)")
            return JobStatus(state=JobState.LOST, reason="the Job no longer exists (deleted?)")
        status = job.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        tasks: dict[int, JobState] = {}
        for i in parse_indexes(status.get("completedIndexes")):
            tasks[sub.first + i] = JobState.COMPLETED
        for i in parse_indexes(status.get("failedIndexes")):
            tasks[sub.first + i] = JobState.FAILED
        if "Complete" in conds:
            for t in range(sub.first, sub.first + sub.count):
                tasks.setdefault(t, JobState.COMPLETED)
            return JobStatus(state=JobState.COMPLETED, exit_code=0, tasks=tasks)
        if "Failed" in conds:
            c = conds["Failed"]
            why = c.get("reason") or "Failed"
            state = JobState.TIMEOUT if why == "DeadlineExceeded" else JobState.FAILED
            exit_code, pod_reason = self._pod_failure(sub.native_id)
            if pod_reason == "OOMKilled":
                state = JobState.OUT_OF_MEMORY
            reason = f"{why}: {c.get('message') or ''}".strip().rstrip(":")
            if exit_code is not None:
                reason += f" (exit status {exit_code}" + (f", {pod_reason})" if pod_reason else ")")
            for t in range(sub.first, sub.first + sub.count):
                tasks.setdefault(t, state)
            return JobStatus(state=state, reason=reason, exit_code=exit_code, tasks=tasks)
        if cancelled or job["metadata"].get("deletionTimestamp"):
            return JobStatus(state=JobState.CANCELLED, reason="cancelled", tasks=tasks)
        if status.get("active"):
            return JobStatus(state=JobState.RUNNING, tasks=tasks)
        return JobStatus(state=JobState.PENDING, tasks=tasks)

    def _pod_failure(self, job_name: str) -> tuple[int | None, str]:
        """The exit status and reason of a failed pod of a Job (one list call, once per job)."""
        api = self.api
        try:
            pods = api.raw(
                api.core.list_namespaced_pod(
                    self.namespace, label_selector=f"{JOB_NAME}={job_name}", _preload_content=False
                )
            )
        except api.ApiException:
            return None, ""
        for pod in pods.get("items", []):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                if term.get("exitCode"):
                    return int(term["exitCode"]), str(term.get("reason") or "")
        return None, ""

    def delete_job(self, name: str) -> None:
        api = self.api
        try:
            api.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
        except api.ApiException as exc:
            if _status_code(exc) != 404:
                raise TransportError(f"k8s: deleting Job {name} failed: {_api_error(exc)}") from exc

    def _marked_cancelled(self, sub: Submission) -> bool:
        """Whether the job's Secret says clustrix cancelled this Job (for a Job that is gone)."""
        api = self.api
        try:
            secret = api.raw(
                api.core.read_namespaced_secret(
                    sub.location, self.namespace, _preload_content=False
                )
            )
        except api.ApiException:
            return False
        annotations = secret["metadata"].get("annotations") or {}
        return CANCELLED + sub.native_id in annotations

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


__all__ = ["K8sScheduler", "SecretStore", "object_name", "parse_indexes"]
