"""Command-line and environment configuration of the device plugin and the Onload worker.

Flags keep the single-dash names of the Go plugin (``-maxPods=10``, ``-setPreload=false``) because the
operator writes them into the DaemonSet. Every flag also has an environment variable; a flag given on the
command line wins over the variable, which wins over the default. Values are validated by pydantic, and a
bad value raises :class:`ConfigError` naming the flag.
"""

from __future__ import annotations

import argparse
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


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


def _absolute(path: str) -> str:
    if not posixpath.isabs(path):
        raise ValueError(f"must be an absolute path, got {path!r}")
    return path


GoBool = Annotated[bool, BeforeValidator(parse_go_bool)]
AbsolutePath = Annotated[str, AfterValidator(_absolute)]
LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its Go-style name, the model field it fills and its environment variable."""

    name: str
    field: str
    env: str
    help: str
    is_bool: bool = False


class PluginConfig(BaseModel):
    """Validated device-plugin settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pods: int = Field(default=100, ge=0, le=10000)
    need_nic: GoBool = True
    set_preload: GoBool = True
    mount_onload: GoBool = False
    host_onload_path: AbsolutePath = "/opt/onload"
    base_mount_path: AbsolutePath = "/opt/onload"
    bin_mount_path: str = "/usr/bin"
    """Below base_mount_path; empty (as the Go plugin allows) mounts directly in it."""
    lib_mount_path: str = "/usr/lib64"
    """Below base_mount_path; empty mounts directly in it."""
    device_plugin_path: AbsolutePath = "/var/lib/kubelet/device-plugins"
    socket_name: str = Field(default="onload.sock", pattern=r"^[A-Za-z0-9._-]+\.sock$")
    kubelet_socket_name: str = Field(default="kubelet.sock", pattern=r"^[A-Za-z0-9._-]+$")
    dev_root: AbsolutePath = "/dev"
    sysfs_root: AbsolutePath = "/sys"
    cdi: GoBool = False
    cdi_spec_dir: AbsolutePath = "/var/run/cdi"
    metrics_port: int = Field(default=9120, ge=0, le=65535)
    metrics_address: str = "0.0.0.0"
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"

    @property
    def socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.socket_name)

    @property
    def kubelet_socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.kubelet_socket_name)


