"""Reads and writes of an Onload CR's children (KMM Modules and the device-plugin DaemonSet), one table of kinds."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from onload_operator.actions import ApplyChild, DeleteChild, PatchChild, ReplaceSpec
from onload_operator.io.client import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, JsonObject, Kube, json_of
from onload_operator.planner.snapshot import ChildKey
from onload_operator.render import names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildResource:
    group: str
    version: str
    plural: str


RESOURCES = {
    "Module": ChildResource(names.KMM_GROUP, names.KMM_VERSION, "modules"),
    "DaemonSet": ChildResource("apps", "v1", "daemonsets"),
}


class KmmMissingError(RuntimeError):
    """The cluster does not serve KMM's Module resource."""

    def __init__(self) -> None:
        super().__init__(
            f"the API server does not serve {names.KMM_API_VERSION} Modules: install Kernel Module Management (KMM)"
        )


def read_child(kube: Kube, namespace: str, kind: str, name: str) -> JsonObject | None:
    """The live child, or None when it does not exist."""
    resource = RESOURCES[kind]
    try:
        response: Any = kube.custom.get_namespaced_custom_object(
            resource.group, resource.version, namespace, resource.plural, name, _preload_content=False
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return json_of(response)


def read_children(kube: Kube, namespace: str, keys: Iterable[ChildKey]) -> dict[ChildKey, JsonObject | None]:
    """Fresh reads of some children (None for those that do not exist)."""
    return {(kind, name): read_child(kube, namespace, kind, name) for kind, name in keys}


def apply_child(kube: Kube, action: ApplyChild) -> JsonObject:
    """Server-side apply under the operator's field manager, with force; returns the object written."""
    manifest = action.manifest
    kind, metadata = manifest["kind"], manifest["metadata"]
    resource = RESOURCES[kind]
    try:
        response: Any = kube.write(
            "apply",
            resource.plural,
            lambda: kube.custom.patch_namespaced_custom_object(
                resource.group,
                resource.version,
                metadata["namespace"],
                resource.plural,
                metadata["name"],
                manifest,
                field_manager=names.MANAGER,
                force=True,
                _content_type=APPLY_PATCH,
                _preload_content=False,
            ),
        )
    except ApiException as error:
        if kind == "Module" and kmm_missing(error):
            raise KmmMissingError() from error
        raise
    log.info("applied %s %s/%s (%s)", kind, metadata["namespace"], metadata["name"], action.reason)
    return json_of(response)


def _patch(kube: Kube, namespace: str, kind: str, name: str, body: Any, content_type: str) -> None:
    resource = RESOURCES[kind]
    kube.write(
        "patch",
        resource.plural,
        lambda: kube.custom.patch_namespaced_custom_object(
            resource.group,
            resource.version,
            namespace,
            resource.plural,
            name,
            body,
            field_manager=names.MANAGER,
            _content_type=content_type,
            _preload_content=False,
        ),
    )


def patch_child(kube: Kube, namespace: str, action: PatchChild) -> None:
    _patch(kube, namespace, action.kind, action.name, dict(action.patch), MERGE_PATCH)
    log.info("patched %s %s/%s: %s", action.kind, namespace, action.name, action.reason)


def replace_spec(kube: Kube, namespace: str, action: ReplaceSpec) -> None:
    """Replace the spec only if the child is still at the observed resourceVersion (else the pass is retried)."""
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": action.resource_version},
        {"op": "replace", "path": "/spec", "value": dict(action.spec)},
    ]
    _patch(kube, namespace, action.kind, action.name, patch, JSON_PATCH)
    log.info(
        "replaced the spec of %s %s/%s: removed fields of %s", action.kind, namespace, action.name, action.managers
    )


def delete_child(kube: Kube, namespace: str, action: DeleteChild) -> bool:
    """Delete the child, its pods first (foreground), only if it is still ``action.uid``; True when deleted."""
    resource = RESOURCES[action.kind]
    options = client.V1DeleteOptions(
        propagation_policy="Foreground", preconditions=client.V1Preconditions(uid=action.uid)
    )
    try:
        kube.write(
            "delete",
            resource.plural,
            lambda: kube.custom.delete_namespaced_custom_object(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                action.name,
                body=options,
                _preload_content=False,
            ),
        )
    except ApiException as error:
        if error.status in (404, 409):  # gone already, or replaced by another object since
            return False
        raise
    log.info("deleting %s %s/%s, its pods first", action.kind, namespace, action.name)
    return True


def kmm_missing(error: ApiException) -> bool:
    """Whether a Module apply failed because KMM's CRD is not served: missing (404; an apply creates missing
    objects, so the resource itself is), or being deleted (403, "custom resource definition is terminating")."""
    return error.status == 404 or (error.status == 403 and "definition is terminating" in str(error.body or ""))
