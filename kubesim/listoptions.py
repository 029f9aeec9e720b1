"""Validation of the list and watch options of a request (``resourceVersionMatch``, ``sendInitialEvents``), with
the rules and messages of the API server's ListOptions validation (apimachinery ``ValidateListOptions``)."""

from typing import Any

from kubesim.errors import invalid

NOT_OLDER_THAN = "NotOlderThan"
EXACT = "Exact"


def _forbidden(field: str, message: str) -> dict[str, str]:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {message}", "field": field}


def _not_supported(field: str, value: str, supported: list[str]) -> dict[str, str]:
    choices = ", ".join(f'"{s}"' for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f'Unsupported value: "{value}": supported values: {choices}',
        "field": field,
    }


def _watch_problems(query: Any) -> list[dict[str, str]]:
    causes = []
    match = query.get("resourceVersionMatch") or ""
    send_initial = query.get("sendInitialEvents")
    if send_initial is not None and match != NOT_OLDER_THAN:
        causes.append(
            _forbidden(
                "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            )
        )
    if match:
        if send_initial is None:
            causes.append(
                _forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                )
            )
        if match != NOT_OLDER_THAN:
            causes.append(_not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
        if query.get("continue"):
            causes.append(
                _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
            )
    return causes


def _list_problems(query: Any) -> list[dict[str, str]]:
    causes = []
    match = query.get("resourceVersionMatch") or ""
    if match:
        if not query.get("resourceVersion"):
            causes.append(
                _forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"
                )
            )
        if query.get("continue"):
            causes.append(
                _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
            )
        if match not in (EXACT, NOT_OLDER_THAN):
            causes.append(_not_supported("resourceVersionMatch", match, [EXACT, NOT_OLDER_THAN, ""]))
        if match == EXACT and query.get("resourceVersion") == "0":
            causes.append(
                _forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            )
    if query.get("sendInitialEvents") is not None:
        causes.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return causes


def check_list_options(query: Any, *, watch: bool) -> None:
    """422 Invalid (kind ListOptions) when the options of a list or watch request contradict each other."""
    causes = _watch_problems(query) if watch else _list_problems(query)
    if causes:
        raise invalid("ListOptions", "", "meta.k8s.io", causes)
