"""A Module apply refused because KMM's CRD is missing, or being deleted, reads as "install KMM"."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from onload_operator.io.children import kmm_missing


def refusal(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="refused")
    error.body = json.dumps({"kind": "Status", "code": status, "message": message})
    return error


def test_a_missing_or_terminating_crd_is_kmm_missing_and_other_refusals_are_not() -> None:
    assert kmm_missing(refusal(404, "the server could not find the requested resource"))
    terminating = "create not allowed while custom resource definition is terminating"
    assert kmm_missing(refusal(403, terminating))
    assert not kmm_missing(refusal(403, 'modules.kmm.sigs.x-k8s.io is forbidden: User "x" cannot create'))
    assert not kmm_missing(refusal(422, "Module.kmm.sigs.x-k8s.io is invalid"))
