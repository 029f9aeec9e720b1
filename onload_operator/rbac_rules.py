"""Exactly the API permissions the operator uses: the source of ``config/rbac/role.yaml``'s rules.

The integration tests record every request the operator makes and compare them with these rules both ways.
"""

from __future__ import annotations

from typing import Final

RULES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    # (apiGroup, resource, verbs)
    ("onload.amd.com", "onloads", ("list", "watch", "patch")),  # watch; finalizer and kopf's annotations
    ("onload.amd.com", "onloads/status", ("patch",)),
    # The children's owner references block the CR's deletion; OpenShift admits that only from whoever may set
    # the CR's finalizers (OwnerReferencesPermissionEnforcement).
    ("onload.amd.com", "onloads/finalizers", ("update",)),
    # Server-side apply: patch, and create when the apply creates the object (Kubernetes authorizes both).
    ("kmm.sigs.x-k8s.io", "modules", ("get", "list", "watch", "create", "patch")),
    # delete: a DaemonSet whose immutable selector differs (the Go operator v3.0's) is created again.
    ("apps", "daemonsets", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "nodes", ("list", "watch", "patch")),
    ("", "pods", ("list",)),  # device-plugin pods on nodes that stop matching, before their modules are unloaded
    ("", "events", ("create",)),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),  # kopf notices new CRDs (KMM)
)


def permissions() -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs in RULES for verb in verbs}
