"""Fault injection and bookkeeping that tests reach through the pytest plugin's ``kubesim`` fixture: KMM load
failures per node and version, and the count of successful evictions per pod."""

import functools
from typing import Any, cast

import pytest
from kubernetes import client

from kubesim.controllers import ControllerSettings
from kubesim.polling import wait_for
from kubesim.store import EvictedPod
from kubesim.testing import KubesimCluster
from tests.kubesim.controllers.sim_helpers import module

SETTINGS = ControllerSettings(pod_start_delay=0.01, pod_stop_delay=0.01, kmm_load_delay=0.02, kmm_unload_delay=0.01)
READY = "kmm.node.kubernetes.io/{ns}.onload-module.ready"
VERSION = "kmm.node.kubernetes.io/version-module.{ns}.onload-module"


def _ready(core: Any, namespace: str, name: str) -> bool:
    pod = core.read_namespaced_pod(name, namespace)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@pytest.mark.kubesim_options(nodes="worker-0", controllers=SETTINGS)
def test_successful_evictions_are_counted_per_pod(kubesim: KubesimCluster, kubesim_namespace: str) -> None:
    core = cast(Any, client.CoreV1Api())
    policy = cast(Any, client.PolicyV1Api())
    ns = kubesim_namespace
    for name in ("a", "b"):
        core.create_namespaced_pod(
            ns,
            {
                # A finalizer keeps the evicted pod Terminating, so that it can be evicted again.
                "metadata": {"name": name, "labels": {"app": name}, "finalizers": ["example.com/hold"]},
                "spec": {"nodeName": "worker-0", "containers": [{"name": "c", "image": "registry.example/c:1"}]},
            },
        )
        wait_for(functools.partial(_ready, core, ns, name), message=f"pod {name} Ready")
    uid_a = core.read_namespaced_pod("a", ns).metadata.uid
    policy.create_namespaced_pod_disruption_budget(
        ns, {"metadata": {"name": "keep-b"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "b"}}}}
    )

    def evict(name: str, **kwargs: Any) -> None:
        core.create_namespaced_pod_eviction(name, ns, {"metadata": {"name": name, "namespace": ns}}, **kwargs)

    evict("a", dry_run="All")
    assert kubesim.evictions() == {}
    wait_for(lambda: (policy.read_namespaced_pod_disruption_budget("keep-b", ns).status.current_healthy or 0) == 1)
    with pytest.raises(client.ApiException) as refused:
        evict("b")
    assert refused.value.status == 429
    assert kubesim.evictions() == {}

    evict("a")
    assert kubesim.evictions() == {EvictedPod(ns, "a", uid_a): 1}
    # Evicting the terminating pod again succeeds, and counts again: what a "never twice" test must catch.
    assert core.read_namespaced_pod("a", ns).metadata.deletion_timestamp is not None
    evict("a")
    assert kubesim.evictions() == {EvictedPod(ns, "a", uid_a): 2}
    assert kubesim.sim.evictions() == kubesim.evictions()
    for name in ("a", "b"):
        core.patch_namespaced_pod(name, ns, {"metadata": {"finalizers": None}})


@pytest.mark.kubesim_options(nodes="worker-[0-1]:labels=node-role.kubernetes.io/worker=", controllers=SETTINGS)
def test_kmm_load_failure_through_the_fixture(kubesim: KubesimCluster, kubesim_namespace: str) -> None:
    core = cast(Any, client.CoreV1Api())
    custom = cast(Any, client.CustomObjectsApi())
    ns = kubesim_namespace
    kubesim.kmm.fail_load("worker-1", "1")
    manifest = module(
        namespace=ns, mappings=[{"regexp": ".", "containerImage": "onload:${KERNEL_FULL_VERSION}"}], version="1"
    )
    custom.create_namespaced_custom_object("kmm.sigs.x-k8s.io", "v1beta1", ns, "modules", manifest)
    for node in ("worker-0", "worker-1"):
        core.patch_node(node, {"metadata": {"labels": {VERSION.format(ns=ns): "1"}}})

    def labels(node: str) -> dict[str, str]:
        return dict(core.read_node(node).metadata.labels or {})

    wait_for(lambda: READY.format(ns=ns) in labels("worker-0"), message="loaded on worker-0")
    wait_for(
        lambda: any(e.reason == "FailedLoad" for e in core.list_namespaced_event(ns).items),
        message="FailedLoad event for worker-1",
    )
    assert READY.format(ns=ns) not in labels("worker-1")
    kubesim.kmm.clear_load_failure("worker-1", "1")
    wait_for(lambda: READY.format(ns=ns) in labels("worker-1"), message="loaded on worker-1 once cleared")
