"""Checks of an Onload CR that the CRD schema cannot express, each with its own condition reason.

A CR that fails any check is reported (``Ready=False`` with the reason, a Warning Event) and nothing in the
cluster is created, changed or deleted because of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from onload_operator.api.rules import regexp_error
from onload_operator.api.v1alpha1 import ObjectMeta, Onload, OnloadSpec
from onload_operator.render import names

NAME_TOO_LONG = "NameTooLong"
INVALID_SPEC = "InvalidSpec"
MISSING_USER_IMAGE = "MissingUserImage"
INVALID_REGEXP = "InvalidKernelMappingRegexp"
SELECTOR_CONFLICT = "SelectorConflict"
UNSAFE_HOST_PATH = "UnsafeHostOnloadPath"
UNSUPPORTED_IMAGE = "UnsupportedDevicePluginImage"

GO_DEVICE_PLUGIN_REPOSITORY = "docker.io/onload/onload-device-plugin"
"""The Go operator's device-plugin image: its plugin and worker exit on the flags this operator passes, and it has
none of the commands of the init containers."""
DEVICE_PLUGIN_REPOSITORY = "docker.io/onload/onload-device-plugin-py"


def _reason(where: str, error_type: str) -> str:
    """Problems of these fields have a reason of their own; every other field's is InvalidSpec."""
    if where == "spec.onload.userImage" and error_type in ("missing", "string_too_short"):
        return MISSING_USER_IMAGE
    if where == "spec.devicePlugin.hostOnloadPath":
        return UNSAFE_HOST_PATH
    return INVALID_SPEC


@dataclass(frozen=True)
class Problem:
    """Why a CR cannot be acted on: a CamelCase condition reason and a message for humans."""

    reason: str
    message: str


def _location(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _spec_problems(error: ValidationError) -> list[Problem]:
    problems = []
    for detail in error.errors():
        where = _location(tuple(detail["loc"]))
        message = f"{where}: {detail['msg']}"
        problems.append(Problem(_reason(where, detail["type"]), message))
    return problems


def name_problem(name: str, namespace: str) -> Problem | None:
    length = len(name) + len(namespace)
    if length <= names.MAX_NAME_AND_NAMESPACE:
        return None
    return Problem(
        NAME_TOO_LONG,
        f"name {name!r} and namespace {namespace!r} are {length} characters together; KMM allows at most "
        f"{names.MAX_NAME_AND_NAMESPACE} (its node label keys hold both plus the Module suffix)",
    )


def regexp_problems(onload: Onload) -> list[Problem]:
    problems = []
    for index, mapping in enumerate(onload.spec.onload.kernel_mappings):
        error = regexp_error(mapping.regexp)
        if error is not None:
            problems.append(
                Problem(
                    INVALID_REGEXP,
                    f"spec.onload.kernelMappings[{index}].regexp {mapping.regexp!r} does not compile under "
                    f"Go's regexp (KMM's engine): {error}",
                )
            )
    return problems


def _repository(image: str) -> str:
    """The image's repository with Docker Hub's registry written out, without tag or digest."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name = name[: name.rindex(":")]
    first, _slash, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if rest else 'library/' + name}"
    return name.replace("index.docker.io/", "docker.io/", 1)


def device_plugin_image_problem(image: str) -> Problem | None:
    """The operator's device-plugin image (DEVICE_PLUGIN_IMG) must be this project's, not the Go operator's."""
    if _repository(image) != GO_DEVICE_PLUGIN_REPOSITORY:
        return None
    return Problem(
        UNSUPPORTED_IMAGE,
        f"the operator's device-plugin image {image!r} (DEVICE_PLUGIN_IMG) is the Go operator's, whose plugin and "
        f"worker refuse the flags and commands of this operator's DaemonSet; set DEVICE_PLUGIN_IMG to "
        f"{DEVICE_PLUGIN_REPOSITORY} at this operator's version (config/default does)",
    )


def validate(body: Mapping[str, Any]) -> tuple[Onload | None, list[Problem]]:
    """Parse a CR as read from the API and list its problems; the model is None when the spec does not parse."""
    metadata = body.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", "default"))
    problems: list[Problem] = []
    length_problem = name_problem(name, namespace)
    if length_problem is not None:
        problems.append(length_problem)
    try:
        spec = OnloadSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return None, problems + _spec_problems(error)
    onload = Onload(metadata=ObjectMeta.model_validate(metadata), spec=spec)
    return onload, problems + regexp_problems(onload)
