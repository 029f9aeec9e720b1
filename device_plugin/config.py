"""Command-line and environment configuration of the device plugin and the Onload worker.

Flags keep the single-dash names of the Go plugin (``-maxPods=10``, ``-setPreload=false``) because the
operator writes them into the DaemonSet. Every flag also has an environment variable; a flag given on the
command line wins over the variable, which wins over the default. Each field converts and checks its value when
the configuration is built, and a bad value raises :class:`ConfigError` naming the flag. (Plain dataclasses
rather than pydantic: pydantic would be a quarter of the device-plugin image and 7 MB of its resident memory.)
"""

from __future__ import annotations

import argparse
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag."""


class FieldValuesError(ValueError):
    """Values that a configuration refused: ``(field, value, reason)`` each."""

    def __init__(self, errors: list[tuple[str, object, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"invalid value {value!r} for {name}: {reason}" for name, value, reason in errors))


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


Converter = Callable[[Any], Any]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _absolute(value: object) -> str:
    path = _text(value)
    if not posixpath.isabs(path):
        raise ValueError(f"must be an absolute path, got {path!r}")
    return path


def _integer(low: int, high: int) -> Converter:
    def convert(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        else:
            raise ValueError("must be an integer")
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return convert


def _one_of(*choices: str) -> Converter:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return convert


def _matching(pattern: str) -> Converter:
    def convert(value: object) -> str:
        text = _text(value)
        if not re.fullmatch(pattern, text):
            raise ValueError(f"must match {pattern}")
        return text

    return convert


def _converted_by(convert: Converter) -> dict[str, Converter]:
    """Field metadata: the function that converts and checks a value given for the field."""
    return {"convert": convert}


class _Checked:
    """Converts every field of a dataclass at construction and reports all refused values at once."""

    def __post_init__(self) -> None:
        errors = []
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            try:
                object.__setattr__(self, item.name, item.metadata["convert"](value))
            except ValueError as exc:
                errors.append((item.name, value, str(exc)))
        if errors:
            raise FieldValuesError(errors)


LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]
_LOG_FORMAT = _one_of("json", "text")
_LOG_LEVEL = _one_of("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its Go-style name, the configuration field it fills and its environment variable."""

    name: str
    field: str
    env: str
    help: str
    is_bool: bool = False


@dataclass(frozen=True)
class PluginConfig(_Checked):
    """Validated device-plugin settings."""

    max_pods: int = field(default=100, metadata=_converted_by(_integer(0, 10000)))
    need_nic: bool = field(default=True, metadata=_converted_by(parse_go_bool))
    set_preload: bool = field(default=True, metadata=_converted_by(parse_go_bool))
    mount_onload: bool = field(default=False, metadata=_converted_by(parse_go_bool))
    host_onload_path: str = field(default="/opt/onload", metadata=_converted_by(_absolute))
    base_mount_path: str = field(default="/opt/onload", metadata=_converted_by(_absolute))
    # Below base_mount_path; empty (as the Go plugin allows) mounts directly in it.
    bin_mount_path: str = field(default="/usr/bin", metadata=_converted_by(_text))
    # Below base_mount_path; empty mounts directly in it.
    lib_mount_path: str = field(default="/usr/lib64", metadata=_converted_by(_text))
    device_plugin_path: str = field(default="/var/lib/kubelet/device-plugins", metadata=_converted_by(_absolute))
    socket_name: str = field(default="onload.sock", metadata=_converted_by(_matching(r"[A-Za-z0-9._-]+\.sock")))
    kubelet_socket_name: str = field(default="kubelet.sock", metadata=_converted_by(_matching(r"[A-Za-z0-9._-]+")))
    dev_root: str = field(default="/dev", metadata=_converted_by(_absolute))
    sysfs_root: str = field(default="/sys", metadata=_converted_by(_absolute))
    cdi: bool = field(default=False, metadata=_converted_by(parse_go_bool))
    cdi_spec_dir: str = field(default="/var/run/cdi", metadata=_converted_by(_absolute))
    metrics_port: int = field(default=9120, metadata=_converted_by(_integer(0, 65535)))
    metrics_address: str = field(default="0.0.0.0", metadata=_converted_by(_text))
    log_format: LogFormat = field(default="json", metadata=_converted_by(_LOG_FORMAT))
    log_level: LogLevel = field(default="info", metadata=_converted_by(_LOG_LEVEL))

    @property
    def socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.socket_name)

    @property
    def kubelet_socket_path(self) -> str:
        return posixpath.join(self.device_plugin_path, self.kubelet_socket_name)


@dataclass(frozen=True)
class WorkerConfig(_Checked):
    """Validated Onload worker settings."""

    pod_name: str = field(default="", metadata=_converted_by(_text))
    pod_namespace: str = field(default="", metadata=_converted_by(_text))
    container_name: str = field(default="onload-worker", metadata=_converted_by(_text))
    cp_server_path: str = field(default="/mnt/onload/sbin/onload_cp_server", metadata=_converted_by(_absolute))
    cp_server_params: str = field(default="", metadata=_converted_by(_text))
    crictl_path: str = field(default="/usr/bin/crictl", metadata=_converted_by(_absolute))
    dev_root: str = field(default="/dev", metadata=_converted_by(_absolute))
    sysfs_root: str = field(default="/sys", metadata=_converted_by(_absolute))
    container_id: str = field(default="", metadata=_converted_by(_text))
    container_id_source: Literal["auto", "kubernetes", "proc"] = field(
        default="auto", metadata=_converted_by(_one_of("auto", "kubernetes", "proc"))
    )
    log_format: LogFormat = field(default="json", metadata=_converted_by(_LOG_FORMAT))
    log_level: LogLevel = field(default="info", metadata=_converted_by(_LOG_LEVEL))


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

ConfigT = TypeVar("ConfigT", PluginConfig, WorkerConfig)


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


def _load(
    config: type[ConfigT], prog: str, flags: Sequence[Flag], argv: Sequence[str], env: Mapping[str, str]
) -> ConfigT:
    parsed = vars(_build_parser(prog, flags).parse_args(list(argv)))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for flag in flags:
        if parsed.get(flag.field) is not None:
            values[flag.field] = parsed[flag.field]
            sources[flag.field] = f"-{flag.name}"
        elif flag.env in env:
            values[flag.field] = env[flag.env]
            sources[flag.field] = f"-{flag.name} (from ${flag.env})"
    try:
        return config(**values)
    except FieldValuesError as exc:
        raise ConfigError(
            "; ".join(
                f"invalid value {value!r} for {sources.get(name, name)}: {reason}" for name, value, reason in exc.errors
            )
        ) from None


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
