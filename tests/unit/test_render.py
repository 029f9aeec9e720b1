"""The rendered children keep the Go operator's names and shape and add what it lacked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onload_operator.api.v1alpha1 import Onload
from onload_operator.render import names
from onload_operator.render.children import Deployment, render_children
from onload_operator.render.daemonset import device_plugin_args
from tests.unit.onload_samples import IMAGE, cr_body, daemonset_of, onload_module_of, sfc_module_of


def onload(**spec: Any) -> Onload:
    return Onload.model_validate(cr_body(**spec))


def test_module_names_and_modprobe_match_the_go_operator() -> None:
    cr = onload()
    module = onload_module_of(cr)
    assert module["metadata"]["name"] == "onload-module"
    container = module["spec"]["moduleLoader"]["container"]
    assert container["modprobe"] == {"moduleName": "onload", "parameters": ["--first-time"]}
    assert container["version"] == "8.1.2.26"
    assert "inTreeModuleToRemove" not in container
    assert module["spec"]["moduleLoader"]["serviceAccountName"] == "onload-sa"
    assert module["metadata"]["labels"][names.INSTANCE_LABEL] == "onload-ns-onload"
    assert module["metadata"]["ownerReferences"][0]["uid"] == "uid-ns-onload"
    assert sfc_module_of(cr) is None


def test_modules_select_the_label_only_the_operator_moves_not_spec_selector() -> None:
    cr = onload(
        onload={
            "version": "1",
            "userImage": "u",
            "kernelMappings": [{"regexp": "a", "kernelModuleImage": "i", "sfc": {}}],
        }
    )
    sfc = sfc_module_of(cr)
    assert sfc is not None
    for module in (onload_module_of(cr), sfc):
        assert module["spec"]["selector"] == {"kmm.onload.amd.com/ns.onload": ""}
    longest = names.module_selector_label("n" * 16, "c" * 16)
    assert len(longest.partition("/")[2]) <= 63


def test_sfc_module_only_for_mappings_with_sfc_and_without_build() -> None:
    mappings = [
        {
            "regexp": "a",
            "kernelModuleImage": "img-a",
            "sfc": {},
            "build": {"dockerfileConfigMap": {"name": "df"}, "buildArgs": [{"name": "X", "value": "1"}]},
        },
        {"regexp": "b", "kernelModuleImage": "img-b"},
    ]
    cr = onload(onload={"version": "1", "userImage": "u", "kernelMappings": mappings})
    onload_mappings = onload_module_of(cr)["spec"]["moduleLoader"]["container"]["kernelMappings"]
    assert onload_mappings[0]["build"] == {
        "buildArgs": [{"name": "X", "value": "1"}],
        "dockerfileConfigMap": {"name": "df"},
    }
    sfc = sfc_module_of(cr)
    assert sfc is not None
    assert sfc["metadata"]["name"] == "onload-sfcmod"
    container = sfc["spec"]["moduleLoader"]["container"]
    assert container["kernelMappings"] == [{"regexp": "a", "containerImage": "img-a"}]
    assert container["inTreeModuleToRemove"] == "sfc"
    assert container["modprobe"]["moduleName"] == "sfc"


def test_pull_secrets_and_upgrade_toleration() -> None:
    cr = onload(imagePullSecrets=[{"name": "first"}, {"name": "second"}])
    module = onload_module_of(cr)
    assert module["spec"]["imageRepoSecret"] == {"name": "first"}
    assert module["spec"]["tolerations"] == [{"key": names.UPGRADE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    pod = daemonset_of(cr)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "first"}, {"name": "second"}]


def test_daemonset_keeps_the_go_shape_one_per_revision() -> None:
    ds = daemonset_of(onload())
    assert ds["metadata"]["name"] == "onload-onload-dp-8.1.2.26"
    assert ds["metadata"]["labels"][names.VERSION_LABEL] == "8.1.2.26"
    assert ds["metadata"]["labels"][names.REVISION_LABEL] == "8.1.2.26"
    assert ds["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert ds["spec"]["selector"]["matchLabels"][names.NAME_LABEL] == "onload-onload-dp-8.1.2.26"
    pod = ds["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["hostPID"], pod["hostIPC"]) == (True, True, True)
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term == {"matchExpressions": [{"key": "onload.amd.com/ns.onload", "operator": "In", "values": ["8.1.2.26"]}]}
    assert [c["name"] for c in pod["initContainers"]] == ["init", "install-host-files"]
    assert [c["name"] for c in pod["containers"]] == ["device-plugin", "onload-worker"]
    assert {v["name"] for v in pod["volumes"]} >= {"kubelet-socket", "host-onload", "worker-volume"}
    assert pod["initContainers"][0]["image"] == "onload-user:8.1.2.26"
    assert pod["containers"][0]["image"] == IMAGE
    assert pod["containers"][1]["image"] == IMAGE
    worker_env = {e["name"]: e.get("value") for e in pod["containers"][1]["env"]}
    assert worker_env["ONLOAD_CP_SERVER_PARAMS"] == "-K"
    assert worker_env["ONLOAD_CP_SERVER_PATH"] == "/mnt/onload/sbin/onload_cp_server"
    assert worker_env["CONTAINER_NAME"] == "onload-worker"


def test_daemonset_closes_the_go_gaps() -> None:
    pod = daemonset_of(onload())["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert {t["key"] for t in pod["tolerations"]} == {names.UPGRADE_TAINT, names.RESOURCE_NAME}
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["resources"]["requests"]
    assert "readinessProbe" in pod["containers"][0]
    assert "readinessProbe" in pod["containers"][1]


def test_no_pod_termination_removes_host_files_a_container_needs() -> None:
    """No preStop removes hostOnloadPath (it runs on every termination, while workloads may still use the files):
    an init container installs them as a version of their own, and the plugin removes on stop only what no
    container needs. A container restart does not rerun the init container, so the kubelet must never restart
    a running container of the pod (no liveness or startup probe)."""
    pod = daemonset_of(onload())["spec"]["template"]["spec"]
    host_path = "/opt/onload/"
    install = pod["initContainers"][1]
    assert install["image"] == IMAGE
    assert install["command"] == ["onload-host-files", "install", "/staging", host_path]
    assert {"name": "host-onload", "mountPath": host_path} in install["volumeMounts"]
    assert "/host/onload" not in pod["initContainers"][0]["command"][-1]
    plugin = pod["containers"][0]
    assert "preStop" not in plugin["lifecycle"]
    assert {"name": "ONLOAD_DP_REMOVE_UNUSED_HOST_FILES", "value": "true"} in plugin["env"]
    for container in pod["containers"]:
        assert "livenessProbe" not in container
        assert "startupProbe" not in container


def test_both_containers_watch_the_host_dev() -> None:
    """A privileged container's /dev is a snapshot; the plugin and worker must see /dev/onload appear later."""
    pod = daemonset_of(onload())["spec"]["template"]["spec"]
    assert {"name": "host-dev", "hostPath": {"path": "/dev", "type": "Directory"}} in pod["volumes"]
    for container in pod["containers"]:
        assert {"name": "host-dev", "mountPath": "/host/dev", "readOnly": True} in container["volumeMounts"]
        assert container["args"][-1] == "-devRoot=/host/dev"


