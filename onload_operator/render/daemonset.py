"""The device-plugin DaemonSets ``<name>-onload-dp-<revision>``, one per revision that nodes run.

Same pod shape as the Go operator's single DaemonSet (OnDelete updates; host network, PID and IPC; an ``init``
container from the user image; the ``device-plugin`` and ``onload-worker`` containers; the same volumes, labels and
flags), plus what it lacked: a gate-label affinity on the revision's value, tolerations, the
``system-node-critical`` priority, resource requests, probes and image pull secrets. Unlike the Go operator's, it
never removes the host's Onload files in a preStop (which runs on every pod termination, while workload containers
may still need them): ``install-host-files`` installs them as a version of their own, and the plugin removes on
stop only what no container on the node needs.
"""

from __future__ import annotations

import shlex

from onload_operator.api.v1alpha1 import Onload, OnloadSpec
from onload_operator.render import names
from onload_operator.render.common import Manifest, owner_reference, upgrade_tolerations

KUBELET_SOCKET_DIR = "/var/lib/kubelet/device-plugins"
PLUGIN_SOCKET = f"{KUBELET_SOCKET_DIR}/onload.sock"
"""Socket the device plugin serves (its default ``-socketName``); its presence makes the plugin container ready."""
PLUGIN_METRICS_PORT = 9120
"""The device plugin's default ``-metricsPort`` (Prometheus ``/metrics``)."""
HOST_DEV = "/host/dev"
"""Where both containers see the host's /dev: a privileged container's own /dev is a copy taken when it starts,
so it would never show the Onload device nodes that the module creates later."""
CDI_SPEC_DIR = "/var/run/cdi"
"""Where the device plugin writes its CDI spec when ``devicePlugin.cdi`` is on: the runtimes' dynamic spec dir."""
WORKER_DIR = "/mnt/onload"
CP_SERVER_PATH = f"{WORKER_DIR}/sbin/onload_cp_server"
DEFAULT_CP_SERVER_PARAMS = "-K"
WORKER_VOLUME_SIZE = "8Mi"
DEFAULT_PRIORITY_CLASS = "system-node-critical"

STAGING_DIR = "/staging"
"""Where the user image's init container leaves its /opt/onload for ``onload-host-files install``."""

INIT_SCRIPT = f"""set -e
cp -TRv /opt/onload {STAGING_DIR}
mkdir -vp {WORKER_DIR}/sbin/
cp -v /opt/onload/sbin/onload_cp_server {WORKER_DIR}/sbin/
"""


def go_bool(value: bool) -> str:
    return "true" if value else "false"


def device_plugin_args(onload: Onload) -> list[str]:
    """The CR's devicePlugin settings as the plugin's Go-style flags (the only way they reach the plugin)."""
    dp = onload.spec.device_plugin
    return [
        f"-maxPods={dp.max_pods_per_node}",
        f"-setPreload={go_bool(dp.set_preload)}",
        f"-mountOnload={go_bool(dp.mount_onload)}",
        f"-hostOnloadPath={dp.host_onload_path}",
        f"-baseMountPath={dp.base_mount_path}",
        f"-binMountPath={dp.bin_mount_path}",
        f"-libMountPath={dp.effective_lib_mount_path}",
    ]


def device_plugin_env(onload: Onload) -> list[Manifest]:
    """Settings passed in the environment: the Go project's plugin image rejects flags it does not know."""
    env = [
        {"name": "ONLOAD_DP_ONLOAD_VERSION", "value": onload.spec.onload.version},
        {"name": "ONLOAD_DP_REMOVE_UNUSED_HOST_FILES", "value": "true"},
    ]
    if onload.spec.device_plugin.cdi:
        env += [{"name": "ONLOAD_DP_CDI", "value": "true"}, {"name": "ONLOAD_DP_CDI_SPEC_DIR", "value": CDI_SPEC_DIR}]
    return env


def cp_server_params(onload: Onload) -> str:
    control_plane = onload.spec.onload.control_plane
    return DEFAULT_CP_SERVER_PARAMS if control_plane is None else " ".join(control_plane.parameters)


