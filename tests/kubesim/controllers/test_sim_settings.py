"""Controller settings, switching controllers off and stopping them."""

from pathlib import Path

import pydantic
import pytest
import yaml

from kubesim.controllers import ControllerSettings, start_controllers
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import add_nodes, daemonset, pod, wait_for

CRD_FILE = Path(__file__).parents[3] / "kubesim" / "crds" / "kmm.sigs.x-k8s.io_modules.yaml"


def test_settings_defaults_and_validation() -> None:
    settings = ControllerSettings()
    assert (settings.daemonsets, settings.kubelet, settings.kmm, settings.pod_gc) == (True, True, True, True)
    assert 0 < settings.pod_start_delay < 1
    with pytest.raises(pydantic.ValidationError):
        ControllerSettings(pod_start_delay=-1)
    with pytest.raises(pydantic.ValidationError):
        ControllerSettings(kubelets=False)  # type: ignore[call-arg]


async def test_disabled_controllers_have_no_handle_and_do_nothing() -> None:
    store = FakeStore()
    running = start_controllers(store, ControllerSettings(daemonsets=False, kmm=False, pod_start_delay=0))
    try:
        assert running.daemonsets is None
        assert running.kmm is None
        assert running.kubelet is not None
        assert running.pod_gc is not None
        add_nodes(store, "1")
        store.create("apps/v1/daemonsets", daemonset())
        store.create("v1/pods", pod("witness", "node-0"))
        await wait_for(lambda: store.get("v1/pods", "default", "witness")["status"]["phase"] == "Running")  # type: ignore[index]
        assert [p["metadata"]["name"] for p in store.list("v1/pods")] == ["witness"]
    finally:
        running.stop()


async def test_stopped_controllers_stop_reacting() -> None:
    store = FakeStore()
    running = start_controllers(store, ControllerSettings(pod_start_delay=0))
    add_nodes(store, "1")
    store.create("v1/pods", pod("before", "node-0"))
    await wait_for(lambda: store.get("v1/pods", "default", "before")["status"]["phase"] == "Running")  # type: ignore[index]
    running.stop()
    running.stop()
    assert all(not callbacks for callbacks in store.subscribers.values())
    store.create("v1/pods", pod("after", "node-0"))
    writes = len(store.writes)
    # A fresh set of controllers starts the pod; the stopped ones wrote nothing in between.
    again = start_controllers(store, ControllerSettings(pod_start_delay=0))
    try:
        await wait_for(lambda: store.get("v1/pods", "default", "after")["status"]["phase"] == "Running")  # type: ignore[index]
        assert len(store.writes) == writes + 1
    finally:
        again.stop()


def test_kmm_module_crd_fixture() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "modules.kmm.sigs.x-k8s.io"
    spec = crd["spec"]
    assert spec["group"] == "kmm.sigs.x-k8s.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {"kind": "Module", "listKind": "ModuleList", "plural": "modules", "singular": "module"}
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1beta1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    module_spec = schema["properties"]["spec"]
    assert module_spec["required"] == ["selector"]
    container = module_spec["properties"]["moduleLoader"]["properties"]["container"]
    assert container["required"] == ["kernelMappings", "modprobe"]
    assert container["properties"]["modprobe"]["properties"]["dirName"]["default"] == "/opt"
    mappings = container["properties"]["kernelMappings"]
    assert mappings["minItems"] == 1
    assert mappings["items"]["required"] == ["containerImage"]
    assert mappings["items"]["properties"]["build"]["required"] == ["dockerfileConfigMap"]
    counts = schema["properties"]["status"]["properties"]["moduleLoader"]["properties"]
    assert set(counts) == {"nodesMatchingSelectorNumber", "desiredNumber", "availableNumber"}
    assert all(field["format"] == "int32" for field in counts.values())
