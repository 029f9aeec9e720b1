"""Records, node by node, whether the device-plugin pod and KMM's module-loaded label are present, in order."""

from __future__ import annotations

import json
from collections.abc import Callable
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
        pods = self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector=f"{names.NAME_LABEL}={names.device_plugin_name(self.name)}"
        ).items
        plugin = any(pod.spec.node_name == self.node for pod in pods)
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


def changes_since(list_call: Callable[..., Any], since: str, **query: Any) -> list[dict[str, Any]]:
    """The objects added or modified after resourceVersion ``since``, as a watch with ``list_call`` reads them."""
    response = list_call(
        **query,
        watch=True,
        resource_version=since,
        timeout_seconds=1,
        allow_watch_bookmarks=False,
        _preload_content=False,
    )
    events = [json.loads(line) for line in response.read().decode().splitlines()]
    return [event["object"] for event in events if event["type"] in {"ADDED", "MODIFIED"}]
