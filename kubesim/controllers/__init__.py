"""Simulated cluster controllers that run inside kubesim against its object store.

``start_controllers`` starts, on the running event loop, the DaemonSet controller, the kubelets of all nodes
(with their device manager for the Onload device plugin), a Kernel Module Management stand-in and pod garbage
collection; each one can be switched off. They are event driven (store subscriptions plus timers), share one
cache per watched resource and write only through the ``ObjectStore`` methods, so API clients observe their
work exactly as they would observe real controllers.
"""

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from kubesim.controllers.daemonset import DaemonSetController
from kubesim.controllers.deviceplugins import DevicePluginManager
from kubesim.controllers.kmm import KmmController
from kubesim.controllers.kubelet import Kubelet
from kubesim.controllers.podgc import PodGarbageCollector
from kubesim.controllers.runtime import ResourceCache
from kubesim.objectstore import ObjectStore

__all__ = [
    "ControllerSettings",
    "Controllers",
    "DaemonSetController",
    "DevicePluginManager",
    "KmmController",
    "Kubelet",
    "PodGarbageCollector",
    "start_controllers",
]


class ControllerSettings(BaseModel):
    """Which simulated controllers run, and how long their simulated work takes (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daemonsets: bool = True
    kubelet: bool = True
    kmm: bool = True
    pod_gc: bool = True
    pod_start_delay: float = Field(default=0.05, ge=0)
    pod_stop_delay: float = Field(default=0.05, ge=0)
    kmm_load_delay: float = Field(default=0.1, ge=0)
    kmm_unload_delay: float = Field(default=0.05, ge=0)
    kmm_worker_pods: bool = False
    """Run a KMM worker pod on the node for every load and unload (see ``kubesim.controllers.kmm``)."""


class Controllers:
    """Handles of the running controllers (None when switched off)."""

    def __init__(
        self,
        caches: list[ResourceCache],
        daemonsets: DaemonSetController | None,
        kubelet: Kubelet | None,
        device_plugins: DevicePluginManager | None,
        kmm: KmmController | None,
        pod_gc: PodGarbageCollector | None,
    ) -> None:
        self._caches = caches
        self.daemonsets = daemonsets
        self.kubelet = kubelet
        self.device_plugins = device_plugins
        self.kmm = kmm
        self.pod_gc = pod_gc

    def stop(self) -> None:
        """Unsubscribe from the store and cancel all pending work; idempotent."""
        for cache in self._caches:
            cache.stop()
        for controller in (self.daemonsets, self.kubelet, self.device_plugins, self.kmm, self.pod_gc):
            if controller is not None:
                controller.stop()
        self._caches = []


def start_controllers(store: ObjectStore, settings: ControllerSettings | None = None) -> Controllers:
    """Start the enabled controllers; must be called on the event loop that runs ``store``."""
    settings = settings or ControllerSettings()
    loop = asyncio.get_running_loop()
    caches: dict[str, ResourceCache] = {}

    def cache(resource: str, *, index_by_node: bool = False, crd_name: str | None = None) -> ResourceCache:
        if resource not in caches:
            caches[resource] = ResourceCache(store, resource, index_by_node=index_by_node, crd_name=crd_name)
            caches[resource].start()
        return caches[resource]

    need_pods = settings.daemonsets or settings.kubelet or settings.pod_gc
    nodes = cache("v1/nodes") if need_pods or settings.kmm else None
    pods = cache("v1/pods", index_by_node=True) if need_pods else None

    daemonsets = kubelet = device_plugins = kmm = pod_gc = None
    if settings.daemonsets:
        assert nodes is not None
        assert pods is not None
        daemonsets = DaemonSetController(store, nodes, pods, cache("apps/v1/daemonsets"), loop)
    if settings.kubelet:
        assert nodes is not None
        assert pods is not None
        kubelet = Kubelet(store, nodes, pods, loop, settings.pod_start_delay, settings.pod_stop_delay)
        device_plugins = DevicePluginManager(store, nodes, pods, loop)
    if settings.kmm:
        assert nodes is not None
        kmm = KmmController(
            store,
            nodes,
            cache("kmm.sigs.x-k8s.io/v1beta1/modules", crd_name="modules.kmm.sigs.x-k8s.io"),
            loop,
            settings.kmm_load_delay,
            settings.kmm_unload_delay,
            worker_pods=settings.kmm_worker_pods,
        )
    if settings.pod_gc:
        assert nodes is not None
        assert pods is not None
        pod_gc = PodGarbageCollector(store, nodes, pods, loop)
    return Controllers(list(caches.values()), daemonsets, kubelet, device_plugins, kmm, pod_gc)
