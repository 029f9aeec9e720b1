"""The status names the node whose device plugin does not become Ready."""

from __future__ import annotations

from pathlib import Path

from tests.integration.operator_harness import onload_body, simulated_cluster

NS = "onload"


def test_ready_names_the_node_whose_device_plugin_is_not_ready(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:
        controllers = cluster.sim.controllers
        assert controllers is not None
        assert controllers.kubelet is not None
        # worker-2's kubelet starts no pod: its device plugin never becomes Ready, though KMM loads the modules.
        cluster.sim.call(controllers.kubelet.set_node_ready, "worker-2", False)
        cluster.start_operator()
        cluster.create_onload(onload_body())
        ready = cluster.wait_reason(NS, "onload", "WaitingForDevicePlugin", timeout=30)
        assert "not ready on worker-2 (" in ready["message"]
        assert "worker-0" not in ready["message"]
        cluster.sim.call(controllers.kubelet.set_node_ready, "worker-2", True)
        cluster.wait_ready(NS, "onload", timeout=30, selected=3, devicePluginReady=3)
