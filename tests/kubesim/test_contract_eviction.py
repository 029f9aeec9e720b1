"""Pod eviction honouring PodDisruptionBudgets, and the pods/status subresource."""

from typing import Any

import pytest
from kubernetes import client

from kubesim.polling import wait_for
from tests.kubesim.contract_support import PAUSE_IMAGE, Cluster

pytestmark = pytest.mark.realcluster


def _pod(name: str, node: str, app: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": PAUSE_IMAGE}],
        },
    }


def _ready_pods(cluster: Cluster, namespace: str, count: int, app: str = "web") -> list[str]:
    node = cluster.ready_node()
    names = [f"{app}-{index}" for index in range(count)]
    for name in names:
        cluster.core.create_namespaced_pod(namespace, _pod(name, node, app))

    def all_ready() -> bool:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        return len(pods) == count and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods
        )

    wait_for(all_ready, timeout=120, message="pods to become Ready")
    return names


def _budget(name: str, app: str = "web", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


def _evict(cluster: Cluster, namespace: str, name: str) -> tuple[int, Any]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
    return cluster.http("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", body)


def _gone(cluster: Cluster, namespace: str, name: str) -> bool:
    status, body = cluster.http("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    return status == 404 or bool(body["metadata"].get("deletionTimestamp"))


def _wait_for_budget(cluster: Cluster, namespace: str, name: str, healthy: int) -> None:
    """The disruption controller needs a moment to count the pods."""

    def counted() -> bool:
        status = cluster.policy.read_namespaced_pod_disruption_budget(name, namespace).status
        return status is not None and status.current_healthy == healthy

    wait_for(counted, timeout=60)


@pytest.mark.core_kinds
def test_eviction_without_a_budget_is_allowed(cluster: Cluster, namespace: str) -> None:
    (name,) = _ready_pods(cluster, namespace, 1)
    status, body = _evict(cluster, namespace, name)
    assert status == 201
    assert body["kind"] == "Status"
    wait_for(lambda: _gone(cluster, namespace, name), timeout=60)


@pytest.mark.core_kinds
def test_min_available_blocks_with_429_and_a_disruption_budget_cause(cluster: Cluster, namespace: str) -> None:
    names = _ready_pods(cluster, namespace, 2)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", minAvailable=2))
    _wait_for_budget(cluster, namespace, "pdb", 2)
    status, body = _evict(cluster, namespace, names[0])
    assert status == 429
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert "disruption budget" in body["message"]
    assert not _gone(cluster, namespace, names[0])


@pytest.mark.core_kinds
def test_min_available_allows_one_then_blocks(cluster: Cluster, namespace: str) -> None:
    names = _ready_pods(cluster, namespace, 3)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", minAvailable=2))
    _wait_for_budget(cluster, namespace, "pdb", 3)
    assert _evict(cluster, namespace, names[0])[0] == 201
    wait_for(lambda: _gone(cluster, namespace, names[0]), timeout=60)
    _wait_for_budget(cluster, namespace, "pdb", 2)
    assert _evict(cluster, namespace, names[1])[0] == 429


@pytest.mark.core_kinds
@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ({"minAvailable": 1}, True),
        ({"minAvailable": 2}, False),
        # Percentages and maxUnavailable need the pods' controller scale: bare pods have none.
        ({"maxUnavailable": 1}, False),
        ({"minAvailable": "50%"}, False),
    ],
)
def test_budget_forms_for_bare_pods(cluster: Cluster, namespace: str, spec: dict[str, Any], allowed: bool) -> None:
    names = _ready_pods(cluster, namespace, 2)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", **spec))
    _wait_for_budget(cluster, namespace, "pdb", 2)
    status, _ = _evict(cluster, namespace, names[0])
    assert status == (201 if allowed else 429)


@pytest.mark.core_kinds
def test_budget_status_is_kept_current(cluster: Cluster, namespace: str) -> None:
    names = _ready_pods(cluster, namespace, 3)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", minAvailable=1))

    def status_is(healthy: int, allowed: int) -> bool:
        status = cluster.policy.read_namespaced_pod_disruption_budget("pdb", namespace).status
        return bool(
            status is not None
            and (status.current_healthy, status.disruptions_allowed, status.expected_pods)
            == (healthy, allowed, healthy)
        )

    wait_for(lambda: status_is(3, 2), timeout=60)
    cluster.core.delete_namespaced_pod(names[0], namespace, grace_period_seconds=0)
    wait_for(lambda: status_is(2, 1), timeout=60)
    conditions = cluster.policy.read_namespaced_pod_disruption_budget("pdb", namespace).status.conditions
    assert [(c.type, c.status, c.reason) for c in conditions] == [("DisruptionAllowed", "True", "SufficientPods")]


