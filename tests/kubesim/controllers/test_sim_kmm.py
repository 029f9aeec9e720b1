"""KMM stand-in semantics against the fake store."""

import asyncio
from typing import Any

import pytest

from kubesim.controllers import Controllers, ControllerSettings, start_controllers
from kubesim.controllers.kmm_module import container_image, excluded_by_taints, kernel_mapping_for
from kubesim.objectstore import WatchEvent
from tests.kubesim.controllers.sim_fake_store import FakeStore
from tests.kubesim.controllers.sim_helpers import add_nodes, module, wait_for

MODULES = "kmm.sigs.x-k8s.io/v1beta1/modules"
READY = "kmm.node.kubernetes.io/onload.onload-module.ready"
VERSION_READY = "kmm.node.kubernetes.io/onload.onload-module.version.ready"
VERSION = "kmm.node.kubernetes.io/version-module.onload.onload-module"
WORKERS = "worker-[0-2]:labels=node-role.kubernetes.io/worker="


def labels(store: FakeStore, node: str) -> dict[str, str]:
    obj = store.get("v1/nodes", None, node)
    assert obj is not None
    result: dict[str, str] = obj["metadata"].get("labels") or {}
    return result


def loaded(store: FakeStore) -> dict[str, str | None]:
    """Node name -> loaded version ("" when unversioned) for the onload module."""
    return {
        node["metadata"]["name"]: node["metadata"]["labels"].get(VERSION_READY, "")
        for node in store.list("v1/nodes")
        if READY in node["metadata"]["labels"]
    }


def loader_status(store: FakeStore, name: str = "onload-module") -> dict[str, Any]:
    obj = store.get(MODULES, "onload", name)
    assert obj is not None
    result: dict[str, Any] = (obj.get("status") or {}).get("moduleLoader") or {}
    return result


def set_label(store: FakeStore, node: str, key: str, value: str | None) -> None:
    store.merge_patch("v1/nodes", None, node, {"metadata": {"labels": {key: value}}})


@pytest.mark.parametrize(
    ("mappings", "kernel", "expected"),
    [
        ([{"regexp": "el9", "containerImage": "a"}], "5.14.0-284.el9.x86_64", "a"),
        ([{"regexp": "^5\\.14", "containerImage": "a"}], "6.5.0", None),
        ([{"literal": "6.5.0", "containerImage": "a"}, {"regexp": ".*", "containerImage": "b"}], "6.5.0", "a"),
        ([{"literal": "6.5.0", "containerImage": "a"}, {"regexp": ".*", "containerImage": "b"}], "6.5.1", "b"),
        ([{"regexp": ".", "containerImage": "first"}, {"regexp": ".", "containerImage": "second"}], "6.5", "first"),
        ([{"literal": "6.5.0-rt", "containerImage": "a"}], "6.5.0-rt+", "a"),
        ([{"regexp": "(?=lookahead)", "containerImage": "a"}], "lookahead", None),
    ],
)
def test_kernel_mapping_matching(mappings: list[dict[str, str]], kernel: str, expected: str | None) -> None:
    found = kernel_mapping_for(module(mappings=mappings), kernel)
    assert (found or {}).get("containerImage") == expected


async def test_unversioned_module_loads_on_matching_nodes(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, f"{WORKERS};rt-0:kernel=6.8.0-rt:labels=node-role.kubernetes.io/worker=;master-0")
    store.create(MODULES, module())
    await wait_for(lambda: sorted(loaded(store)) == ["worker-0", "worker-1", "worker-2"], what="loaded on workers")
    assert VERSION_READY not in labels(store, "worker-0")
    expected = {"nodesMatchingSelectorNumber": 4, "desiredNumber": 3, "availableNumber": 3}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")

    # The node stops matching: the module is unloaded there.
    set_label(store, "worker-1", "node-role.kubernetes.io/worker", None)
    await wait_for(lambda: sorted(loaded(store)) == ["worker-0", "worker-2"], what="unloaded from worker-1")
    expected = {"nodesMatchingSelectorNumber": 3, "desiredNumber": 2, "availableNumber": 2}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")

    # A selector change moves the module.
    new_selector = {"kubernetes.io/hostname": "master-0", "node-role.kubernetes.io/worker": None}
    store.merge_patch(MODULES, "onload", "onload-module", {"spec": {"selector": new_selector}})
    await wait_for(lambda: sorted(loaded(store)) == ["master-0"], what="moved to master-0")

    # Deleting the Module unloads it everywhere.
    store.delete(MODULES, "onload", "onload-module")
    await wait_for(lambda: loaded(store) == {}, what="unloaded everywhere")


