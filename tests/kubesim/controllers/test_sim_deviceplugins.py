"""The kubelet's device manager: ``amd.com/onload`` follows the Ready device-plugin pods of each node."""

from typing import Any

import pytest

from kubesim.controllers import Controllers
from kubesim.controllers.deviceplugins import DEFAULT_DEVICE_COUNT, advertised_devices
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import add_nodes, pod, wait_for

RESOURCE = "amd.com/onload"
PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


def plugin_pod(name: str, node: str, args: list[str], *, host_path: str = PLUGIN_DIR) -> dict[str, Any]:
    """A device-plugin pod shaped like the operator's: the plugin container mounts the kubelet socket directory."""
    manifest = pod(name, node)
    container = manifest["spec"]["containers"][0]
    container["args"] = args
    container["volumeMounts"] = [{"name": "kubelet-socket", "mountPath": "/var/lib/kubelet/device-plugins"}]
    manifest["spec"]["volumes"] = [{"name": "kubelet-socket", "hostPath": {"path": host_path, "type": "Directory"}}]
    return manifest


def advertised(store: FakeStore, node: str) -> tuple[str | None, str | None]:
    status = (store.get("v1/nodes", None, node) or {}).get("status") or {}
    return (status.get("capacity") or {}).get(RESOURCE), (status.get("allocatable") or {}).get(RESOURCE)


@pytest.mark.parametrize(
    ("args", "host_path", "expected"),
    [
        (["-maxPods=7", "-setPreload=true"], PLUGIN_DIR, 7),
        (["--maxPods=3"], PLUGIN_DIR, 3),
        (["-maxPods", "12"], PLUGIN_DIR, 12),
        (["-maxPods=5", "-maxPods=6"], PLUGIN_DIR, 6),
        (["-setPreload=false"], PLUGIN_DIR, DEFAULT_DEVICE_COUNT),
        (["-maxPods=0"], PLUGIN_DIR, 0),
        (["-maxPods=lots"], PLUGIN_DIR, None),
        (["--", "-maxPods=4"], PLUGIN_DIR, DEFAULT_DEVICE_COUNT),
        (["-maxPods=7"], "/var/lib/kubelet/device-plugins/", 7),
        (["-maxPods=7"], "/var/lib/kubelet", None),
    ],
)
def test_device_plugin_pods_and_their_device_count(args: list[str], host_path: str, expected: int | None) -> None:
    assert advertised_devices(plugin_pod("dp", "n", args, host_path=host_path)) == expected


def test_a_pod_without_the_socket_directory_is_no_device_plugin() -> None:
    manifest = pod("app", "n")
    manifest["spec"]["containers"][0]["args"] = ["-maxPods=7"]
    assert advertised_devices(manifest) is None


async def test_onload_resource_follows_the_ready_plugin_pod(store: FakeStore, controllers: Controllers) -> None:
    assert controllers.kubelet is not None
    add_nodes(store, "worker-0;worker-1;static-0:capacity=amd.com/onload=4")
    store.create("v1/pods", plugin_pod("dp-0", "worker-0", ["-maxPods=7"]))
    store.create("v1/pods", pod("app", "worker-1"))
    await wait_for(lambda: advertised(store, "worker-0") == ("7", "7"), what="worker-0 advertises 7")
    assert advertised(store, "worker-1") == (None, None)
    assert advertised(store, "static-0") == ("4", "4")

    # Pods requesting the resource are admitted against it.
    store.create("v1/pods", pod("user", "worker-0", requests={RESOURCE: "2"}))
    await wait_for(lambda: (store.get("v1/pods", "default", "user") or {}).get("status", {}).get("phase") == "Running")

    # The node's kubelet stops reporting: the plugin pod is no longer Ready, but a silent kubelet writes nothing.
    controllers.kubelet.set_node_ready("worker-0", False)
    await wait_for(
        lambda: (
            [
                c["status"]
                for c in store.get("v1/pods", "default", "dp-0")["status"]["conditions"]  # type: ignore[index]
                if c["type"] == "Ready"
            ]
            == ["False"]
        ),
        what="plugin pod not Ready",
    )
    assert advertised(store, "worker-0") == ("7", "7")
    controllers.kubelet.set_node_ready("worker-0", True)

    # The plugin pod goes: the resource drops to 0, as after the plugin's endpoint stops.
    store.delete("v1/pods", "default", "dp-0")
    await wait_for(lambda: advertised(store, "worker-0") == ("0", "0"), what="worker-0 advertises 0")

    # A new plugin pod with the default count registers again.
    store.create("v1/pods", plugin_pod("dp-1", "worker-0", ["-setPreload=true"]))
    await wait_for(lambda: advertised(store, "worker-0") == ("100", "100"), what="worker-0 advertises 100")


async def test_newest_ready_plugin_pod_wins(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, "worker-0")
    store.create("v1/pods", plugin_pod("dp-old", "worker-0", ["-maxPods=2"]))
    await wait_for(lambda: advertised(store, "worker-0") == ("2", "2"), what="old plugin registered")
    store.create("v1/pods", plugin_pod("dp-new", "worker-0", ["-maxPods=9"]))
    await wait_for(lambda: advertised(store, "worker-0") == ("9", "9"), what="new plugin registered")
    store.delete("v1/pods", "default", "dp-new")
    await wait_for(lambda: advertised(store, "worker-0") == ("2", "2"), what="back to the old plugin")
