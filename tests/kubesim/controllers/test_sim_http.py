"""The simulated controllers as an API client sees them: kubesim's Simulator over HTTP, the official client."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client, config, watch

from kubesim.controllers import ControllerSettings
from kubesim.polling import wait_for
from kubesim.simulator import Simulator

NODES = "worker-[0-2]:labels=node-role.kubernetes.io/worker=:capacity=amd.com/onload=1;infra-0"
SETTINGS = ControllerSettings(pod_start_delay=0.01, pod_stop_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01)
READY = "kmm.node.kubernetes.io/{ns}.onload-module.ready"
VERSION_READY = "kmm.node.kubernetes.io/{ns}.onload-module.version.ready"
VERSION = "kmm.node.kubernetes.io/version-module.{ns}.onload-module"


class Cluster:
    def __init__(self, sim: Simulator, api: client.ApiClient) -> None:
        self.sim = sim
        # The API objects are used as a dynamic client would use them (plain dicts in, models out).
        self.core = cast(Any, client.CoreV1Api(api))
        self.apps = cast(Any, client.AppsV1Api(api))
        self.custom = cast(Any, client.CustomObjectsApi(api))
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": self.namespace}})

    def pods(self, selector: str = "") -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def node_labels(self, name: str) -> dict[str, str]:
        return dict(self.core.read_node(name).metadata.labels or {})


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    sim = Simulator(nodes=NODES, controllers=SETTINGS).start()
    try:
        new_client: Any = config.new_client_from_config
        api = new_client(config_file=str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield Cluster(sim, api)
        finally:
            api.close()
    finally:
        sim.stop()


def test_daemonset_pods_and_status_over_http(cluster: Cluster) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "plugin"},
        "spec": {
            "selector": {"matchLabels": {"app": "plugin"}},
            "template": {
                "metadata": {"labels": {"app": "plugin"}},
                "spec": {
                    "nodeSelector": {"node-role.kubernetes.io/worker": ""},
                    "containers": [{"name": "plugin", "image": "registry.example/plugin:1"}],
                },
            },
            "updateStrategy": {"type": "OnDelete"},
        },
    }
    cluster.apps.create_namespaced_daemon_set(cluster.namespace, body)
    watch_class: Any = watch.Watch
    stream = watch_class()
    running: set[str] = set()
    for event in stream.stream(
        cluster.core.list_namespaced_pod, cluster.namespace, label_selector="app=plugin", timeout_seconds=10
    ):
        pod = event["object"]
        if pod.status.phase == "Running" and pod.status.pod_ip:
            running.add(pod.spec.node_name)
        if len(running) == 3:
            stream.stop()
    assert running == {"worker-0", "worker-1", "worker-2"}

    def status() -> Any:
        return cluster.apps.read_namespaced_daemon_set_status("plugin", cluster.namespace).status

    wait_for(lambda: status().number_ready == 3 and status().number_available == 3, message="DaemonSet status")
    final = status()
    assert (final.desired_number_scheduled, final.current_number_scheduled, final.updated_number_scheduled) == (
        3,
        3,
        3,
    )
    assert final.observed_generation == 1

    # Unlabelling a node makes the DaemonSet delete its pod there; the pod terminates, then disappears.
    cluster.core.patch_node("worker-1", {"metadata": {"labels": {"node-role.kubernetes.io/worker": None}}})
    wait_for(
        lambda: sorted(p.spec.node_name for p in cluster.pods("app=plugin")) == ["worker-0", "worker-2"],
        message="pod removed from worker-1",
    )
    wait_for(lambda: status().desired_number_scheduled == 2 and status().number_ready == 2)


def test_pod_lifecycle_eviction_and_not_ready_node(cluster: Cluster) -> None:
    def pod(name: str, node: str, onload: int = 0) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "app", "image": "registry.example/app:1"}
        if onload:
            container["resources"] = {"limits": {"amd.com/onload": str(onload)}}
        return {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [container]}}

    cluster.core.create_namespaced_pod(cluster.namespace, pod("app", "worker-0", onload=1))
    cluster.core.create_namespaced_pod(cluster.namespace, pod("greedy", "worker-0", onload=1))
    cluster.core.create_namespaced_pod(cluster.namespace, pod("plain", "infra-0"))

    def read(name: str) -> Any:
        return cluster.core.read_namespaced_pod(name, cluster.namespace)

    wait_for(lambda: read("app").status.phase == "Running" and read("plain").status.phase == "Running")
    wait_for(lambda: read("greedy").status.phase == "Failed", message="second onload pod rejected")
    assert read("greedy").status.reason == "OutOfamd.com/onload"
    container = read("app").status.container_statuses[0]
    assert container.container_id.startswith("containerd://")
    assert container.ready is True

    # NotReady node: the pod stays Running but is no longer Ready.
    assert cluster.sim.controllers is not None
    kubelet = cluster.sim.controllers.kubelet
    assert kubelet is not None
    cluster.sim.call(kubelet.set_node_ready, "infra-0", False)
    wait_for(
        lambda: [c.status for c in read("plain").status.conditions if c.type == "Ready"] == ["False"],
        message="pod not ready on a NotReady node",
    )
    cluster.sim.call(kubelet.set_node_ready, "infra-0", True)
    wait_for(lambda: [c.status for c in read("plain").status.conditions if c.type == "Ready"] == ["True"])

    # Eviction: the pod terminates and the kubelet removes it.
    cluster.core.create_namespaced_pod_eviction(
        "app", cluster.namespace, {"metadata": {"name": "app", "namespace": cluster.namespace}}
    )
    wait_for(lambda: "app" not in {p.metadata.name for p in cluster.pods()}, message="evicted pod gone")
    # Deleting with the default grace period: terminating first, then gone.
    deleted = cluster.core.delete_namespaced_pod("plain", cluster.namespace)
    assert deleted.metadata.deletion_timestamp is not None
    wait_for(lambda: "plain" not in {p.metadata.name for p in cluster.pods()}, message="deleted pod gone")


def test_kmm_module_over_http(cluster: Cluster) -> None:
    ns = cluster.namespace
    module = {
        "apiVersion": "kmm.sigs.x-k8s.io/v1beta1",
        "kind": "Module",
        "metadata": {"name": "onload-module"},
        "spec": {
            "selector": {"node-role.kubernetes.io/worker": ""},
            "moduleLoader": {
                "container": {
                    "modprobe": {"moduleName": "onload", "parameters": ["--first-time"]},
                    "kernelMappings": [{"regexp": "el9", "containerImage": "onload:${KERNEL_FULL_VERSION}"}],
                    "version": "1",
                }
            },
        },
    }
    created = cluster.custom.create_namespaced_custom_object("kmm.sigs.x-k8s.io", "v1beta1", ns, "modules", module)
    assert created["spec"]["moduleLoader"]["container"]["modprobe"]["dirName"] == "/opt"
    assert cluster.sim.controllers is not None
    kmm = cluster.sim.controllers.kmm
    assert kmm is not None
    cluster.sim.call(kmm.fail_load, "worker-2")
    for node in ("worker-0", "worker-1", "worker-2"):
        cluster.core.patch_node(node, {"metadata": {"labels": {VERSION.format(ns=ns): "1"}}})
    wait_for(
        lambda: all(cluster.node_labels(n).get(VERSION_READY.format(ns=ns)) == "1" for n in ("worker-0", "worker-1")),
        message="module loaded on worker-0 and worker-1",
    )
    assert READY.format(ns=ns) in cluster.node_labels("worker-0")
    assert READY.format(ns=ns) not in cluster.node_labels("worker-2")

    def loader() -> Any:
        obj = cluster.custom.get_namespaced_custom_object_status(
            "kmm.sigs.x-k8s.io", "v1beta1", ns, "modules", "onload-module"
        )
        return (obj.get("status") or {}).get("moduleLoader")

    wait_for(
        lambda: loader() == {"nodesMatchingSelectorNumber": 3, "desiredNumber": 3, "availableNumber": 2},
        message="module status counts",
    )
    events = wait_for(
        lambda: [e for e in cluster.core.list_namespaced_event(ns).items if e.reason == "FailedLoad"],
        message="FailedLoad event",
    )
    assert events[0].involved_object.name == "onload-module"

    # Ordered upgrade of worker-0: the Module moves to version 2, then the node label follows.
    cluster.custom.patch_namespaced_custom_object(
        "kmm.sigs.x-k8s.io",
        "v1beta1",
        ns,
        "modules",
        "onload-module",
        {"spec": {"moduleLoader": {"container": {"version": "2"}}}},
    )
    cluster.core.patch_node("worker-0", {"metadata": {"labels": {VERSION.format(ns=ns): "2"}}})
    wait_for(lambda: cluster.node_labels("worker-0").get(VERSION_READY.format(ns=ns)) == "2", message="upgraded")
    assert cluster.node_labels("worker-1").get(VERSION_READY.format(ns=ns)) == "1"

    # Deleting the Module unloads it everywhere.
    cluster.custom.delete_namespaced_custom_object("kmm.sigs.x-k8s.io", "v1beta1", ns, "modules", "onload-module")
    wait_for(
        lambda: all(READY.format(ns=ns) not in cluster.node_labels(n) for n in ("worker-0", "worker-1")),
        message="unloaded after the Module was deleted",
    )
