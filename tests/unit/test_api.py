"""The Onload API models: Go v3 compatibility, defaults and refusal of bad input."""

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from onload_operator.api.rules import regexp_error
from onload_operator.api.v1alpha1 import Onload, OnloadSpec

# A CR as written for the Go v3 operator, including its misspelled `libMounthPath` key.
GO_V3_CR: dict[str, Any] = {
    "apiVersion": "onload.amd.com/v1alpha1",
    "kind": "Onload",
    "metadata": {"name": "onload", "namespace": "onload-system"},
    "spec": {
        "selector": {"node-role.kubernetes.io/worker": ""},
        "serviceAccountName": "onload-operator-sa",
        "onload": {
            "version": "8.1.2.26",
            "userImage": "docker.io/onload/onload-user:8.1.2.26-ubi8",
            "imagePullPolicy": "IfNotPresent",
            "kernelMappings": [
                {
                    "regexp": "^.*\\.x86_64$",
                    "kernelModuleImage": "registry/onload-module:8.1.2.26-${KERNEL_FULL_VERSION}",
                    "sfc": {},
                    "build": {
                        "buildArgs": [{"name": "ONLOAD_SOURCE", "value": "docker.io/onload/onload-source:8.1.2.26"}],
                        "dockerfileConfigMap": {"name": "onload-module-dockerfile"},
                    },
                }
            ],
            "controlPlane": {"parameters": ["-K", "--llap-max=100"]},
        },
        "devicePlugin": {
            "imagePullPolicy": "IfNotPresent",
            "maxPodsPerNode": 50,
            "setPreload": False,
            "mountOnload": True,
            "hostOnloadPath": "/opt/onload/",
            "baseMountPath": "/opt/onload",
            "binMountPath": "/usr/bin",
            "libMounthPath": "/usr/lib",
        },
    },
}


def spec_with(**device_plugin: Any) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(GO_V3_CR["spec"])
    spec["devicePlugin"] = device_plugin
    return spec


def test_go_v3_cr_is_accepted_unchanged() -> None:
    onload = Onload.from_manifest(copy.deepcopy(GO_V3_CR))
    plugin = onload.spec.device_plugin
    assert plugin.effective_lib_mount_path == "/usr/lib"
    assert plugin.max_pods_per_node == 50
    assert onload.spec.uses_sfc
    assert onload.spec.onload.control_plane is not None
    assert onload.spec.onload.control_plane.parameters == ["-K", "--llap-max=100"]
    build = onload.spec.onload.kernel_mappings[0].build
    assert build is not None
    assert build.dockerfile_config_map.name == "onload-module-dockerfile"


def test_correct_spelling_is_accepted() -> None:
    spec = OnloadSpec.model_validate(spec_with(libMountPath="/usr/lib"))
    assert spec.device_plugin.effective_lib_mount_path == "/usr/lib"


def test_both_spellings_are_refused_when_they_differ() -> None:
    with pytest.raises(ValidationError, match=r"libMountPath and libMounthPath .* differ"):
        OnloadSpec.model_validate(spec_with(libMountPath="/a", libMounthPath="/b"))


def test_both_spellings_are_accepted_when_equal() -> None:
    """The Go v3 CRD stored libMounthPath: /usr/lib64 in every CR; re-applying a manifest with the new spelling
    must not be refused."""
    spec = OnloadSpec.model_validate(spec_with(libMountPath="/usr/lib64", libMounthPath="/usr/lib64"))
    assert spec.device_plugin.effective_lib_mount_path == "/usr/lib64"


def test_empty_device_plugin_takes_the_go_defaults() -> None:
    plugin = OnloadSpec.model_validate(spec_with()).device_plugin
    assert (plugin.max_pods_per_node, plugin.set_preload, plugin.mount_onload) == (100, True, False)
    assert (plugin.host_onload_path, plugin.base_mount_path, plugin.bin_mount_path) == (
        "/opt/onload/",
        "/opt/onload",
        "/usr/bin",
    )
    assert plugin.effective_lib_mount_path == "/usr/lib64"


def test_control_plane_defaults_to_kernel_log() -> None:
    spec = copy.deepcopy(GO_V3_CR["spec"])
    spec["onload"]["controlPlane"] = {}
    control_plane = OnloadSpec.model_validate(spec).onload.control_plane
    assert control_plane is not None
    assert control_plane.parameters == ["-K"]


def test_preload_and_mount_onload_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="mutually exclusive"):
        OnloadSpec.model_validate(spec_with(setPreload=True, mountOnload=True))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("onload", "version"), "8.1 beta", "String should match pattern"),
        (("onload", "version"), None, "Input should be a valid string"),
        (("onload", "kernelMappings"), [], "at least 1 item"),
        (("onload", "imagePullPolicy"), "Sometimes", "Input should be 'Always', 'IfNotPresent' or 'Never'"),
        (("selector",), {}, "at least 1 item"),
        (("onload", "version"), "", "at least 1 character"),
        (("devicePlugin", "maxPodsPerNode"), 0, "greater than or equal to 1"),
        (("devicePlugin", "preload"), True, "Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(path: tuple[str, ...], value: Any, message: str) -> None:
    spec = copy.deepcopy(GO_V3_CR["spec"])
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError, match=message) as raised:
        OnloadSpec.model_validate(spec)
    assert path[-1] in str(raised.value)


@pytest.mark.parametrize(
    ("pattern", "compiles"),
    [
        ("^.*\\.x86_64$", True),
        ("4.18.0-372.49.1.el8_6.x86_64", True),
        ("^5\\.14\\.0-(284|362)\\..*$", True),
        ("[", False),
        ("(?=lookahead)", False),  # Python accepts it; RE2 (and so KMM) does not
        ("(unclosed", False),
        ("^5\\C", False),  # RE2 accepts \C (any byte); Go refuses it
        ("^5\\\\C", True),  # an escaped backslash, then C
        ("(?<major>[0-9]+)", False),  # RE2 accepts it; Go before 1.22 (older KMM builds) refuses it
        ("(?P<major>[0-9]+)", True),
        ("(?<=x)y", False),
    ],
)
def test_kernel_mapping_regexps_are_checked_as_go_compiles_them(pattern: str, compiles: bool) -> None:
    error = regexp_error(pattern)
    assert (error is None) == compiles, error
    if not compiles:
        assert isinstance(error, str)
        assert error
