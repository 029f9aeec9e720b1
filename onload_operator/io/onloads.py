"""Writes to the Onload CRs themselves: only their status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from onload_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from onload_operator.io.client import MERGE_PATCH, Kube


def patch_status(kube: Kube, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch the status subresource; a CR deleted meanwhile needs none."""
    try:
        kube.write(
            "patch",
            "onloads/status",
            lambda: kube.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            ),
        )
    except ApiException as error:
        if error.status != 404:
            raise