async def test_load_takes_the_configured_delay(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, WORKERS)
    loop = asyncio.get_running_loop()
    loaded_at: dict[str, float] = {}

    def record(event: WatchEvent) -> None:
        if READY in event["object"]["metadata"]["labels"]:
            loaded_at.setdefault(event["object"]["metadata"]["name"], loop.time())

    store.subscribe("v1/nodes", record)
    created_at = loop.time()
    store.create(MODULES, module())
    await wait_for(lambda: len(loaded_at) == 3)
    # kmm_load_delay is 20 ms in these tests.
    assert min(loaded_at.values()) - created_at >= 0.019


async def test_versioned_module_follows_the_version_label(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(store, WORKERS)
    store.create(MODULES, module(version="1.0"))
    set_label(store, "worker-0", VERSION, "1.0")
    set_label(store, "worker-1", VERSION, "0.9")
    await wait_for(lambda: loaded(store) == {"worker-0": "1.0"}, what="1.0 loaded on worker-0 only")
    expected = {"nodesMatchingSelectorNumber": 3, "desiredNumber": 1, "availableNumber": 1}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")

    # Ordered upgrade: the Module moves to 2.0; nodes still labelled 1.0 keep 1.0 loaded.
    store.merge_patch(MODULES, "onload", "onload-module", {"spec": {"moduleLoader": {"container": {"version": "2.0"}}}})
    set_label(store, "worker-2", VERSION, "2.0")
    await wait_for(lambda: loaded(store) == {"worker-0": "1.0", "worker-2": "2.0"}, what="2.0 on worker-2")

    # Changing worker-0's label to 2.0 unloads 1.0 and then loads 2.0.
    history: list[str | None] = []
    store.subscribe(
        "v1/nodes",
        lambda e: (
            history.append(e["object"]["metadata"]["labels"].get(VERSION_READY))
            if e["object"]["metadata"]["name"] == "worker-0"
            else None
        ),
    )
    set_label(store, "worker-0", VERSION, "2.0")
    await wait_for(lambda: "2.0" in history, what="2.0 on worker-0")
    assert loaded(store)["worker-0"] == "2.0"
    assert history[0] == "1.0"  # the label change itself
    assert None in history
    assert history.index(None) < history.index("2.0")

    # Removing the label unloads.
    set_label(store, "worker-2", VERSION, None)
    await wait_for(lambda: loaded(store) == {"worker-0": "2.0"}, what="unloaded from worker-2")


async def test_failing_node_never_loads_and_warns(store: FakeStore, controllers: Controllers) -> None:
    assert controllers.kmm is not None
    add_nodes(store, WORKERS)
    controllers.kmm.fail_load("worker-1")
    store.create(MODULES, module())
    await wait_for(lambda: sorted(loaded(store)) == ["worker-0", "worker-2"])
    expected = {"nodesMatchingSelectorNumber": 3, "desiredNumber": 3, "availableNumber": 2}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")
    events = await wait_for(lambda: store.list("v1/events", "onload"), what="warning event")
    assert len(events) == 1
    [event] = events
    assert event["type"] == "Warning"
    assert event["reason"] == "FailedLoad"
    assert event["involvedObject"]["kind"] == "Module"
    assert event["involvedObject"]["name"] == "onload-module"
    assert "worker-1" in event["message"]
    controllers.kmm.clear_load_failure("worker-1")
    await wait_for(lambda: len(loaded(store)) == 3, what="loads once the failure is lifted")


async def test_module_created_before_nodes_and_two_modules(store: FakeStore, controllers: Controllers) -> None:
    store.create(MODULES, module())
    store.create(MODULES, module("onload-sfcmod", mappings=[{"literal": "6.1.0", "containerImage": "x"}]))
    add_nodes(store, f"{WORKERS};new-0:kernel=6.1.0:labels=node-role.kubernetes.io/worker=")
    sfc_ready = "kmm.node.kubernetes.io/onload.onload-sfcmod.ready"
    await wait_for(lambda: sorted(loaded(store)) == ["worker-0", "worker-1", "worker-2"])
    await wait_for(lambda: sfc_ready in labels(store, "new-0"), what="sfc module on the 6.1.0 node")
    assert READY not in labels(store, "new-0")
    assert sfc_ready not in labels(store, "worker-0")


def test_container_image_substitutes_kmm_variables() -> None:
    mod = module(
        mappings=[
            {
                "literal": "5.14.0-284.el9.x86_64",
                "containerImage": "r/${MOD_NAMESPACE}/${MOD_NAME}:${KERNEL_FULL_VERSION}",
            },
            {"regexp": ".", "containerImage": ""},
        ]
    )
    mod["spec"]["moduleLoader"]["container"]["containerImage"] = "r/default:${KERNEL_XYZ}-${KERNEL_X}"
    assert container_image(mod, "5.14.0-284.el9.x86_64") == "r/onload/onload-module:5.14.0-284.el9.x86_64"
    assert container_image(mod, "6.8.1-rt+") == "r/default:6.8.1-6"


async def test_worker_pods_run_while_loading(store: FakeStore) -> None:
    settings = ControllerSettings(pod_start_delay=0.01, kmm_load_delay=0.3, kmm_unload_delay=0.3, kmm_worker_pods=True)
    running = start_controllers(store, settings)
    try:
        add_nodes(store, "worker-[0-1]:labels=node-role.kubernetes.io/worker=")
        running.kmm.fail_load("worker-1")  # type: ignore[union-attr]
        store.create(MODULES, module())

        def workers() -> dict[str, dict[str, Any]]:
            pods = store.list("v1/pods", "onload", label_selector="kmm.node.kubernetes.io/module.name=onload-module")
            return {p["spec"]["nodeName"]: p for p in pods}

        during = await wait_for(lambda: workers() if len(workers()) == 2 else None, what="two worker pods")
        assert during["worker-0"]["metadata"]["name"] == "kmm-worker-worker-0-onload-module"
        assert during["worker-0"]["spec"]["containers"][0]["args"][:2] == ["kmod", "load"]
        assert (
            during["worker-0"]["spec"]["containers"][0]["image"]
            == "registry.example/onload-module:"
            + (
                store.get("v1/nodes", None, "worker-0")["status"]["nodeInfo"]["kernelVersion"]  # type: ignore[index]
            )
        )
        assert READY not in labels(store, "worker-0")
        await wait_for(lambda: loaded(store) == {"worker-0": ""}, what="loaded on worker-0")
        await wait_for(lambda: list(workers()) == ["worker-1"], what="worker-0's worker pod removed")
        assert workers()["worker-1"]["status"]["phase"] == "Failed"

        running.kmm.clear_load_failure("worker-1")  # type: ignore[union-attr]
        await wait_for(lambda: sorted(loaded(store)) == ["worker-0", "worker-1"], what="loaded after recovery")
        await wait_for(lambda: workers() == {}, what="no worker pods left")

        set_label(store, "worker-0", "node-role.kubernetes.io/worker", None)
        unloading = await wait_for(lambda: workers().get("worker-0"), what="unload worker pod")
        assert unloading["spec"]["containers"][0]["args"][:2] == ["kmod", "unload"]
        await wait_for(lambda: sorted(loaded(store)) == ["worker-1"] and workers() == {}, what="unloaded")
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("taint", "tolerations", "excluded"),
    [
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [], True),
        ({"key": "k", "value": "v", "effect": "NoExecute"}, [], True),
        ({"key": "k", "value": "v", "effect": "PreferNoSchedule"}, [], False),
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"operator": "Exists"}], False),
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "operator": "Exists"}], False),
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "value": "v"}], False),
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "k", "operator": "Equal", "value": "w"}], True),
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, [{"key": "other", "operator": "Exists"}], True),
        (
            {"key": "k", "value": "v", "effect": "NoExecute"},
            [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            True,
        ),
        (
            {"key": "k", "value": "v", "effect": "NoExecute"},
            [{"key": "k", "operator": "Exists", "effect": "NoExecute"}],
            False,
        ),
        ({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, [], True),
        ({"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}, [], False),
        ({"key": "node.kubernetes.io/memory-pressure", "effect": "NoExecute"}, [], True),
    ],
)
def test_taints_exclude_nodes_as_in_kmm(
    taint: dict[str, str], tolerations: list[dict[str, str]], excluded: bool
) -> None:
    mod = module()
    if tolerations:
        mod["spec"]["tolerations"] = tolerations
    node = {"metadata": {"name": "n"}, "spec": {"taints": [taint]}}
    assert excluded_by_taints(mod, node) is excluded


async def test_untolerated_taint_freezes_the_node(store: FakeStore, controllers: Controllers) -> None:
    add_nodes(
        store, f"{WORKERS};tainted-0:labels=node-role.kubernetes.io/worker=:taints=onload.amd.com/upgrade=2:NoSchedule"
    )
    store.create(MODULES, module(version="1.0"))
    for node in ("worker-0", "worker-1", "tainted-0"):
        set_label(store, node, VERSION, "1.0")
    await wait_for(lambda: loaded(store) == {"worker-0": "1.0", "worker-1": "1.0"}, what="1.0 on untainted nodes")
    expected = {"nodesMatchingSelectorNumber": 3, "desiredNumber": 2, "availableNumber": 2}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")

    # A cordon of a loaded node: neither the version change nor the label removal touches it.
    store.merge_patch(
        "v1/nodes",
        None,
        "worker-0",
        {"spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}},
    )
    store.merge_patch(MODULES, "onload", "onload-module", {"spec": {"moduleLoader": {"container": {"version": "2.0"}}}})
    set_label(store, "worker-0", VERSION, "2.0")
    set_label(store, "worker-1", VERSION, None)
    await wait_for(lambda: loaded(store) == {"worker-0": "1.0"}, what="worker-1 unloaded, worker-0 untouched")
    expected = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 0, "availableNumber": 0}
    await wait_for(lambda: loader_status(store) == expected, what=f"status {expected}")

    # Tolerating the upgrade taint lets tainted-0 load 2.0 once its label says so; worker-0 stays frozen.
    store.merge_patch(
        MODULES,
        "onload",
        "onload-module",
        {"spec": {"tolerations": [{"key": "onload.amd.com/upgrade", "operator": "Exists", "effect": "NoSchedule"}]}},
    )
    set_label(store, "tainted-0", VERSION, "2.0")
    await wait_for(lambda: loaded(store) == {"worker-0": "1.0", "tainted-0": "2.0"}, what="2.0 on tainted-0")

    # Uncordoning worker-0 lets KMM act on it again: 1.0 out, 2.0 in.
    store.merge_patch("v1/nodes", None, "worker-0", {"spec": {"taints": None}})
    await wait_for(lambda: loaded(store) == {"worker-0": "2.0", "tainted-0": "2.0"}, what="2.0 on worker-0")


async def test_load_failure_of_one_version(store: FakeStore) -> None:
    settings = ControllerSettings(
        pod_start_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01, kmm_worker_pods=True
    )
    running = start_controllers(store, settings)
    try:
        assert running.kmm is not None
        add_nodes(store, "worker-[0-1]:labels=node-role.kubernetes.io/worker=")
        running.kmm.fail_load("worker-0", "2.0")
        store.create(MODULES, module(version="1.0"))
        set_label(store, "worker-0", VERSION, "1.0")
        set_label(store, "worker-1", VERSION, "1.0")
        await wait_for(lambda: loaded(store) == {"worker-0": "1.0", "worker-1": "1.0"}, what="1.0 loads everywhere")

        store.merge_patch(
            MODULES, "onload", "onload-module", {"spec": {"moduleLoader": {"container": {"version": "2.0"}}}}
        )
        set_label(store, "worker-0", VERSION, "2.0")
        set_label(store, "worker-1", VERSION, "2.0")
        await wait_for(lambda: loaded(store) == {"worker-1": "2.0"}, what="2.0 on worker-1, worker-0 unloaded")

        def worker_pod() -> dict[str, Any] | None:
            return store.get("v1/pods", "onload", "kmm-worker-worker-0-onload-module")

        failed = await wait_for(
            lambda: (pod := worker_pod()) is not None and (pod.get("status") or {}).get("phase") == "Failed" and pod,
            what="a Failed worker pod on worker-0",
        )
        assert failed["spec"]["containers"][0]["args"][:2] == ["kmod", "load"]
        [event] = await wait_for(lambda: store.list("v1/events", "onload"), what="FailedLoad event")
        assert event["reason"] == "FailedLoad"
        assert "version 2.0" in event["message"]
        assert "worker-0" in event["message"]
        assert READY not in labels(store, "worker-0")

        # Clearing another version's failure changes nothing: a module created afterwards loads on worker-0 (after
        # the same delay a 2.0 load would take), and 2.0 still is not loaded there.
        running.kmm.clear_load_failure("worker-0", "1.0")
        running.kmm.clear_load_failure("worker-1")
        store.create(MODULES, module("probe", selector={"kubernetes.io/hostname": "worker-0"}))
        await wait_for(lambda: "kmm.node.kubernetes.io/onload.probe.ready" in labels(store, "worker-0"), what="probe")
        assert READY not in labels(store, "worker-0")
        running.kmm.clear_load_failure("worker-0", "2.0")
        await wait_for(lambda: loaded(store) == {"worker-0": "2.0", "worker-1": "2.0"}, what="2.0 loads once cleared")
        await wait_for(lambda: worker_pod() is None, what="the failed worker pod removed")
    finally:
        running.stop()
