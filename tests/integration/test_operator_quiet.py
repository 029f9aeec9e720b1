"""The operator says only what is true, once: Events aggregate under node churn, a missing KMM is one Warning, and
a status never calls a generation complete before its writes take effect."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from kubesim.polling import wait_for
from onload_operator.planner.status import condition_of
from onload_operator.render import names
from tests.integration.operator_harness import GROUP, PLURAL, VERSION, Cluster, onload_body, simulated_cluster

NS = "onload"
GATE = names.onload_label(NS, "onload")
ROLE = "node-role.kubernetes.io/worker"
FLAPS = 6


def carrying(cluster: Cluster, node: str, key: str) -> bool:
    return key in cluster.node_labels().get(node, {})


def test_node_churn_posts_one_event_per_reason_with_its_count(cluster: Cluster) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    for flap in range(FLAPS):
        cluster.label_node("worker-0", {ROLE: None})
        wait_for(lambda: not carrying(cluster, "worker-0", GATE), message=f"worker-0 left ({flap})")
        cluster.label_node("worker-0", {ROLE: ""})
        cluster.wait_ready(NS, "onload", selected=3, moduleReady=3, devicePluginReady=3)
    cluster.sim.add_nodes("late-0:labels=node-role.kubernetes.io/worker=")
    cluster.wait_ready(NS, "onload", selected=4, moduleReady=4, devicePluginReady=4)
    cluster.core.delete_node("late-0")
    cluster.wait_ready(NS, "onload", selected=3, devicePluginReady=3)

    events = cluster.events(NS, "onload")
    # Created and Updated Events are one per child written.
    objects = Counter((e.type, e.reason, e.message if e.reason in {"Created", "Updated"} else "") for e in events)
    assert max(objects.values()) == 1, objects  # one Event per type and reason (and child written)
    assert len(events) <= 10
    counts = {e.reason: e.count for e in events}
    assert counts["StoppingDevicePlugin"] == FLAPS
    assert counts["StartingDevicePlugin"] >= FLAPS + 2  # the creation (maybe in steps), each return, the late node


def test_missing_kmm_is_one_warning_and_nothing_else(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="onload_operator.reconciler")
    with simulated_cluster(tmp_path, kmm=False) as cluster:
        extensions = client.ApiextensionsV1Api(cluster.core.api_client)
        extensions.delete_custom_resource_definition("modules.kmm.sigs.x-k8s.io")
        wait_for(lambda: "modules.kmm.sigs.x-k8s.io" not in cluster.sim.crd_names(), message="KMM CRD gone")
        operator = cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_reason(NS, "onload", "KmmMissing", type_="Degraded")
        failed = operator.context.metrics.reconciles.labels("error")
        seen = failed._value.get()
        wait_for(lambda: failed._value.get() >= seen + 3, message="three more failed passes")
        (event,) = cluster.events(NS, "onload")
        assert event.type == "Warning"
        assert "install Kernel Module Management" in event.message
    lines = [r.getMessage() for r in caplog.records if r.name == "onload_operator.reconciler"]
    assert len(lines) >= 4
    assert len({line.split(" failing since ")[1].split(" ")[0] for line in lines}) == 1, lines  # one outage


class StatusSampler:
    """Reads the CR's status in a thread, every few milliseconds, as `kubectl wait` or a GitOps tool would."""

    def __init__(self, cluster: Cluster) -> None:
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.api: Any = client.CustomObjectsApi(api_client)
        self.samples: list[tuple[object, object, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.003):
            status = self.api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "onload").get("status") or {}
            condition = condition_of(status, "Progressing")
            self.samples.append((status.get("observedGeneration"), condition.get("status"), condition.get("reason")))

    def __enter__(self) -> StatusSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted-after-the-write"])
def test_a_spec_change_is_never_reported_complete_before_its_writes_take_effect(
    cluster: Cluster, restart: bool
) -> None:
    cluster.create_onload(onload_body())
    cluster.wait_ready(NS, "onload")
    wait_for(lambda: cluster.condition(NS, "onload", "Progressing").get("reason") == "Complete")
    ds = names.device_plugin_revision_name("onload", "8.1.2.26")
    template = cluster.daemonset(NS, ds).metadata.generation
    with StatusSampler(cluster) as sampler:
        cluster.patch_onload(NS, "onload", {"spec": {"serviceAccountName": "sa-2"}})
        if restart:
            wait_for(lambda: cluster.daemonset(NS, ds).metadata.generation > template, message="the DaemonSet written")
            cluster.stop_operator()
            cluster.start_operator()

        def restart_pending() -> bool:
            status = cluster.onload(NS, "onload")["status"]
            reason = condition_of(status, "Progressing")["reason"]
            return bool(status["observedGeneration"] == 2 and reason == "DevicePluginRestartPending")

        wait_for(restart_pending, message="the running plugin pods reported as outdated (OnDelete)")
        wait_for(lambda: len(sampler.samples) > 10, message="samples taken")
    new = [sample for sample in sampler.samples if sample[0] == 2]
    assert new  # the sampler saw the new generation
    assert ("False", "Complete") not in {(status, reason) for _generation, status, reason in new}, new
