"""Object names, label keys and annotation keys shared with the Go Onload Operator v3.

A cluster can move between the Go operator and this one because both use exactly these names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MANAGER: Final = "onload-operator"
"""Field manager of every server-side apply, and the value of the managed-by label."""

MODULE_SUFFIX: Final = "-module"
SFC_MODULE_SUFFIX: Final = "-sfcmod"
DEVICE_PLUGIN_SUFFIX: Final = "-onload-device-plugin-ds"
"""The one device-plugin DaemonSet of the Go operator and of this operator's first release (see planner.takeover)."""
DEVICE_PLUGIN_REVISION_INFIX: Final = "-onload-dp-"
MAX_LABEL_VALUE: Final = 63
_NOT_NAME_CHARACTERS: Final = re.compile(r"[^a-z0-9.-]+")

KMM_GROUP: Final = "kmm.sigs.x-k8s.io"
KMM_VERSION: Final = "v1beta1"
KMM_API_VERSION: Final = f"{KMM_GROUP}/{KMM_VERSION}"
KMM_LABEL_PREFIX: Final = "kmm.node.kubernetes.io/"
KMM_VERSION_LABEL_PREFIX: Final = f"{KMM_LABEL_PREFIX}version-module"

ONLOAD_LABEL_PREFIX: Final = "onload.amd.com/"
MODULE_SELECTOR_LABEL_PREFIX: Final = "kmm.onload.amd.com/"
"""Prefix of the node label the Modules select (see module_selector_label); not ``onload.amd.com/``, whose keys
``<ns>.<name>`` would be ambiguous with any suffix since a CR name may contain dots."""
VERSION_LABEL: Final = "onload.amd.com/version"
REVISION_LABEL: Final = "onload.amd.com/revision"
"""On a device-plugin DaemonSet: the revision (see upgrade.revisions) whose nodes it serves."""
NAME_LABEL: Final = "onload.amd.com/name"
DEPLOYED_ANNOTATION: Final = "onload.amd.com/deployed-onload"
"""The record of what the nodes ran, on the children of this operator's first release (see planner.takeover)."""
APPLIED_HASH_ANNOTATION: Final = "onload.amd.com/applied-hash"
"""Hash of the whole rendered manifest: a changed hash means fields may have to be removed from the live object."""
FINALIZER: Final = "onload.amd.com/finalizer"
UPGRADE_TAINT: Final = "onload.amd.com/upgrade"
"""Taint the node-by-node upgrade puts on the node it works on; every child tolerates it."""
UPGRADE_ANNOTATION: Final = "onload.amd.com/upgrade"
"""Node annotation holding the node's upgrade state (see upgrade.state); its presence hands the node to the upgrade."""
REVISIONS_ANNOTATION: Final = "onload.amd.com/revisions"
"""JSON on the onload Module: for every revision that nodes run or are moved to, what it deploys (upgrade.revisions)."""

RESOURCE_NAME: Final = "amd.com/onload"
MAX_NAME_AND_NAMESPACE: Final = 32
"""KMM builds node label keys from a Module's namespace and name (`<name>-module`, 7 more characters): at most 39."""

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"


def module_name(name: str) -> str:
    return f"{name}{MODULE_SUFFIX}"


def sfc_module_name(name: str) -> str:
    return f"{name}{SFC_MODULE_SUFFIX}"


def device_plugin_name(name: str) -> str:
    return f"{name}{DEVICE_PLUGIN_SUFFIX}"


def device_plugin_revision_name(name: str, revision: str) -> str:
    """The device-plugin DaemonSet of one revision: ``<name>-onload-dp-<revision>``, at most 63 characters.

    The revision is kept as it is where it is a valid name part; otherwise (upper case, ``_``) or when too long,
    a lower-cased prefix of it is followed by a hash of the whole, so two revisions never share a name.
    """
    prefix = f"{name}{DEVICE_PLUGIN_REVISION_INFIX}"
    slug = _NOT_NAME_CHARACTERS.sub("-", revision.lower()).strip("-.")
    if slug == revision and len(prefix) + len(slug) <= MAX_LABEL_VALUE:
        return prefix + slug
    digest = hashlib.sha256(revision.encode()).hexdigest()[:8]
    room = MAX_LABEL_VALUE - len(prefix) - len(digest) - 1
    head = slug[: max(room, 0)].rstrip("-.")
    return f"{prefix}{head}-{digest}" if head else f"{prefix}{digest}"


def kmm_version_label(namespace: str, module: str) -> str:
    """KMM's ordered-upgrade label: KMM loads version V of the Module only on nodes labelled with V."""
    return f"{KMM_VERSION_LABEL_PREFIX}.{namespace}.{module}"


def kmm_ready_label(namespace: str, module: str) -> str:
    """The label KMM puts on a node once the Module is loaded there."""
    return f"{KMM_LABEL_PREFIX}{namespace}.{module}.ready"


def kmm_version_ready_label(namespace: str, module: str) -> str:
    """The label whose value is the version of the Module that KMM loaded on a node."""
    return f"{KMM_LABEL_PREFIX}{namespace}.{module}.version.ready"


def onload_label(namespace: str, name: str) -> str:
    """The operator's gate label: the device plugin runs only on nodes that carry it."""
    return f"{ONLOAD_LABEL_PREFIX}{namespace}.{name}"


def module_selector_label(namespace: str, name: str) -> str:
    """The node label (value ``""``) both Modules of a CR select, instead of the CR's ``spec.selector``.

    Only the operator sets and removes it: on a node it takes, together with the KMM version label; on a node it
    leaves, together with the KMM version labels once no device-plugin pod is left there. So neither relabelling a
    node nor editing the CR's selector makes KMM unload the modules under a running device plugin (for clusters
    whose Modules selected ``spec.selector``, see ``planner.takeover``).
    """
    return f"{MODULE_SELECTOR_LABEL_PREFIX}{namespace}.{name}"


def node_label_keys(namespace: str, name: str) -> tuple[str, str, str, str]:
    """Every node label the operator writes for one CR: the two KMM version labels, the gate label and the label
    the Modules select."""
    return (
        kmm_version_label(namespace, module_name(name)),
        kmm_version_label(namespace, sfc_module_name(name)),
        onload_label(namespace, name),
        module_selector_label(namespace, name),
    )


def base_labels(namespace: str, name: str, component: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGER,
        PART_OF_LABEL: "onload",
        INSTANCE_LABEL: f"onload-{namespace}-{name}",
        COMPONENT_LABEL: component,
    }
