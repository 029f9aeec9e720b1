"""The kubelets of every node: start bound pods, report readiness, finish terminating pods.

A pod bound to an existing Ready node is admitted ``pod_start_delay`` seconds after it is seen Pending and
becomes Running and Ready. Admission checks extended resources (names with a ``/``, such as ``amd.com/onload``)
against ``status.allocatable`` of the node minus what admitted pods on it already request; a pod that does not
fit is rejected like the kubelet's resource admission does: phase Failed, reason ``OutOf<resource>``.
CPU, memory and pod count are not checked. Containers are never executed: every started container just runs.

A pod with a deletionTimestamp on an existing node is finished ``pod_stop_delay`` seconds later: its containers
are reported terminated (exit code 0, phase Succeeded) and the pod is deleted again, standing in for the kubelet's
final deletion with grace period 0. A NotReady node stands for a node whose kubelet stopped reporting: its pods'
Ready condition turns False, new pods on it stay Pending and deleted pods stay Terminating until it is Ready again.
Pods on a missing node stay Pending.
"""

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable

from kubesim.controllers.runtime import DelayQueue, Key, ResourceCache, WorkQueue, object_key
from kubesim.errors import ApiError, not_found
from kubesim.objects import is_node_ready, is_pod_ready, now_rfc3339
from kubesim.objectstore import JsonObject, ObjectStore
from kubesim.resource_keys import NODES, PODS

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")
POD_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def _is_extended_resource(name: str) -> bool:
    return "/" in name and not name.startswith(("kubernetes.io/", "requests."))


def extended_resource_requests(pod: JsonObject) -> dict[str, int]:
    """Extended resources a pod needs: the larger of the containers' sum and any init container's request.

    For extended resources requests default to limits (both must be integers and equal when both are given).
    """
    spec = pod.get("spec") or {}

    def requests_of(container: JsonObject) -> dict[str, int]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        result = {}
        for name, quantity in merged.items():
            if _is_extended_resource(name):
                try:
                    result[name] = int(str(quantity))
                except ValueError:
                    continue
        return result

    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for name, amount in requests_of(container).items():
            total[name] = total.get(name, 0) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in requests_of(container).items():
            total[name] = max(total.get(name, 0), amount)
    return {name: amount for name, amount in total.items() if amount > 0}


def _container_id(pod: JsonObject, container_name: str) -> str:
    seed = f"{pod['metadata'].get('uid', '')}/{pod['metadata']['name']}/{container_name}"
    return "containerd://" + hashlib.sha256(seed.encode()).hexdigest()


def _image_id(image: str) -> str:
    repository = image.split("@")[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":")[0]
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _condition(kind: str, status: bool, now: str) -> JsonObject:
    return {"type": kind, "status": "True" if status else "False", "lastProbeTime": None, "lastTransitionTime": now}


