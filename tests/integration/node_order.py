"""Records, node by node, whether the device-plugin pod and KMM's module-loaded label are present, in order."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from onload_operator.render import names
from tests.integration.operator_harness import Cluster


@dataclass
class UnloadOrder:
    """Observations of one node while it leaves an Onload CR.

    Each observation reads the node's labels first and the device-plugin pods second: a read that finds KMM's
    ready label gone and then still finds a device-plugin pod proves that the module was unloaded under it.
    """

    cluster: Cluster
    namespace: str
    name: str
    node: str
    seen: list[tuple[bool, bool]] = field(default_factory=list)
    """(module ready label present, device-plugin pod present) per observation."""

    def observe(self) -> tuple[bool, bool]:
        labels = self.cluster.core.read_node(self.node).metadata.labels or {}
        ready = names.kmm_ready_label(self.namespace, names.module_name(self.name)) in labels
        pods = self.cluster.core.list_namespaced_pod(self.namespace, label_selector=names.NAME_LABEL).items
        # Any device-plugin DaemonSet of the CR: one per revision, or the single one of earlier operators.
        prefix = f"{self.name}-onload-"
        plugin = any(
            pod.spec.node_name == self.node and pod.metadata.labels[names.NAME_LABEL].startswith(prefix) for pod in pods
        )
        self.seen.append((ready, plugin))
        return ready, plugin

    def unloaded(self) -> bool:
        """Observe once; whether the module is unloaded and the device plugin gone (for ``wait_for``)."""
        return self.observe() == (False, False)

    def assert_plugin_stopped_first(self) -> None:
        unloaded_under_plugin = [i for i, (ready, plugin) in enumerate(self.seen) if plugin and not ready]
        assert not unloaded_under_plugin, (
            f"KMM unloaded the module from {self.node} while a device-plugin pod was still there "
            f"(observations {unloaded_under_plugin} of {self.seen})"
        )
        assert self.seen[:1] == [(True, True)], f"{self.node} did not start with Onload running"


def events_since(list_call: Callable[..., Any], since: str, **query: Any) -> list[tuple[str, dict[str, Any]]]:
    """(type, object) of every watch event after resourceVersion ``since``, as a watch with ``list_call`` reads them."""
    response = list_call(
        **query,
        watch=True,
        resource_version=since,
        timeout_seconds=1,
        allow_watch_bookmarks=False,
        _preload_content=False,
    )
    events = [json.loads(line) for line in response.read().decode().splitlines()]
    return [(event["type"], event["object"]) for event in events]


def changes_since(list_call: Callable[..., Any], since: str, **query: Any) -> list[dict[str, Any]]:
    """The objects added or modified after resourceVersion ``since``."""
    return [obj for kind, obj in events_since(list_call, since, **query) if kind in {"ADDED", "MODIFIED"}]


def assert_old_pods_deleted_before_new_ones_added(
    cluster: Cluster, namespace: str, since: str, nodes: Collection[str], is_new: Callable[[dict[str, Any]], bool]
) -> None:
    """On every node, each old pod was deleted before the first new pod was added: never two plugins on one
    kubelet."""
    events = events_since(cluster.core.list_namespaced_pod, since, namespace=namespace)
    for node in nodes:
        on_node = [(kind, pod) for kind, pod in events if pod["spec"].get("nodeName") == node]
        old_deleted = [i for i, (kind, pod) in enumerate(on_node) if kind == "DELETED" and not is_new(pod)]
        new_added = [i for i, (kind, pod) in enumerate(on_node) if kind == "ADDED" and is_new(pod)]
        summary = [(kind, pod["metadata"]["name"]) for kind, pod in on_node]
        assert old_deleted, f"no old pod deleted on {node}: {summary}"
        assert new_added, f"no new pod added on {node}: {summary}"
        assert max(old_deleted) < min(new_added), f"a new pod came before the old one went on {node}: {summary}"
