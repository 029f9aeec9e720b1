"""The CRD's CEL rules, evaluated as the API server evaluates them (after defaulting)."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.cel import rule_violations
from onload_operator.api.v1alpha1 import DevicePluginSpec

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "onload.amd.com_onloads.yaml"


def device_plugin_schema() -> dict[str, Any]:
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["devicePlugin"]
    return schema


def defaulted(**fields: Any) -> dict[str, Any]:
    """A devicePlugin object with the schema defaults applied, as the API server stores it."""
    return {**DevicePluginSpec().model_dump(by_alias=True, exclude_none=True), **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, None),
        ({"mountOnload": True, "setPreload": False}, None),
        ({"libMounthPath": "/usr/lib"}, None),
        ({"libMountPath": "/usr/lib"}, None),
        ({"mountOnload": True}, "setPreload and mountOnload are mutually exclusive"),
        ({"libMountPath": "/usr/lib64", "libMounthPath": "/usr/lib64"}, None),
        ({"libMountPath": "/a", "libMounthPath": "/b"}, "libMountPath and libMounthPath (its older spelling) differ"),
    ],
)
def test_device_plugin_rules(fields: dict[str, Any], message: str | None) -> None:
    violations = list(rule_violations(device_plugin_schema(), defaulted(**fields), path="spec.devicePlugin"))
    if message is None:
        assert violations == []
    else:
        assert len(violations) == 1
        field, text = violations[0]
        assert field == "spec.devicePlugin"
        assert text.startswith(message)


def test_models_and_cel_rules_agree() -> None:
    """Whatever the CEL rules refuse, the models refuse too, so the operator never acts on such a spec."""
    for fields in ({"mountOnload": True}, {"libMountPath": "/a", "libMounthPath": "/b"}):
        assert list(rule_violations(device_plugin_schema(), defaulted(**fields)))
        with pytest.raises(ValueError, match=r"exclusive|differ"):
            DevicePluginSpec.model_validate(defaulted(**fields))
