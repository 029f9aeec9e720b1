"""The Onload worker's logic: finding its container id and writing the control-plane parameters.

The ``onload`` kernel module starts one ``onload_cp_server`` per network namespace as a usermode helper. The
worker points the module's ``cplane_server_path``/``cplane_server_params`` at ``crictl exec <worker id> …`` so
the server runs inside the worker container, which carries the matching binary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from device_plugin.hostfs import read_text

KNOWN_GOOD_RUNTIMES = frozenset({"cri-o", "containerd"})
PARAMETERS_DIR = ("module", "onload", "parameters")
SERVER_PATH_PARAMETER = "cplane_server_path"
SERVER_PARAMS_PARAMETER = "cplane_server_params"

_CONTAINER_ID = r"[0-9a-f]{64}"
# systemd cgroup driver scopes, e.g. "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope".
_SCOPE = re.compile(rf"(?:^|/)(cri-containerd|crio|docker|libpod)-({_CONTAINER_ID})\.scope(?:/|$)")
# cgroupfs driver: ".../kubepods/<qos>/pod<uid>/<id>" (cri-o and containerd alike, runtime unknown).
_CGROUPFS = re.compile(rf"/kubepods[^\s]*/({_CONTAINER_ID})(?:/|$)")
_SCOPE_RUNTIME = {"cri-containerd": "containerd", "crio": "cri-o", "docker": "docker", "libpod": "podman"}


@dataclass(frozen=True)
class ContainerId:
    """A container id as the runtime knows it; ``runtime`` is None when it cannot be told from the source."""

    runtime: str | None
    id: str

    def __str__(self) -> str:
        return f"{self.runtime}://{self.id}" if self.runtime else self.id


class ContainerIdError(ValueError):
    pass


def parse_status_container_id(value: str) -> ContainerId:
    """Parse ``<runtime>://<id>`` from a pod's container status, as the Go worker does."""
    parts = value.split("://")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ContainerIdError(f"unexpected format of containerID {value!r} (want <runtime>://<id>)")
    return ContainerId(runtime=parts[0], id=parts[1])


def container_id_from_cgroup_paths(paths: Iterable[str]) -> ContainerId | None:
    """Find the container id in cgroup paths (from /proc/self/cgroup or cgroup mount roots).

    The innermost match wins; conmon scopes (``crio-conmon-<id>``) never match because of the fixed prefixes.
    """
    found: ContainerId | None = None
    for path in paths:
        scopes = list(_SCOPE.finditer(path))
        if scopes:
            last = scopes[-1]
            found = ContainerId(runtime=_SCOPE_RUNTIME[last.group(1)], id=last.group(2))
            continue
        plain = list(_CGROUPFS.finditer(path))
        if plain and found is None:
            found = ContainerId(runtime=None, id=plain[-1].group(1))
    return found


def parse_proc_cgroup(text: str) -> list[str]:
    """Cgroup paths of ``/proc/<pid>/cgroup`` (``hierarchy-id:controllers:path`` per line)."""
    return [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]


def parse_mountinfo_cgroup_roots(text: str) -> list[str]:
    """Root fields of the cgroup mounts in ``/proc/<pid>/mountinfo``.

    Without a private cgroup namespace the container's cgroup directory is mounted at /sys/fs/cgroup, and its
    root field names the container's cgroup even when /proc/self/cgroup has been virtualised.
    """
    roots = []
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in ("cgroup", "cgroup2"):
            roots.append(fields[3])
    return roots


def container_id_from_proc(cgroup_text: str, mountinfo_text: str) -> ContainerId | None:
    return container_id_from_cgroup_paths(parse_proc_cgroup(cgroup_text)) or container_id_from_cgroup_paths(
        parse_mountinfo_cgroup_roots(mountinfo_text)
    )


@dataclass(frozen=True)
class ContainerState:
    """The parts of a pod's container status the worker looks at."""

    name: str
    container_id: str
    ready: bool
    started: bool
    running: bool


def running_container_id(statuses: Iterable[ContainerState], container_name: str) -> ContainerId | None:
    """The id of ``container_name`` once it is ready, started and running (the Go worker's condition)."""
    for status in statuses:
        ready = status.ready and status.started and status.running
        if status.name == container_name and ready and status.container_id:
            return parse_status_container_id(status.container_id)
    return None


def server_params(container_id: ContainerId, server_path: str, server_params_text: str) -> str:
    """The ``cplane_server_params`` value: ``exec <id> <server path>[ <params>]``."""
    value = f"exec {container_id.id} {server_path}"
    return f"{value} {server_params_text}" if server_params_text else value


def parameters_dir(sysfs_root: str) -> str:
    return os.path.join(sysfs_root, *PARAMETERS_DIR)


def write_parameter(sysfs_root: str, name: str, value: str) -> None:
    with open(os.path.join(parameters_dir(sysfs_root), name), "w", encoding="ascii") as handle:
        handle.write(value)


def read_parameter(sysfs_root: str, name: str) -> str | None:
    text = read_text(os.path.join(parameters_dir(sysfs_root), name))
    return None if text is None else text.rstrip("\n")


def parameters_applied(sysfs_root: str, crictl_path: str, params: str) -> bool:
    return (
        read_parameter(sysfs_root, SERVER_PATH_PARAMETER) == crictl_path
        and read_parameter(sysfs_root, SERVER_PARAMS_PARAMETER) == params
    )


def apply_parameters(sysfs_root: str, crictl_path: str, params: str) -> None:
    write_parameter(sysfs_root, SERVER_PATH_PARAMETER, crictl_path)
    write_parameter(sysfs_root, SERVER_PARAMS_PARAMETER, params)
