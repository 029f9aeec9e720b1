"""`sfc: {}` on only some kernel mappings: the sfc Module serves the kernels whose mapping asks for it, and only
those nodes wait for it; the other nodes run Onload without it."""

from __future__ import annotations

from pathlib import Path

from kubesim.polling import wait_for
from onload_operator.render import names
from tests.integration.operator_harness import onload_body, simulated_cluster
from tests.integration.upgrade_support import complete

NS = "onload"
SFC_KEY = names.kmm_version_label(NS, names.sfc_module_name("onload"))
GATE = names.onload_label(NS, "onload")
NODES = (
    "el9-[0-1]:kernel=5.14.0-284.el9.x86_64:labels=node-role.kubernetes.io/worker=;"
    "deb-0:kernel=6.1.0-18-amd64:labels=node-role.kubernetes.io/worker="
)


def mappings(version: str) -> list[dict[str, object]]:
    return [
        {"regexp": r"\.el9\.", "kernelModuleImage": f"onload-module:{version}-el9", "sfc": {}},
        {"regexp": r"^6\.1\.", "kernelModuleImage": f"onload-module:{version}-deb"},
    ]


def test_sfc_only_where_the_kernel_mapping_asks_for_it(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path, nodes=NODES) as cluster:
        cluster.start_operator()
        body = onload_body()
        body["spec"]["onload"]["kernelMappings"] = mappings("8.1.2.26")
        cluster.create_onload(body)
        cluster.wait_ready(NS, "onload", selected=3, moduleReady=3, devicePluginReady=3)
        labels = cluster.node_labels()
        assert {node for node, node_labels in labels.items() if SFC_KEY in node_labels} == {"el9-0", "el9-1"}
        assert all(labels[node].get(GATE) == "8.1.2.26" for node in ("el9-0", "el9-1", "deb-0"))
        sfc_module = cluster.module(NS, names.sfc_module_name("onload"))
        assert sfc_module is not None
        kmm_mappings = sfc_module["spec"]["moduleLoader"]["container"]["kernelMappings"]
        assert [mapping["regexp"] for mapping in kmm_mappings] == [r"\.el9\."]

        # A rollout moves both kinds of node, each with the modules its kernel needs.
        spec = {"version": "9.0.0", "userImage": "onload-user:9.0.0", "kernelMappings": mappings("9.0.0")}
        cluster.patch_onload(NS, "onload", {"spec": {"onload": spec}})
        wait_for(lambda: complete(cluster, "9.0.0", 3), timeout=60, message="the rollout to 9.0.0")
        labels = cluster.node_labels()
        assert {node for node, node_labels in labels.items() if SFC_KEY in node_labels} == {"el9-0", "el9-1"}
        cluster.wait_ready(NS, "onload", selected=3, moduleReady=3, devicePluginReady=3)
