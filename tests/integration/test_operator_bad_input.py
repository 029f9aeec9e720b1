"""Bad input: Ready=False with a specific reason, a Warning Event, nothing created or changed; fixing it converges."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, load_crd, onload_body

NS = "onload"


def nothing_created_for(cluster: Cluster, name: str, namespace: str = NS) -> None:
    assert cluster.module(namespace, names.module_name(name)) is None
    assert cluster.daemonset(namespace, names.device_plugin_revision_name(name, "8.1.2.26")) is None
    keys = set(names.node_label_keys(namespace, name))
    assert all(not keys & set(labels) for labels in cluster.node_labels().values())


def refused(cluster: Cluster, name: str, reason: str, namespace: str = NS) -> dict[str, Any]:
    condition: dict[str, Any] = cluster.wait_reason(namespace, name, reason)
    assert condition["status"] == "False"
    assert cluster.condition(namespace, name, "Degraded")["reason"] == reason
    wait_for(
        lambda: [(e.type, e.reason) for e in cluster.events(namespace, name)] == [("Warning", reason)],
        message=f"one Warning Event {reason}",
    )
    nothing_created_for(cluster, name, namespace)
    return condition


def test_name_and_namespace_too_long(cluster: Cluster) -> None:
    namespace = "a-rather-long-namespace"  # 23 characters, + 10 = 33
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    cluster.create_onload(onload_body(name="onload-abc", namespace=namespace))
    condition = refused(cluster, "onload-abc", "NameTooLong", namespace)
    assert "33 characters" in condition["message"]


def test_kernel_mapping_regexp_that_re2_refuses_then_fixed(cluster: Cluster) -> None:
    body = onload_body()
    body["spec"]["onload"]["kernelMappings"][0]["regexp"] = r"^(?!4\.18).*$"
    cluster.create_onload(body)
    condition = refused(cluster, "onload", "InvalidKernelMappingRegexp")
    assert "kernelMappings[0].regexp" in condition["message"]
    fixed = copy.deepcopy(body["spec"]["onload"]["kernelMappings"])
    fixed[0]["regexp"] = r"^5\..*$"
    cluster.patch_onload(NS, "onload", {"spec": {"onload": {"kernelMappings": fixed}}})
    cluster.wait_ready(NS, "onload")


def test_missing_user_image_under_a_crd_that_allows_it(cluster: Cluster) -> None:
    # The Go operator's CRD requires the key but accepts an empty string; clusters may still serve it.
    crd = load_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    user_image = schema["properties"]["spec"]["properties"]["onload"]["properties"]["userImage"]
    del user_image["minLength"], user_image["pattern"]
    cluster.sim.call(cluster.sim.apply_object, crd)
    body = onload_body()
    body["spec"]["onload"]["userImage"] = ""
    wait_for(lambda: cluster.create_onload(body), message="the relaxed CRD is served")
    condition = refused(cluster, "onload", "MissingUserImage")
    assert condition["message"].startswith("spec.onload.userImage:")
    cluster.patch_onload(NS, "onload", {"spec": {"onload": {"userImage": "onload-user:8.1.2.26"}}})
    cluster.wait_ready(NS, "onload")


def test_bad_input_on_a_running_cr_changes_nothing(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    module_before = cluster.module(NS, "onload-module")
    labels_before = cluster.node_labels()
    cluster.patch_onload(
        NS, "onload", {"spec": {"onload": {"kernelMappings": [{"regexp": "(", "kernelModuleImage": "x"}]}}}
    )
    cluster.wait_reason(NS, "onload", "InvalidKernelMappingRegexp")
    module_after = cluster.module(NS, "onload-module")
    assert module_after["spec"] == module_before["spec"]
    assert cluster.node_labels() == labels_before
    assert cluster.daemonset(NS, names.device_plugin_revision_name("onload", "8.1.2.26")) is not None


def test_conflicting_selectors_refuse_the_later_cr(cluster: Cluster) -> None:
    cluster.label_node("worker-2", {"pool": "b"})
    cluster.create_onload(onload_body(name="first"))
    cluster.wait_ready(NS, "first")
    cluster.create_onload(onload_body(name="second", selector={"pool": "b"}))
    condition = refused(cluster, "second", "SelectorConflict")
    assert "onload/first" in condition["message"]
    assert "worker-2" in condition["message"]
    assert cluster.condition(NS, "first")["status"] == "True"
    # Making the selectors disjoint lets the later CR converge.
    cluster.patch_onload(NS, "first", {"spec": {"selector": {"node-role.kubernetes.io/worker": "", "pool": None}}})
    cluster.label_node("worker-2", {"node-role.kubernetes.io/worker": None})
    cluster.wait_ready(NS, "second")
    cluster.wait_ready(NS, "first", selected=2)


def test_older_cr_edited_over_a_node_where_a_newer_one_runs_is_refused(cluster: Cluster) -> None:
    for node, pool in (("worker-0", "a"), ("worker-1", "a"), ("worker-2", "b")):
        cluster.label_node(node, {"pool": pool})
    cluster.create_onload(onload_body(name="first", selector={"pool": "a"}))
    cluster.wait_ready(NS, "first")
    cluster.create_onload(onload_body(name="second", selector={"pool": "b"}))
    cluster.wait_ready(NS, "second")
    cluster.patch_onload(NS, "first", {"spec": {"selector": {"pool": None, "node-role.kubernetes.io/worker": ""}}})
    condition = cluster.wait_reason(NS, "first", "SelectorConflict")
    assert "onload/second runs on worker-2" in condition["message"]
    assert cluster.condition(NS, "first", "Degraded")["reason"] == "SelectorConflict"
    wait_for(
        lambda: ("Warning", "SelectorConflict") in {(e.type, e.reason) for e in cluster.events(NS, "first")},
        message="a Warning Event SelectorConflict",
    )
    labels = cluster.node_labels()
    assert not set(names.node_label_keys(NS, "first")) & set(labels["worker-2"])
    assert all(names.onload_label(NS, "first") in labels[node] for node in ("worker-0", "worker-1"))
    assert cluster.condition(NS, "second")["status"] == "True"
    # Once the newer CR lets go of worker-2 (device plugin stopped, modules unloaded), the older one takes it.
    cluster.patch_onload(NS, "second", {"spec": {"selector": {"pool": "none"}}})
    cluster.wait_ready(NS, "first", selected=3, moduleReady=3, devicePluginReady=3)
    assert not set(names.node_label_keys(NS, "second")) & set(cluster.node_labels()["worker-2"])


@pytest.mark.parametrize(
    ("device_plugin", "field"),
    [
        ({"hostOnloadPath": "/var/lib/kubelet"}, "spec.devicePlugin.hostOnloadPath"),
        ({"hostOnloadPath": "/usr/lib"}, "spec.devicePlugin.hostOnloadPath"),
        ({"libMountPath": "../../etc"}, "spec.devicePlugin.libMountPath"),
    ],
)
def test_the_crd_refuses_a_path_that_could_harm_a_host(
    cluster: Cluster, device_plugin: dict[str, Any], field: str
) -> None:
    body = onload_body()
    body["spec"]["devicePlugin"] = device_plugin
    with pytest.raises(ApiException) as raised:
        cluster.create_onload(body)
    assert raised.value.status == 422
    causes = json.loads(raised.value.body or "{}")["details"]["causes"]
    assert [cause["field"] for cause in causes] == [field]
    nothing_created_for(cluster, "onload")
