"""Scheduler, Job controller, garbage collector, TTL-after-finished and namespace controllers.

One thread runs them all: it wakes on every store change (and at least every
``tick`` seconds) and reconciles everything; none of them keeps state that a
restart of the loop would lose, except the Job controller's record of which
terminated pods it already counted (kube's job-tracking finalizer plays that role)."""

from __future__ import annotations

import copy
import logging
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .kubelet import SIM_MESSAGE, Kubelet, set_condition, simulated
from .resources import default_pod_spec, generate_name, pod_requests, qos_class
from .store import Obj, Store, now_rfc3339, parse_rfc3339
from .validation import parse_quantity, selector_from_object

if TYPE_CHECKING:
    from .server import Config

log = logging.getLogger(__name__)

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def owner_uids(obj: Obj) -> list[str]:
    return [r.get("uid", "") for r in obj["metadata"].get("ownerReferences") or []]


def controller_uid(obj: Obj) -> str | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r.get("uid")
    return None


def format_indexes(idx: set[int]) -> str:
    """``{0,1,2,5}`` -> ``"0-2,5"`` (status.completedIndexes)."""
    out: list[str] = []
    s = sorted(idx)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


class Events:
    """core/v1 Events, as the controllers and the kubelet would record them (deduplicated by
    object, reason and message: a repeat bumps ``count``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, obj: Obj, etype: str, reason: str, message: str, component: str) -> None:
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        name = f"{md['name']}.{abs(hash((md.get('uid'), reason, message))) % 16**16:016x}"
        now = now_rfc3339()

        def bump(ev: Obj) -> None:
            ev["count"] = ev.get("count", 1) + 1
            ev["lastTimestamp"] = now

        with self.store.lock:
            if self.store.peek("events", ns, name) is not None:
                self.store.mutate("events", ns, name, bump)
                return
            if self.store.peek("namespaces", "", ns) is None:
                return
            self.store.create(
                "events",
                {
                    "kind": "Event",
                    "apiVersion": "v1",
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": {
                        "kind": obj.get("kind")
                        or ("Job" if "completionMode" in (obj.get("spec") or {}) else "Pod"),
                        "namespace": ns,
                        "name": md["name"],
                        "uid": md.get("uid"),
                        "apiVersion": obj.get("apiVersion") or "v1",
                        "resourceVersion": md.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "source": {"component": component},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                    "type": etype,
                    "eventTime": None,
                    "reportingComponent": component,
                    "reportingInstance": "",
                },
            )


class Controllers:
    def __init__(self, store: Store, config: Config, kubelet: Kubelet, node: Obj) -> None:
        self.store = store
        self.config = config
        self.kubelet = kubelet
        self.node = node
        self.events = Events(store)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.counted: dict[str, dict[str, str]] = {}  # job uid -> pod uid -> "S"/"F"
        self.index_failures: dict[str, dict[int, int]] = {}
        self.next_create: dict[str, float] = {}
        self.unschedulable_seen: dict[str, str] = {}
        self.thread = threading.Thread(target=self.loop, name="controllers", daemon=True)

    def on_event(self, res: str, etype: str, obj: Obj) -> None:
        if res != "events":
            self.wake.set()

    def start(self) -> None:
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(float(self.config.tick))
            self.wake.clear()
            if self.stop.is_set():
                return
            try:
                self.reconcile()
            except Exception:
                log.exception("controller loop")

    def reconcile(self) -> None:
        self.namespaces()
        self.garbage_collect()
        self.ttl()
        for job in self.store.list("batch/jobs")[0]:
            try:
                self.sync_job(job)
            except Exception:
                log.exception("job %s/%s", job["metadata"]["namespace"], job["metadata"]["name"])
        self.schedule()
        self.kubelet.sync()

    # -- scheduler ---------------------------------------------------------------------------
    def schedule(self) -> None:
        with self.store.lock:
            pending = sorted(
                (
                    p
                    for p in self.store.values("pods")
                    if not (p.get("spec") or {}).get("nodeName")
                    and not p["metadata"].get("deletionTimestamp")
                    and not terminal(p)
                ),
                key=lambda p: (
                    p["metadata"]["creationTimestamp"],
                    int(p["metadata"]["resourceVersion"]),
                ),
            )
            if not pending:
                return
            used: dict[str, Decimal] = {}
            count = 0
            for p in self.store.values("pods"):
                if (p.get("spec") or {}).get("nodeName") and not terminal(p):
                    count += 1
                    for k, q in pod_requests(p["spec"]).items():
                        used[k] = used.get(k, Decimal(0)) + q
            alloc = {k: parse_quantity(q) for k, q in self.node["status"]["allocatable"].items()}
            node_labels = self.node["metadata"]["labels"]
            for p in pending:
                md = p["metadata"]
                reasons: list[str] = []
                sims = simulated(p)
                msg = None
                if "Unschedulable" in sims:
                    msg = (md.get("annotations") or {}).get(SIM_MESSAGE) or (
                        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
                        "available: 1 No preemption victims found for incoming pod."
                    )
                else:
                    sel = p["spec"].get("nodeSelector") or {}
                    if any(node_labels.get(k) != val for k, val in sel.items()):
                        msg = (
                            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
                            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
                        )
                    else:
                        if count + 1 > alloc.get("pods", Decimal(110)):
                            reasons.append("1 Too many pods")
                        for k, q in sorted(pod_requests(p["spec"]).items()):
                            if q > 0 and used.get(k, Decimal(0)) + q > alloc.get(k, Decimal(0)):
                                reasons.append(f"1 Insufficient {k}")
                        if reasons:
                            msg = (
                                "0/1 nodes are available: "
                                + ", ".join(reasons)
                                + ". preemption: 0/1 "
                                "nodes are available: 1 No preemption victims found for incoming pod."
                            )
                if msg is not None:
                    if self.unschedulable_seen.get(md["uid"]) != msg:
                        self.unschedulable_seen[md["uid"]] = msg

                        def mark(pod: Obj, msg: str = msg) -> None:
                            st = pod.setdefault("status", {})
                            st["phase"] = "Pending"
                            set_condition(st, "PodScheduled", False, "Unschedulable", msg)

                        self.store.mutate("pods", md["namespace"], md["name"], mark)
                        self.events.record(
                            p, "Warning", "FailedScheduling", msg, "default-scheduler"
                        )
                    continue
                self.unschedulable_seen.pop(md["uid"], None)
                count += 1
                for k, q in pod_requests(p["spec"]).items():
                    used[k] = used.get(k, Decimal(0)) + q
                node_name = self.node["metadata"]["name"]

                def bind(pod: Obj, node_name: str = node_name) -> None:
                    pod["spec"]["nodeName"] = node_name
                    set_condition(pod.setdefault("status", {}), "PodScheduled", True)

                self.store.mutate("pods", md["namespace"], md["name"], bind)
                self.events.record(
                    p,
                    "Normal",
                    "Scheduled",
                    f"Successfully assigned {md['namespace']}/{md['name']} to {node_name}",
                    "default-scheduler",
                )

    # -- garbage collector --------------------------------------------------------------------
    def garbage_collect(self) -> None:
        from .server import delete_object  # the API's delete path (graceful pods)

        with self.store.lock:
            uids = set(self.store.uids)
            todo: list[tuple[str, Obj, str]] = []
            for res in list(self.store.objects):
                for o in self.store.values(res):
                    owners = owner_uids(o)
                    if (
                        owners
                        and not any(u in uids for u in owners)
                        and not o["metadata"].get("deletionTimestamp")
                    ):
                        todo.append((res, o, "Background"))
            # foreground deletion: delete the dependents, then drop the finalizer
            fg = [
                (res, o)
                for res in list(self.store.objects)
                for o in self.store.values(res)
                if o["metadata"].get("deletionTimestamp")
                and FOREGROUND in (o["metadata"].get("finalizers") or [])
            ]
            for res, owner in fg:
                uid = owner["metadata"]["uid"]
                deps = [
                    (r2, o2)
                    for r2 in list(self.store.objects)
                    for o2 in self.store.values(r2)
                    if uid in owner_uids(o2)
                ]
                for r2, o2 in deps:
                    if not o2["metadata"].get("deletionTimestamp"):
                        todo.append((r2, o2, "Foreground"))
                if not deps:
                    md = owner["metadata"]

                    def drop(o: Obj) -> None:
                        o["metadata"]["finalizers"] = [
                            f for f in o["metadata"].get("finalizers") or [] if f != FOREGROUND
                        ]

                    self.store.mutate(res, md.get("namespace", ""), md["name"], drop)
        for res, o, policy in todo:
            md = o["metadata"]
            try:
                delete_object(
                    self, res, md.get("namespace", ""), md["name"], {"propagationPolicy": policy}
                )
            except Exception as exc:  # already gone
                log.debug("gc delete %s %s: %s", res, md["name"], exc)

    def ttl(self) -> None:
        from .server import delete_object

        now = time.time()
        for job in self.store.list("batch/jobs")[0]:
            ttl = job["spec"].get("ttlSecondsAfterFinished")
            md = job["metadata"]
            if ttl is None or md.get("deletionTimestamp"):
                continue
            finished = None
            for c in (job.get("status") or {}).get("conditions") or []:
                if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                    finished = parse_rfc3339(c["lastTransitionTime"])
            if finished is not None and now >= finished + int(ttl):
                try:
                    delete_object(
                        self,
                        "batch/jobs",
                        md["namespace"],
                        md["name"],
                        {"propagationPolicy": "Foreground"},
                    )
                except Exception as exc:
                    log.debug("ttl delete: %s", exc)

    def namespaces(self) -> None:
        from .server import delete_object

        for ns in self.store.list("namespaces")[0]:
            md = ns["metadata"]
            if not md.get("deletionTimestamp"):
                continue
            name = md["name"]
            left = 0
            with self.store.lock:
                objs = [
                    (res, o["metadata"]["name"], bool(o["metadata"].get("deletionTimestamp")))
                    for res in list(self.store.objects)
                    if res != "namespaces"
                    for o in self.store.values(res)
                    if o["metadata"].get("namespace") == name
                ]
            for res, oname, deleting in objs:
                left += 1
                if not deleting:
                    try:
                        delete_object(self, res, name, oname, {"propagationPolicy": "Background"})
                    except Exception as exc:
                        log.debug("ns delete: %s", exc)
            if left == 0:

                def fin(o: Obj) -> None:
                    o.setdefault("spec", {})["finalizers"] = []
                    o["metadata"]["finalizers"] = []

                self.store.mutate("namespaces", "", name, fin)
                with self.store.lock:
                    cur = self.store.peek("namespaces", "", name)
                    if cur is not None and cur["metadata"].get("deletionTimestamp"):
                        self.store.remove("namespaces", "", name)

    # -- job controller -----------------------------------------------------------------------
    def sync_job(self, job: Obj) -> None:
        from .server import delete_object

        md, spec = job["metadata"], job["spec"]
        ns, uid = md["namespace"], md["uid"]
        status = copy.deepcopy(job.get("status") or {})
        if md.get("deletionTimestamp"):
            return
        conds = {c["type"]: c for c in status.get("conditions") or [] if c["status"] == "True"}
        if "Complete" in conds or "Failed" in conds:
            return
        with self.store.lock:
            pods = [copy.deepcopy(p) for p in self.store.values("pods") if controller_uid(p) == uid]
        counted = self.counted.setdefault(uid, {})
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") or 0)
        per_index = spec.get("backoffLimitPerIndex")
        completed = parse_indexes(status.get("completedIndexes"))
        failed_idx = parse_indexes(status.get("failedIndexes"))
        ifail = self.index_failures.setdefault(uid, {})
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        now = time.time()
        new_failures = 0
        for p in pods:
            puid = p["metadata"]["uid"]
            phase = (p.get("status") or {}).get("phase")
            if puid in counted or phase not in ("Succeeded", "Failed"):
                continue
            idx = _pod_index(p)
            if phase == "Succeeded":
                counted[puid] = "S"
                if indexed and idx is not None:
                    if idx in completed:
                        continue
                    completed.add(idx)
                succeeded += 1
            else:
                counted[puid] = "F"
                failed += 1
                new_failures += 1
                if indexed and idx is not None and per_index is not None:
                    ifail[idx] = ifail.get(idx, 0) + 1
                    if ifail[idx] > int(per_index):
                        failed_idx.add(idx)
        active = [p for p in pods if not terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [
            p for p in pods if not terminal(p) and p["metadata"].get("deletionTimestamp")
        ]
        restarts = sum(
            cs.get("restartCount", 0)
            for p in active
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        )
        if spec.get("suspend"):
            for p in active:
                delete_object(self, "pods", ns, p["metadata"]["name"], {})
            status.pop("startTime", None)
            set_condition(status, "Suspended", True, "JobSuspended", "Job suspended")
            self._write_status(
                job,
                status,
                succeeded,
                failed,
                [],
                terminating,
                completed,
                failed_idx,
                indexed,
                per_index,
            )
            return
        if "Suspended" in {c["type"] for c in status.get("conditions") or []}:
            set_condition(status, "Suspended", False, "JobResumed", "Job resumed")
        status.setdefault("startTime", now_rfc3339())
        if new_failures and self.config.backoff_base_seconds:
            self.next_create[uid] = now + float(self.config.backoff_base_seconds) * 2 ** max(
                0, failed - 1
            )

        # finished?
        fail_reason = fail_msg = None
        ads = spec.get("activeDeadlineSeconds")
        if ads is not None and now - parse_rfc3339(status["startTime"]) >= int(ads):
            fail_reason, fail_msg = (
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        elif per_index is None and failed + restarts > int(spec.get("backoffLimit", 6)):
            fail_reason, fail_msg = (
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif (
            per_index is not None
            and spec.get("maxFailedIndexes") is not None
            and len(failed_idx) > int(spec["maxFailedIndexes"])
        ):
            fail_reason, fail_msg = (
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            )
        target = {c["type"]: c for c in status.get("conditions") or [] if c["status"] == "True"}
        if "FailureTarget" in target:
            fail_reason, fail_msg = (
                target["FailureTarget"].get("reason"),
                target["FailureTarget"].get("message"),
            )
        done = False
        if fail_reason is None:
            if indexed:
                done = len(completed) + len(failed_idx) >= int(completions) and not active
                if done and failed_idx:
                    fail_reason, fail_msg = "FailedIndexes", "Job has failed indexes"
                    done = False
            elif completions is not None:
                done = succeeded >= int(completions)
            else:
                done = succeeded > 0 and not active
        if fail_reason is not None:
            if "FailureTarget" not in target:
                set_condition(status, "FailureTarget", True, fail_reason, fail_msg)
                self.events.record(job, "Warning", fail_reason, fail_msg or "", "job-controller")
            for p in active:  # killed by the controller: they count as failed
                delete_object(self, "pods", ns, p["metadata"]["name"], {})
                if p["metadata"]["uid"] not in counted:
                    counted[p["metadata"]["uid"]] = "F"
                    failed += 1
            still = [p for p in pods if not terminal(p)]
            if not still:
                set_condition(status, "Failed", True, fail_reason, fail_msg)
            self._write_status(
                job, status, succeeded, failed, [], still, completed, failed_idx, indexed, per_index
            )
            return
        if done or "SuccessCriteriaMet" in target:
            if "SuccessCriteriaMet" not in target:
                set_condition(
                    status,
                    "SuccessCriteriaMet",
                    True,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
            for p in active:
                delete_object(self, "pods", ns, p["metadata"]["name"], {})
            still = [p for p in pods if not terminal(p)]
            if not still:
                set_condition(
                    status,
                    "Complete",
                    True,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                status["completionTime"] = now_rfc3339()
                self.events.record(job, "Normal", "Completed", "Job completed", "job-controller")
            self._write_status(
                job, status, succeeded, failed, [], still, completed, failed_idx, indexed, per_index
            )
            return

        # create pods
        if now >= self.next_create.get(uid, 0):
            if indexed:
                busy = {_pod_index(p) for p in active + terminating}
                todo = [
                    i
                    for i in range(int(completions))
                    if i not in completed and i not in failed_idx and i not in busy
                ]
                room = max(0, parallelism - len(active))
                for i in todo[:room]:
                    active.append(self._create_pod(job, i, ifail.get(i, 0)))
            else:
                if completions is not None:
                    want = min(parallelism, int(completions) - succeeded)
                else:
                    want = parallelism if succeeded == 0 else 0
                for _ in range(max(0, want - len(active))):
                    active.append(self._create_pod(job, None, 0))
        self._write_status(
            job,
            status,
            succeeded,
            failed,
            active,
            terminating,
            completed,
            failed_idx,
            indexed,
            per_index,
        )

    def _write_status(
        self,
        job: Obj,
        status: Obj,
        succeeded: int,
        failed: int,
        active: list[Obj],
        terminating: list[Obj],
        completed: set[int],
        failed_idx: set[int],
        indexed: bool,
        per_index: Any,
    ) -> None:
        status["active"] = len(active)
        status["ready"] = sum(
            1
            for p in active
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["terminating"] = len(terminating)
        for k in ("active", "succeeded", "failed"):
            if not status[k]:
                status.pop(k)
        if indexed:
            status["completedIndexes"] = format_indexes(completed)
            if per_index is not None:
                status["failedIndexes"] = format_indexes(failed_idx)
        status.setdefault("uncountedTerminatedPods", {})
        md = job["metadata"]

        def fn(j: Obj) -> Any:
            if j["metadata"]["uid"] != md["uid"]:
                return False
            j["status"] = status
            return None

        self.store.mutate("batch/jobs", md["namespace"], md["name"], fn)

    def _create_pod(self, job: Obj, index: int | None, index_failures: int) -> Obj:
        md, spec = job["metadata"], job["spec"]
        tmpl = copy.deepcopy(spec["template"])
        tmd = tmpl.get("metadata") or {}
        labels = dict(tmd.get("labels") or {})
        annotations = dict(tmd.get("annotations") or {})
        pspec = tmpl["spec"]
        base = md["name"] + "-"
        if index is not None:
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            if spec.get("backoffLimitPerIndex") is not None:
                annotations["batch.kubernetes.io/job-index-failure-count"] = str(index_failures)
            base = f"{md['name']}-{index}-"
            pspec.setdefault("hostname", f"{md['name']}-{index}"[:63])
            for c in (pspec.get("containers") or []) + (pspec.get("initContainers") or []):
                env = c.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    env.append(
                        {
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": {
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": f"metadata.labels['{INDEX_KEY}']",
                                }
                            },
                        }
                    )
        default_pod_spec(pspec)
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "",
                "generateName": base,
                "namespace": md["namespace"],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": md["name"],
                        "uid": md["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pspec,
            "status": {"phase": "Pending", "qosClass": qos_class(pspec)},
        }
        if annotations:
            pod["metadata"]["annotations"] = annotations
        with self.store.lock:
            for _ in range(100):
                pod["metadata"]["name"] = generate_name(base)
                if self.store.peek("pods", md["namespace"], pod["metadata"]["name"]) is None:
                    break
            created = self.store.create("pods", pod)
        self.events.record(
            job,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            "job-controller",
        )
        return created


def _pod_index(p: Obj) -> int | None:
    val = (p["metadata"].get("annotations") or {}).get(INDEX_KEY) or (
        p["metadata"].get("labels") or {}
    ).get(INDEX_KEY)
    try:
        return int(val) if val is not None else None
    except ValueError:
        return None


_ = selector_from_object
