"""The Onload worker: container-id discovery, the control-plane parameters and the wait for the module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from device_plugin.config import load_worker_config
from device_plugin.cplane import (
    ContainerId,
    ContainerIdError,
    ContainerState,
    container_id_from_proc,
    parse_status_container_id,
    read_parameter,
    running_container_id,
    server_params,
)
from device_plugin.worker import find_container_id, run_worker
from tests.device_plugin.dp_helpers import HostTree, wait_for

ID = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        # cgroup v1, systemd driver, containerd
        (
            f"12:pids:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope\n"
            f"1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{ID}.scope\n",
            ContainerId("containerd", ID),
        ),
        # cgroup v2 without a cgroup namespace, CRI-O (the conmon scope of a sibling must not match)
        (f"0::/kubepods.slice/kubepods-pod2.slice/crio-{ID}.scope/container\n", ContainerId("cri-o", ID)),
        (f"0::/system.slice/crio-conmon-{OTHER}.scope\n", None),
        (f"0::/system.slice/docker-{ID}.scope\n", ContainerId("docker", ID)),
        # cgroupfs driver: the runtime is not named
        (f"4:memory:/kubepods/burstable/pod9f0e/{ID}\n", ContainerId(None, ID)),
        # cgroup v2 with a private cgroup namespace: nothing to find
        ("0::/\n", None),
    ],
)
def test_container_id_from_proc_cgroup(cgroup: str, expected: ContainerId | None) -> None:
    assert container_id_from_proc(cgroup, "") == expected


def test_container_id_from_mountinfo_cgroup_root() -> None:
    mountinfo = (
        "1200 1100 0:64 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/snap/1/fs\n"
        f"1210 1200 0:27 /kubepods.slice/kubepods-pod3.slice/cri-containerd-{ID}.scope /sys/fs/cgroup ro "
        "shared:9 - cgroup2 cgroup2 rw\n"
        f"1220 1200 8:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{OTHER}/hostname /etc/hostname "
        "rw - ext4 /dev/sda1 rw\n"
    )
    assert container_id_from_proc("0::/\n", mountinfo) == ContainerId("containerd", ID)


def test_status_container_ids() -> None:
    assert parse_status_container_id(f"cri-o://{ID}") == ContainerId("cri-o", ID)
    assert str(ContainerId("containerd", ID)) == f"containerd://{ID}"
    for bad in (ID, "containerd://", "a://b://c"):
        with pytest.raises(ContainerIdError, match="unexpected format"):
            parse_status_container_id(bad)


def test_running_container_id_waits_for_ready_started_running() -> None:
    def state(
        ready: bool = True, started: bool = True, running: bool = True, name: str = "onload-worker"
    ) -> list[ContainerState]:
        return [
            ContainerState("device-plugin", f"containerd://{OTHER}", True, True, True),
            ContainerState(name, f"containerd://{ID}", ready, started, running),
        ]

    assert running_container_id(state(), "onload-worker") == ContainerId("containerd", ID)
    assert running_container_id(state(ready=False), "onload-worker") is None
    assert running_container_id(state(started=False), "onload-worker") is None
    assert running_container_id(state(running=False), "onload-worker") is None
    assert running_container_id(state(name="other"), "onload-worker") is None


def test_server_params_match_the_go_worker() -> None:
    cid = ContainerId("cri-o", ID)
    assert server_params(cid, "/mnt/onload/sbin/onload_cp_server", "-K") == (
        f"exec {ID} /mnt/onload/sbin/onload_cp_server -K"
    )
    assert server_params(cid, "/mnt/onload/sbin/onload_cp_server", "") == f"exec {ID} /mnt/onload/sbin/onload_cp_server"


def _module_parameters(host: HostTree) -> str:
    directory = os.path.join(host.sysfs, "module", "onload", "parameters")
    os.makedirs(directory, exist_ok=True)
    for name in ("cplane_server_path", "cplane_server_params"):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write("\n")
    return directory


async def test_worker_waits_for_the_module_and_reapplies_after_a_reload(
    host: HostTree, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    config = load_worker_config(
        [f"-devRoot={host.dev}", f"-sysfsRoot={host.sysfs}", f"-containerId=containerd://{ID}"],
        {"ONLOAD_CP_SERVER_PATH": "/mnt/onload/sbin/onload_cp_server", "ONLOAD_CP_SERVER_PARAMS": "-K"},
    )
    expected = f"exec {ID} /mnt/onload/sbin/onload_cp_server -K"
    worker = asyncio.create_task(run_worker(config))
    try:
        _module_parameters(host)
        await wait_for(lambda: "waiting for the onload module" in caplog.text, message="worker waiting")
        # It must not write while /dev/onload is absent.
        assert read_parameter(host.sysfs, "cplane_server_params") == ""
        for reload in range(3):
            host.load_module()
            await wait_for(
                lambda: read_parameter(host.sysfs, "cplane_server_params") == expected,
                deadline=2.0,
                message=f"parameters after load {reload}",
            )
            assert read_parameter(host.sysfs, "cplane_server_path") == "/usr/bin/crictl"
            # Unloading resets the module's parameters; loading brings the device node back.
            host.unload_module()
            _module_parameters(host)
        assert not worker.done()
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def test_worker_process_stops_cleanly_on_sigterm(host: HostTree) -> None:
    _module_parameters(host)
    host.load_module()
    env = dict(os.environ, ONLOAD_CP_SERVER_PARAMS="", ONLOAD_WORKER_CONTAINER_ID=ID)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_plugin.worker",
        f"-devRoot={host.dev}",
        f"-sysfsRoot={host.sysfs}",
        "-crictlPath=/host/usr/bin/crictl",
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_for(
            lambda: read_parameter(host.sysfs, "cplane_server_path") == "/host/usr/bin/crictl",
            deadline=10.0,
            message="worker process writes parameters",
        )
        assert read_parameter(host.sysfs, "cplane_server_params") == f"exec {ID} /mnt/onload/sbin/onload_cp_server"
        process.send_signal(signal.SIGTERM)
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b'"message": "signal received: stopping"' in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_worker_rejects_bad_configuration() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "device_plugin.worker", "-sysfsRoot=sys", stderr=subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"-sysfsRoot" in stderr


async def test_container_id_from_the_kubernetes_api(
    host: HostTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the Go worker: poll our pod until the worker container is ready, started and running."""
    polls = 0

    async def read_pod(request: web.Request) -> web.Response:
        nonlocal polls
        polls += 1
        assert request.match_info["namespace"] == "onload-system"
        assert request.match_info["name"] == "dp-x1"
        assert request.headers["Authorization"] == "Bearer t"
        status = {
            "name": "onload-worker",
            "containerID": f"cri-o://{ID}",
            "ready": polls >= 3,
            "started": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "image": "img",
            "imageID": "img@sha256:0",
            "restartCount": 0,
        }
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "dp-x1"},
                "status": {"containerStatuses": [status]},
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", read_pod)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: t, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        config = load_worker_config(
            ["-containerIdSource=kubernetes"], {"POD_NAME": "dp-x1", "POD_NAMESPACE": "onload-system"}
        )
        assert await find_container_id(config) == ContainerId("cri-o", ID)
        assert polls == 3
    finally:
        await runner.cleanup()


async def test_unknown_runtime_is_only_a_warning(host: HostTree, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    config = load_worker_config([f"-devRoot={host.dev}", f"-sysfsRoot={host.sysfs}", f"-containerId=docker://{ID}"], {})
    worker = asyncio.create_task(run_worker(config))
    try:
        await wait_for(lambda: "waiting for the onload module" in caplog.text, message="worker running")
        assert "container runtime 'docker' is untested" in caplog.text
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
