"""Command-line and environment configuration of the device plugin and the Onload worker.

Flags keep the single-dash names of the Go plugin (``-maxPods=10``, ``-setPreload=false``) because the
operator writes them into the DaemonSet. Every flag also has an environment variable; a flag given on the
command line wins over the variable, which wins over the default. A few settings are environment variables
only, because the Go project's plugin image rejects flags it does not know. Each value is parsed by the
flag's own parser, and a bad value raises :class:`ConfigError` naming the flag. Plain dataclasses and small
parsers keep a validation library out of a process that runs on every node.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag."""


def parse_go_bool(value: object) -> bool:
    """Parse a boolean the way Go's ``strconv.ParseBool`` (and so the ``flag`` package) does."""
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r} (use true, false, 1 or 0)")


def _absolute(text: str) -> str:
    if not posixpath.isabs(text):
        raise ValueError(f"must be an absolute path, got {text!r}")
    return text


def _text(text: str) -> str:
    return text


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _matching(pattern: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"must match {pattern}")
        return text

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


@dataclass(frozen=True)
class Flag:
    """One setting: its Go-style flag name, the config field it fills, its environment variable and parser."""

    name: str
    field: str
    env: str
    help: str
    parse: Callable[[str], object] = _text
    is_bool: bool = False
    env_only: bool = False


@dataclass(frozen=True)
class PluginConfig:
    """Validated device-plugin settings."""

    max_pods: int = 100
    need_nic: bool = True
    set_preload: bool = True
    mount_onload: bool = False
    host_onload_path: str = "/opt/onload"
    base_mount_path: str = "/opt/onload"
    bin_mount_path: str = "/usr/bin"
    """Below base_mount_path; empty (as the Go plugin allows) mounts directly in it."""
    lib_mount_path: str = "/usr/lib64"
    """Below base_mount_path; empty mounts directly in it."""
    device_plugin_path: str = "/var/lib/kubelet/device-plugins"
    socket_name: str = "onload.sock"
    kubelet_socket_name: str = "kubelet.sock"
    dev_root: str = "/dev"
    sysfs_root: str = "/sys"
    cdi: bool = False
    cdi_spec_dir: str = "/var/run/cdi"
    metrics_port: int = 9120
    metrics_address: str = "0.0.0.0"
    log_format: str = "json"
    log_level: str = "info"
    onload_version: str = ""
    """The Onload version this plugin serves; empty skips the check against the loaded module."""
    remove_unused_host_files: bool = False
    """On stop, remove the host files that ``onload-host-files install`` wrote and no container needs."""

    @property
    def socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.socket_name)

    @property
    def kubelet_socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.kubelet_socket_name)


@dataclass(frozen=True)
class WorkerConfig:
    """Validated Onload worker settings."""

    pod_name: str = ""
    pod_namespace: str = ""
    container_name: str = "onload-worker"
    cp_server_path: str = "/mnt/onload/sbin/onload_cp_server"
    cp_server_params: str = ""
    crictl_path: str = "/usr/bin/crictl"
    dev_root: str = "/dev"
    sysfs_root: str = "/sys"
    container_id: str = ""
    container_id_source: str = "auto"
    log_format: str = "json"
    log_level: str = "info"


_LOG_FORMAT = _one_of(*LOG_FORMATS)
_LOG_LEVEL = _one_of(*LOG_LEVELS)

PLUGIN_FLAGS: tuple[Flag, ...] = (
    Flag(
        "maxPods", "max_pods", "ONLOAD_DP_MAX_PODS", "number of amd.com/onload devices advertised", _integer(0, 10000)
    ),
    Flag("needNic", "need_nic", "ONLOAD_DP_NEED_NIC", "devices are Unhealthy while no Onload NIC", parse_go_bool, True),
    Flag("setPreload", "set_preload", "ONLOAD_DP_SET_PRELOAD", "set LD_PRELOAD in pods", parse_go_bool, True),
    Flag("mountOnload", "mount_onload", "ONLOAD_DP_MOUNT_ONLOAD", "mount the onload script", parse_go_bool, True),
    Flag("hostOnloadPath", "host_onload_path", "ONLOAD_DP_HOST_ONLOAD_PATH", "Onload userland on the host", _absolute),
    Flag("baseMountPath", "base_mount_path", "ONLOAD_DP_BASE_MOUNT_PATH", "prefix of the mounts in pods", _absolute),
    Flag("binMountPath", "bin_mount_path", "ONLOAD_DP_BIN_MOUNT_PATH", "onload script dir under the base"),
    Flag("libMountPath", "lib_mount_path", "ONLOAD_DP_LIB_MOUNT_PATH", "library dir under the base"),
    Flag("devicePluginPath", "device_plugin_path", "ONLOAD_DP_DEVICE_PLUGIN_PATH", "kubelet plugin dir", _absolute),
    Flag(
        "socketName",
        "socket_name",
        "ONLOAD_DP_SOCKET_NAME",
        "plugin socket file name",
        _matching(r"[A-Za-z0-9._-]+\.sock"),
    ),
    Flag(
        "kubeletSocketName",
        "kubelet_socket_name",
        "ONLOAD_DP_KUBELET_SOCKET_NAME",
        "kubelet socket name",
        _matching(r"[A-Za-z0-9._-]+"),
    ),
    Flag("devRoot", "dev_root", "ONLOAD_DP_DEV_ROOT", "where the host's /dev is visible", _absolute),
    Flag("sysfsRoot", "sysfs_root", "ONLOAD_DP_SYSFS_ROOT", "where the host's /sys is visible", _absolute),
    Flag("cdi", "cdi", "ONLOAD_DP_CDI", "also write a CDI spec and return its device name", parse_go_bool, True),
    Flag("cdiSpecDir", "cdi_spec_dir", "ONLOAD_DP_CDI_SPEC_DIR", "directory of the CDI spec", _absolute),
    Flag("metricsPort", "metrics_port", "ONLOAD_DP_METRICS_PORT", "port of /metrics (0: off)", _integer(0, 65535)),
    Flag("metricsAddress", "metrics_address", "ONLOAD_DP_METRICS_ADDRESS", "address of /metrics"),
    Flag("logFormat", "log_format", "ONLOAD_DP_LOG_FORMAT", "json or text", _LOG_FORMAT),
    Flag("logLevel", "log_level", "ONLOAD_DP_LOG_LEVEL", "debug, info, warning or error", _LOG_LEVEL),
    Flag(
        "onloadVersion",
        "onload_version",
        "ONLOAD_DP_ONLOAD_VERSION",
        "Onload version served: devices are Unhealthy while the loaded module reports another",
        env_only=True,
    ),
    Flag(
        "removeUnusedHostFiles",
        "remove_unused_host_files",
        "ONLOAD_DP_REMOVE_UNUSED_HOST_FILES",
        "on stop, remove the installed host files that no container on the node needs",
        parse_go_bool,
        env_only=True,
    ),
)

