"""The HTTP(S) front end: kube-apiserver's REST paths, discovery, watches, logs and Tables."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import select
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import resources as R
from .controllers import FOREGROUND, Controllers
from .errors import ApiError, FieldError, bad_request, conflict, invalid, not_found
from .kubelet import Kubelet
from .store import Obj, Store, new_uid, now_rfc3339, parse_rfc3339
from .validation import (
    check_quantities,
    matches,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger(__name__)

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-clustrix-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
MAX_BODY = 3 * 1024 * 1024
RES_BY_KEY = {r.key: r for r in R.RESOURCES}
JOB_DELETE_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set '
    "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress "
    'this warning"'
)


@dataclass
class Config:
    """Server-side settings (``config.json`` in the state dir; ``PATCH /emulator/config``)."""

    # ordered (glob, local interpreter): "" runs the command as is; no match -> ErrImagePull
    images: list[list[str]] = field(default_factory=list)
    node_name: str = "emulator-node"
    node_capacity: dict[str, str] = field(
        default_factory=lambda: {
            "cpu": "16",
            "memory": "64Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
    )
    namespaces: list[str] = field(default_factory=lambda: ["default", "kube-system", "kube-public"])
    max_running: int = 16  # containers running at once; others wait in ContainerCreating
    backoff_base_seconds: float = 0.0  # Job pod-failure backoff (kube: 10 s, doubling)
    restart_backoff_seconds: float = 0.5  # CrashLoopBackOff base (kube: 10 s, doubling)
    tick: float = 0.2  # controllers run at least this often (and on every change)
    memory_enforcement: str = "auto"  # auto | cgroup | rss | none
    context_namespace: str = "default"  # the kubeconfig context's namespace

    @classmethod
    def load(cls, path: str | None) -> Config:
        data: dict[str, Any] = {}
        if path and os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --- helpers -------------------------------------------------------------------------------


def with_kind(res: R.Resource, obj: Obj) -> Obj:
    out = {"kind": res.kind, "apiVersion": res.api_version}
    out.update({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})
    return out


def strip_kind(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def success_status(res: R.Resource, name: str, uid: str) -> Obj:
    details: Obj = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.plural
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def delete_object(
    ctx: Any, key: str, ns: str, name: str, opts: Obj
) -> tuple[int, Obj, dict[str, str]]:
    """The DELETE verb (used by the API and by the controllers): graceful pods, finalizers,
    propagationPolicy (Orphan / Background / Foreground)."""
    res = RES_BY_KEY[key]
    store: Store = ctx.store
    kubelet: Kubelet = ctx.kubelet
    headers: dict[str, str] = {}
    with store.lock:
        cur = store.peek(key, ns, name)
        if cur is None:
            raise not_found(res.plural, res.group, name)
        md = cur["metadata"]
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md["uid"]:
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {md['resourceVersion']}",
            )
        policy = opts.get("propagationPolicy")
        if policy is None and opts.get("orphanDependents") is not None:
            policy = "Orphan" if opts["orphanDependents"] else "Background"
        if policy is None:
            if res.kind == "Job":
                policy = "Orphan"
                headers["Warning"] = JOB_DELETE_WARNING
            else:
                policy = "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    FieldError(
                        "FieldValueNotSupported",
                        "propagationPolicy",
                        'supported values: "Foreground", "Background", "Orphan"',
                        policy,
                    )
                ],
            )
        if opts.get("dryRun"):
            return 200, with_kind(res, copy.deepcopy(cur)), headers
        obj = copy.deepcopy(cur)
        md = obj["metadata"]
        if res.kind == "Namespace":
            if not md.get("deletionTimestamp"):
                md["deletionTimestamp"] = now_rfc3339()
                obj.setdefault("status", {})["phase"] = "Terminating"
                obj = store.replace(key, obj)
            return 200, with_kind(res, obj), headers
        if policy == "Orphan":
            uid = md["uid"]
            for rkey in list(store.objects):
                for dep in list(store.values(rkey)):
                    refs = dep["metadata"].get("ownerReferences") or []
                    if any(r.get("uid") == uid for r in refs):

                        def drop(o: Obj, uid: str = uid) -> None:
                            left = [
                                r
                                for r in o["metadata"].get("ownerReferences") or []
                                if r.get("uid") != uid
                            ]
                            if left:
                                o["metadata"]["ownerReferences"] = left
                            else:
                                o["metadata"].pop("ownerReferences", None)

                        store.mutate(
                            rkey,
                            dep["metadata"].get("namespace", ""),
                            dep["metadata"]["name"],
                            drop,
                        )
        if res.kind == "Pod":
            grace = opts.get("gracePeriodSeconds")
            if grace is None:
                grace = int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            grace = int(grace)
            bound = bool((obj.get("spec") or {}).get("nodeName"))
            phase = (obj.get("status") or {}).get("phase")
            if md.get("deletionTimestamp"):
                if grace < int(md.get("deletionGracePeriodSeconds") or 0):
                    md["deletionGracePeriodSeconds"] = grace
                    obj = store.replace(key, obj)
                    if grace == 0:
                        kubelet.kill_now(md["uid"])
                return 200, with_kind(res, obj), headers
            if not bound or phase in ("Succeeded", "Failed") or grace == 0:
                if md.get("finalizers"):
                    md["deletionTimestamp"] = now_rfc3339()
                    md["deletionGracePeriodSeconds"] = 0
                    obj = store.replace(key, obj)
                    kubelet.kill_now(md["uid"])
                    return 200, with_kind(res, obj), headers
                kubelet.kill_now(md["uid"])
                gone = store.remove(key, ns, name)
                return 200, with_kind(res, gone or obj), headers
            md["deletionTimestamp"] = datetime.fromtimestamp(
                time.time() + grace, timezone.utc
            ).strftime("%Y-%m-%dT%H:%M:%SZ")
            md["deletionGracePeriodSeconds"] = grace
            obj = store.replace(key, obj)
            return 200, with_kind(res, obj), headers
        if md.get("deletionTimestamp"):
            if policy == "Foreground" and FOREGROUND not in (md.get("finalizers") or []):
                md.setdefault("finalizers", []).append(FOREGROUND)
                obj = store.replace(key, obj)
            return 200, with_kind(res, obj), headers
        if policy == "Foreground":
            md.setdefault("finalizers", []).append(FOREGROUND)
            md["deletionTimestamp"] = now_rfc3339()
            md["deletionGracePeriodSeconds"] = 0
            obj = store.replace(key, obj)
            return 200, with_kind(res, obj), headers
        if md.get("finalizers"):
            md["deletionTimestamp"] = now_rfc3339()
            md["deletionGracePeriodSeconds"] = 0
            obj = store.replace(key, obj)
            return 200, with_kind(res, obj), headers
        gone = store.remove(key, ns, name)
        return 200, success_status(res, name, (gone or cur)["metadata"]["uid"]), headers


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc: Any, ops: list[Obj]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    doc = copy.deepcopy(doc)

    def split(path: str) -> list[str]:
        return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]

    def parent(path: str) -> tuple[Any, str]:
        parts = split(path)
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def get(path: str) -> Any:
        cur = doc
        for p in split(path):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        try:
            if kind in ("add", "replace", "copy", "move"):
                value = (
                    copy.deepcopy(op.get("value"))
                    if kind in ("add", "replace")
                    else copy.deepcopy(get(op["from"]))
                )
                if kind == "move":
                    par, last = parent(op["from"])
                    par.pop(int(last)) if isinstance(par, list) else par.pop(last)
                par, last = parent(path)
                if isinstance(par, list):
                    if last == "-":
                        par.append(value)
                    elif kind == "replace":
                        par[int(last)] = value
                    else:
                        par.insert(int(last), value)
                else:
                    if kind == "replace" and last not in par:
                        raise KeyError(last)
                    par[last] = value
            elif kind == "remove":
                par, last = parent(path)
                par.pop(int(last)) if isinstance(par, list) else par.pop(last)
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ApiError(
                        422,
                        "Invalid",
                        f"the server rejected our request due to an error in our request: testing value {path} failed",
                    )
            else:
                raise bad_request(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {exc}",
            ) from None
    return doc


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    s = int(time.time() - parse_rfc3339(ts))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def table_row(res: R.Resource, obj: Obj) -> list[Any]:
    md, st, spec = obj["metadata"], obj.get("status") or {}, obj.get("spec") or {}
    if res.kind == "Pod":
        cs = st.get("containerStatuses") or []
        ready = sum(1 for c in cs if c.get("ready"))
        reason = st.get("reason") or st.get("phase", "Pending")
        for c in cs:
            state = c.get("state") or {}
            if "waiting" in state and state["waiting"].get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state and st.get("phase") not in ("Running",):
                reason = state["terminated"].get("reason") or reason
        if md.get("deletionTimestamp"):
            reason = "Terminating"
        return [
            md["name"],
            f"{ready}/{len(spec.get('containers') or [])}",
            reason,
            sum(c.get("restartCount", 0) for c in cs),
            age(md.get("creationTimestamp")),
        ]
    if res.kind == "Job":
        conds = {c["type"] for c in st.get("conditions") or [] if c["status"] == "True"}
        status = (
            "Complete"
            if "Complete" in conds
            else "Failed"
            if "Failed" in conds
            else ("Suspended" if "Suspended" in conds else "Running")
        )
        comp = spec.get("completions")
        completions = (
            f"{st.get('succeeded', 0)}/{comp}"
            if comp is not None
            else f"{st.get('succeeded', 0)}/1 of {spec.get('parallelism')}"
        )
        start = st.get("startTime")
        end = st.get("completionTime")
        dur = ""
        if start:
            secs = int((parse_rfc3339(end) if end else time.time()) - parse_rfc3339(start))
            dur = f"{secs}s" if secs < 120 else f"{secs // 60}m"
        return [md["name"], status, completions, dur, age(md.get("creationTimestamp"))]
    if res.kind == "Namespace":
        return [md["name"], st.get("phase", "Active"), age(md.get("creationTimestamp"))]
    if res.kind == "Secret":
        return [
            md["name"],
            obj.get("type", "Opaque"),
            len(obj.get("data") or {}),
            age(md.get("creationTimestamp")),
        ]
    if res.kind == "ConfigMap":
        return [
            md["name"],
            len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            age(md.get("creationTimestamp")),
        ]
    if res.kind == "Event":
        return [
            age(obj.get("lastTimestamp")),
            obj.get("type", ""),
            obj.get("reason", ""),
            f"{obj['involvedObject'].get('kind', '').lower()}/{obj['involvedObject'].get('name', '')}",
            obj.get("message", ""),
        ]
    if res.kind == "Node":
        return [
            md["name"],
            "Ready",
            "<none>",
            age(md.get("creationTimestamp")),
            "v1.32.0-clustrix-emulator",
        ]
    return [md["name"], age(md.get("creationTimestamp"))]


TABLE_COLUMNS = {
    "Pod": ["Name", "Ready", "Status", "Restarts", "Age"],
    "Job": ["Name", "Status", "Completions", "Duration", "Age"],
    "Namespace": ["Name", "Status", "Age"],
    "Secret": ["Name", "Type", "Data", "Age"],
    "ConfigMap": ["Name", "Data", "Age"],
    "Event": ["Last Seen", "Type", "Reason", "Object", "Message"],
    "Node": ["Name", "Status", "Roles", "Age", "Version"],
}


def make_table(res: R.Resource, items: list[Obj], rv: str) -> Obj:
    cols = TABLE_COLUMNS.get(res.kind, ["Name", "Age"])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": [
            {
                "name": c,
                "type": "integer" if c in ("Restarts", "Data") else "string",
                "format": "name" if c == "Name" else "",
                "description": c,
                "priority": 0,
            }
            for c in cols
        ],
        "rows": [
            {
                "cells": table_row(res, o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            }
            for o in items
        ],
    }


# --- the request handler -----------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-emulator"
    emu: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)

    # -- plumbing -------------------------------------------------------------------------------
    def send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code: int, text: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def client_gone(self) -> bool:
        try:
            sock = self.connection
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return False
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError, ssl.SSLError):
            return True

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.rfile.read(n)
            raise ApiError(
                413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
            )
        return self.rfile.read(n) if n else b""

    def json_body(self, res: R.Resource | None = None) -> Any:
        raw = self.read_body()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if raw and "protobuf" in ctype:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (this emulator does not speak "{ctype}")',
            )
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            if res is not None:
                raise bad_request(
                    f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: {exc}'
                ) from None
            raise bad_request(f"couldn't decode body: {exc}") from None

    def do_GET(self) -> None:  # noqa: N802
        self.dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self.dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        try:
            self.route(method)
        except ApiError as e:
            try:
                self.send_json(e.code, e.status(), e.headers)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:  # a bug: say so like the server would
            log.exception("%s %s", method, self.path)
            try:
                self.send_json(
                    500,
                    ApiError(500, "InternalError", f"Internal error occurred: {exc!r}").status(),
                )
            except OSError:
                pass

    # -- routing ------------------------------------------------------------------------------
    def route(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        emu = self.emu
        if not parts:
            return self.send_json(
                200,
                {
                    "paths": [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/apis/batch",
                        "/apis/batch/v1",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/version",
                    ]
                },
            )
        if parts[0] in ("healthz", "livez", "readyz") and method == "GET":
            return self.send_text(200, b"ok")
        if parts == ["version"]:
            return self.send_json(200, VERSION)
        if parts[0] == "emulator":
            return self.admin(method, parts[1:])
        if parts[0] == "openapi" and method == "GET":
            return self.openapi(parts[1:])
        if parts[0] == "api":
            group, rest = "", parts[1:]
            if not rest:
                return self.send_json(
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": emu.address}
                        ],
                    },
                )
        elif parts[0] == "apis":
            if len(parts) == 1:
                return self.send_json(200, self.group_list())
            group, rest = parts[1], parts[2:]
            if not rest:
                if group != "batch":
                    raise self.nothing()
                return self.send_json(
                    200, self.group_list()["groups"][0] | {"kind": "APIGroup", "apiVersion": "v1"}
                )
        else:
            return self.send_text(404, b"404 page not found\n")
        version, rest = rest[0], rest[1:]
        gv = f"{group}/{version}" if group else version
        if gv not in ("v1", "batch/v1"):
            raise self.nothing()
        if not rest:
            return self.send_json(200, self.resource_list(group, version))
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns: str | None = None
        if (
            rest
            and rest[0] == "namespaces"
            and len(rest) >= 3
            and rest[2] not in ("status", "finalize")
        ):
            ns, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        res = R.BY_GROUP_PLURAL.get((group, plural))
        if res is None or (ns is not None and not res.namespaced) or len(rest) > 3:
            raise self.nothing()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (
            sub is not None
            and sub not in res.subresources
            and not (res.kind == "Namespace" and sub == "finalize")
        ):
            raise self.nothing()
        if res.namespaced and name is not None and ns is None:
            raise self.nothing()
        if q.get("watch") in ("true", "1"):
            watch = True
        if name is None:
            if method == "GET":
                return self.watch(res, ns, q) if watch else self.list(res, ns, q)
            if method == "POST":
                return self.create(res, ns, q)
            if method == "DELETE":
                return self.delete_collection(res, ns, q)
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "GET" and sub == "log":
            return self.logs(ns or "", name, q)
        if method == "GET":
            return self.get(res, ns or "", name, q)
        if method == "PUT":
            return self.update(res, ns or "", name, sub, q)
        if method == "PATCH":
            return self.patch(res, ns or "", name, sub, q)
        if method == "DELETE":
            return self.delete(res, ns or "", name, q)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def nothing(self) -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource", {})

    def group_list(self) -> Obj:
        gv = {"groupVersion": "batch/v1", "version": "v1"}
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{"name": "batch", "versions": [gv], "preferredVersion": gv}],
        }

    def resource_list(self, group: str, version: str) -> Obj:
        out = []
        for r in R.RESOURCES:
            if r.group != group:
                continue
            entry: Obj = {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            out.append(entry)
            for sub in r.subresources:
                out.append(
                    {
                        "name": f"{r.plural}/{sub}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": out,
        }

    def openapi(self, parts: list[str]) -> None:
        """Just enough OpenAPI v3 for kubectl to see that PATCH takes ``fieldValidation`` and so
        leave validation to the server (no schemas: the emulator ignores unknown fields)."""
        gvs = {"api/v1": ("", "v1"), "apis/batch/v1": ("batch", "v1")}
        if parts == ["v3"]:
            paths = {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=0"} for gv in gvs}
            return self.send_json(200, {"paths": paths})
        gv = "/".join(parts[1:])
        if parts[:1] != ["v3"] or gv not in gvs:
            raise self.nothing()
        group, version = gvs[gv]
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        paths = {}
        for r in R.RESOURCES:
            if r.group != group:
                continue
            prefix = f"/{gv}/namespaces/{{namespace}}" if r.namespaced else f"/{gv}"
            gvk = {"group": group, "version": version, "kind": r.kind}
            op = {"x-kubernetes-group-version-kind": gvk, "parameters": [param], "responses": {}}
            paths[f"{prefix}/{r.plural}/{{name}}"] = {"patch": op, "put": op}
            paths[f"{prefix}/{r.plural}"] = {"post": op}
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths,
            "components": {"schemas": {}},
        }
        return self.send_json(200, doc)

    def admin(self, method: str, parts: list[str]) -> None:
        emu = self.emu
        if parts == ["config"] and method == "GET":
            return self.send_json(200, asdict(emu.config))
        if parts == ["config"] and method in ("PATCH", "PUT"):
            body = self.json_body()
            if not isinstance(body, dict):
                raise bad_request("expected a JSON object")
            for k, v in body.items():
                if k not in Config.__dataclass_fields__:
                    raise bad_request(f"unknown setting {k!r}")
                setattr(emu.config, k, v)
            emu.controllers.wake.set()
            return self.send_json(200, asdict(emu.config))
        return self.send_text(404, b"404 page not found\n")

    # -- verbs --------------------------------------------------------------------------------
    def selectors(self, res: R.Resource, q: dict[str, str]) -> tuple[Any, Any]:
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        for key, _, _ in fields:
            if key not in ("metadata.name", "metadata.namespace") and key not in res.fields:
                raise bad_request(
                    f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                )
        return labels, fields

    def selected(self, res: R.Resource, obj: Obj, labels: Any, fields: Any) -> bool:
        if not matches(labels, obj["metadata"].get("labels")):
            return False
        for key, op, val in fields:
            actual = R.field_value(res, obj, key)
            if (actual == val) != (op == "="):
                return False
        return True

    def wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def list(self, res: R.Resource, ns: str | None, q: dict[str, str]) -> None:
        labels, fields = self.selectors(res, q)
        items, rv = self.emu.store.list(res.key, ns)
        items = [o for o in items if self.selected(res, o, labels, fields)]
        meta: Obj = {"resourceVersion": rv}
        limit = int(q.get("limit") or 0)
        cont = q.get("continue")
        if cont:
            try:
                start = json.loads(base64.urlsafe_b64decode(cont.encode()))
                rv = str(start["rv"])
                meta["resourceVersion"] = rv
                after = tuple(start["after"])
                items = [
                    o
                    for o in items
                    if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after
                ]
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    400,
                    "BadRequest",
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                ) from None
        if limit and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps(
                    {"rv": int(rv), "after": [last.get("namespace", ""), last["name"]]}
                ).encode()
            ).decode()
            meta["remainingItemCount"] = rest
        if self.wants_table():
            t = make_table(res, items, rv)
            t["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return self.send_json(200, t)
        self.send_json(
            200,
            {
                "kind": res.kind + "List",
                "apiVersion": res.api_version,
                "metadata": meta,
                "items": [strip_kind(o) for o in items],
            },
        )

    def get(self, res: R.Resource, ns: str, name: str, q: dict[str, str]) -> None:
        obj = self.emu.store.get(res.key, ns, name)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        if self.wants_table():
            return self.send_json(200, make_table(res, [obj], obj["metadata"]["resourceVersion"]))
        self.send_json(200, with_kind(res, obj))

    def check_namespace(self, ns: str) -> None:
        nsobj = self.emu.store.get("namespaces", "", ns)
        if nsobj is None:
            raise not_found("namespaces", "", ns)
        if nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
                {
                    "name": ns,
                    "kind": "namespaces",
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {ns} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def decode(self, res: R.Resource, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: expected an object'
            )
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if kind and kind != res.kind:
            raise bad_request(
                f"the server could not handle the request: the kind in the data ({kind}) does not match the expected kind ({res.kind})"
            )
        if api_version and api_version != res.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})"
            )
        body["kind"], body["apiVersion"] = res.kind, res.api_version
        md = body.get("metadata")
        if md is None:
            md = body["metadata"] = {}
        if not isinstance(md, dict):
            raise bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: metadata must be an object'
            )
        check_quantities(body, res.kind)
        return body

    def create(self, res: R.Resource, ns: str | None, q: dict[str, str]) -> None:
        store = self.emu.store
        obj = self.decode(res, self.json_body(res))
        md = obj["metadata"]
        if res.namespaced:
            if ns is None:
                raise self.nothing()
            if md.get("namespace") not in (None, "", ns):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        for k in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
            "managedFields",
        ):
            md.pop(k, None)
        if not md.get("name"):
            if not md.get("generateName"):
                raise invalid(
                    res.kind,
                    res.group,
                    "",
                    [
                        FieldError(
                            "FieldValueRequired",
                            "metadata.name",
                            "name or generateName is required",
                        )
                    ],
                )
            md["name"] = R.generate_name(md["generateName"])
        if res.kind == "Job":
            md["generation"] = 1
        if res.kind == "Pod":
            spec = obj.get("spec") or {}
            obj["status"] = {}
            R.default_object(res, obj)
            obj["status"] = (
                {"phase": "Pending", "qosClass": R.qos_class(obj["spec"])}
                if isinstance(spec, dict)
                else {}
            )
        elif res.kind == "Job":
            obj["status"] = {}
            R.default_object(res, obj)
            md["uid"] = new_uid()
            R.job_selector_labels(obj)
        else:
            R.default_object(res, obj)
        R.validate(res, obj)
        with store.lock:
            if res.namespaced:
                self.check_namespace(ns or "")
            if store.peek(res.key, md.get("namespace", ""), md["name"]) is not None:
                if q.get("dryRun") or not md.get("generateName"):
                    from .errors import already_exists

                    raise already_exists(res.plural, res.group, md["name"])
                for _ in range(20):
                    md["name"] = R.generate_name(md["generateName"])
                    if store.peek(res.key, md.get("namespace", ""), md["name"]) is None:
                        break
            if q.get("dryRun"):
                md.setdefault("uid", new_uid())
                md["creationTimestamp"] = now_rfc3339()
                return self.send_json(201, obj)
            created = store.create(res.key, obj)
        self.send_json(201, with_kind(res, created))

    def write(
        self,
        res: R.Resource,
        ns: str,
        name: str,
        new: Obj,
        sub: str | None,
        q: dict[str, str],
        *,
        check_rv: bool,
    ) -> None:
        store = self.emu.store
        with store.lock:
            cur = store.peek(res.key, ns, name)
            if cur is None:
                raise not_found(res.plural, res.group, name)
            md = new.setdefault("metadata", {})
            if md.get("name", name) != name:
                raise bad_request(
                    f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})"
                )
            if res.namespaced and md.get("namespace", ns) != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            rv = md.get("resourceVersion")
            if check_rv and rv and rv != cur["metadata"]["resourceVersion"]:
                raise conflict(
                    res.plural,
                    res.group,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            old = copy.deepcopy(cur)
            new["kind"], new["apiVersion"] = res.kind, res.api_version
            if sub == "status":
                merged = copy.deepcopy(old)
                merged["status"] = new.get("status") or {}
                new = merged
            else:
                if "status" in res.subresources or res.kind == "Namespace":
                    new["status"] = old.get("status", {})
                check_quantities(new, res.kind)
                for k in (
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generateName",
                ):
                    if k in old["metadata"]:
                        md[k] = old["metadata"][k]
                    else:
                        md.pop(k, None)
                md["name"] = name
                if res.namespaced:
                    md["namespace"] = ns
                if res.kind == "Secret":
                    R.default_object(res, new)
                if res.kind == "Job":
                    R.default_job(new)
                    if new.get("spec") != old.get("spec"):
                        md["generation"] = int(old["metadata"].get("generation", 1)) + 1
                    else:
                        md["generation"] = old["metadata"].get("generation", 1)
                if res.kind == "Pod":
                    R.default_pod_spec(new.setdefault("spec", {}))
                    if _pod_spec_immutable_changed(old.get("spec") or {}, new.get("spec") or {}):
                        raise invalid(
                            "Pod",
                            "",
                            name,
                            [
                                FieldError(
                                    "FieldValueForbidden",
                                    "spec",
                                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                                )
                            ],
                        )
                R.validate(res, new, old)
            md["resourceVersion"] = cur["metadata"]["resourceVersion"]
            if new == cur:
                return self.send_json(200, with_kind(res, copy.deepcopy(cur)))
            if q.get("dryRun"):
                return self.send_json(200, with_kind(res, new))
            saved = store.replace(res.key, new)
        self.send_json(200, with_kind(res, saved))

    def update(
        self, res: R.Resource, ns: str, name: str, sub: str | None, q: dict[str, str]
    ) -> None:
        body = self.decode(res, self.json_body(res))
        self.write(res, ns, name, body, sub, q, check_rv=True)

    def patch(
        self, res: R.Resource, ns: str, name: str, sub: str | None, q: dict[str, str]
    ) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        body = self.json_body()
        cur = self.emu.store.get(res.key, ns, name)
        if cur is None:
            raise not_found(res.plural, res.group, name)
        cur = with_kind(res, cur)
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            new = json_patch(cur, body)
        elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise bad_request(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json"
                )
            new = merge_patch(cur, body)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
            )
        check_rv = bool(
            isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")
        )
        self.write(res, ns, name, new, sub, q, check_rv=check_rv)

    def delete_options(self, q: dict[str, str]) -> Obj:
        opts: Obj = {}
        body = self.json_body()
        if isinstance(body, dict):
            opts.update(body)
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "orphanDependents" in q:
            opts["orphanDependents"] = q["orphanDependents"] == "true"
        if q.get("dryRun"):
            opts["dryRun"] = [q["dryRun"]]
        return opts

    def delete(self, res: R.Resource, ns: str, name: str, q: dict[str, str]) -> None:
        code, body, headers = delete_object(self.emu, res.key, ns, name, self.delete_options(q))
        self.emu.controllers.wake.set()
        self.send_json(code, body, headers)

    def delete_collection(self, res: R.Resource, ns: str | None, q: dict[str, str]) -> None:
        labels, fields = self.selectors(res, q)
        opts = self.delete_options(q)
        items, rv = self.emu.store.list(res.key, ns)
        out = []
        for o in items:
            if self.selected(res, o, labels, fields):
                try:
                    _, body, _ = delete_object(
                        self.emu,
                        res.key,
                        o["metadata"].get("namespace", ""),
                        o["metadata"]["name"],
                        opts,
                    )
                    out.append(strip_kind(o if body.get("kind") == "Status" else body))
                except ApiError:
                    pass
        self.emu.controllers.wake.set()
        self.send_json(
            200,
            {
                "kind": res.kind + "List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": rv},
                "items": out,
            },
        )

    def watch(self, res: R.Resource, ns: str | None, q: dict[str, str]) -> None:
        store = self.emu.store
        labels, fields = self.selectors(res, q)
        timeout = float(q.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        rv_param = q.get("resourceVersion")
        self.start_chunked("application/json")
        self.close_connection = True

        table = self.wants_table()
        first = [True]

        def send(etype: str, obj: Obj) -> None:
            if table and etype in ("ADDED", "MODIFIED", "DELETED"):  # kubectl get -w
                obj = make_table(res, [obj], obj["metadata"].get("resourceVersion", ""))
                if not first[0]:
                    obj["columnDefinitions"] = []
                first[0] = False
            line = json.dumps({"type": etype, "object": obj}, separators=(",", ":"))
            self.chunk(line.encode() + b"\n")

        try:
            if rv_param in (None, "", "0"):
                with store.lock:
                    items, rv = store.list(res.key, ns)
                for o in items:
                    if self.selected(res, o, labels, fields):
                        send("ADDED", with_kind(res, o))
                cursor = int(rv)
            else:
                try:
                    cursor = int(rv_param)
                except ValueError:
                    cursor = -1
                if cursor < store.oldest_rv():
                    send(
                        "ERROR",
                        ApiError(
                            410,
                            "Expired",
                            f"too old resource version: {rv_param} ({store.oldest_rv() + 1})",
                        ).status(),
                    )
                    return self.end_chunked()
            if q.get("sendInitialEvents") == "true" and q.get("allowWatchBookmarks") == "true":
                send(
                    "BOOKMARK",
                    {
                        "kind": res.kind,
                        "apiVersion": res.api_version,
                        "metadata": {
                            "resourceVersion": str(cursor),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self.emu.stopping:
                    break
                events, cursor = store.events_after(cursor, min(left, 1.0))
                for _, rkey, etype, obj in events:
                    if rkey != res.key or (
                        ns is not None and obj["metadata"].get("namespace") != ns
                    ):
                        continue
                    if self.selected(res, obj, labels, fields):
                        send(etype, with_kind(res, obj))
                if not events and self.client_gone():
                    return
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return

    def logs(self, ns: str, name: str, q: dict[str, str]) -> None:
        emu = self.emu
        pod = emu.store.get("pods", ns, name)
        if pod is None:
            raise not_found("pods", "", name)
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        inits = [c["name"] for c in spec.get("initContainers") or []]
        container = q.get("container")
        if not container:
            if len(names) != 1:
                msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                if inits:
                    msg += f" or one of the init containers: [{' '.join(inits)}]"
                raise bad_request(msg)
            container = names[0]
        if container not in names and container not in inits:
            raise bad_request(f"container {container} is not valid for pod {name}")
        previous = q.get("previous") == "true"
        path, live = emu.kubelet.log_file(pod, container, previous)
        if path is None:
            if previous:
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            statuses = (pod.get("status") or {}).get("containerStatuses", []) + (
                pod.get("status") or {}
            ).get("initContainerStatuses", [])
            reason = "ContainerCreating"
            for cs in statuses:
                if cs.get("name") == container and "waiting" in (cs.get("state") or {}):
                    reason = cs["state"]["waiting"].get("reason", reason)
            if reason in ("ImagePullBackOff", "ErrImagePull"):
                detail = (
                    "trying and failing to pull image"
                    if reason == "ImagePullBackOff"
                    else "image can't be pulled"
                )
                raise bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {detail}'
                )
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        with open(path, "rb") as f:
            data = f.read()
        tail = q.get("tailLines")
        if tail is not None and tail != "":
            n = int(tail)
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-n:]) if n > 0 else b""
        if q.get("timestamps") == "true":
            stamp = (
                datetime.fromtimestamp(os.path.getmtime(path), timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                .encode()
            )
            data = b"".join(stamp + b" " + line for line in data.splitlines(keepends=True))
        limit = int(q.get("limitBytes") or 0)
        if limit:
            data = data[:limit]
        if q.get("follow") != "true" or not live or limit:
            return self.send_text(200, data)
        self.start_chunked("text/plain")
        self.close_connection = True
        try:
            self.chunk(data)
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                pos = f.tell()
                while True:
                    f.seek(pos)
                    more = f.read()
                    pos += len(more)
                    self.chunk(more)
                    if not more:
                        if not emu.kubelet.log_file(pod, container, False)[1]:
                            f.seek(pos)
                            self.chunk(f.read())
                            break
                        if self.client_gone() or emu.stopping:
                            return
                        time.sleep(0.1)
            self.end_chunked()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return


def _pod_spec_immutable_changed(old: Obj, new: Obj) -> bool:
    def norm(spec: Obj) -> Obj:
        s = copy.deepcopy(spec)
        for key in ("containers", "initContainers"):
            for c in s.get(key) or []:
                c.pop("image", None)
        for key in (
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "nodeName",
        ):
            s.pop(key, None)
        return s

    return norm(old) != norm(new)


# --- the server ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        try:
            super().finish_request(request, client_address)
        finally:
            if self.ssl_context is not None:
                try:
                    request.close()
                except OSError:
                    pass


def ensure_tls(directory: str) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1/localhost (openssl CLI); paths of
    (ca.crt, server.crt, server.key)."""
    os.makedirs(directory, exist_ok=True)
    ca, crt, key = (os.path.join(directory, n) for n in ("ca.crt", "server.crt", "server.key"))
    if all(os.path.exists(p) for p in (ca, crt, key)):
        return ca, crt, key
    ca_key = os.path.join(directory, "ca.key")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "3650",
        "-subj",
        "/CN=clustrix-kube-emulator-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    csr = os.path.join(directory, "server.csr")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver")
    with tempfile.NamedTemporaryFile("w", suffix=".ext", dir=directory, delete=False) as f:
        f.write(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        ext = f.name
    try:
        run(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "3650",
            "-extfile",
            ext,
        )
    finally:
        os.unlink(ext)
    os.chmod(key, 0o600)
    return ca, crt, key


class Emulator:
    """The whole emulated cluster: store, controllers, kubelet and the HTTP(S) server.

    ``Emulator(state_dir=...).start()`` serves on 127.0.0.1 (a free port unless given) from a
    thread and writes ``kubeconfig`` and ``server.json`` into the state dir."""

    def __init__(
        self,
        *,
        state_dir: str,
        config: Config | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        token: str = "clustrix-kube-emulator",
    ) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.config = config or Config()
        self.host, self.port, self.tls, self.token = host, port, tls, token
        self.stopping = False
        os.makedirs(self.state_dir, exist_ok=True)
        self.store = Store()
        cap = self.config.node_capacity
        self.node: Obj = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": self.config.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.config.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/control-plane": "",
                },
            },
            "spec": {},
            "status": {
                "capacity": dict(cap),
                "allocatable": dict(cap),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.config.node_name},
                ],
                "nodeInfo": {
                    "kubeletVersion": VERSION["gitVersion"],
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "local-process://1",
                },
            },
        }
        self.kubelet = Kubelet(self.store, self.config, self.state_dir, self.config.node_name)
        self.controllers = Controllers(self.store, self.config, self.kubelet, self.node)
        self.store.listeners += [self.controllers.on_event, self.kubelet.on_event]
        self.httpd: _Server | None = None
        self.address = ""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def kubeconfig(self) -> str:
        return os.path.join(self.state_dir, "kubeconfig")

    def start(self) -> Emulator:
        self.store.create("nodes", self.node)
        for ns in self.config.namespaces:
            obj = {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}}
            R.default_object(R.BY_KIND["Namespace"], obj)
            self.store.create("namespaces", obj)
        handler = type("BoundHandler", (Handler,), {"emu": self})
        self.httpd = _Server((self.host, self.port), handler)
        ca = ""
        if self.tls:
            ca, crt, key = ensure_tls(os.path.join(self.state_dir, "pki"))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            self.httpd.ssl_context = ctx
        self.port = self.httpd.server_address[1]
        self.address = f"{self.host}:{self.port}"
        self.controllers.start()
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        self.write_kubeconfig(ca)
        return self

    def write_kubeconfig(self, ca: str) -> None:
        cluster = f"    server: {self.url}\n"
        if ca:
            cluster += f"    certificate-authority: {ca}\n"
        text = (
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: kube-emulator\n  cluster:\n"
            + cluster
            + "contexts:\n- name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: kube-emulator\n"
            f"    namespace: {self.config.context_namespace}\n"
            "current-context: kube-emulator\n"
            f"users:\n- name: kube-emulator\n  user:\n    token: {self.token}\n"
        )
        tmp = self.kubeconfig + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.kubeconfig)
        info = {
            "url": self.url,
            "port": self.port,
            "pid": os.getpid(),
            "kubeconfig": self.kubeconfig,
            "ca": ca,
            "memory_enforcement": self.kubelet.memory.mode,
        }
        with open(os.path.join(self.state_dir, "server.json.tmp"), "w") as f:
            json.dump(info, f)
        os.replace(
            os.path.join(self.state_dir, "server.json.tmp"),
            os.path.join(self.state_dir, "server.json"),
        )

    def stop(self) -> None:
        self.stopping = True
        self.controllers.stop.set()
        self.controllers.wake.set()
        self.kubelet.shutdown()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
