"""Content negotiation: decoding request bodies (JSON, YAML, the protobuf kubectl sends for a few kinds) and
encoding responses (JSON, Status objects for errors, Warning headers), and the query flags shared by handlers."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from kubesim import protobuf
from kubesim.errors import ApiError, bad_request
from kubesim.patch import PATCH_APPLY, PATCH_TYPES


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type="application/json")


def status_response(error: ApiError) -> web.Response:
    response = json_response(error.to_status(), error.code)
    if error.code == 429:
        response.headers["Retry-After"] = "1"
    return response


def flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def decode_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == protobuf.PROTOBUF:
        return protobuf.decode_object(raw)
    if "protobuf" in content_type or "cbor" in content_type:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml, {', '.join(PATCH_TYPES)}",
        )
    try:
        if content_type == PATCH_APPLY or content_type.endswith("yaml"):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(f"the body of the request could not be decoded: {error}") from None


def wants_table(request: web.Request) -> bool:
    """Whether the client asks for a server-side Table (kubectl get)."""
    return "as=Table" in request.headers.get("Accept", "")


def add_warnings(response: web.StreamResponse, warnings: list[str]) -> None:
    """One ``Warning: 299 - "<text>"`` header per warning, quoted as RFC 7234 warn-text."""
    for warning in warnings:
        response.headers.add("Warning", '299 - "' + warning.replace("\\", "\\\\").replace('"', '\\"') + '"')
