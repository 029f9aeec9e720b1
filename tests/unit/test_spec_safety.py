"""Inputs that could harm a host or fail on a child: the CRD (OpenAPI and CEL, as the API server applies them) and
the models refuse each one, naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import cel, schema
from onload_operator.planner.checks import validate
from tests.unit.onload_samples import cr_body

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "onload.amd.com_onloads.yaml"


def crd_refusals(body: dict[str, Any]) -> list[str]:
    """The fields the API server would name when refusing ``body`` under the checked-in CRD (after defaulting)."""
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    obj = copy.deepcopy(body)
    schema.apply_defaults(root, obj)
    causes = [str(cause["field"]) for cause in schema.validate(root, obj)]
    return causes or [path for path, _message in cel.rule_violations(root, obj)]


def model_refusals(body: dict[str, Any]) -> list[str]:
    return [problem.message for problem in validate(body)[1]]


def with_field(path: str, value: Any) -> dict[str, Any]:
    body = cr_body()
    target = body["spec"]
    *parents, last = path.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return body


GOOD = [
    ("devicePlugin.hostOnloadPath", "/opt/onload/"),
    ("devicePlugin.hostOnloadPath", "/srv/onload"),
    ("devicePlugin.libMountPath", "/usr/lib"),
    ("devicePlugin.libMountPath", ""),
    ("devicePlugin.binMountPath", "/bin/"),
    ("devicePlugin.binMountPath", "bin"),
    ("devicePlugin.baseMountPath", "/"),
    ("onload.userImage", "registry.example.com:5000/onload/onload-user:8.1.2.26"),
    ("onload.userImage", "onload-user@sha256:" + "a" * 64),
    ("onload.kernelMappings", [{"regexp": "x", "kernelModuleImage": "m:8.1-${KERNEL_FULL_VERSION}"}]),
    ("selector", {"example.com/pool": "a", "node-role.kubernetes.io/worker": ""}),
    ("serviceAccountName", ""),
    ("serviceAccountName", "onload.sa"),
]

BAD = [
    ("devicePlugin.hostOnloadPath", "/usr/lib"),
    ("devicePlugin.hostOnloadPath", "/var/lib/kubelet"),
    ("devicePlugin.hostOnloadPath", "/etc/kubernetes"),
    ("devicePlugin.hostOnloadPath", "/root/.ssh"),
    ("devicePlugin.hostOnloadPath", "/opt"),
    ("devicePlugin.hostOnloadPath", "/opt/x/../../etc"),
    ("devicePlugin.libMountPath", "../../etc"),
    ("devicePlugin.libMountPath", "lib/../../../etc"),
    ("devicePlugin.libMountPath", "/usr/../../etc"),
    ("devicePlugin.libMounthPath", "/usr/./lib64"),
    ("devicePlugin.binMountPath", "/usr//bin"),
    ("devicePlugin.baseMountPath", "/opt/onload/.."),
    ("devicePlugin.baseMountPath", "opt"),
    ("onload.userImage", "   "),
    ("onload.userImage", "onload user:8.1"),
    ("onload.userImage", "Onload-User:8.1"),
    ("onload.kernelMappings", [{"regexp": "x", "kernelModuleImage": "m :tag"}]),
    ("selector", {"pool": "a b"}),
    ("selector", {"pool": "-a"}),
    ("selector", {"pool": "x" * 64}),
    ("serviceAccountName", "Onload_SA"),
    ("serviceAccountName", " "),
]

MODEL_ONLY = [
    ("selector", {"bad key": "a"}),
    ("selector", {"Example.com/pool": "a"}),
    ("selector", {"example.com/" + "x" * 64: "a"}),
    ("selector", {"/pool": "a"}),
]


@pytest.mark.parametrize(("path", "value"), GOOD)
def test_safe_values_are_accepted(path: str, value: Any) -> None:
    body = with_field(path, value)
    assert crd_refusals(body) == []
    assert model_refusals(body) == []


@pytest.mark.parametrize(("path", "value"), BAD)
def test_unsafe_values_are_refused_by_the_crd_and_the_models(path: str, value: Any) -> None:
    body = with_field(path, value)
    refusals = crd_refusals(body)
    assert refusals, f"the CRD accepts {path}={value!r}"
    assert all(field.startswith("spec." + path.split(".")[0]) for field in refusals), refusals
    messages = model_refusals(body)
    assert messages, f"the models accept {path}={value!r}"
    assert any(message.startswith("spec." + path.split(".")[0]) for message in messages), messages


@pytest.mark.parametrize(("path", "value"), MODEL_ONLY)
def test_label_keys_are_refused_by_the_models(path: str, value: Any) -> None:
    """The CRD cannot check map keys at a bounded CEL cost; the operator refuses them (InvalidSpec, the field named)."""
    problems = validate(with_field(path, value))[1]
    assert [problem.reason for problem in problems] == ["InvalidSpec"]
    assert problems[0].message.startswith("spec.selector: ")
    assert "label key" in problems[0].message


def test_a_minimal_cr_takes_the_device_plugin_defaults_from_the_crd() -> None:
    body = cr_body()
    del body["spec"]["devicePlugin"]
    assert crd_refusals(body) == []
    assert model_refusals(body) == []
    root = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema.apply_defaults(root, body)
    assert body["spec"]["devicePlugin"] == {
        "maxPodsPerNode": 100,
        "setPreload": True,
        "mountOnload": False,
        "hostOnloadPath": "/opt/onload/",
        "baseMountPath": "/opt/onload",
        "binMountPath": "/usr/bin",
        "cdi": False,
    }
