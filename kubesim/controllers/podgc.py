"""Pod garbage collection: the pods bound to a node are deleted when the node is deleted.

The real PodGC force-deletes them (grace period 0) because no kubelet is left to finish them; here a pod that a
first deletion left terminating is deleted a second time, the same stand-in the kubelet uses.
"""

import asyncio

from kubesim.controllers.runtime import Key, ResourceCache, WorkQueue, object_key
from kubesim.errors import ApiError
from kubesim.objectstore import JsonObject, ObjectStore
from kubesim.resource_keys import PODS


class PodGarbageCollector:
    def __init__(
        self, store: ObjectStore, nodes: ResourceCache, pods: ResourceCache, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._pods = pods
        self._work: WorkQueue[Key] = WorkQueue(loop, self._collect, "pod gc")
        nodes.add_handler(self._on_node)

    def stop(self) -> None:
        self._work.close()

    def _on_node(self, old: JsonObject | None, new: JsonObject | None) -> None:
        if new is not None or old is None:
            return
        for pod in self._pods.on_node(old["metadata"]["name"]):
            self._work.add(object_key(pod))

    def _collect(self, key: Key) -> None:
        pod = self._pods.get(key)
        if pod is None or self._nodes.get(("", pod["spec"].get("nodeName") or "")) is not None:
            return
        namespace, name = key
        for _ in range(2):
            try:
                self._store.delete(PODS, namespace, name)
            except ApiError as error:
                if error.code != 404:
                    raise
            current = self._store.get(PODS, namespace, name)
            if current is None or current["metadata"].get("finalizers"):
                break
        self._pods.refresh(key)
