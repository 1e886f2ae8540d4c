"""Names, labels, quantities and selectors, validated with kube-apiserver's rules and messages."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import FieldError, bad_request

DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + ")*"
QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE = "(" + QUALIFIED_NAME + ")?"
CONFIG_KEY = "[-._a-zA-Z0-9]+"
ENV_VAR_NAME = "[-._a-zA-Z][-._a-zA-Z0-9]*"

_MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{DNS1123_LABEL}')"
)
_MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{DNS1123_SUBDOMAIN}')"
)
_MSG_QNAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{QUALIFIED_NAME}')"
)
_MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
    f"or '12345', regex used for validation is '{LABEL_VALUE}')"
)
_MSG_CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{CONFIG_KEY}')"
)
_MSG_ENV = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', "
    "or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
    f"'MyEnvName1', regex used for validation is '{ENV_VAR_NAME}')"
)


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def dns_label(field: str, value: str) -> list[FieldError]:
    errs = []
    if len(value) > 63:
        errs.append(
            FieldError("FieldValueInvalid", field, "must be no more than 63 characters", value)
        )
    if not _full(DNS1123_LABEL, value):
        errs.append(FieldError("FieldValueInvalid", field, _MSG_LABEL, value))
    return errs


def dns_subdomain(field: str, value: str) -> list[FieldError]:
    errs = []
    if len(value) > 253:
        errs.append(
            FieldError("FieldValueInvalid", field, "must be no more than 253 characters", value)
        )
    if not _full(DNS1123_SUBDOMAIN, value):
        errs.append(FieldError("FieldValueInvalid", field, _MSG_SUBDOMAIN, value))
    return errs


def qualified_name(field: str, value: str) -> list[FieldError]:
    """A label or annotation key: optional DNS-subdomain prefix, ``/``, a name of <= 63 chars."""
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return [FieldError("FieldValueInvalid", field, "prefix part must be non-empty", value)]
    else:
        return [
            FieldError(
                "FieldValueInvalid",
                field,
                "a qualified name "
                + _MSG_QNAME[len("name part ") :]
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                value,
            )
        ]
    errs = []
    if prefix:
        for e in dns_subdomain(field, prefix):
            errs.append(FieldError("FieldValueInvalid", field, "prefix part " + e.detail, value))
    if not name:
        errs.append(FieldError("FieldValueInvalid", field, "name part must be non-empty", value))
    elif len(name) > 63:
        errs.append(
            FieldError(
                "FieldValueInvalid", field, "name part must be no more than 63 characters", value
            )
        )
    if name and not _full(QUALIFIED_NAME, name):
        errs.append(FieldError("FieldValueInvalid", field, _MSG_QNAME, value))
    return errs


def label_value(field: str, value: str) -> list[FieldError]:
    errs = []
    if len(value) > 63:
        errs.append(
            FieldError("FieldValueInvalid", field, "must be no more than 63 characters", value)
        )
    if not _full(LABEL_VALUE, value):
        errs.append(FieldError("FieldValueInvalid", field, _MSG_LABEL_VALUE, value))
    return errs


def labels(field: str, value: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in (value or {}).items():
        errs += qualified_name(field, k)
        if not isinstance(v, str):
            errs.append(FieldError("FieldValueInvalid", field, "must be a string", v))
        else:
            errs += label_value(field, v)
    return errs


def annotations(field: str, value: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k, v in (value or {}).items():
        errs += qualified_name(field, k.lower())
        total += len(k) + len(str(v))
    if total > 256 * 1024:
        errs.append(FieldError("FieldValueTooLong", field, "must have at most 262144 bytes"))
    return errs


def config_key(field: str, key: str) -> list[FieldError]:
    errs = []
    if len(key) > 253:
        errs.append(
            FieldError("FieldValueInvalid", field, "must be no more than 253 characters", key)
        )
    if not _full(CONFIG_KEY, key):
        errs.append(FieldError("FieldValueInvalid", field, _MSG_CONFIG_KEY, key))
    elif key in (".", "..") or key.startswith(".."):
        errs.append(
            FieldError(
                "FieldValueInvalid", field, "must not be '.' or '..' or start with '..'", key
            )
        )
    return errs


def env_name(field: str, name: str) -> list[FieldError]:
    if not _full(ENV_VAR_NAME, name):
        return [FieldError("FieldValueInvalid", field, _MSG_ENV, name)]
    return []


# --- quantities -------------------------------------------------------------------------------

QUANTITY_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


class QuantityError(ValueError):
    pass


def parse_quantity(value: Any) -> Decimal:
    """A resource quantity as a Decimal (``"1.5Gi"``, ``"500m"``, ``"1e3"``, ``2``)."""
    if isinstance(value, bool):
        raise QuantityError("quantities must match the regular expression '" + QUANTITY_RE + "'")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise QuantityError("quantities must match the regular expression '" + QUANTITY_RE + "'")
    m = re.match(QUANTITY_RE, value)
    if not m:
        raise QuantityError("quantities must match the regular expression '" + QUANTITY_RE + "'")
    number, suffix = m.groups()
    try:
        num = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError("unable to parse quantity's suffix") from exc
    if suffix in _SUFFIX:
        return num * _SUFFIX[suffix]
    em = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if em:
        return num * (Decimal(10) ** int(em.group(1)))
    raise QuantityError("unable to parse quantity's suffix")


def check_quantities(obj: dict[str, Any], kind: str) -> None:
    """Quantities are decoded with the object: a bad one is a 400 before any validation."""

    def walk_pod_spec(spec: Any) -> None:
        if not isinstance(spec, dict):
            return
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or []:
                res = (c or {}).get("resources") or {}
                for part in ("limits", "requests"):
                    for q in (res.get(part) or {}).values():
                        try:
                            parse_quantity(q)
                        except QuantityError as exc:
                            raise bad_request(
                                f'{kind} in version "v1" cannot be handled as a {kind}: {exc}'
                            ) from None
        for v in spec.get("volumes") or []:
            size = ((v or {}).get("emptyDir") or {}).get("sizeLimit")
            if size is not None:
                try:
                    parse_quantity(size)
                except QuantityError as exc:
                    raise bad_request(
                        f'{kind} in version "v1" cannot be handled as a {kind}: {exc}'
                    ) from None

    if kind == "Pod":
        walk_pod_spec(obj.get("spec"))
    elif kind == "Job":
        walk_pod_spec(((obj.get("spec") or {}).get("template") or {}).get("spec"))


# --- label selectors --------------------------------------------------------------------------

Requirement = tuple[str, str, list[str]]  # key, op (=, !=, in, notin, exists, !), values


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse the string form (``a=b,c!=d,e in (f,g),!h,i``) as kube-apiserver does."""
    reqs: list[Requirement] = []
    if not text:
        return reqs
    s = text.strip()
    i = 0
    n = len(s)

    def err(msg: str) -> Exception:
        return bad_request(f"unable to parse requirement: {msg}")

    while i < n:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            break
        neg = False
        if s[i] == "!":
            neg = True
            i += 1
            while i < n and s[i] == " ":
                i += 1
        m = re.compile(r"[A-Za-z0-9_./-]+").match(s, i)
        if not m:
            raise err(f"found '{s[i : i + 1]}', expected: identifier")
        key = m.group(0)
        i = m.end()
        for e in qualified_name("key", key):
            raise err(f'invalid label key "{key}": {e.detail}')
        while i < n and s[i] == " ":
            i += 1
        if neg:
            reqs.append((key, "!", []))
        elif i >= n or s[i] == ",":
            reqs.append((key, "exists", []))
        else:
            om = re.compile(r"(==|!=|=|\s*notin\b|\s*in\b)").match(s, i)
            if not om:
                raise err(f"found '{s[i:]}', expected: in, notin, =, ==, !=")
            op = om.group(0).strip()
            i = om.end()
            while i < n and s[i] == " ":
                i += 1
            if op in ("in", "notin"):
                if i >= n or s[i] != "(":
                    raise err("found '', expected: '('")
                j = s.find(")", i)
                if j < 0:
                    raise err("found '', expected: ')'")
                values = [v.strip() for v in s[i + 1 : j].split(",")]
                values = [v for v in values if v != ""] if s[i + 1 : j].strip() else []
                i = j + 1
                reqs.append((key, op, values))
            else:
                vm = re.compile(r"[A-Za-z0-9_.-]*").match(s, i)
                value = vm.group(0) if vm else ""
                i = vm.end() if vm else i
                for e in label_value("value", value):
                    raise err(f'invalid label value: "{value}": at key: "{key}": {e.detail}')
                reqs.append((key, "!=" if op == "!=" else "=", [value]))
        while i < n and s[i] == " ":
            i += 1
        if i < n:
            if s[i] != ",":
                raise err(f"found '{s[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def selector_from_object(sel: dict[str, Any] | None) -> list[Requirement]:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as requirements."""
    reqs: list[Requirement] = []
    if not sel:
        return reqs
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, "=", [v]))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in sel.get("matchExpressions") or []:
        reqs.append((e["key"], ops[e["operator"]], list(e.get("values") or [])))
    return reqs


def matches(reqs: list[Requirement], lbls: dict[str, str] | None) -> bool:
    lbls = lbls or {}
    for key, op, values in reqs:
        has = key in lbls
        val = lbls.get(key)
        if op == "=" and (not has or val != values[0]):
            return False
        if op == "!=" and has and val == values[0]:
            return False
        if op == "in" and (not has or val not in values):
            return False
        if op == "notin" and has and val in values:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m.groups()
        out.append((key.strip(), "!=" if op == "!=" else "=", value))
    return out
