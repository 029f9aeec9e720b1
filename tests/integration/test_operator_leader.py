"""Leader election: two operator processes against kubesim, only the Lease holder acts; when it is SIGKILLed, the
standby takes over once the Lease expires."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubesim.polling import wait_for
from onload_operator.io.lease import LEASE_NAME
from onload_operator.render import names
from tests.integration.operator_harness import ROOT, Cluster, onload_body, simulated_cluster

NS = "onload"
LEASE_SECONDS = 3


def operator(cluster: Cluster, tmp_path: Path, identity: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DEVICE_PLUGIN_IMG": "dp:1", "KUBECONFIG": str(cluster.kubeconfig), "POD_NAME": identity}
    log = (tmp_path / f"{identity}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onload_operator",
            "--liveness=none",
            "--metrics-port=-1",
            "--log-format=plain",
            f"--leader-election-namespace={NS}",
            f"--leader-lease-seconds={LEASE_SECONDS}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    log.close()
    return process


def holder(cluster: Cluster) -> Any:
    lease = cluster.sim.call(cluster.sim.store.get, "coordination.k8s.io/v1/leases", NS, LEASE_NAME)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def reporters(cluster: Cluster) -> set[str]:
    """The operator instances that posted Events about the CR."""
    return {e.reporting_instance for e in cluster.events(NS, "onload")}


def test_only_the_lease_holder_acts_and_a_standby_takes_over_when_it_dies(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:
        first = operator(cluster, tmp_path, "first")
        second = None
        try:
            wait_for(lambda: holder(cluster) == "first", timeout=30, message="the first operator leading")
            second = operator(cluster, tmp_path, "second")
            wait_for(
                lambda: "held by first" in (tmp_path / "second.log").read_text(),
                timeout=30,
                message="the second operator standing by",
            )
            cluster.create_onload(onload_body())
            cluster.wait_ready(NS, "onload", timeout=30, selected=3, devicePluginReady=3)
            assert reporters(cluster) == {"first"}

            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            wait_for(lambda: holder(cluster) == "second", timeout=30, message="the standby taking the Lease")
            cluster.patch_onload(NS, "onload", {"spec": {"serviceAccountName": "sa-2"}})
            ds = names.device_plugin_revision_name("onload", "8.1.2.26")
            wait_for(
                lambda: cluster.daemonset(NS, ds).spec.template.spec.service_account_name == "sa-2",
                timeout=30,
                message="the new leader applying the change",
            )
            log = (tmp_path / "second.log").read_text()
            assert "leading as second" in log
            assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} INFO ", log), "plain lines carry their time"
            assert second.poll() is None
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
        # A clean stop gives the Lease up at once.
        assert holder(cluster) in (None, "")
