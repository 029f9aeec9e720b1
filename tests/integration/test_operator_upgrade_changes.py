"""Changes during a rollout: a node joins, the target changes again, the CR is deleted; and bad policy values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster
from tests.integration.upgrade_support import (
    GATE,
    NAME,
    NEW,
    NS,
    ONLOAD_KEY,
    Watcher,
    budget,
    complete,
    nodes,
    remove_budget,
    running_with_workloads,
    state,
    tainted,
    upgrade_spec,
)

WORKERS = "worker-[0-2]:labels=node-role.kubernetes.io/worker="


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Cluster]:
    """Three workers on 8.1.2.26 and a rollout to 9.0.1 held at worker-0's evictions by a budget."""
    with simulated_cluster(tmp_path, nodes=WORKERS) as cluster:
        running_with_workloads(cluster, 3, 1)
        budget(cluster, "hold", "trader", min_available=1)
        cluster.patch_onload(NS, NAME, upgrade_spec())
        wait_for(lambda: (state(nodes(cluster)["worker-0"]) or {}).get("step") == "EvictPods")
        yield cluster


def test_a_node_joining_during_a_rollout_gets_the_new_version_directly(held: Cluster) -> None:
    held.sim.add_nodes("worker-9:labels=node-role.kubernetes.io/worker=")

    def joined() -> bool:
        labels = nodes(held)["worker-9"].metadata.labels or {}
        return labels.get(ONLOAD_KEY) == NEW and labels.get(GATE) == NEW

    wait_for(joined, message="worker-9 running 9.0.1")
    assert state(nodes(held)["worker-9"]) is None  # never in the upgrade's hands
    remove_budget(held, "hold")
    wait_for(lambda: complete(held, NEW, 4), timeout=60, message="the rollout over four nodes")


def test_a_second_change_mid_way_retargets_without_leaving_a_node_half_done(held: Cluster) -> None:
    held.patch_onload(NS, NAME, upgrade_spec("9.0.2"))
    wait_for(lambda: (state(nodes(held)["worker-0"]) or {}).get("target") == "9.0.2", message="worker-0 retargeted")
    remove_budget(held, "hold")
    Watcher(held).until(lambda: complete(held, "9.0.2", 3), timeout=60, message="the rollout to 9.0.2")
    events = [e.reason for e in held.events(NS, NAME)]
    assert "UpgradeRetargeted" in events
    # No node ran 9.0.1 to the end: its DaemonSet goes with the rollout.
    wait_for(lambda: held.daemonset(NS, names.device_plugin_revision_name(NAME, NEW)) is None)


def test_deleting_the_cr_mid_rollout_releases_every_node(held: Cluster) -> None:
    assert tainted(nodes(held)["worker-0"])
    held.delete_onload(NS, NAME)
    wait_for(lambda: not held.onload_exists(NS, NAME), message="the CR gone")
    for name, node in nodes(held).items():
        labels = node.metadata.labels or {}
        assert not tainted(node), name
        assert state(node) is None, name
        assert not {ONLOAD_KEY, GATE} & set(labels), name


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"maxUnavailable": 0}, "maxUnavailable"),
        ({"maxUnavailable": "0%"}, "maxUnavailable"),
        ({"maxUnavailable": "half"}, "maxUnavailable"),
        ({"maxParallel": 0}, "maxParallel"),
        ({"onEvictionTimeout": "Retry"}, "onEvictionTimeout"),
        ({"evictionTimeoutSeconds": 0}, "evictionTimeoutSeconds"),
        ({"maxFailures": 0}, "maxFailures"),
    ],
)
def test_bad_policy_values_are_refused_naming_the_field(tmp_path: Path, policy: dict[str, Any], field: str) -> None:
    with simulated_cluster(tmp_path, nodes=WORKERS) as cluster:
        body = onload_body()
        body["spec"]["upgrade"] = policy
        with pytest.raises(ApiException) as refused:
            cluster.create_onload(body)
        assert refused.value.status == 422
        assert f"spec.upgrade.{field}" in json.loads(refused.value.body or "{}")["message"]


def test_policy_defaults_are_applied_by_the_crd(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path, nodes=WORKERS) as cluster:
        created = cluster.create_onload(onload_body())
        assert created["spec"]["upgrade"] == {
            "maxParallel": 1,
            "maxUnavailable": 1,
            "paused": False,
            "evictionTimeoutSeconds": 300,
            "onEvictionTimeout": "Fail",
            "moduleTimeoutSeconds": 600,
            "devicePluginTimeoutSeconds": 300,
            "maxFailures": 1,
        }