class WorkerConfig(BaseModel):
    """Validated Onload worker settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pod_name: str = ""
    pod_namespace: str = ""
    container_name: str = "onload-worker"
    cp_server_path: AbsolutePath = "/mnt/onload/sbin/onload_cp_server"
    cp_server_params: str = ""
    crictl_path: AbsolutePath = "/usr/bin/crictl"
    dev_root: AbsolutePath = "/dev"
    sysfs_root: AbsolutePath = "/sys"
    container_id: str = ""
    container_id_source: Literal["auto", "kubernetes", "proc"] = "auto"
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"


PLUGIN_FLAGS: tuple[Flag, ...] = (
    Flag("maxPods", "max_pods", "ONLOAD_DP_MAX_PODS", "number of amd.com/onload devices advertised"),
    Flag("needNic", "need_nic", "ONLOAD_DP_NEED_NIC", "devices are Unhealthy while no Onload NIC", True),
    Flag("setPreload", "set_preload", "ONLOAD_DP_SET_PRELOAD", "set LD_PRELOAD=libonload.so in pods", True),
    Flag("mountOnload", "mount_onload", "ONLOAD_DP_MOUNT_ONLOAD", "mount the onload script in pods", True),
    Flag("hostOnloadPath", "host_onload_path", "ONLOAD_DP_HOST_ONLOAD_PATH", "Onload userland on the host"),
    Flag("baseMountPath", "base_mount_path", "ONLOAD_DP_BASE_MOUNT_PATH", "prefix of the mounts in pods"),
    Flag("binMountPath", "bin_mount_path", "ONLOAD_DP_BIN_MOUNT_PATH", "onload script dir under the base"),
    Flag("libMountPath", "lib_mount_path", "ONLOAD_DP_LIB_MOUNT_PATH", "library dir under the base"),
    Flag("devicePluginPath", "device_plugin_path", "ONLOAD_DP_DEVICE_PLUGIN_PATH", "kubelet plugin dir"),
    Flag("socketName", "socket_name", "ONLOAD_DP_SOCKET_NAME", "plugin socket file name"),
    Flag("kubeletSocketName", "kubelet_socket_name", "ONLOAD_DP_KUBELET_SOCKET_NAME", "kubelet socket name"),
    Flag("devRoot", "dev_root", "ONLOAD_DP_DEV_ROOT", "where the host's /dev is visible"),
    Flag("sysfsRoot", "sysfs_root", "ONLOAD_DP_SYSFS_ROOT", "where the host's /sys is visible"),
    Flag("cdi", "cdi", "ONLOAD_DP_CDI", "write a CDI spec and return CDI device names", True),
    Flag("cdiSpecDir", "cdi_spec_dir", "ONLOAD_DP_CDI_SPEC_DIR", "directory of the CDI spec"),
    Flag("metricsPort", "metrics_port", "ONLOAD_DP_METRICS_PORT", "port of /metrics (0 disables it)"),
    Flag("metricsAddress", "metrics_address", "ONLOAD_DP_METRICS_ADDRESS", "address of /metrics"),
    Flag("logFormat", "log_format", "ONLOAD_DP_LOG_FORMAT", "json or text"),
    Flag("logLevel", "log_level", "ONLOAD_DP_LOG_LEVEL", "debug, info, warning or error"),
)

WORKER_FLAGS: tuple[Flag, ...] = (
    Flag("podName", "pod_name", "POD_NAME", "name of the worker's pod"),
    Flag("podNamespace", "pod_namespace", "POD_NAMESPACE", "namespace of the worker's pod"),
    Flag("containerName", "container_name", "CONTAINER_NAME", "name of the worker container"),
    Flag("cpServerPath", "cp_server_path", "ONLOAD_CP_SERVER_PATH", "onload_cp_server inside the worker"),
    Flag("cpServerParams", "cp_server_params", "ONLOAD_CP_SERVER_PARAMS", "onload_cp_server arguments"),
    Flag("crictlPath", "crictl_path", "ONLOAD_WORKER_CRICTL_PATH", "crictl on the host"),
    Flag("devRoot", "dev_root", "ONLOAD_WORKER_DEV_ROOT", "where the host's /dev is visible"),
    Flag("sysfsRoot", "sysfs_root", "ONLOAD_WORKER_SYSFS_ROOT", "where the host's /sys is visible"),
    Flag("containerId", "container_id", "ONLOAD_WORKER_CONTAINER_ID", "skip discovery: <runtime>://<id> or <id>"),
    Flag("containerIdSource", "container_id_source", "ONLOAD_WORKER_CONTAINER_ID_SOURCE", "auto|kubernetes|proc"),
    Flag("logFormat", "log_format", "ONLOAD_WORKER_LOG_FORMAT", "json or text"),
    Flag("logLevel", "log_level", "ONLOAD_WORKER_LOG_LEVEL", "debug, info, warning or error"),
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ConfigError(message)


def _build_parser(prog: str, flags: Sequence[Flag]) -> argparse.ArgumentParser:
    parser = _FlagParser(prog=prog, allow_abbrev=False, add_help=True)
    for flag in flags:
        # Go's flag package accepts both -name and --name; a bare boolean flag means true.
        names = [f"-{flag.name}", f"--{flag.name}"]
        help_text = f"{flag.help} (env {flag.env})"
        if flag.is_bool:
            parser.add_argument(*names, dest=flag.field, nargs="?", const="true", default=None, help=help_text)
        else:
            parser.add_argument(*names, dest=flag.field, default=None, help=help_text)
    return parser


def _load(model: type[ModelT], prog: str, flags: Sequence[Flag], argv: Sequence[str], env: Mapping[str, str]) -> ModelT:
    parsed = vars(_build_parser(prog, flags).parse_args(list(argv)))
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for flag in flags:
        if parsed.get(flag.field) is not None:
            values[flag.field] = parsed[flag.field]
            sources[flag.field] = f"-{flag.name}"
        elif flag.env in env:
            values[flag.field] = env[flag.env]
            sources[flag.field] = f"-{flag.name} (from ${flag.env})"
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources, flags)) from None


def _describe(exc: ValidationError, sources: Mapping[str, str], flags: Sequence[Flag]) -> str:
    by_field = {flag.field: f"-{flag.name}" for flag in flags}
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = sources.get(field, by_field.get(field, field))
        lines.append(f"invalid value {error.get('input')!r} for {name}: {error['msg']}")
    return "; ".join(lines)


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
