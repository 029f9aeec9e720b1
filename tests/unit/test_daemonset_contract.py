"""The DaemonSet the operator renders starts the device plugin and the worker exactly as their parsers expect.

The operator and the device plugin are separate programs; only these arguments and environment variables join
them, so each rendered container is parsed here by the real device-plugin configuration loader.
"""

from __future__ import annotations

from typing import Any

import pytest

from device_plugin.config import load_plugin_config, load_worker_config
from onload_operator.api.v1alpha1 import Onload
from tests.unit.onload_samples import daemonset_of

IMAGE = "registry/onload-device-plugin:1"


def onload(**device_plugin: Any) -> Onload:
    return Onload.from_manifest(
        {
            "apiVersion": "onload.amd.com/v1alpha1",
            "kind": "Onload",
            "metadata": {"name": "onload", "namespace": "ns", "uid": "u"},
            "spec": {
                "selector": {"node-role.kubernetes.io/worker": ""},
                "serviceAccountName": "sa",
                "onload": {
                    "version": "8.1.2.26",
                    "userImage": "onload-user:8.1.2.26",
                    "kernelMappings": [{"regexp": ".*", "kernelModuleImage": "m:${KERNEL_FULL_VERSION}"}],
                    "controlPlane": {"parameters": ["-K", "--llap-max=100"]},
                },
                "devicePlugin": device_plugin,
            },
        }
    )


def containers(cr: Onload) -> dict[str, dict[str, Any]]:
    pod = daemonset_of(cr)["spec"]["template"]["spec"]
    return {container["name"]: container for container in pod["containers"]}


@pytest.mark.parametrize(
    "device_plugin",
    [
        {},
        {"maxPodsPerNode": 1},
        {"setPreload": False, "mountOnload": True, "libMounthPath": "/lib"},
        {"hostOnloadPath": "/srv/onload/", "baseMountPath": "/onload", "binMountPath": "bin", "libMountPath": "lib"},
        {"binMountPath": "", "libMountPath": ""},  # the Go CRD and plugin accept empty subdirectories
    ],
)
def test_device_plugin_container_args_parse_to_the_cr_settings(device_plugin: dict[str, Any]) -> None:
    cr = onload(**device_plugin)
    settings = cr.spec.device_plugin
    config = load_plugin_config(containers(cr)["device-plugin"]["args"], {})
    assert config.max_pods == settings.max_pods_per_node
    assert (config.set_preload, config.mount_onload) == (settings.set_preload, settings.mount_onload)
    assert config.host_onload_path.rstrip("/") == settings.host_onload_path.rstrip("/")
    assert config.base_mount_path == settings.base_mount_path
    assert config.bin_mount_path == settings.bin_mount_path
    assert (
        config.lib_mount_path
        == settings.effective_lib_mount_path
        == device_plugin.get("libMountPath", device_plugin.get("libMounthPath", "/usr/lib64"))
    )
    assert config.dev_root == "/host/dev"
    assert containers(cr)["device-plugin"]["ports"] == [
        {"name": "metrics", "containerPort": config.metrics_port, "protocol": "TCP"}
    ]


@pytest.mark.parametrize("cdi", [False, True])
def test_device_plugin_environment_parses_to_the_version_and_cdi_setting(cdi: bool) -> None:
    plugin = containers(onload(cdi=cdi))["device-plugin"]
    environment = {item["name"]: item["value"] for item in plugin["env"]}
    config = load_plugin_config(plugin["args"], environment)
    assert config.onload_version == "8.1.2.26"
    assert config.cdi is cdi
    mounts = {mount["mountPath"]: mount["name"] for mount in plugin["volumeMounts"]}
    pod = daemonset_of(onload(cdi=cdi))["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    if cdi:
        # The spec lands where the runtimes read dynamic CDI specs on the host.
        assert volumes[mounts[config.cdi_spec_dir]]["hostPath"]["path"] == config.cdi_spec_dir == "/var/run/cdi"
    else:
        assert config.cdi_spec_dir not in mounts
        assert "cdi-specs" not in volumes


def test_worker_container_args_and_environment_parse() -> None:
    worker = containers(onload())["onload-worker"]
    assert worker["command"] == ["onload-worker"]
    environment = {item["name"]: item["value"] for item in worker["env"] if "value" in item}
    environment.update(POD_NAME="onload-ds-abcde", POD_NAMESPACE="ns")
    config = load_worker_config(worker["args"], environment)
    assert config.dev_root == "/host/dev"
    assert config.container_name == "onload-worker"
    assert config.cp_server_path == "/mnt/onload/sbin/onload_cp_server"
    assert config.cp_server_params == "-K --llap-max=100"