@pytest.mark.parametrize(
    ("device_plugin", "expected"),
    [
        (
            {},
            [
                "-maxPods=100",
                "-setPreload=true",
                "-mountOnload=false",
                "-hostOnloadPath=/opt/onload/",
                "-baseMountPath=/opt/onload",
                "-binMountPath=/usr/bin",
                "-libMountPath=/usr/lib64",
            ],
        ),
        ({"libMounthPath": "/lib"}, ["-libMountPath=/lib"]),
        ({"libMountPath": "/lib2"}, ["-libMountPath=/lib2"]),
        ({"setPreload": False, "mountOnload": True}, ["-setPreload=false", "-mountOnload=true"]),
    ],
)
def test_device_plugin_flags(device_plugin: dict[str, Any], expected: list[str]) -> None:
    args = device_plugin_args(onload(devicePlugin=device_plugin))
    assert all(flag in args for flag in expected), args


def test_control_plane_parameters_reach_the_worker() -> None:
    cr = onload(onload={**cr_body()["spec"]["onload"], "controlPlane": {"parameters": []}})
    pod = daemonset_of(cr)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][1]["env"]}
    assert env["ONLOAD_CP_SERVER_PARAMS"] == ""


def test_the_onload_module_records_the_revisions_and_every_child_its_hash() -> None:
    children = render_children(Deployment.of(onload()), IMAGE)
    hashes = {child["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION] for child in children}
    assert len(hashes) == len(children)
    registry = json.loads(children[0]["metadata"]["annotations"][names.REVISIONS_ANNOTATION])
    assert list(registry) == ["8.1.2.26"]
    assert registry["8.1.2.26"]["onload"]["userImage"] == "onload-user:8.1.2.26"
    assert registry["8.1.2.26"]["devicePlugin"]["maxPodsPerNode"] == 100
    changed = render_children(Deployment.of(onload(devicePlugin={"maxPodsPerNode": 3})), IMAGE)
    assert changed[-1]["metadata"]["annotations"] != children[-1]["metadata"]["annotations"]


def test_revision_names_are_label_values_within_63_characters() -> None:
    assert names.device_plugin_revision_name("onload", "8.1.2.26") == "onload-onload-dp-8.1.2.26"
    odd = names.device_plugin_revision_name("onload", "V9_0")
    assert odd.startswith("onload-onload-dp-v9-0-")
    assert odd != names.device_plugin_revision_name("onload", "v9-0")
    longest = names.device_plugin_revision_name("n" * 31, "9" * 63)
    assert len(longest) == 63
    assert longest[-1].isalnum()


def test_an_empty_service_account_leaves_the_namespace_default() -> None:
    """The Go CRD accepts `serviceAccountName: ""`; the API server would write `default` into a pod spec that
    names "", so the children leave the field out rather than drift from what the server stores."""
    cr = onload(serviceAccountName="")
    assert "serviceAccountName" not in daemonset_of(cr)["spec"]["template"]["spec"]
    assert "serviceAccountName" not in onload_module_of(cr)["spec"]["moduleLoader"]
    named = onload(serviceAccountName="onload-sa")
    assert daemonset_of(named)["spec"]["template"]["spec"]["serviceAccountName"] == "onload-sa"
    assert onload_module_of(named)["spec"]["moduleLoader"]["serviceAccountName"] == "onload-sa"


@pytest.mark.parametrize(
    ("device_plugin", "priority_class"),
    [
        ({}, "system-node-critical"),
        ({"priorityClassName": "onload-critical"}, "onload-critical"),
        ({"priorityClassName": ""}, None),
    ],
)
def test_the_device_plugin_priority_class_is_configurable(
    device_plugin: dict[str, Any], priority_class: str | None
) -> None:
    """Some platforms allow system-node-critical only in kube-system: another class, or none, can be named."""
    pod = daemonset_of(onload(devicePlugin=device_plugin))["spec"]["template"]["spec"]
    assert pod.get("priorityClassName") == priority_class