@pytest.mark.core_kinds
def test_max_unavailable_for_daemonset_pods_cannot_be_computed(cluster: Cluster, namespace: str) -> None:
    cluster.apps.create_namespaced_daemon_set(
        namespace,
        {
            "metadata": {"name": "ds"},
            "spec": {
                "selector": {"matchLabels": {"app": "ds"}},
                "template": {
                    "metadata": {"labels": {"app": "ds"}},
                    "spec": {"containers": [{"name": "c", "image": PAUSE_IMAGE}]},
                },
            },
        },
    )

    def pods() -> list[Any]:
        return [
            p
            for p in cluster.core.list_namespaced_pod(namespace, label_selector="app=ds").items
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]

    wait_for(pods, timeout=120)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", app="ds", maxUnavailable=1))

    def sync_failed() -> bool:
        status = cluster.policy.read_namespaced_pod_disruption_budget("pdb", namespace).status
        return bool(status and status.conditions and status.conditions[0].reason == "SyncFailed")

    wait_for(sync_failed, timeout=60)
    status, body = _evict(cluster, namespace, pods()[0].metadata.name)
    assert (status, body["details"]["causes"][0]["reason"]) == (429, "DisruptionBudget")


@pytest.mark.core_kinds
def test_budget_of_other_pods_does_not_apply(cluster: Cluster, namespace: str) -> None:
    (name,) = _ready_pods(cluster, namespace, 1)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("other", app="other", minAvailable=5))
    assert _evict(cluster, namespace, name)[0] == 201


@pytest.mark.core_kinds
def test_eviction_of_a_missing_pod_is_404(cluster: Cluster, namespace: str) -> None:
    status, body = _evict(cluster, namespace, "missing")
    assert (status, body["reason"]) == (404, "NotFound")


@pytest.mark.core_kinds
def test_two_budgets_are_an_error(cluster: Cluster, namespace: str) -> None:
    (name,) = _ready_pods(cluster, namespace, 1)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("one", minAvailable=0))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("two", minAvailable=0))
    _wait_for_budget(cluster, namespace, "two", 1)
    status, _ = _evict(cluster, namespace, name)
    assert status == 500


@pytest.mark.core_kinds
def test_official_client_eviction(cluster: Cluster, namespace: str) -> None:
    names = _ready_pods(cluster, namespace, 1)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", minAvailable=1))
    _wait_for_budget(cluster, namespace, "pdb", 1)
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=names[0], namespace=namespace))
    with pytest.raises(client.ApiException) as raised:
        cluster.core.create_namespaced_pod_eviction(names[0], namespace, eviction)
    assert raised.value.status == 429


@pytest.mark.core_kinds
def test_pending_pod_is_evicted_despite_the_budget(cluster: Cluster, namespace: str) -> None:
    pod = _pod("pending", "no-such-node")
    cluster.core.create_namespaced_pod(namespace, pod)
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, _budget("pdb", minAvailable=1))
    assert _evict(cluster, namespace, "pending")[0] == 201


@pytest.mark.core_kinds
def test_pod_status_subresource(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, _pod("st", "no-such-node"))
    status, body = cluster.http(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/st/status",
        {"status": {"conditions": [{"type": "Example", "status": "True"}]}, "metadata": {"labels": {"x": "y"}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 200
    assert {"type": "Example", "status": "True"} in [
        {k: c[k] for k in ("type", "status")} for c in body["status"]["conditions"]
    ]
    status, body = cluster.http(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/st",
        {"status": {"phase": "Failed"}},
        content_type="application/merge-patch+json",
    )
    assert body["status"]["phase"] == "Pending"


@pytest.mark.core_kinds
def test_pod_spec_is_immutable_but_for_images(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, _pod("immutable", "no-such-node"))
    path = f"/api/v1/namespaces/{namespace}/pods/immutable"
    image = {"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}
    status, body = cluster.http("PATCH", path, image, content_type="application/strategic-merge-patch+json")
    assert status == 200
    assert body["spec"]["containers"][0]["image"] == "registry.k8s.io/pause:3.10"
    status, body = cluster.http(
        "PATCH", path, {"spec": {"hostNetwork": True}}, content_type="application/merge-patch+json"
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec"


@pytest.mark.core_kinds
def test_binding_assigns_a_node_once(cluster: Cluster, namespace: str) -> None:
    unscheduled = _pod("unbound", "ignored")
    del unscheduled["spec"]["nodeName"]
    cluster.core.create_namespaced_pod(namespace, unscheduled)
    node = cluster.ready_node()
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "unbound"},
        "target": {"kind": "Node", "name": node},
    }
    status, _ = cluster.http("POST", f"/api/v1/namespaces/{namespace}/pods/unbound/binding", binding)
    assert status == 201
    assert cluster.core.read_namespaced_pod("unbound", namespace).spec.node_name == node
    status, body = cluster.http("POST", f"/api/v1/namespaces/{namespace}/pods/unbound/binding", binding)
    assert (status, body["reason"]) == (409, "Conflict")
