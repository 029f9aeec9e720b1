"""config/rbac/role.yaml grants exactly the permissions the operator uses (onload_operator.rbac_rules).

tests/integration/test_operator_rbac.py checks those rules against the calls the operator really makes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from onload_operator.rbac_rules import permissions

ROLE = Path(__file__).resolve().parents[2] / "config" / "rbac" / "role.yaml"


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
