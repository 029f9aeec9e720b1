"""The controllers against kubesim's real object store: defaults, validation, GC, finalizers, CRD lifecycle."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.controllers import Controllers, ControllerSettings, start_controllers
from kubesim.store import Store
from tests.kubesim.controllers.sim_helpers import add_nodes, daemonset, module, pod, wait_for

CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
MODULES = "kmm.sigs.x-k8s.io/v1beta1/modules"
CRD_FILE = Path(__file__).parents[3] / "kubesim" / "crds" / "kmm.sigs.x-k8s.io_modules.yaml"
READY = "kmm.node.kubernetes.io/onload.onload-module.ready"
SETTINGS = ControllerSettings(pod_start_delay=0.01, pod_stop_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01)


@pytest.fixture
async def env() -> AsyncIterator[tuple[Store, Controllers]]:
    store = Store(graceful_pod_deletion=True)
    for namespace in ("default", "onload"):
        if store.get("v1/namespaces", None, namespace) is None:
            store.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    running = start_controllers(store, SETTINGS)
    yield store, running
    running.stop()


def phase(store: Store, name: str, namespace: str = "default") -> str | None:
    obj = store.get("v1/pods", namespace, name)
    return None if obj is None else obj["status"].get("phase")


def ds_pods(store: Store) -> list[dict[str, Any]]:
    return store.list("v1/pods", "default", label_selector="app=agent")


def loaded_on(store: Store) -> list[str]:
    return sorted(n["metadata"]["name"] for n in store.list("v1/nodes", label_selector=READY))


async def test_daemonset_lifecycle_with_garbage_collection(env: tuple[Store, Controllers]) -> None:
    store, _ = env
    add_nodes(store, "worker-[0-3]:labels=role=worker;infra-0")
    store.create("apps/v1/daemonsets", daemonset(node_selector={"role": "worker"}))
    await wait_for(
        lambda: len(ds_pods(store)) == 4 and all(p["status"]["phase"] == "Running" for p in ds_pods(store)),
        what="4 running daemon pods",
    )
    by_field = store.list("v1/pods", "default", field_selector="spec.nodeName=worker-2")
    assert [p["metadata"]["name"][:6] for p in by_field] == ["agent-"]

    def counts() -> dict[str, Any]:
        return store.get("apps/v1/daemonsets", "default", "agent")["status"]  # type: ignore[index, no-any-return]

    await wait_for(lambda: counts().get("numberReady") == 4 and counts().get("observedGeneration") == 1)
    assert counts()["desiredNumberScheduled"] == 4

    # Deleting the DaemonSet lets the garbage collector delete its pods; the kubelet finishes them.
    store.delete("apps/v1/daemonsets", "default", "agent")
    await wait_for(lambda: ds_pods(store) == [], what="pods garbage collected")


async def test_graceful_pod_deletion_and_eviction(env: tuple[Store, Controllers]) -> None:
    store, _ = env
    add_nodes(store, "1")
    store.create("v1/pods", pod("app", "node-0"))
    store.create("v1/pods", pod("evicted", "node-0"))
    await wait_for(lambda: phase(store, "app") == "Running" and phase(store, "evicted") == "Running")
    store.delete("v1/pods", "default", "app")
    assert store.get("v1/pods", "default", "app")["metadata"].get("deletionTimestamp")  # type: ignore[index]
    await wait_for(lambda: phase(store, "app") is None, what="kubelet finished the deletion")
    store.evict("default", "evicted", None)
    await wait_for(lambda: phase(store, "evicted") is None, what="evicted pod gone")


async def test_finalizer_keeps_a_finished_pod(env: tuple[Store, Controllers]) -> None:
    store, _ = env
    add_nodes(store, "1")
    guarded = pod("guarded", "node-0")
    guarded["metadata"]["finalizers"] = ["example.com/keep"]
    store.create("v1/pods", guarded)
    await wait_for(lambda: phase(store, "guarded") == "Running")
    store.delete("v1/pods", "default", "guarded")
    await wait_for(lambda: phase(store, "guarded") == "Succeeded", what="terminated, kept by the finalizer")
    store.merge_patch("v1/pods", "default", "guarded", {"metadata": {"finalizers": None}})
    await wait_for(lambda: phase(store, "guarded") is None, what="gone once the finalizer is removed")


async def test_pod_gc_on_node_deletion(env: tuple[Store, Controllers]) -> None:
    store, _ = env
    add_nodes(store, "2")
    store.create("v1/pods", pod("a", "node-0"))
    store.create("v1/pods", pod("b", "node-1"))
    await wait_for(lambda: phase(store, "a") == "Running" and phase(store, "b") == "Running")
    store.delete("v1/nodes", None, "node-0")
    await wait_for(lambda: phase(store, "a") is None, what="pod of the deleted node collected")
    assert phase(store, "b") == "Running"


async def test_kmm_follows_the_module_crd(env: tuple[Store, Controllers]) -> None:
    store, controllers = env
    assert controllers.kmm is not None
    add_nodes(store, "worker-[0-1]:labels=node-role.kubernetes.io/worker=")
    crd = yaml.safe_load(CRD_FILE.read_text())
    # The CRD is registered after the controllers started.
    store.create(CRDS, crd)
    created = store.create(MODULES, module())
    assert created["spec"]["moduleLoader"]["container"]["modprobe"]["dirName"] == "/opt"
    await wait_for(lambda: loaded_on(store) == ["worker-0", "worker-1"], what="module loaded")
    expected = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    await wait_for(
        lambda: store.get(MODULES, "onload", "onload-module")["status"].get("moduleLoader") == expected,  # type: ignore[index]
        what=f"module status {expected}",
    )

    # Deleting the CRD deletes the Modules, which unloads them.
    store.delete(CRDS, None, crd["metadata"]["name"])
    await wait_for(lambda: loaded_on(store) == [], what="unloaded with the CRD")
    await wait_for(lambda: store.get(CRDS, None, crd["metadata"]["name"]) is None, what="CRD gone")

    # A re-created CRD is followed again.
    store.create(CRDS, crd)
    store.create(MODULES, module())
    await wait_for(lambda: loaded_on(store) == ["worker-0", "worker-1"], what="loaded after the CRD came back")


async def test_kmm_started_with_the_crd_present() -> None:
    store = Store()
    store.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "onload"}})
    store.create(CRDS, yaml.safe_load(CRD_FILE.read_text()))
    add_nodes(store, "worker-0:labels=node-role.kubernetes.io/worker=")
    store.create(MODULES, module())
    running = start_controllers(store, ControllerSettings(daemonsets=False, kubelet=False, kmm_load_delay=0))
    try:
        await wait_for(lambda: loaded_on(store) == ["worker-0"], what="module present at start is loaded")
    finally:
        running.stop()
