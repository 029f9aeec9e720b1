"""The executor against kubesim: ordered actions, typed eviction outcomes, node patches guarded by resourceVersion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesim.polling import wait_for
from kubesim.testing import KubesimCluster
from onload_operator.actions import Action, DeletePod, EvictionOutcome, EvictPod, ObjectRef, PatchNode, PostEvent
from onload_operator.io.client import Kube, json_of, load_api_client
from onload_operator.io.events import BURST, REFILL_SECONDS, EventRecorder
from onload_operator.io.executor import Executor
from onload_operator.io.pods import pods_on_node
from onload_operator.metrics import OperatorMetrics
from onload_operator.observed import NodeView, Taint, is_ready, node_view
from onload_operator.render import names

pytestmark = pytest.mark.kubesim_options(nodes="worker-[0-1]")


@pytest.fixture
def executor(kubesim: KubesimCluster) -> Iterator[Executor]:
    kube = Kube(load_api_client(str(kubesim.kubeconfig)), OperatorMetrics())
    executor = Executor(kube, "test")
    yield executor
    executor.close()
    kube.close()


def _ready_pods(core: client.CoreV1Api, namespace: str, node: str, count: int) -> list[Any]:
    for index in range(count):
        pod: Any = {
            "metadata": {"name": f"web-{index}", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "x"}]},
        }
        core.create_namespaced_pod(namespace, pod)

    def ready() -> list[Any] | None:
        response = core.list_namespaced_pod(namespace, label_selector="app=web", _preload_content=False)
        pods = json_of(response)["items"]
        return pods if len(pods) == count and all(map(is_ready, pods)) else None

    pods: list[Any] = wait_for(ready, timeout=60, message="pods to become Ready")
    return pods


def test_evictions_report_blocked_gone_and_evicted(executor: Executor, kubesim_namespace: str) -> None:
    core = executor.kube.core
    web0, web1 = _ready_pods(core, kubesim_namespace, "worker-0", 2)
    budget: Any = {
        "metadata": {"name": "keep-two"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
    }
    policy = client.PolicyV1Api(executor.kube.api_client)
    policy.create_namespaced_pod_disruption_budget(kubesim_namespace, budget)

    def counted() -> bool:
        status = policy.read_namespaced_pod_disruption_budget("keep-two", kubesim_namespace).status
        return status is not None and status.current_healthy == 2

    wait_for(counted, timeout=60)
    assert {p.name for p in pods_on_node(executor.kube, "worker-0")} >= {"web-0", "web-1"}
    assert not [p for p in pods_on_node(executor.kube, "worker-1") if p.namespace == kubesim_namespace]
    actions: list[Action] = [
        EvictPod(kubesim_namespace, "web-0", web0["metadata"]["uid"]),
        EvictPod(kubesim_namespace, "missing", "uid"),
        DeletePod(kubesim_namespace, "web-1", "another-uid"),
        DeletePod(kubesim_namespace, "web-1", web1["metadata"]["uid"]),
    ]
    executed = executor.run(kubesim_namespace, "onload", actions)
    outcomes = [result.outcome for result in executed.evictions]
    assert outcomes == [EvictionOutcome.BLOCKED, EvictionOutcome.GONE, EvictionOutcome.GONE, EvictionOutcome.EVICTED]
    assert "disruption budget" in executed.evictions[0].message
    assert executed.writes == 4


def _node(executor: Executor, name: str) -> NodeView:
    return node_view(json_of(executor.kube.core.read_node(name, _preload_content=False)))


def test_taints_are_written_only_over_the_node_they_were_decided_from(
    executor: Executor, kubesim_namespace: str
) -> None:
    node = _node(executor, "worker-0")
    taint = Taint(names.UPGRADE_TAINT, "NoSchedule")
    first = PatchNode(
        "worker-0",
        labels={"step": "1"},
        annotations={names.UPGRADE_ANNOTATION: "tainting"},
        taints=(*node.taints, taint),
        resource_version=node.resource_version,
    )
    assert executor.run(kubesim_namespace, "onload", [first]).writes == 1
    after = _node(executor, "worker-0")
    assert taint in after.taints
    assert after.labels["step"] == "1"
    assert after.annotations[names.UPGRADE_ANNOTATION] == "tainting"
    # The same decision again is stale: it fails with a conflict, and nothing after it runs.
    event = PostEvent(ObjectRef("v1", "Node", "worker-0"), "Normal", "Never", "not posted")
    later = PatchNode("worker-1", labels={"step": "2"})
    with pytest.raises(ApiException) as raised:
        executor.run(kubesim_namespace, "onload", [first, event, later])
    assert raised.value.status == 409
    assert "step" not in _node(executor, "worker-1").labels


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _events_of(core: client.CoreV1Api, namespace: str, involved: str) -> list[Any]:
    items = json_of(core.list_namespaced_event(namespace, _preload_content=False))["items"]
    return [item for item in items if item["involvedObject"]["name"] == involved]


def test_repeated_events_update_one_event_within_a_rate_limit(executor: Executor, kubesim_namespace: str) -> None:
    clock = FakeClock()
    recorder = EventRecorder(executor.kube, "test", clock)
    ref = ObjectRef("v1", "ConfigMap", "flapping", kubesim_namespace, "uid-1")
    posted = [recorder.post(PostEvent(ref, "Normal", "Flapping", f"flap {i}")) for i in range(BURST + 5)]
    assert posted == [True] * BURST + [False] * 5  # the burst is spent: held back, but counted
    assert recorder.post(PostEvent(ref, "Warning", "Other", "another reason"))  # a flapping reason silences no other
    event, other = sorted(_events_of(executor.kube.core, kubesim_namespace, "flapping"), key=lambda e: e["reason"])
    assert (other["reason"], other["count"]) == ("Other", 1)
    assert (event["count"], event["message"]) == (BURST, f"flap {BURST - 1}")
    clock.now += REFILL_SECONDS
    assert recorder.post(PostEvent(ref, "Normal", "Flapping", "flap again"))
    event, _other = sorted(_events_of(executor.kube.core, kubesim_namespace, "flapping"), key=lambda e: e["reason"])
    assert (event["count"], event["message"]) == (BURST + 6, "flap again")
    # An Event deleted meanwhile (expired) is created again, with the count so far.
    executor.kube.core.delete_namespaced_event(event["metadata"]["name"], kubesim_namespace)
    clock.now += REFILL_SECONDS
    assert recorder.post(PostEvent(ref, "Normal", "Flapping", "after expiry"))
    event, _other = sorted(_events_of(executor.kube.core, kubesim_namespace, "flapping"), key=lambda e: e["reason"])
    assert (event["count"], event["message"]) == (BURST + 7, "after expiry")
