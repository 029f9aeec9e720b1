"""Discovery: /version, /api, /apis and the resource lists of every group version, following CRDs as they come
and go."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kubesim.errors import ApiError
from kubesim.negotiation import json_response
from kubesim.resources import ResourceType
from kubesim.storage import Storage

JsonObject = dict[str, Any]

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim"}


class Discovery:
    """The discovery documents of the resource types a storage serves."""

    def __init__(self, store: Storage) -> None:
        self.store = store

    def simple_routes(self) -> dict[str, Callable[[web.Request], Awaitable[web.Response]]]:
        async def text_ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def version(_: web.Request) -> web.Response:
            return json_response(
                {
                    **KUBERNETES_VERSION,
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.23",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )

        async def api(request: web.Request) -> web.Response:
            return json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
                }
            )

        async def apis(_: web.Request) -> web.Response:
            return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": self.groups()})

        return {
            "/healthz": text_ok,
            "/readyz": text_ok,
            "/livez": text_ok,
            "/version": version,
            "/api": api,
            "/apis": apis,
        }

    # --- discovery -----------------------------------------------------------------------------------

    def groups(self) -> list[JsonObject]:
        versions: dict[str, list[str]] = {}
        preferred: dict[str, str] = {}
        for resource_type in self.store.types():
            if not resource_type.group:
                continue
            group_versions = versions.setdefault(resource_type.group, [])
            if resource_type.version not in group_versions:
                group_versions.append(resource_type.version)
            if resource_type.version == resource_type.storage_version:
                preferred[resource_type.group] = resource_type.version
        return [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{preferred.get(group, group_versions[0])}",
                    "version": preferred.get(group, group_versions[0]),
                },
            }
            for group, group_versions in sorted(versions.items())
        ]

    def api_group(self, name: str) -> JsonObject:
        group = next((g for g in self.groups() if g["name"] == name), None)
        if group is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **group}

    def resource_list(self, group: str, version: str) -> JsonObject:
        resources: list[JsonObject] = []
        for resource_type in self.store.types():
            if resource_type.group != group or resource_type.version != version:
                continue
            entry: JsonObject = {
                "name": resource_type.plural,
                "singularName": resource_type.singular_name(),
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": list(resource_type.verbs),
            }
            if resource_type.short_names:
                entry["shortNames"] = list(resource_type.short_names)
            if resource_type.categories:
                entry["categories"] = list(resource_type.categories)
            resources.append(entry)
            resources.extend(self._subresource_entries(resource_type))
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def _subresource_entries(self, resource_type: ResourceType) -> list[JsonObject]:
        entries = []
        for sub in sorted(resource_type.subresources):
            entry: JsonObject = {
                "name": f"{resource_type.plural}/{sub}",
                "singularName": "",
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "eviction":
                entry.update({"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            elif sub == "binding":
                entry.update({"kind": "Binding", "verbs": ["create"]})
            elif sub == "log":
                entry.update({"verbs": ["get"]})
            elif sub == "finalize":
                entry["verbs"] = ["update"]
            elif sub == "scale":
                entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            entries.append(entry)
        return entries