WORKER_FLAGS: tuple[Flag, ...] = (
    Flag("podName", "pod_name", "POD_NAME", "name of the worker's pod"),
    Flag("podNamespace", "pod_namespace", "POD_NAMESPACE", "namespace of the worker's pod"),
    Flag("containerName", "container_name", "CONTAINER_NAME", "name of the worker container"),
    Flag("cpServerPath", "cp_server_path", "ONLOAD_CP_SERVER_PATH", "onload_cp_server in the worker", _absolute),
    Flag("cpServerParams", "cp_server_params", "ONLOAD_CP_SERVER_PARAMS", "onload_cp_server arguments"),
    Flag("crictlPath", "crictl_path", "ONLOAD_WORKER_CRICTL_PATH", "crictl on the host", _absolute),
    Flag("devRoot", "dev_root", "ONLOAD_WORKER_DEV_ROOT", "where the host's /dev is visible", _absolute),
    Flag("sysfsRoot", "sysfs_root", "ONLOAD_WORKER_SYSFS_ROOT", "where the host's /sys is visible", _absolute),
    Flag("containerId", "container_id", "ONLOAD_WORKER_CONTAINER_ID", "skip discovery: <runtime>://<id> or <id>"),
    Flag(
        "containerIdSource",
        "container_id_source",
        "ONLOAD_WORKER_CONTAINER_ID_SOURCE",
        "auto|kubernetes|proc",
        _one_of("auto", "kubernetes", "proc"),
    ),
    Flag("logFormat", "log_format", "ONLOAD_WORKER_LOG_FORMAT", "json or text", _LOG_FORMAT),
    Flag("logLevel", "log_level", "ONLOAD_WORKER_LOG_LEVEL", "debug, info, warning or error", _LOG_LEVEL),
)

ConfigT = TypeVar("ConfigT", PluginConfig, WorkerConfig)


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ConfigError(message)


def _build_parser(prog: str, flags: Sequence[Flag]) -> argparse.ArgumentParser:
    parser = _FlagParser(prog=prog, allow_abbrev=False, add_help=True)
    for flag in flags:
        if flag.env_only:
            continue
        # Go's flag package accepts both -name and --name; a bare boolean flag means true.
        names = [f"-{flag.name}", f"--{flag.name}"]
        help_text = f"{flag.help} (env {flag.env})"
        if flag.is_bool:
            parser.add_argument(*names, dest=flag.field, nargs="?", const="true", default=None, help=help_text)
        else:
            parser.add_argument(*names, dest=flag.field, default=None, help=help_text)
    return parser


def _load(
    config: type[ConfigT], prog: str, flags: Sequence[Flag], argv: Sequence[str], env: Mapping[str, str]
) -> ConfigT:
    parsed = vars(_build_parser(prog, flags).parse_args(list(argv)))
    values: dict[str, Any] = {}
    errors = []
    for flag in flags:
        if parsed.get(flag.field) is not None:
            text, source = str(parsed[flag.field]), f"-{flag.name}"
        elif flag.env in env:
            text = env[flag.env]
            source = f"${flag.env}" if flag.env_only else f"-{flag.name} (from ${flag.env})"
        else:
            continue
        try:
            values[flag.field] = flag.parse(text)
        except ValueError as exc:
            errors.append(f"invalid value {text!r} for {source}: {exc}")
    if errors:
        raise ConfigError("; ".join(errors))
    return config(**values)


def config_or_exit(load: Callable[[Sequence[str], Mapping[str, str]], ConfigT], prog: str) -> ConfigT:
    """``load`` this process's arguments and environment; on a bad value, say why and exit with status 2."""
    try:
        return load(sys.argv[1:], os.environ)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(2)


def load_plugin_config(argv: Sequence[str], env: Mapping[str, str]) -> PluginConfig:
    config = _load(PluginConfig, "onload-device-plugin", PLUGIN_FLAGS, argv, env)
    if config.set_preload and config.mount_onload:
        raise ConfigError(
            "-setPreload and -mountOnload cannot both be true: "
            "LD_PRELOAD and the onload script are alternative ways to accelerate a process"
        )
    return config


def load_worker_config(argv: Sequence[str], env: Mapping[str, str]) -> WorkerConfig:
    return _load(WorkerConfig, "onload-worker", WORKER_FLAGS, argv, env)
