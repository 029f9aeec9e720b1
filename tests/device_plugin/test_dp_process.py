"""The real ``onload-device-plugin`` process: registration, /metrics, JSON logs, SIGTERM and bad flags."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request

from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from tests.device_plugin.dp_helpers import HostTree, exists, start_plugin_process, stop_process, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


async def test_plugin_process_registers_serves_metrics_and_cleans_up_on_sigterm(
    host: HostTree, kubelet: FakeKubelet
) -> None:
    host.load_module()
    port = _free_port()
    plugin = await start_plugin_process(
        host, "-needNic=false", "-maxPods=3", f"-metricsPort={port}", "-metricsAddress=127.0.0.1"
    )
    socket_path = os.path.join(host.plugin_dir, "onload.sock")
    try:
        await wait_for(lambda: len(kubelet.updates) == 1, deadline=10.0, message="registration and device list")
        assert [d.ID for d in kubelet.latest] == ["sfc-0", "sfc-1", "sfc-2"]
        stub = pb_grpc.DevicePluginStub(kubelet.plugin_channel())
        await stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=["sfc-2"])]))
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert 'onload_device_plugin_registrations_total{result="ok"} 1.0' in metrics
        assert 'onload_device_plugin_allocations_total{result="ok"} 1.0' in metrics
        assert "onload_device_plugin_healthy_devices 3.0" in metrics
        assert exists(socket_path)
        # A scraper that connected and sent nothing yet when SIGTERM comes.
        _, idle_scraper = await asyncio.open_connection("127.0.0.1", port)
    finally:
        code, log = await stop_process(plugin)
    idle_scraper.close()
    assert code == 0, log
    assert "Traceback" not in log
    assert not exists(socket_path)
    await wait_for(lambda: kubelet.stream_ended == 1, message="ListAndWatch ended for the kubelet")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["message"] == "registered amd.com/onload with the kubelet" for r in records)
    assert records[-1]["message"] == "signal received: stopping"


def test_bad_flags_exit_with_a_message_naming_the_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "device_plugin", "-maxPods=-5"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "-maxPods" in result.stderr
    both = subprocess.run(
        [sys.executable, "-m", "device_plugin", "-mountOnload=true"], capture_output=True, text=True, check=False
    )
    assert both.returncode == 2
    assert "-setPreload and -mountOnload" in both.stderr
