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
    # delete: the sfc Module once no node uses sfc.
    ("kmm.sigs.x-k8s.io", "modules", ("get", "list", "watch", "create", "patch", "delete")),
    # delete: the DaemonSet of a revision no node runs any longer, and the single one of earlier operators.
    ("apps", "daemonsets", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "nodes", ("list", "watch", "patch")),  # labels; the upgrade's state annotation and taint
    # list: device-plugin pods on nodes that stop matching, every pod of a node under upgrade; delete: pods that
    # use Onload after an eviction timeout with onEvictionTimeout: Force.
    ("", "pods", ("list", "delete")),
    ("", "pods/eviction", ("create",)),  # the upgrade evicts the pods that use Onload on the node it works on
    ("", "events", ("create", "patch")),  # a repeated Event updates its count (io/events.py)
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),  # kopf notices new CRDs (KMM)
)


def permissions() -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for group, resource, verbs in RULES for verb in verbs}
