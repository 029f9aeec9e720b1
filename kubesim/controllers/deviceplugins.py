"""The kubelet's device manager for the Onload device plugin: ``amd.com/onload`` in node capacity and allocatable.

A real device plugin registers with the kubelet through the socket directory ``/var/lib/kubelet/device-plugins``
and then lists its devices; the kubelet writes their count into the node's ``status.capacity`` and
``status.allocatable``. kubesim runs no container, so it takes a pod to be the Onload device plugin when one of
its containers mounts that directory from the host (a ``hostPath`` volume), and takes the count from the
container's ``-maxPods`` flag (Go flag syntax: ``-maxPods=N``, ``--maxPods=N`` or ``-maxPods N``; the last one
wins; 100 when absent, the Onload plugin's default). A flag that is not a non-negative integer stops the plugin
before it registers.

While such a pod is Ready on a Ready node the node advertises its count (the newest Ready plugin pod wins, as the
newest registration does). When no plugin pod is Ready any more, ``amd.com/onload`` becomes ``"0"`` in both
capacity and allocatable: the real kubelet zeroes allocatable at once (it marks every device unhealthy) and
capacity once the endpoint's five-minute grace period ends; kubesim zeroes both at once. A node whose plugin never
registered keeps whatever capacity it was created with. A NotReady node stands for a kubelet that stopped
reporting, so its status is left alone until it is Ready again.
"""

import asyncio
import itertools
import logging

from kubesim.controllers.runtime import Key, ResourceCache, WorkQueue, object_key
from kubesim.errors import ApiError
from kubesim.objects import is_node_ready, is_pod_ready
from kubesim.objectstore import JsonObject, ObjectStore
from kubesim.resource_keys import NODES

log = logging.getLogger(__name__)

DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
ONLOAD_RESOURCE = "amd.com/onload"
COUNT_FLAG = "maxPods"
DEFAULT_DEVICE_COUNT = 100


def _flag_value(arguments: list[str], flag: str) -> str | None:
    """The value of the last ``-flag=V``, ``--flag=V`` or ``-flag V`` in Go flag syntax, None when absent."""
    value = None
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        name, equals, given = argument.lstrip("-").partition("=")
        if not argument.startswith("-") or name != flag:
            continue
        if equals:
            value = given
        elif index + 1 < len(arguments):
            value = arguments[index + 1]
    return value


def _mounts_device_plugin_dir(container: JsonObject, host_paths: dict[str, str]) -> bool:
    return any(
        host_paths.get(mount.get("name", "")) == DEVICE_PLUGIN_DIR for mount in container.get("volumeMounts") or []
    )


def advertised_devices(pod: JsonObject) -> int | None:
    """How many ``amd.com/onload`` devices the pod's device plugin lists, or None when it is no device plugin."""
    spec = pod.get("spec") or {}
    host_paths = {
        volume.get("name", ""): str((volume.get("hostPath") or {}).get("path", "")).rstrip("/")
        for volume in spec.get("volumes") or []
        if volume.get("hostPath")
    }
    for container in spec.get("containers") or []:
        if not _mounts_device_plugin_dir(container, host_paths):
            continue
        arguments = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        given = _flag_value(arguments, COUNT_FLAG)
        if given is None:
            return DEFAULT_DEVICE_COUNT
        return int(given) if given.isdigit() else None
    return None


class DevicePluginManager:
    """Keeps ``amd.com/onload`` in each node's status in step with its Ready device-plugin pods."""

    def __init__(self, store: ObjectStore, nodes: ResourceCache, pods: ResourceCache, loop: asyncio.AbstractEventLoop):
        self._store = store
        self._nodes = nodes
        self._pods = pods
        self._registered: set[str] = set()
        self._registrations: dict[Key, int] = {}
        """Ready device-plugin pods, numbered in the order they became Ready (registered)."""
        self._sequence = itertools.count()
        self._work: WorkQueue[str] = WorkQueue(loop, self._sync_node, "device plugins")
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)
        for pod in list(pods.values()):
            self._on_pod(None, pod)

    def stop(self) -> None:
        self._work.close()

    def _on_pod(self, old: JsonObject | None, new: JsonObject | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        if advertised_devices(pod) is None:
            return
        key = object_key(pod)
        if new is not None and is_pod_ready(new) and advertised_devices(new) is not None:
            if key not in self._registrations:
                self._registrations[key] = next(self._sequence)
        else:
            self._registrations.pop(key, None)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            self._work.add(node_name)

    def _on_node(self, old: JsonObject | None, new: JsonObject | None) -> None:
        if new is None:
            assert old is not None
            self._registered.discard(old["metadata"]["name"])
        elif old is None or not is_node_ready(old):
            self._work.add(new["metadata"]["name"])

    def _advertised_now(self, node_name: str) -> int | None:
        """The count of the node's most recently registered Ready plugin pod, None when none is Ready."""
        ready = [
            (self._registrations[object_key(pod)], count)
            for pod in self._pods.on_node(node_name)
            if object_key(pod) in self._registrations and (count := advertised_devices(pod)) is not None
        ]
        return max(ready)[1] if ready else None

    def _sync_node(self, node_name: str) -> None:
        node = self._nodes.get(("", node_name))
        if node is None or not is_node_ready(node):
            return
        count = self._advertised_now(node_name)
        if count is not None:
            self._registered.add(node_name)
        elif node_name not in self._registered:
            return
        wanted = str(count or 0)
        status = node.get("status") or {}
        if all((status.get(field) or {}).get(ONLOAD_RESOURCE) == wanted for field in ("capacity", "allocatable")):
            return
        patch = {"status": {"capacity": {ONLOAD_RESOURCE: wanted}, "allocatable": {ONLOAD_RESOURCE: wanted}}}
        try:
            updated = self._store.merge_patch(NODES, None, node_name, patch, subresource="status")
        except ApiError as error:
            if error.code == 404:
                return
            raise  # the work queue retries with back-off
        log.debug("kubelet: node %s advertises %s=%s", node_name, ONLOAD_RESOURCE, wanted)
        self._nodes.observe(updated)
