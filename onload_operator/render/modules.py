"""The KMM ``Module`` objects of an Onload CR: ``<name>-module`` (onload) and, when asked for, ``<name>-sfcmod``."""

from __future__ import annotations

from onload_operator.api.v1alpha1 import KernelMapping, Onload
from onload_operator.render import names
from onload_operator.render.common import Manifest, owner_reference, upgrade_tolerations

FIRST_TIME = ["--first-time"]
"""modprobe fails when the module is already loaded, so KMM never silently keeps a foreign Onload driver."""


def kmm_kernel_mapping(mapping: KernelMapping, *, with_build: bool) -> Manifest:
    """One KMM kernel mapping: the CR's regexp and image, plus the in-cluster build for the onload Module."""
    result: Manifest = {"regexp": mapping.regexp, "containerImage": mapping.kernel_module_image}
    if with_build and mapping.build is not None:
        result["build"] = {
            "buildArgs": [{"name": arg.name, "value": arg.value} for arg in mapping.build.build_args],
            "dockerfileConfigMap": {"name": mapping.build.dockerfile_config_map.name},
        }
    return result


def onload_kernel_mappings(onload: Onload) -> list[Manifest]:
    return [kmm_kernel_mapping(m, with_build=True) for m in onload.spec.onload.kernel_mappings]


def sfc_kernel_mappings(onload: Onload) -> list[Manifest]:
    """The mappings that ask for sfc, without their build: sfc comes from the image the onload build produced."""
    return [kmm_kernel_mapping(m, with_build=False) for m in onload.spec.onload.kernel_mappings if m.sfc is not None]


def _module(
    onload: Onload, revision: str, module: str, modprobe_name: str, mappings: list[Manifest], tolerations: bool
) -> Manifest:
    spec = onload.spec
    namespace = onload.metadata.namespace
    container: Manifest = {
        "modprobe": {"moduleName": modprobe_name, "parameters": list(FIRST_TIME)},
        "kernelMappings": mappings,
        # The revision id: KMM loads it on the nodes whose version label carries it (ordered upgrade).
        "version": revision,
    }
    if spec.onload.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.onload.image_pull_policy
    if modprobe_name == "sfc":
        container["inTreeModuleToRemove"] = "sfc"
    module_spec: Manifest = {
        # Not spec.selector: KMM would unload the modules at once from a node that stops matching it, under the
        # running device plugin (see names.module_selector_label).
        "selector": {names.module_selector_label(namespace, onload.metadata.name): ""},
        "moduleLoader": {"container": container},
    }
    if tolerations:  # KMM 2.3 and later; an older API server would prune the field
        module_spec["tolerations"] = upgrade_tolerations()
    if spec.service_account_name:
        module_spec["moduleLoader"]["serviceAccountName"] = spec.service_account_name
    if spec.image_pull_secrets:
        module_spec["imageRepoSecret"] = {"name": spec.image_pull_secrets[0].name}
    return {
        "apiVersion": names.KMM_API_VERSION,
        "kind": "Module",
        "metadata": {
            "name": module,
            "namespace": namespace,
            "labels": names.base_labels(namespace, onload.metadata.name, "module"),
            "ownerReferences": [owner_reference(onload)],
        },
        "spec": module_spec,
    }


def onload_module(onload: Onload, revision: str, registry: str, tolerations: bool = True) -> Manifest:
    """``<name>-module``: modprobe ``onload --first-time`` with every kernel mapping and its build; it carries the
    revisions' registry."""
    module = _module(
        onload,
        revision,
        names.module_name(onload.metadata.name),
        "onload",
        onload_kernel_mappings(onload),
        tolerations,
    )
    module["metadata"]["annotations"] = {names.REVISIONS_ANNOTATION: registry}
    return module


def sfc_module(onload: Onload, revision: str, tolerations: bool = True) -> Manifest:
    """``<name>-sfcmod``: modprobe ``sfc`` replacing the in-tree driver, for the mappings that ask for ``sfc``."""
    name = names.sfc_module_name(onload.metadata.name)
    return _module(onload, revision, name, "sfc", sfc_kernel_mappings(onload), tolerations)
