"""Object names, label keys and annotation keys shared with the Go Onload Operator v3.

A cluster can move between the Go operator and this one because both use exactly these names.
"""

from __future__ import annotations

from typing import Final

MANAGER: Final = "onload-operator"
"""Field manager of every server-side apply, and the value of the managed-by label."""

MODULE_SUFFIX: Final = "-module"
SFC_MODULE_SUFFIX: Final = "-sfcmod"
DEVICE_PLUGIN_SUFFIX: Final = "-onload-device-plugin-ds"

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
NAME_LABEL: Final = "onload.amd.com/name"
DEPLOYED_ANNOTATION: Final = "onload.amd.com/deployed-onload"
"""JSON of the version, userImage and kernelMappings that the children were rendered from (see planner.deployed)."""
APPLIED_HASH_ANNOTATION: Final = "onload.amd.com/applied-hash"
"""Hash of the whole rendered manifest: a changed hash means fields may have to be removed from the live object."""
FINALIZER: Final = "onload.amd.com/finalizer"
UPGRADE_TAINT: Final = "onload.amd.com/upgrade"
"""Taint the node-by-node upgrade puts on the node it works on; every child tolerates it."""
UPGRADE_ANNOTATION: Final = "onload.amd.com/upgrade"
"""Node annotation holding the node's upgrade state (see upgrade.state); its presence hands the node to the upgrade."""

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


def kmm_version_label(namespace: str, module: str) -> str:
    """KMM's ordered-upgrade label: KMM loads version V of the Module only on nodes labelled with V."""
    return f"{KMM_VERSION_LABEL_PREFIX}.{namespace}.{module}"


def kmm_ready_label(namespace: str, module: str) -> str:
    """The label KMM puts on a node once the Module is loaded there."""
    return f"{KMM_LABEL_PREFIX}{namespace}.{module}.ready"


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
