"""The API server's ``Status`` error bodies (``metav1.Status``), as kube-apiserver writes them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the server answers with a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def qualified(plural: str, group: str) -> str:
    """``pods`` or ``jobs.batch``: how kube-apiserver names a resource in messages."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        _details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class FieldError:
    """One ``field.Error``: type is the cause reason (FieldValueInvalid, FieldValueRequired, ...)."""

    _TEXT = {
        "FieldValueInvalid": "Invalid value",
        "FieldValueRequired": "Required value",
        "FieldValueNotSupported": "Unsupported value",
        "FieldValueDuplicate": "Duplicate value",
        "FieldValueNotFound": "Not found",
        "FieldValueTooLong": "Too long",
        "FieldValueForbidden": "Forbidden",
        "FieldValueTypeInvalid": "Invalid value",
    }

    def __init__(self, kind: str, field: str, detail: str, value: Any = None) -> None:
        self.kind = kind
        self.field = field
        self.detail = detail
        self.value = value

    def body(self) -> str:
        """The part after ``field: `` in the message (``Invalid value: "x": detail``)."""
        text = self._TEXT[self.kind]
        if self.kind in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"):
            return f"{text}: {self.detail}" if self.detail else text
        if self.kind in ("FieldValueNotFound", "FieldValueDuplicate"):
            return f"{text}: {_render(self.value)}"
        if self.kind == "FieldValueNotSupported":
            return f"{text}: {_render(self.value)}: {self.detail}"
        return f"{text}: {_render(self.value)}: {self.detail}"

    def message(self) -> str:
        return f"{self.field}: {self.body()}"


def _render(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid: ``Job.batch "x" is invalid: field: Invalid value: ...``."""
    what = f"{kind}.{group}" if group else kind
    msgs: list[str] = []
    for e in errors:  # field.ErrorList.ToAggregate drops repeated messages
        if e.message() not in msgs:
            msgs.append(e.message())
    joined = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    details: dict[str, Any] = _details(name, group, kind)
    details["causes"] = [{"reason": e.kind, "message": e.body(), "field": e.field} for e in errors]
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
