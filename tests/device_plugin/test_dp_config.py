"""Flag and environment parsing of the plugin and the worker: Go-compatible names and booleans, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from device_plugin.config import ConfigError, PluginConfig, load_plugin_config, load_worker_config, parse_go_bool


def test_defaults_match_the_go_plugin() -> None:
    config = load_plugin_config([], {})
    assert config.max_pods == 100
    assert config.need_nic is True
    assert config.set_preload is True
    assert config.mount_onload is False
    assert config.host_onload_path == "/opt/onload"
    assert config.base_mount_path == "/opt/onload"
    assert config.bin_mount_path == "/usr/bin"
    assert config.lib_mount_path == "/usr/lib64"
    assert config.socket_path == "/var/lib/kubelet/device-plugins/onload.sock"
    assert config.kubelet_socket_path == "/var/lib/kubelet/device-plugins/kubelet.sock"
    assert config.dev_root == "/dev"
    assert config.cdi is False


def test_operator_daemonset_args_parse() -> None:
    args = [
        "-maxPods=7",
        "-setPreload=false",
        "-mountOnload=true",
        "-hostOnloadPath=/opt/onload/",
        "-baseMountPath=/opt/acc",
        "-binMountPath=/bin",
        "-libMountPath=/lib64",
        "--devRoot",
        "/host/dev",
        "-cdi",
    ]
    config = load_plugin_config(args, {})
    assert (config.max_pods, config.set_preload, config.mount_onload) == (7, False, True)
    assert (config.host_onload_path, config.base_mount_path) == ("/opt/onload/", "/opt/acc")
    assert (config.bin_mount_path, config.lib_mount_path) == ("/bin", "/lib64")
    assert config.dev_root == "/host/dev"
    assert config.cdi is True


def test_environment_fallback_and_flag_precedence() -> None:
    env = {"ONLOAD_DP_MAX_PODS": "12", "ONLOAD_DP_NEED_NIC": "0", "ONLOAD_DP_SET_PRELOAD": "F"}
    config = load_plugin_config(["-maxPods=3"], env)
    assert config.max_pods == 3
    assert config.need_nic is False
    assert config.set_preload is False


@pytest.mark.parametrize(("text", "value"), [("1", True), ("t", True), ("TRUE", True), ("0", False), ("False", False)])
def test_go_booleans(text: str, value: bool) -> None:
    assert parse_go_bool(text) is value


@pytest.mark.parametrize("text", ["yes", "on", "", "2", "tRuE"])
def test_non_go_booleans_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        parse_go_bool(text)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["-maxPods=-1"], {}, "-maxPods"),
        (["-maxPods=ten"], {}, "-maxPods"),
        (["-setPreload=yes"], {}, "-setPreload"),
        (["-hostOnloadPath=opt/onload"], {}, "-hostOnloadPath"),
        (["-devRoot=dev"], {}, "-devRoot"),
        (["-socketName=../x.sock"], {}, "-socketName"),
        (["-metricsPort=70000"], {}, "-metricsPort"),
        (["-logFormat=xml"], {}, "-logFormat"),
        ([], {"ONLOAD_DP_MAX_PODS": "-1"}, "-maxPods (from $ONLOAD_DP_MAX_PODS)"),
        (["-noSuchFlag=1"], {}, "-noSuchFlag"),
    ],
)
def test_bad_values_name_the_flag(args: list[str], env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_plugin_config(args, env)
    assert named in str(raised.value)


def test_preload_and_mount_onload_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="-setPreload and -mountOnload"):
        load_plugin_config(["-mountOnload=true"], {})
    assert load_plugin_config(["-mountOnload=true", "-setPreload=false"], {}).mount_onload


def test_worker_reads_the_go_environment() -> None:
    env = {
        "POD_NAME": "dp-abc",
        "POD_NAMESPACE": "onload",
        "CONTAINER_NAME": "onload-worker",
        "ONLOAD_CP_SERVER_PATH": "/mnt/onload/sbin/onload_cp_server",
        "ONLOAD_CP_SERVER_PARAMS": "-K -D",
    }
    config = load_worker_config(["-crictlPath=/usr/local/bin/crictl"], env)
    assert (config.pod_name, config.pod_namespace, config.container_name) == ("dp-abc", "onload", "onload-worker")
    assert config.cp_server_params == "-K -D"
    assert config.crictl_path == "/usr/local/bin/crictl"
    with pytest.raises(ConfigError, match="-containerIdSource"):
        load_worker_config(["-containerIdSource=guess"], {})


def test_every_bad_value_is_reported_at_once_with_its_reason() -> None:
    with pytest.raises(ConfigError) as raised:
        load_plugin_config(["-maxPods=ten", "-metricsPort=70000", "-logFormat=xml"], {})
    assert str(raised.value) == (
        "invalid value 'ten' for -maxPods: must be an integer; "
        "invalid value '70000' for -metricsPort: must be between 0 and 65535; "
        "invalid value 'xml' for -logFormat: must be one of json, text"
    )


def test_a_configuration_built_in_code_is_checked_and_frozen() -> None:
    config = PluginConfig(max_pods=" 7 ", need_nic="f")  # type: ignore[arg-type]
    assert (config.max_pods, config.need_nic) == (7, False)
    with pytest.raises(ValueError, match="must be an absolute path"):
        PluginConfig(dev_root="dev")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_pods = 3  # type: ignore[misc]
