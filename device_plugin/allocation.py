"""What a container that requests ``amd.com/onload`` receives: device nodes, read-only mounts, environment.

Everything is resolved when Allocate is called, not at startup: the init container copies the Onload
userland onto the host, and the module may load after the plugin starts.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from typing import Any

from device_plugin.config import PluginConfig

DEVICE_NODE_NAMES = ("onload", "onload_epoll", "sfc_char")
DEVICE_PERMISSIONS = "mrw"
LIBRARY_PREFIXES = ("libonload.so", "libonload_ext.so")
HOST_USR_DIR = "usr"
HOST_LIB_DIR = "usr/lib64"
HOST_BIN_DIR = "usr/bin"
ONLOAD_SCRIPT = "onload"

INSTALLED_VERSION_PREFIX = ".onload-"
"""Prefix of the version directories ``onload-host-files`` installs under the host directory."""

CDI_VERSION = "0.5.0"
"""The lowest CDI version with every field the spec uses (``deviceNodes[].hostPath`` came in 0.5.0), so that
containerd 1.7 and CRI-O 1.27 read it as well as newer runtimes."""
CDI_KIND = "amd.com/onload"
CDI_DEVICE_NAME = "onload"
CDI_QUALIFIED_NAME = f"{CDI_KIND}={CDI_DEVICE_NAME}"
CDI_SPEC_FILE = "amd.com-onload.json"


def go_join(*parts: str) -> str:
    """Join and clean path parts like Go's ``filepath.Join``: absolute later parts do not reset the path."""
    joined = "/".join(part for part in parts if part)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    # POSIX keeps a leading "//"; Go's Clean does not.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@dataclass(frozen=True)
class DeviceNode:
    host_path: str
    container_path: str
    permissions: str = DEVICE_PERMISSIONS


@dataclass(frozen=True)
class FileMount:
    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerEdits:
    """The runtime-neutral description of one container's Onload injection."""

    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[FileMount, ...] = ()
    envs: dict[str, str] = field(default_factory=dict)


def present_device_nodes(dev_root: str) -> tuple[str, ...]:
    """Names of the Onload device nodes present on the host; ``dev_root`` is where the host's /dev is visible."""
    return tuple(name for name in DEVICE_NODE_NAMES if os.path.exists(os.path.join(dev_root, name)))


def installed_root(host_onload_path: str) -> str:
    """The directory of the version that ``usr`` links to right now, or the host directory itself when ``usr``
    is not such a link (files put there another way). Read once per answer, so one answer names one version."""
    try:
        target = os.readlink(go_join(host_onload_path, HOST_USR_DIR))
    except OSError:
        return go_join(host_onload_path)
    version, _, rest = target.partition("/")
    if version.startswith(INSTALLED_VERSION_PREFIX) and rest == HOST_USR_DIR:
        return go_join(host_onload_path, version)
    return go_join(host_onload_path)


def library_names(root: str) -> tuple[str, ...]:
    """Every file in the library dir below ``root`` whose name starts with an Onload library name.

    Versioned names (``libonload.so.1``, ``libonload.so.1.2.3``) are included. Symbolic links to files count,
    because the container runtime resolves the host path when it bind-mounts it.
    """
    try:
        with os.scandir(go_join(root, HOST_LIB_DIR)) as entries:
            return tuple(
                sorted(entry.name for entry in entries if entry.name.startswith(LIBRARY_PREFIXES) and entry.is_file())
            )
    except OSError:
        return ()


@dataclass(frozen=True)
class HostFiles:
    """What an answer depends on, as found on the host: compared, it tells whether an answer can be reused."""

    root: str
    """The installed version's directory (see :func:`installed_root`)."""
    libraries: tuple[str, ...]
    device_nodes: tuple[str, ...]


def observe_host(config: PluginConfig) -> HostFiles:
    root = installed_root(config.host_onload_path)
    return HostFiles(root, library_names(root), present_device_nodes(config.dev_root))


def preload_path(config: PluginConfig) -> str:
    return go_join(config.base_mount_path, config.lib_mount_path, LIBRARY_PREFIXES[0])


def container_edits(config: PluginConfig, host: HostFiles | None = None) -> ContainerEdits:
    """The edits for ``host`` (observed now when not given)."""
    host = host or observe_host(config)
    host_dir = go_join(host.root, HOST_LIB_DIR)
    container_dir = go_join(config.base_mount_path, config.lib_mount_path)
    # Entry names hold no "/", so joining them to clean directories keeps the paths clean.
    mounts = [
        FileMount(host_path=posixpath.join(host_dir, name), container_path=posixpath.join(container_dir, name))
        for name in host.libraries
    ]
    if config.mount_onload:
        mounts.append(
            FileMount(
                host_path=go_join(host.root, HOST_BIN_DIR, ONLOAD_SCRIPT),
                container_path=go_join(config.base_mount_path, config.bin_mount_path, ONLOAD_SCRIPT),
            )
        )
    envs = {"LD_PRELOAD": preload_path(config)} if config.set_preload else {}
    nodes = tuple(DeviceNode(host_path=f"/dev/{name}", container_path=f"/dev/{name}") for name in host.device_nodes)
    return ContainerEdits(nodes, tuple(mounts), envs)


def cdi_spec(edits: ContainerEdits) -> dict[str, Any]:
    """A CDI spec with one device, ``amd.com/onload=onload``, carrying all of the container edits."""
    container_edits: dict[str, Any] = {
        "deviceNodes": [
            {"path": node.container_path, "hostPath": node.host_path, "permissions": "rwm"}
            for node in edits.device_nodes
        ],
        "mounts": [
            {
                "hostPath": mount.host_path,
                "containerPath": mount.container_path,
                "options": ["ro", "nosuid", "nodev", "bind"] if mount.read_only else ["nosuid", "nodev", "bind"],
            }
            for mount in edits.mounts
        ],
    }
    if edits.envs:
        container_edits["env"] = [f"{key}={value}" for key, value in sorted(edits.envs.items())]
    return {
        "cdiVersion": CDI_VERSION,
        "kind": CDI_KIND,
        "devices": [{"name": CDI_DEVICE_NAME, "containerEdits": container_edits}],
    }


def write_cdi_spec(spec_dir: str, spec: dict[str, Any]) -> str:
    """Write the spec atomically (runtimes may read it at any moment); skip the write when unchanged."""
    path = os.path.join(spec_dir, CDI_SPEC_FILE)
    content = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    try:
        with open(path, encoding="utf-8") as current:
            if current.read() == content:
                return path
    except OSError:
        pass
    os.makedirs(spec_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spec_dir, prefix=".amd.com-onload.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