class Kubelet:
    """Every node's kubelet; ``set_node_ready`` stands in for a node losing or regaining its kubelet."""

    def __init__(
        self,
        store: ObjectStore,
        nodes: ResourceCache,
        pods: ResourceCache,
        loop: asyncio.AbstractEventLoop,
        start_delay: float,
        stop_delay: float,
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._pods = pods
        self._start_delay = start_delay
        self._stop_delay = stop_delay
        self._starts: DelayQueue[Key] = DelayQueue(loop, self._start_pod)
        self._stops: DelayQueue[Key] = DelayQueue(loop, self._finish_pod)
        self._readiness: WorkQueue[Key] = WorkQueue(loop, self._sync_readiness, "kubelet readiness")
        self._pod_ips: dict[str, list[int]] = {}
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)
        for pod in list(pods.values()):
            self._consider(pod)

    def stop(self) -> None:
        self._starts.close()
        self._stops.close()
        self._readiness.close()

    def set_node_ready(self, name: str, ready: bool) -> None:
        """Set the node's Ready condition; pods on a NotReady node turn not ready and new ones do not start."""
        node = self._store.get(NODES, None, name)
        if node is None:
            raise not_found("nodes", name)
        now = now_rfc3339()
        status_text = "True" if ready else "False"
        ready_condition: JsonObject = {
            "type": "Ready",
            "status": status_text,
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        conditions: list[JsonObject] = []
        for condition in (node.get("status") or {}).get("conditions") or []:
            if condition.get("type") != "Ready":
                conditions.append(condition)
            elif condition.get("status") == status_text:
                ready_condition["lastTransitionTime"] = condition.get("lastTransitionTime", now)
        conditions.append(ready_condition)
        updated = self._store.merge_patch(
            NODES, None, name, {"status": {"conditions": conditions}}, subresource="status"
        )
        self._nodes.observe(updated)

    # Events.

    def _on_node(self, old: JsonObject | None, new: JsonObject | None) -> None:
        if new is None or (old is not None and is_node_ready(old) == is_node_ready(new)):
            return
        for pod in self._pods.on_node(new["metadata"]["name"]):
            self._consider(pod)

    def _on_pod(self, old: JsonObject | None, new: JsonObject | None) -> None:
        if new is None:
            assert old is not None
            key = object_key(old)
            self._starts.discard(key)
            self._stops.discard(key)
            return
        self._consider(new)

    def _consider(self, pod: JsonObject) -> None:
        key = object_key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return
        node = self._nodes.get(("", node_name))
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        if pod["metadata"].get("deletionTimestamp"):
            self._starts.discard(key)
            if phase in TERMINAL_PHASES and pod["metadata"].get("finalizers"):
                return  # finished; the object goes once its finalizers are removed
            if not is_node_ready(node):
                self._stops.discard(key)  # no kubelet reports from this node: the pod stays Terminating
            elif key not in self._stops:
                self._stops.add(key, self._stop_delay)
            return
        if phase == "Pending":
            if is_node_ready(node):
                if key not in self._starts:
                    self._starts.add(key, self._start_delay)
            else:
                self._starts.discard(key)
        elif phase == "Running" and is_pod_ready(pod) != is_node_ready(node):
            self._readiness.add(key)

    # Actions.

    def _start_pod(self, key: Key) -> None:
        pod = self._pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        if ((pod.get("status") or {}).get("phase") or "Pending") != "Pending":
            return
        node = self._nodes.get(("", pod["spec"].get("nodeName") or ""))
        if node is None or not is_node_ready(node):
            return
        rejection = self._admission_failure(pod, node)
        status = self._rejected_status(*rejection) if rejection else self._running_status(pod, node)
        self._patch_status(pod, status, retry=lambda: self._starts.add(key, self._start_delay))

    def _admission_failure(self, pod: JsonObject, node: JsonObject) -> tuple[str, str] | None:
        wanted = extended_resource_requests(pod)
        if not wanted:
            return None
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        used: dict[str, int] = {}
        for other in self._pods.on_node(node["metadata"]["name"]):
            if object_key(other) == object_key(pod) or (other.get("status") or {}).get("phase") != "Running":
                continue
            for name, amount in extended_resource_requests(other).items():
                used[name] = used.get(name, 0) + amount
        for name, amount in sorted(wanted.items()):
            try:
                capacity = int(str(allocatable.get(name, 0)))
            except ValueError:
                capacity = 0
            if amount > capacity - used.get(name, 0):
                return (
                    f"OutOf{name}",
                    f"Pod was rejected: Node didn't have enough resource: {name}, requested: {amount}, "
                    f"used: {used.get(name, 0)}, capacity: {capacity}",
                )
        return None

    @staticmethod
    def _rejected_status(reason: str, message: str) -> JsonObject:
        return {"phase": "Failed", "reason": reason, "message": message, "startTime": now_rfc3339()}

    def _running_status(self, pod: JsonObject, node: JsonObject) -> JsonObject:
        now = now_rfc3339()
        spec = pod["spec"]
        host_ip = next(
            (a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"),
            "10.0.0.1",
        )
        pod_ip = host_ip if spec.get("hostNetwork") else self._allocate_pod_ip(node)
        containers = [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": _image_id(container.get("image", "")),
                "containerID": _container_id(pod, container["name"]),
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for container in spec.get("containers") or []
        ]
        init_containers = [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": _image_id(container.get("image", "")),
                "containerID": _container_id(pod, container["name"]),
                "ready": True,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
            }
            for container in spec.get("initContainers") or []
        ]
        status: JsonObject = {
            "phase": "Running",
            "conditions": [_condition(kind, True, now) for kind in POD_CONDITIONS],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "containerStatuses": containers,
        }
        if init_containers:
            status["initContainerStatuses"] = init_containers
        return status

    def _allocate_pod_ip(self, node: JsonObject) -> str:
        """The next address of the node's pod CIDR (10.244.<n>.0/24 when it has none), wrapping around."""
        name = node["metadata"]["name"]
        pool = self._pod_ips.get(name)
        if pool is None:
            cidr = (node.get("spec") or {}).get("podCIDR")
            try:
                network = ipaddress.ip_network(cidr) if cidr else None
            except ValueError:
                network = None
            if network is None:
                network = ipaddress.ip_network(f"10.244.{len(self._pod_ips) % 256}.0/24")
            pool = [int(network.network_address) + 2, max(network.num_addresses - 3, 1), 0]
            self._pod_ips[name] = pool
        first, size, used = pool
        pool[2] = used + 1
        return str(ipaddress.ip_address(first + used % size))

    def _sync_readiness(self, key: Key) -> None:
        pod = self._pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        if (pod.get("status") or {}).get("phase") != "Running":
            return
        ready = is_node_ready(self._nodes.get(("", pod["spec"].get("nodeName") or "")))
        if is_pod_ready(pod) == ready:
            return
        now = now_rfc3339()
        conditions = [
            _condition("Ready", ready, now) if c.get("type") == "Ready" else c
            for c in (pod.get("status") or {}).get("conditions") or []
        ]
        self._patch_status(pod, {"conditions": conditions}, retry=lambda: self._readiness.add(key))

    def _finish_pod(self, key: Key) -> None:
        pod = self._pods.get(key)
        if pod is None or not pod["metadata"].get("deletionTimestamp"):
            return
        if not is_node_ready(self._nodes.get(("", pod["spec"].get("nodeName") or ""))):
            return
        namespace, name = key
        if (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            now = now_rfc3339()
            terminated = [
                {
                    **container,
                    "ready": False,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": ((container.get("state") or {}).get("running") or {}).get("startedAt", now),
                            "finishedAt": now,
                            "containerID": container.get("containerID", ""),
                        }
                    },
                }
                for container in (pod.get("status") or {}).get("containerStatuses") or []
            ]
            conditions = [
                _condition(c["type"], False, now) if c.get("type") in ("Ready", "ContainersReady") else c
                for c in (pod.get("status") or {}).get("conditions") or []
            ]
            status: JsonObject = {"phase": "Succeeded", "conditions": conditions}
            if terminated:
                status["containerStatuses"] = terminated
            if not self._patch_status(pod, status, retry=lambda: self._stops.add(key, self._stop_delay)):
                return
        try:
            self._store.delete(PODS, namespace, name)
        except ApiError as error:
            if error.code != 404:
                self._stops.add(key, max(self._stop_delay, 0.1))
                raise
        self._pods.refresh(key)

    def _patch_status(self, pod: JsonObject, status: JsonObject, retry: Callable[[], None]) -> bool:
        namespace, name = object_key(pod)
        try:
            updated = self._store.merge_patch(PODS, namespace, name, {"status": status}, subresource="status")
        except ApiError as error:
            if error.code == 404:
                return False
            log.info("kubelet: status of pod %s/%s not written (%s), retrying", namespace, name, error.message)
            retry()
            return False
        if updated["metadata"].get("deletionTimestamp"):
            self._pods.refresh(object_key(pod))  # the write may have been the one that removed the pod
        else:
            self._pods.observe(updated)
        return True
