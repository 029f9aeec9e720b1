"""The registry of served resource types: built-in ones and those defined by CustomResourceDefinitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One served ``group/version/plural``; ``storage`` names the bucket shared by all versions of a resource."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    has_generation: bool = False
    builtin: bool = True
    schema: JsonObject | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    storage_version: str = ""
    verbs: tuple[str, ...] = ALL_VERBS
    # Field selector labels beyond metadata.name and metadata.namespace (a CRD's selectableFields).
    selectable_fields: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}" if self.group else f"{self.version}/{self.plural}"

    @property
    def storage(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` as used in error messages (``pods``, ``daemonsets.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    *,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    generation: bool = False,
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        subresources=frozenset(sub),
        has_generation=generation,
        storage_version=version,
        verbs=verbs,
    )


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", False, short=("ns",), sub=("status", "finalize")),
    _builtin("", "v1", "nodes", "Node", False, short=("no",), sub=("status",)),
    _builtin(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        short=("po",),
        categories=("all",),
        sub=("status", "eviction", "binding", "log"),
        generation=True,
    ),
    _builtin("", "v1", "configmaps", "ConfigMap", True, short=("cm",)),
    _builtin("", "v1", "secrets", "Secret", True),
    _builtin("", "v1", "services", "Service", True, short=("svc",), categories=("all",), sub=("status",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, short=("sa",)),
    _builtin("", "v1", "events", "Event", True, short=("ev",)),
    _builtin("events.k8s.io", "v1", "events", "Event", True, short=("ev",)),
    _builtin(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        short=("ds",),
        categories=("all",),
        sub=("status",),
        generation=True,
    ),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        short=("deploy",),
        categories=("all",),
        sub=("status",),
        generation=True,
    ),
    _builtin("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        short=("pdb",),
        sub=("status",),
        generation=True,
    ),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short=("crd", "crds"),
        sub=("status",),
        generation=True,
    ),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
)


def resource_types_from_crd(crd: JsonObject) -> list[ResourceType]:
    """Every served version of a CustomResourceDefinition as a resource type."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    versions = spec.get("versions", [])
    storage_version = next((v["name"] for v in versions if v.get("storage")), versions[0]["name"] if versions else "")
    result = []
    for version in versions:
        if not version.get("served", True):
            continue
        sub = set()
        subresources = version.get("subresources") or {}
        if "status" in subresources:
            sub.add("status")
        if "scale" in subresources:
            sub.add("scale")
        columns = tuple(
            PrinterColumn(
                name=c["name"],
                type=c.get("type", "string"),
                json_path=c.get("jsonPath", ""),
                description=c.get("description", ""),
                priority=int(c.get("priority", 0)),
                format=c.get("format", ""),
            )
            for c in version.get("additionalPrinterColumns", [])
        )
        result.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
                subresources=frozenset(sub),
                has_generation=True,
                builtin=False,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=columns,
                storage_version=storage_version,
                selectable_fields=tuple(
                    f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or [] if "jsonPath" in f
                ),
            )
        )
    return result


_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
# Field selector labels each built-in resource supports upstream, besides metadata.name and metadata.namespace.
BUILTIN_FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "v1/pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ),
    "v1/nodes": ("spec.unschedulable",),
    "v1/namespaces": ("status.phase",),
    "v1/secrets": ("type",),
    "v1/events": _EVENT_FIELDS,
    "events.k8s.io/v1/events": (
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ),
}


def field_labels(resource_type: ResourceType) -> frozenset[str]:
    """The field selector labels the API server accepts for this resource."""
    extra = (
        BUILTIN_FIELD_LABELS.get(resource_type.key, ()) if resource_type.builtin else resource_type.selectable_fields
    )
    return frozenset(("metadata.name", "metadata.namespace", *extra))
