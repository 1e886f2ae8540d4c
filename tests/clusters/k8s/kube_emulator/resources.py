"""The resource types the emulator serves: discovery facts, defaulting and validation."""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import validation as v
from .errors import FieldError, bad_request, invalid

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    fields: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version


RESOURCES = [
    Resource(
        "namespaces",
        "namespace",
        "Namespace",
        "",
        "v1",
        False,
        ("ns",),
        subresources=("status",),
        fields=("status.phase",),
    ),
    Resource("secrets", "secret", "Secret", "", "v1", True, fields=("type",)),
    Resource("configmaps", "configmap", "ConfigMap", "", "v1", True, ("cm",)),
    Resource(
        "pods",
        "pod",
        "Pod",
        "",
        "v1",
        True,
        ("po",),
        ("all",),
        ("log", "status"),
        fields=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    Resource(
        "events",
        "event",
        "Event",
        "",
        "v1",
        True,
        ("ev",),
        fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    Resource(
        "nodes",
        "node",
        "Node",
        "",
        "v1",
        False,
        ("no",),
        subresources=("status",),
        fields=("spec.unschedulable",),
    ),
    Resource(
        "jobs",
        "job",
        "Job",
        "batch",
        "v1",
        True,
        (),
        ("all",),
        ("status",),
        fields=("status.successful",),
    ),
]
BY_GROUP_PLURAL = {(r.group, r.plural): r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}


def field_value(res: Resource, obj: Obj, path: str) -> str | None:
    """The value a field selector compares (None when the field is not supported)."""
    if path in ("metadata.name", "metadata.namespace"):
        return str(obj["metadata"].get(path.split(".")[1], ""))
    if path not in res.fields:
        return None
    if path == "status.successful":
        return str((obj.get("status") or {}).get("succeeded") or 0)
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


# --- common metadata ------------------------------------------------------------------------


def validate_metadata(res: Resource, obj: Obj) -> list[FieldError]:
    md = obj["metadata"]
    errs: list[FieldError] = []
    name = md.get("name", "")
    if res.kind == "Namespace":
        errs += v.dns_label("metadata.name", name)
    elif res.kind in ("Event",):
        pass
    else:
        errs += v.dns_subdomain("metadata.name", name)
    errs += v.labels("metadata.labels", md.get("labels"))
    errs += v.annotations("metadata.annotations", md.get("annotations"))
    for ref in md.get("ownerReferences") or []:
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(
                    FieldError(
                        "FieldValueInvalid",
                        f"metadata.ownerReferences.{key}"
                        if key != "uid"
                        else "metadata.ownerReferences.uid",
                        f"{key} must not be empty",
                        ref.get(key, ""),
                    )
                )
    return errs


# --- per kind -------------------------------------------------------------------------------


def default_object(res: Resource, obj: Obj) -> None:
    if res.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
    elif res.kind == "Secret":
        obj.setdefault("type", "Opaque")
        data = obj.get("data") or {}
        for val in data.values():
            if not isinstance(val, str):
                raise bad_request(
                    'Secret in version "v1" cannot be handled as a Secret: '
                    "json: cannot unmarshal into Go value of type []uint8"
                )
            try:
                base64.b64decode(val, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(
                    'Secret in version "v1" cannot be handled as a Secret: '
                    f"illegal base64 data at input byte {_bad_b64_offset(val)}"
                ) from None
        string_data = obj.pop("stringData", None) or {}
        for k, val in string_data.items():
            data[k] = base64.b64encode(str(val).encode()).decode()
        if data:
            obj["data"] = data
    elif res.kind == "Pod":
        default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {"phase": "Pending", "qosClass": qos_class(obj["spec"])})
    elif res.kind == "Job":
        default_job(obj)


def _bad_b64_offset(val: str) -> int:
    for i, ch in enumerate(val):
        if not (ch.isalnum() or ch in "+/="):
            return i
    return len(val)


def default_pod_spec(spec: Obj, *, in_template: bool = False) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if not in_template:
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = c.get("image") or ""
            tag = image.rsplit("/", 1)[-1]
            c.setdefault(
                "imagePullPolicy",
                "Always"
                if ("@" not in image and (":" not in tag or tag.endswith(":latest")))
                else "IfNotPresent",
            )
            res = c.setdefault("resources", {})
            limits = res.get("limits") or {}
            if limits:
                req = res.setdefault("requests", {})
                for k, q in limits.items():
                    req.setdefault(k, q)
    for vol in spec.get("volumes") or []:
        for kind in ("secret", "configMap"):
            if isinstance(vol.get(kind), dict):
                vol[kind].setdefault("defaultMode", 0o644)


def qos_class(spec: Obj) -> str:
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and v.parse_quantity(req[r]) != v.parse_quantity(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimitPerIndex") is not None:
        spec.setdefault("backoffLimit", 2147483647)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    tmpl = spec.setdefault("template", {})
    tmd = tmpl.setdefault("metadata", {})
    tmd.setdefault("creationTimestamp", None)
    default_pod_spec(tmpl.setdefault("spec", {}), in_template=True)
    obj.setdefault("status", {})


def job_selector_labels(obj: Obj) -> None:
    """What the Job strategy adds once the uid is known: selector and template labels."""
    md = obj["metadata"]
    spec = obj["spec"]
    uid, name = md["uid"], md["name"]
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = spec["template"]["metadata"].setdefault("labels", {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", name)


def validate(res: Resource, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid with kube-apiserver's field errors."""
    errs = validate_metadata(res, obj)
    if res.kind == "Secret":
        errs += _validate_data(obj, "data", binary=True)
        if obj.get("type") == "":
            errs.append(FieldError("FieldValueRequired", "type", ""))
    elif res.kind == "ConfigMap":
        errs += _validate_data(obj, "data", binary=False)
    elif res.kind == "Pod":
        errs += validate_pod_spec(obj.get("spec") or {}, "spec")
    elif res.kind == "Job":
        errs += validate_job(obj, old)
    if errs:
        raise invalid(res.kind, res.group, obj["metadata"].get("name", ""), errs)


def _validate_data(obj: Obj, key: str, *, binary: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    data = obj.get(key) or {}
    for k, val in data.items():
        errs += v.config_key(f"{key}[{k}]", k)
        total += len(base64.b64decode(val)) if binary else len(val or "")
    if not binary:
        for k, val in (obj.get("binaryData") or {}).items():
            errs += v.config_key(f"binaryData[{k}]", k)
            if k in data:
                errs.append(
                    FieldError(
                        "FieldValueInvalid",
                        f"data[{k}]",
                        "duplicate of key present in binaryData",
                        k,
                    )
                )
            total += len(base64.b64decode(val))
    if total > 1048576:
        errs.append(
            FieldError(
                "FieldValueTooLong", key if binary else "", "must have at most 1048576 bytes"
            )
        )
    return errs


def validate_pod_spec(spec: Obj, path: str, *, job: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    vols: set[str] = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        p = f"{path}.volumes[{i}]"
        name = vol.get("name", "")
        if not name:
            errs.append(FieldError("FieldValueRequired", f"{p}.name", ""))
        else:
            errs += v.dns_label(f"{p}.name", name)
            if name in vols:
                errs.append(FieldError("FieldValueDuplicate", f"{p}.name", "", name))
            vols.add(name)
        if "secret" in vol and not (vol["secret"] or {}).get("secretName"):
            errs.append(FieldError("FieldValueRequired", f"{p}.secret.secretName", ""))
        if "configMap" in vol and not (vol["configMap"] or {}).get("name"):
            errs.append(FieldError("FieldValueRequired", f"{p}.configMap.name", ""))
        for kind in ("secret", "configMap"):
            mode = (vol.get(kind) or {}).get("defaultMode")
            if mode is not None and not (0 <= int(mode) <= 0o777):
                errs.append(
                    FieldError(
                        "FieldValueInvalid",
                        f"{p}.{kind}.defaultMode",
                        "must be a number between 0 and 0777 (octal), both inclusive",
                        mode,
                    )
                )
    containers = spec.get("containers")
    if not containers:
        errs.append(FieldError("FieldValueRequired", f"{path}.containers", ""))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            p = f"{path}.{key}[{i}]"
            name = c.get("name", "")
            if not name:
                errs.append(FieldError("FieldValueRequired", f"{p}.name", ""))
            else:
                errs += v.dns_label(f"{p}.name", name)
                if name in names:
                    errs.append(FieldError("FieldValueDuplicate", f"{p}.name", "", name))
                names.add(name)
            if not c.get("image"):
                errs.append(FieldError("FieldValueRequired", f"{p}.image", ""))
            for j, e in enumerate(c.get("env") or []):
                ep = f"{p}.env[{j}]"
                if not e.get("name"):
                    errs.append(FieldError("FieldValueRequired", f"{ep}.name", ""))
                else:
                    errs += v.env_name(f"{ep}.name", e["name"])
                vf = e.get("valueFrom")
                if vf is not None:
                    if e.get("value"):
                        errs.append(
                            FieldError(
                                "FieldValueInvalid",
                                f"{ep}.valueFrom",
                                "may not be specified when `value` is not empty",
                                "",
                            )
                        )
                    for ref in ("secretKeyRef", "configMapKeyRef"):
                        r = vf.get(ref)
                        if r is not None:
                            if not r.get("key"):
                                errs.append(
                                    FieldError(
                                        "FieldValueRequired", f"{ep}.valueFrom.{ref}.key", ""
                                    )
                                )
                            if not r.get("name"):
                                errs.append(
                                    FieldError(
                                        "FieldValueRequired", f"{ep}.valueFrom.{ref}.name", ""
                                    )
                                )
            for j, m in enumerate(c.get("volumeMounts") or []):
                mp = f"{p}.volumeMounts[{j}]"
                if not m.get("name"):
                    errs.append(FieldError("FieldValueRequired", f"{mp}.name", ""))
                elif m["name"] not in vols:
                    errs.append(FieldError("FieldValueNotFound", f"{mp}.name", "", m["name"]))
                if not m.get("mountPath"):
                    errs.append(FieldError("FieldValueRequired", f"{mp}.mountPath", ""))
            res = c.get("resources") or {}
            lim, req = res.get("limits") or {}, res.get("requests") or {}
            for part, qs in (("limits", lim), ("requests", req)):
                for rname, q in qs.items():
                    qp = f"{p}.resources.{part}[{rname}]"
                    if v.parse_quantity(q) < 0:
                        errs.append(
                            FieldError(
                                "FieldValueInvalid",
                                qp,
                                "must be greater than or equal to 0",
                                str(q),
                            )
                        )
                    if (
                        rname not in ("cpu", "memory", "ephemeral-storage")
                        and "/" not in rname
                        and not rname.startswith("hugepages-")
                    ):
                        errs.append(
                            FieldError(
                                "FieldValueInvalid",
                                qp,
                                "must be a standard resource type or fully qualified",
                                rname,
                            )
                        )
                    if (
                        "/" in rname
                        and v.parse_quantity(q) != v.parse_quantity(q).to_integral_value()
                    ):
                        errs.append(
                            FieldError("FieldValueInvalid", qp, "must be an integer", str(q))
                        )
            for rname, q in req.items():
                if rname in lim and v.parse_quantity(q) > v.parse_quantity(lim[rname]):
                    errs.append(
                        FieldError(
                            "FieldValueInvalid",
                            f"{p}.resources.requests",
                            f"must be less than or equal to {rname} limit of {lim[rname]}",
                            str(q),
                        )
                    )
    rp = spec.get("restartPolicy")
    allowed = ["OnFailure", "Never"] if job else ["Always", "OnFailure", "Never"]
    if job and not rp:
        errs.append(
            FieldError(
                "FieldValueRequired", f"{path}.restartPolicy", 'valid values: "OnFailure", "Never"'
            )
        )
    elif rp not in allowed:
        errs.append(
            FieldError(
                "FieldValueNotSupported",
                f"{path}.restartPolicy",
                "supported values: " + ", ".join(f'"{a}"' for a in allowed),
                rp,
            )
        )
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and int(ads) <= 0:
        errs.append(
            FieldError(
                "FieldValueInvalid",
                f"{path}.activeDeadlineSeconds",
                "must be between 1 and 2147483647, inclusive",
                ads,
            )
        )
    return errs


def validate_job(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    for key in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        val = spec.get(key)
        if val is not None and (not isinstance(val, int) or val < 0):
            errs.append(
                FieldError(
                    "FieldValueInvalid", f"spec.{key}", "must be greater than or equal to 0", val
                )
            )
    if spec.get("activeDeadlineSeconds") == 0:
        errs.append(
            FieldError(
                "FieldValueInvalid", "spec.activeDeadlineSeconds", "must be greater than 0", 0
            )
        )
    mode = spec.get("completionMode")
    if mode not in ("NonIndexed", "Indexed"):
        errs.append(
            FieldError(
                "FieldValueNotSupported",
                "spec.completionMode",
                'supported values: "NonIndexed", "Indexed"',
                mode,
            )
        )
    if mode == "Indexed":
        if spec.get("completions") is None:
            errs.append(
                FieldError(
                    "FieldValueRequired", "spec.completions", "when completion mode is Indexed"
                )
            )
        elif spec["completions"] > 100000:
            errs.append(
                FieldError(
                    "FieldValueInvalid",
                    "spec.completions",
                    "must be less than or equal to 100000 when completion mode is Indexed",
                    spec["completions"],
                )
            )
    elif spec.get("backoffLimitPerIndex") is not None:
        errs.append(
            FieldError(
                "FieldValueForbidden",
                "spec.backoffLimitPerIndex",
                "requires indexed completion mode",
            )
        )
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(
            FieldError(
                "FieldValueRequired",
                "spec.backoffLimitPerIndex",
                "when maxFailedIndexes is specified",
            )
        )
    tmpl = spec.get("template") or {}
    tmd = tmpl.get("metadata") or {}
    errs += v.labels("spec.template.labels", tmd.get("labels"))
    errs += v.annotations("spec.template.annotations", tmd.get("annotations"))
    errs += validate_pod_spec(tmpl.get("spec") or {}, "spec.template.spec", job=True)
    sel = v.selector_from_object(spec.get("selector"))
    if sel and not v.matches(sel, tmd.get("labels")):
        errs.append(
            FieldError(
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
                tmd.get("labels"),
            )
        )
    if old is not None:
        ospec = old.get("spec") or {}
        if _strip_template(ospec.get("template")) != _strip_template(
            spec.get("template")
        ) and not ospec.get("suspend", False):
            errs.append(
                FieldError(
                    "FieldValueInvalid",
                    "spec.template",
                    "field is immutable",
                    "core.PodTemplateSpec{...}",
                )
            )
        for key in ("completionMode", "selector", "backoffLimitPerIndex"):
            if ospec.get(key) != spec.get(key):
                errs.append(
                    FieldError(
                        "FieldValueInvalid", f"spec.{key}", "field is immutable", str(spec.get(key))
                    )
                )
        if spec.get("completionMode") == "NonIndexed" and ospec.get("completions") != spec.get(
            "completions"
        ):
            errs.append(
                FieldError(
                    "FieldValueInvalid",
                    "spec.completions",
                    "field is immutable",
                    spec.get("completions"),
                )
            )
    return errs


def _strip_template(t: Any) -> Any:
    return copy.deepcopy(t)


def pod_requests(spec: Obj) -> dict[str, Decimal]:
    """Effective requests: max(sum over containers, max over init containers)."""
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, q in (((c.get("resources") or {}).get("requests")) or {}).items():
            total[k] = total.get(k, Decimal(0)) + v.parse_quantity(q)
    for c in spec.get("initContainers") or []:
        for k, q in (((c.get("resources") or {}).get("requests")) or {}).items():
            total[k] = max(total.get(k, Decimal(0)), v.parse_quantity(q))
    return total


def name_suffix() -> str:
    import random

    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def generate_name(base: str) -> str:
    """``names.SimpleNameGenerator``: the base cut to 58 characters plus 5 random ones."""
    return base[:58] + name_suffix()


def normalize_image(image: str) -> str:
    """``python:3.11-slim`` -> ``docker.io/library/python:3.11-slim``."""
    ref = image
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return "docker.io/library/" + ref
    if "." in first or ":" in first or first == "localhost":
        return ref
    return "docker.io/" + ref
