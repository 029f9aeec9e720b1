"""The rules a CDI spec file must follow, by spec version, as the CDI specification states them: required and
known fields of each object, the version that introduced each optional field, and the name syntax. A runtime
refuses a spec that uses a field newer than its declared ``cdiVersion`` or a field it does not know."""

from __future__ import annotations

import re
from typing import Any

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VENDOR = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_CLASS = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)

# field -> the spec version that introduced it, per object; "required" fields exist in every version.
_SPEC_FIELDS = {"cdiVersion": "0.3.0", "kind": "0.3.0", "devices": "0.3.0", "containerEdits": "0.3.0",
                "annotations": "0.6.0"}  # fmt: skip
_DEVICE_FIELDS = {"name": "0.3.0", "containerEdits": "0.3.0", "annotations": "0.6.0"}
_EDITS_FIELDS = {"env": "0.3.0", "deviceNodes": "0.3.0", "hooks": "0.3.0", "mounts": "0.3.0",
                 "intelRdt": "0.7.0", "additionalGids": "0.7.0", "netDevices": "1.0.0"}  # fmt: skip
_NODE_FIELDS = {"path": "0.3.0", "type": "0.3.0", "major": "0.3.0", "minor": "0.3.0", "fileMode": "0.3.0",
                "permissions": "0.3.0", "uid": "0.3.0", "gid": "0.3.0", "hostPath": "0.5.0"}  # fmt: skip
_MOUNT_FIELDS = {"hostPath": "0.3.0", "containerPath": "0.3.0", "options": "0.3.0", "type": "0.4.0"}
KNOWN_VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")


def _parse(version: str) -> tuple[int, ...]:
    match = _VERSION.fullmatch(version)
    assert match, version
    return tuple(int(part) for part in match.groups())


def _check_fields(where: str, item: Any, allowed: dict[str, str], required: tuple[str, ...], version: str) -> list[str]:
    if not isinstance(item, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}: {name} is required" for name in required if name not in item]
    for name in item:
        if name not in allowed:
            problems.append(f"{where}: unknown field {name}")
        elif _parse(allowed[name]) > _parse(version):
            problems.append(f"{where}: {name} needs cdiVersion {allowed[name]}, the spec declares {version}")
    return problems


def _check_edits(where: str, edits: Any, version: str) -> list[str]:
    problems = _check_fields(where, edits, _EDITS_FIELDS, (), version)
    if problems:
        return problems
    for index, entry in enumerate(edits.get("env", [])):
        if not isinstance(entry, str) or not _ENV.fullmatch(entry):
            problems.append(f"{where}.env[{index}]: not NAME=value")
    for index, node in enumerate(edits.get("deviceNodes", [])):
        problems += _check_fields(f"{where}.deviceNodes[{index}]", node, _NODE_FIELDS, ("path",), version)
        if isinstance(node, dict) and not set(node.get("permissions", "")) <= set("rwm"):
            problems.append(f"{where}.deviceNodes[{index}]: permissions other than r, w and m")
    for index, mount in enumerate(edits.get("mounts", [])):
        required = ("hostPath", "containerPath")
        problems += _check_fields(f"{where}.mounts[{index}]", mount, _MOUNT_FIELDS, required, version)
        if isinstance(mount, dict) and not all(isinstance(option, str) for option in mount.get("options", [])):
            problems.append(f"{where}.mounts[{index}]: options must be strings")
    return problems


def cdi_spec_problems(spec: Any) -> list[str]:
    """Every way ``spec`` breaks the CDI specification at the version it declares; empty when valid."""
    version = spec.get("cdiVersion") if isinstance(spec, dict) else None
    if version not in KNOWN_VERSIONS:
        return [f"cdiVersion {version!r} is not a released CDI version"]
    problems = _check_fields("spec", spec, _SPEC_FIELDS, ("cdiVersion", "kind", "devices"), version)
    vendor, _, class_ = str(spec.get("kind", "")).partition("/")
    if not (_VENDOR.fullmatch(vendor) and _CLASS.fullmatch(class_)):
        problems.append(f"spec: kind {spec.get('kind')!r} is not vendor/class")
    devices = spec.get("devices")
    if not isinstance(devices, list) or not devices:
        problems.append("spec: devices must list at least one device")
        devices = []
    for index, device in enumerate(devices):
        where = f"devices[{index}]"
        problems += _check_fields(where, device, _DEVICE_FIELDS, ("name", "containerEdits"), version)
        if isinstance(device, dict):
            if not _DEVICE_NAME.fullmatch(str(device.get("name", ""))):
                problems.append(f"{where}: name {device.get('name')!r} is not a valid device name")
            problems += _check_edits(f"{where}.containerEdits", device.get("containerEdits", {}), version)
    if "containerEdits" in spec:
        problems += _check_edits("spec.containerEdits", spec["containerEdits"], version)
    return problems
