"""The ``Onload`` custom resource, ``onload.amd.com/v1alpha1``.

These models are the single source of truth for the CRD in ``crds/`` (``make manifests``). JSON names, types and
defaults match the CRD of the Go Onload Operator v3, so CRs written for it keep working; additions are optional.
Python attributes are snake_case; the JSON (and CRD) names are the camelCase aliases.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from onload_operator.api import rules
from onload_operator.api.base import ApiModel
from onload_operator.api.upgrade import UpgradePolicy, UpgradeStatus

GROUP = "onload.amd.com"
VERSION = "v1alpha1"
KIND = "Onload"
PLURAL = "onloads"
SINGULAR = "onload"
API_VERSION = f"{GROUP}/{VERSION}"

PullPolicy = Literal["Always", "IfNotPresent", "Never"]

LABEL_VALUE_PATTERN = rules.LABEL_VALUE_PATTERN
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
DEFAULT_LIB_MOUNT_PATH = "/usr/lib64"


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the Onload CR's namespace."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    name: str = Field(min_length=1, description="Name of the referenced object.")


class BuildArg(ApiModel):
    """A build argument passed to the in-cluster kernel module build."""

    name: str = Field(description="Name of the build argument.")
    value: str = Field(description="Value of the build argument.")


class KernelBuild(ApiModel):
    """In-cluster build of the Onload kernel module image by KMM."""

    build_args: list[BuildArg] = Field(
        default_factory=list,
        description="Build arguments for the Dockerfile, e.g. ONLOAD_SOURCE and ONLOAD_BUILD_PARAMS.",
    )
    dockerfile_config_map: LocalObjectReference = Field(
        description="ConfigMap holding the Dockerfile (key `dockerfile`) that builds the kernel module image."
    )


class SfcSpec(ApiModel):
    """Presence requests a KMM Module for the out-of-tree sfc driver; it has no fields."""


class KernelMapping(ApiModel):
    """Which kernel module image to use for the nodes whose kernel version matches a regular expression."""

    regexp: str = Field(
        min_length=1,
        description=(
            "Regular expression matched against the node's kernel version (unanchored), in the syntax of Go's "
            "regexp package that KMM uses. Use it also for literal versions. The operator refuses expressions that "
            "Go does not compile, including `\\C` and `(?<name>...)` (write `(?P<name>...)`), which other RE2 "
            "engines accept."
        ),
    )
    kernel_module_image: str = Field(
        min_length=1,
        pattern=rules.IMAGE_PATTERN,
        description=(
            "Image reference containing the Onload kernel modules for the matching kernels. Its tag may contain "
            "${KERNEL_FULL_VERSION}; an absent image tag may be built by KMM when `build` is set."
        ),
    )
    sfc: SfcSpec | None = Field(
        default=None,
        description=(
            "When present, the nodes whose kernel this mapping serves also load the out-of-tree sfc driver from "
            "the same image, through a second KMM Module that holds only such mappings; nodes of the other "
            "mappings run Onload without it. Incompatible with boot-time loading of sfc (e.g. a MachineConfig)."
        ),
    )
    build: KernelBuild | None = Field(
        default=None, description="Build the kernel module image in the cluster with KMM when it is absent."
    )


class ControlPlaneSpec(ApiModel):
    """Settings of the Onload control plane server that the Onload worker hosts on each node."""

    parameters: list[str] = Field(
        default_factory=lambda: ["-K"],
        json_schema_extra={"default": ["-K"]},
        description="Command-line parameters of onload_cp_server. The default -K logs to the kernel log.",
    )


class OnloadComponentSpec(ApiModel):
    """The Onload version, its images and its kernel modules."""

    kernel_mappings: list[KernelMapping] = Field(
        min_length=1,
        description="Kernel module images per kernel version. The first mapping that matches a node is used.",
    )
    user_image: str = Field(
        min_length=1,
        pattern=rules.IMAGE_PATTERN,
        description=(
            "Image reference with the Onload user-space files (/opt/onload), copied to each selected node by the "
            "device plugin's init container. Must match `version`."
        ),
    )
    version: str = Field(
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description=(
            "Onload version, e.g. 8.1.2.26. Written into node labels, so it must be a valid label value. "
            "Changing it starts the node-by-node upgrade."
        ),
    )
    image_pull_policy: PullPolicy | None = Field(
        default=None,
        description="Pull policy of the kernel module images and of the user-space image (unset: the Kubernetes "
        "default, Always for a `latest` or absent tag and IfNotPresent otherwise).",
    )
    control_plane: ControlPlaneSpec | None = Field(
        default=None, description="Configuration of the Onload control plane server."
    )


class DevicePluginSpec(ApiModel):
    """Configuration of the Onload device plugin that hands `amd.com/onload` to pods."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.setPreload) && self.setPreload && has(self.mountOnload) && self.mountOnload)",
                    "message": "setPreload and mountOnload are mutually exclusive",
                },
                {
                    "rule": "!(has(self.libMountPath) && has(self.libMounthPath)) "
                    "|| self.libMountPath == self.libMounthPath",
                    "message": "libMountPath and libMounthPath (its older spelling) differ: set only one",
                },
            ]
        }
    )

    image_pull_policy: PullPolicy | None = Field(
        default=None,
        description="Pull policy of the device plugin and Onload worker containers (unset: the Kubernetes default, "
        "Always for a `latest` or absent tag and IfNotPresent otherwise).",
    )
    max_pods_per_node: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="Number of `amd.com/onload` devices each node advertises: the most Onload containers a node runs "
        "(default 100).",
    )
    set_preload: bool = Field(
        default=True,
        description="Set LD_PRELOAD to libonload.so in containers that request `amd.com/onload` (default true). "
        "Mutually exclusive with mountOnload.",
    )
    mount_onload: bool = Field(
        default=False,
        description="Mount the `onload` launcher binary into containers (default false). Mutually exclusive with "
        "setPreload.",
    )
    host_onload_path: str = Field(
        default="/opt/onload/",
        pattern=rules.HOST_PATH_PATTERN,
        max_length=rules.MAX_PATH_LENGTH,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": rules.HOST_PATH_RULE, "message": rules.HOST_PATH_MESSAGE}]
        },
        description="Host directory that receives the Onload user-space files: a normalised absolute path of at "
        "least two components that is not a system directory and lies inside none ("
        + ", ".join(rules.PROTECTED_HOST_DIRECTORIES)
        + "). Default /opt/onload/.",
    )
    base_mount_path: str = Field(
        default="/opt/onload",
        pattern=rules.ABSOLUTE_PATH_PATTERN,
        max_length=rules.MAX_PATH_LENGTH,
        description="Normalised absolute directory in the container under which Onload files are mounted "
        "(default /opt/onload).",
    )
    bin_mount_path: str = Field(
        default="/usr/bin",
        pattern=rules.MOUNT_PATH_PATTERN,
        max_length=rules.MAX_PATH_LENGTH,
        description="Directory under baseMountPath where the `onload` binary is mounted: a normalised path "
        "(no '.' or '..' components) joined to baseMountPath; empty mounts it in baseMountPath itself "
        "(default /usr/bin).",
    )
    lib_mount_path: str | None = Field(
        default=None,
        pattern=rules.MOUNT_PATH_PATTERN,
        max_length=rules.MAX_PATH_LENGTH,
        description=f"Directory under baseMountPath where the Onload libraries are mounted (default "
        f"{DEFAULT_LIB_MOUNT_PATH}).",
    )
    cdi: bool = Field(
        default=False,
        description="Also describe the Onload devices, mounts and environment in a CDI spec that the device "
        "plugin writes to the host's /var/run/cdi, and name its CDI device in every allocation, beside the plain "
        "devices, mounts and environment (kept so that a kubelet or runtime without CDI still works). CDI devices "
        "reach the runtime where the kubelet's DevicePluginCDIDevices gate is on (Kubernetes 1.29 and later) and "
        "the runtime has CDI enabled.",
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=rules.SERVICE_ACCOUNT_PATTERN,
        description="PriorityClass of the device-plugin pods (unset: system-node-critical, so that a node under "
        "pressure evicts them last). Platforms that allow system-node-critical only in kube-system refuse those "
        'pods elsewhere: name another PriorityClass, or set "" for none.',
    )
    legacy_lib_mount_path: str | None = Field(
        default=None,
        alias="libMounthPath",
        pattern=rules.MOUNT_PATH_PATTERN,
        max_length=rules.MAX_PATH_LENGTH,
        description="Older spelling of libMountPath, accepted for CRs written for earlier operators (the Go "
        "operator's CRD defaulted it to /usr/lib64 in every CR it stored). Both may be set only to the same value.",
    )

    @field_validator("host_onload_path")
    @classmethod
    def _check_host_path(cls, path: str) -> str:
        error = rules.host_path_error(path)
        if error is not None:
            raise ValueError(error)
        return path

    @model_validator(mode="after")
    def _check_exclusive(self) -> DevicePluginSpec:
        if self.set_preload and self.mount_onload:
            raise ValueError("setPreload and mountOnload are mutually exclusive")
        if None not in (self.lib_mount_path, self.legacy_lib_mount_path) and (
            self.lib_mount_path != self.legacy_lib_mount_path
        ):
            raise ValueError("libMountPath and libMounthPath (its older spelling) differ: set only one")
        return self

    @property
    def effective_lib_mount_path(self) -> str:
        """The library mount directory, whichever spelling set it."""
        for path in (self.lib_mount_path, self.legacy_lib_mount_path):
            if path is not None:
                return path
        return DEFAULT_LIB_MOUNT_PATH


