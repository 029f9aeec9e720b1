"""API errors carried as Kubernetes ``Status`` objects."""

from typing import Any


class ApiError(Exception):
    """A failed API call; ``to_status()`` renders the ``v1 Status`` a real API server would return."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _details(resource: str, name: str) -> dict[str, Any]:
    """Status details as the API server fills them: ``kind`` holds the plural, ``group`` is omitted when empty."""
    plural, _, group = resource.partition(".")
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def not_found(resource: str, name: str) -> ApiError:
    """404 for ``resource`` given as ``<plural>`` or ``<plural>.<group>``."""
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', _details(resource, name))


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', _details(resource, name))


def conflict(resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": {why}', _details(resource, name)
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, group: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; each cause has ``field``, ``message`` and ``reason`` (e.g. FieldValueRequired)."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind, "causes": causes}
    if not name:
        del details["name"]  # omitted when empty, as in the API server's Status
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