def _shell(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def _pull_policy(container: Manifest, policy: str | None) -> Manifest:
    if policy is not None:
        container["imagePullPolicy"] = policy
    return container


def _host_dev_mount() -> Manifest:
    return {"name": "host-dev", "mountPath": HOST_DEV, "readOnly": True}


def _init_container(onload: Onload) -> Manifest:
    return _pull_policy(
        {
            "name": "init",
            "image": onload.spec.onload.user_image,
            "command": _shell(INIT_SCRIPT),
            "securityContext": {"privileged": True},
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "volumeMounts": [
                {"name": "onload-staging", "mountPath": STAGING_DIR},
                {"name": "worker-volume", "mountPath": WORKER_DIR},
            ],
        },
        onload.spec.onload.image_pull_policy,
    )


def _install_container(onload: Onload, image: str) -> Manifest:
    """Installs the staged files on the host as a new version beside the ones containers still use, recorded
    in a manifest; the plugin removes, when it stops, only the recorded versions that no container needs."""
    host_path = onload.spec.device_plugin.host_onload_path
    return _pull_policy(
        {
            "name": "install-host-files",
            "image": image,
            "command": ["onload-host-files", "install", STAGING_DIR, host_path],
            "securityContext": {"privileged": True},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            "volumeMounts": [
                {"name": "onload-staging", "mountPath": STAGING_DIR, "readOnly": True},
                {"name": "host-onload", "mountPath": host_path},
                {"name": "kubelet-socket", "mountPath": KUBELET_SOCKET_DIR, "readOnly": True},
            ],
        },
        onload.spec.device_plugin.image_pull_policy,
    )


def _device_plugin_container(onload: Onload, image: str) -> Manifest:
    host_path = onload.spec.device_plugin.host_onload_path
    return _pull_policy(
        {
            "name": "device-plugin",
            "image": image,
            "args": [*device_plugin_args(onload), f"-devRoot={HOST_DEV}"],
            "env": device_plugin_env(onload),
            "securityContext": {"privileged": True},
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            # Named for a PodMonitor; with hostNetwork it is a port of the node.
            "ports": [{"name": "metrics", "containerPort": PLUGIN_METRICS_PORT, "protocol": "TCP"}],
            "readinessProbe": {"exec": {"command": ["test", "-S", PLUGIN_SOCKET]}, "periodSeconds": 10},
            # No liveness probe: a restart by the kubelet stops the plugin with SIGTERM, after which it removes the
            # host files no container needs, and only the init container (which a container restart does not run)
            # installs them again. The plugin exits on its own when it cannot serve, and then removes nothing.
            "lifecycle": {
                "postStart": {
                    "exec": {
                        "command": _shell(
                            f"set -e; chcon --type container_file_t --recursive {shlex.quote(host_path)} || "
                            'echo "chcon failed. System may not be SELinux enabled."'
                        )
                    }
                },
            },
            "volumeMounts": [
                {"name": "kubelet-socket", "mountPath": KUBELET_SOCKET_DIR},
                {"name": "host-onload", "mountPath": host_path},
                _host_dev_mount(),
                *([{"name": "cdi-specs", "mountPath": CDI_SPEC_DIR}] if onload.spec.device_plugin.cdi else []),
            ],
        },
        onload.spec.device_plugin.image_pull_policy,
    )


def _worker_container(onload: Onload, image: str) -> Manifest:
    def field(path: str) -> Manifest:
        return {"fieldRef": {"fieldPath": path}}

    return _pull_policy(
        {
            "name": "onload-worker",
            "image": image,
            "command": ["onload-worker"],
            "args": [f"-devRoot={HOST_DEV}"],
            "env": [
                {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                {"name": "CONTAINER_NAME", "value": "onload-worker"},
                {"name": "ONLOAD_CP_SERVER_PATH", "value": CP_SERVER_PATH},
                {"name": "ONLOAD_CP_SERVER_PARAMS", "value": cp_server_params(onload)},
            ],
            "securityContext": {"privileged": True},
            # No memory limit: the worker hosts onload_cp_server, whose footprint grows with the Onload stacks.
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
            # Ready once the onload module has created its device node.
            "readinessProbe": {"exec": {"command": ["test", "-c", f"{HOST_DEV}/onload"]}, "periodSeconds": 10},
            "volumeMounts": [{"name": "worker-volume", "mountPath": WORKER_DIR}, _host_dev_mount()],
        },
        onload.spec.device_plugin.image_pull_policy,
    )


def _priority_class(spec: OnloadSpec) -> str:
    configured = spec.device_plugin.priority_class_name
    return DEFAULT_PRIORITY_CLASS if configured is None else configured


def device_plugin_daemonset(onload: Onload, revision: str, image: str) -> Manifest:
    """The DaemonSet of one revision: the device plugin and the Onload worker on the nodes whose gate label
    carries that revision, so a pod re-created on a node always matches the modules loaded there."""
    name, namespace = onload.metadata.name, onload.metadata.namespace
    spec = onload.spec
    ds_name = names.device_plugin_revision_name(name, revision)
    labels = names.base_labels(namespace, name, "device-plugin")
    pod_labels = {**labels, names.NAME_LABEL: ds_name}
    pod_spec: Manifest = {
        # Empty: the namespace's default service account, which the API server writes in.
        **({"serviceAccountName": spec.service_account_name} if spec.service_account_name else {}),
        "nodeSelector": dict(spec.selector),
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": names.onload_label(namespace, name), "operator": "In", "values": [revision]}
                            ]
                        }
                    ]
                }
            }
        },
        "hostNetwork": True,
        "hostPID": True,
        "hostIPC": True,
        **({"priorityClassName": priority_class} if (priority_class := _priority_class(spec)) else {}),
        "tolerations": [
            *upgrade_tolerations(),
            {"key": names.RESOURCE_NAME, "operator": "Exists", "effect": "NoSchedule"},
        ],
        "initContainers": [_init_container(onload), _install_container(onload, image)],
        "containers": [_device_plugin_container(onload, image), _worker_container(onload, image)],
        "volumes": [
            {"name": "kubelet-socket", "hostPath": {"path": KUBELET_SOCKET_DIR, "type": "Directory"}},
            {
                "name": "host-onload",
                "hostPath": {"path": spec.device_plugin.host_onload_path, "type": "DirectoryOrCreate"},
            },
            {"name": "worker-volume", "emptyDir": {"sizeLimit": WORKER_VOLUME_SIZE}},
            {"name": "onload-staging", "emptyDir": {}},
            {"name": "host-dev", "hostPath": {"path": "/dev", "type": "Directory"}},
        ],
    }
    if spec.device_plugin.cdi:
        pod_spec["volumes"].append(
            {"name": "cdi-specs", "hostPath": {"path": CDI_SPEC_DIR, "type": "DirectoryOrCreate"}}
        )
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret.name} for secret in spec.image_pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": ds_name,
            "namespace": namespace,
            "labels": {**labels, names.VERSION_LABEL: spec.onload.version, names.REVISION_LABEL: revision},
            "ownerReferences": [owner_reference(onload)],
        },
        "spec": {
            "selector": {"matchLabels": dict(pod_labels)},
            "updateStrategy": {"type": "OnDelete"},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