class OnloadSpec(ApiModel):
    """Desired state of Onload on the selected nodes."""

    onload: OnloadComponentSpec = Field(description="The Onload version, its images and its kernel modules.")
    device_plugin: DevicePluginSpec = Field(
        default_factory=lambda: DevicePluginSpec(),
        json_schema_extra={"default": {}},
        description="Configuration of the Onload device plugin. Every field has a default; `{}` or leaving it out "
        "takes them.",
    )
    selector: dict[str, LabelValue] = Field(
        min_length=1,
        json_schema_extra={"minProperties": 1},
        description="Node labels selecting the nodes that get Onload: valid label keys and values. Must not be "
        "empty, and must not select nodes that another Onload CR selects.",
    )
    service_account_name: str = Field(
        max_length=253,
        pattern=rules.SERVICE_ACCOUNT_PATTERN,
        description="Service account of the KMM module loader and the device plugin pods (needs privileged pods "
        "and `get` on pods): a DNS subdomain, or empty for the namespace's default service account.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description="Secrets for pulling the Onload images; the first one is also KMM's imageRepoSecret.",
    )
    upgrade: UpgradePolicy = Field(
        default_factory=lambda: UpgradePolicy(),
        json_schema_extra={"default": {}},
        description="How a change of what the nodes run (version, images, kernel mappings, device-plugin settings) "
        "is rolled out node by node. Every field has a default; `{}` or leaving it out takes them.",
    )

    @field_validator("selector")
    @classmethod
    def _check_selector_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        errors = [error for error in map(rules.label_key_error, selector) if error is not None]
        if errors:
            raise ValueError("; ".join(errors))
        return selector

    @property
    def uses_sfc(self) -> bool:
        """Whether any kernel mapping asks for the out-of-tree sfc driver."""
        return any(mapping.sfc is not None for mapping in self.onload.kernel_mappings)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A status condition in the shape of metav1.Condition."""

    type: str = Field(
        description="Type of the condition: Ready, Progressing, Degraded, Upgrading, UpgradeBlocked or UpgradeFailed."
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation that the condition was set from."
    )
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the condition last changed status (RFC 3339).",
    )
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Programmatic identifier of the reason for the condition's last transition, in CamelCase.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details of the transition.")


class NodeCounts(ApiModel):
    """How many nodes are at each stage of getting Onload."""

    selected: int = Field(default=0, ge=0, description="Nodes that match spec.selector.")
    module_ready: int = Field(default=0, ge=0, description="Selected nodes where KMM reports the module loaded.")
    device_plugin_ready: int = Field(default=0, ge=0, description="Selected nodes with a Ready device plugin pod.")


class OnloadStatus(ApiModel):
    """Observed state of an Onload CR, written by the operator."""

    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Progressing and Degraded; during and after a rollout also Upgrading, UpgradeBlocked and "
        "UpgradeFailed.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation that this status was computed from."
    )
    version: str | None = Field(default=None, description="The Onload version that the nodes run.")
    nodes: NodeCounts | None = Field(default=None, description="Node counts at each stage.")
    upgrade: UpgradeStatus | None = Field(default=None, description="Progress of the node-by-node upgrade.")


class ObjectMeta(BaseModel):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str = "default"
    generation: int | None = None
    uid: str | None = None


class Onload(BaseModel):
    """A whole Onload object, as read from the API server or a manifest."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    api_version: Literal["onload.amd.com/v1alpha1"] = Field(default="onload.amd.com/v1alpha1", alias="apiVersion")
    kind: Literal["Onload"] = "Onload"
    metadata: ObjectMeta
    spec: OnloadSpec
    status: OnloadStatus | None = None

    @classmethod
    def from_manifest(cls, body: dict[str, Any]) -> Onload:
        """Validate a manifest or API object."""
        return cls.model_validate(body)
