"""What the installed KMM's Module kind knows, read from the API server's OpenAPI v3 document.

KMM added fields to ``Module.spec`` over its releases (``tolerations`` in 2.3); an API server prunes a field its
CRD does not know, so a Module that carries it never matches the live one. The OpenAPI document is readable by
every authenticated client (the ``system:discovery`` role): no RBAC rule is needed.
"""

from __future__ import annotations

import logging

from kubernetes.client.exceptions import ApiException

from onload_operator.io.client import Kube, json_of
from onload_operator.render import names

log = logging.getLogger(__name__)

MODULE_DOCUMENT = f"/openapi/v3/apis/{names.KMM_GROUP}/{names.KMM_VERSION}"


def module_spec_fields(kube: Kube) -> frozenset[str] | None:
    """The fields of the served ``Module.spec``; None when the document cannot be read or has no Module."""
    api_client = kube.api_client
    request = api_client.param_serialize(
        "GET", MODULE_DOCUMENT, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    try:
        response = api_client.call_api(*request)
        response.read()  # type: ignore[no-untyped-call]
    except (ApiException, OSError) as error:
        log.warning("cannot read the KMM Module schema from %s: %s", MODULE_DOCUMENT, error)
        return None
    if response.status != 200:
        log.warning("cannot read the KMM Module schema from %s: HTTP %s", MODULE_DOCUMENT, response.status)
        return None
    document = json_of(response)
    for schema in ((document.get("components") or {}).get("schemas") or {}).values():
        kinds = schema.get("x-kubernetes-group-version-kind") or []
        if any(gvk.get("group") == names.KMM_GROUP and gvk.get("kind") == "Module" for gvk in kinds):
            spec = (schema.get("properties") or {}).get("spec") or {}
            return frozenset((spec.get("properties") or {}).keys())
    return None
