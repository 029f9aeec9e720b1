"""config/rbac/role.yaml grants exactly the permissions the operator uses (onload_operator.rbac_rules), and no role
that config/default ships opens a path from a namespace editor to the nodes.

tests/integration/test_operator_rbac.py checks those rules against the calls the operator really makes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from onload_operator.rbac_rules import permissions

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "config" / "rbac" / "role.yaml"


def test_cluster_role_matches_the_operator_rules() -> None:
    role = next(doc for doc in yaml.safe_load_all(ROLE.read_text()) if doc and doc.get("kind") == "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == permissions()


NAMESPACE_ROLES = {"admin", "edit"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def rendered_roles() -> list[dict[str, Any]]:
    """The ClusterRoles and Roles of ``config/default`` as kustomize builds them."""
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "config" / "default")], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc and doc["kind"] in {"ClusterRole", "Role"}]


def aggregated_into(role: Mapping[str, Any]) -> set[str]:
    labels = role["metadata"].get("labels") or {}
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    return {key.removeprefix(prefix) for key, value in labels.items() if key.startswith(prefix) and value == "true"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for kustomize) is not installed")
def test_no_namespace_role_gains_onload_write_access() -> None:
    """Creating an Onload is root on the nodes it selects: a namespace editor must not get it by aggregation."""
    roles = rendered_roles()
    assert {role["metadata"]["name"] for role in roles} >= {
        "onload-operator-onload-editor-role",
        "onload-operator-onload-viewer-role",
    }
    for role in roles:
        if not aggregated_into(role) & NAMESPACE_ROLES:
            continue
        for rule in role.get("rules") or []:
            if "onload.amd.com" in rule["apiGroups"]:
                assert not WRITE_VERBS & set(rule["verbs"]), role["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for kustomize) is not installed")
def test_no_role_grants_a_wildcard() -> None:
    for role in rendered_roles():
        for rule in role.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
