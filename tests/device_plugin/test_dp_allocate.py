"""Allocate, GetPreferredAllocation and PreStartContainer over gRPC, for every devicePlugin setting."""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest

from device_plugin.allocation import CDI_SPEC_FILE, CDI_VERSION, go_join
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from tests.device_plugin.cdi_rules import cdi_spec_problems
from tests.device_plugin.dp_helpers import HostTree, StartPlugin, read_json, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet


async def _plugin_stub(kubelet: FakeKubelet, start_plugin: StartPlugin, **config: Any) -> pb_grpc.DevicePluginAsyncStub:
    await start_plugin(**config)
    await wait_for(lambda: len(kubelet.registrations) == 1, message="registration")
    return pb_grpc.DevicePluginStub(kubelet.plugin_channel())


async def _allocate(stub: pb_grpc.DevicePluginAsyncStub, *requests: list[str]) -> pb.AllocateResponse:
    return await stub.Allocate(
        pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in requests])
    )


def _mounts(response: pb.ContainerAllocateResponse) -> dict[str, tuple[str, bool]]:
    return {m.container_path: (m.host_path, m.read_only) for m in response.mounts}


async def test_defaults_give_devices_libraries_and_preload(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module(with_sfc_char=True)
    host.install_userland()
    stub = await _plugin_stub(kubelet, start_plugin, base_mount_path="/opt/onload")
    response = await _allocate(stub, ["sfc-0"])
    assert len(response.container_responses) == 1
    container = response.container_responses[0]
    assert [(d.host_path, d.container_path, d.permissions) for d in container.devices] == [
        ("/dev/onload", "/dev/onload", "mrw"),
        ("/dev/onload_epoll", "/dev/onload_epoll", "mrw"),
        ("/dev/sfc_char", "/dev/sfc_char", "mrw"),
    ]
    assert _mounts(container) == {
        "/opt/onload/usr/lib64/libonload.so": (f"{host.onload}/usr/lib64/libonload.so", True),
        "/opt/onload/usr/lib64/libonload_ext.so": (f"{host.onload}/usr/lib64/libonload_ext.so", True),
    }
    assert dict(container.envs) == {"LD_PRELOAD": "/opt/onload/usr/lib64/libonload.so"}
    assert not container.cdi_devices


async def test_missing_device_nodes_are_left_out(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module(with_sfc_char=False)
    stub = await _plugin_stub(kubelet, start_plugin)
    container = (await _allocate(stub, ["sfc-1"])).container_responses[0]
    assert [d.host_path for d in container.devices] == ["/dev/onload", "/dev/onload_epoll"]


async def test_mount_onload_without_preload_and_custom_paths(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module()
    host.install_userland(("libonload.so", "libonload.so.1", "libonload.so.1.2.3", "libonload_ext.so.1", "libc.so"))
    os.makedirs(os.path.join(host.onload, "usr", "lib64", "libonload.so.d"))  # directories are not mounted
    stub = await _plugin_stub(
        kubelet,
        start_plugin,
        host_onload_path=host.onload + "/",
        set_preload=False,
        mount_onload=True,
        base_mount_path="/opt/acc/",
        bin_mount_path="/bin",
        lib_mount_path="lib/",
    )
    container = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert _mounts(container) == {
        "/opt/acc/lib/libonload.so": (f"{host.onload}/usr/lib64/libonload.so", True),
        "/opt/acc/lib/libonload.so.1": (f"{host.onload}/usr/lib64/libonload.so.1", True),
        "/opt/acc/lib/libonload.so.1.2.3": (f"{host.onload}/usr/lib64/libonload.so.1.2.3", True),
        "/opt/acc/lib/libonload_ext.so.1": (f"{host.onload}/usr/lib64/libonload_ext.so.1", True),
        "/opt/acc/bin/onload": (f"{host.onload}/usr/bin/onload", True),
    }
    assert not container.envs
    assert all("//" not in path for mount in container.mounts for path in (mount.host_path, mount.container_path))


async def test_preload_with_custom_lib_path(host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    stub = await _plugin_stub(kubelet, start_plugin, base_mount_path="/opt/onload/", lib_mount_path="/lib64/")
    container = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert dict(container.envs) == {"LD_PRELOAD": "/opt/onload/lib64/libonload.so"}
    # Nothing installed on the host yet: no mounts, no device nodes, but the RPC succeeds.
    assert not container.mounts
    assert not container.devices


async def test_libraries_and_device_nodes_are_resolved_at_allocate_time(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    """Each Allocate looks at the host again: an answer is reused only while the host shows the same files."""
    stub = await _plugin_stub(kubelet, start_plugin)
    first = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert not first.mounts
    assert not first.devices
    host.install_userland(("libonload.so.9",))
    container = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert [m.host_path for m in container.mounts] == [f"{host.onload}/usr/lib64/libonload.so.9"]
    assert not container.devices
    host.load_module()
    container = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert [d.host_path for d in container.devices] == ["/dev/onload", "/dev/onload_epoll"]
    assert (await _allocate(stub, ["sfc-1"])).container_responses[0] == container


async def test_one_response_per_container_request(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module()
    stub = await _plugin_stub(kubelet, start_plugin)
    response = await _allocate(stub, ["sfc-0"], ["sfc-1", "sfc-2"])
    assert len(response.container_responses) == 2
    assert response.container_responses[0] == response.container_responses[1]


async def test_unknown_device_ids_are_rejected(host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    stub = await _plugin_stub(kubelet, start_plugin, max_pods=2)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _allocate(stub, ["sfc-1", "sfc-2", "gpu-0"])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "['gpu-0', 'sfc-2']" in (raised.value.details() or "")
    assert "sfc-0 to sfc-1" in (raised.value.details() or "")


async def test_cdi_mode_answers_the_cdi_name_and_the_plain_edits(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    """A kubelet without DevicePluginCDIDevices, or a runtime without CDI, still gets devices, mounts and env."""
    host.load_module(with_sfc_char=True)
    host.install_userland()
    stub = await _plugin_stub(kubelet, start_plugin, cdi=True, mount_onload=True, set_preload=False)
    container = (await _allocate(stub, ["sfc-3"])).container_responses[0]
    assert [d.name for d in container.cdi_devices] == ["amd.com/onload=onload"]
    assert [d.host_path for d in container.devices] == ["/dev/onload", "/dev/onload_epoll", "/dev/sfc_char"]
    assert set(_mounts(container)) == {
        "/opt/onload/usr/lib64/libonload.so",
        "/opt/onload/usr/lib64/libonload_ext.so",
        "/opt/onload/usr/bin/onload",
    }
    assert not container.envs
    spec = read_json(os.path.join(host.cdi, CDI_SPEC_FILE))
    assert cdi_spec_problems(spec) == []
    assert spec["cdiVersion"] == CDI_VERSION
    assert spec["kind"] == "amd.com/onload"
    [device] = spec["devices"]
    assert device["name"] == "onload"
    edits = device["containerEdits"]
    # The spec carries exactly the plain answer's edits.
    assert [(n["hostPath"], n["path"]) for n in edits["deviceNodes"]] == [
        (d.host_path, d.container_path) for d in container.devices
    ]
    assert {m["containerPath"]: m["hostPath"] for m in edits["mounts"]} == {
        path: host_path for path, (host_path, _) in _mounts(container).items()
    }
    assert all("ro" in m["options"] for m in edits["mounts"])
    assert "env" not in edits
    # Only the spec file is left in the directory (the write is atomic through a temporary file).
    assert os.listdir(host.cdi) == [CDI_SPEC_FILE]


def test_the_cdi_rules_catch_what_a_runtime_refuses() -> None:
    """The rules the written spec is checked against reject fields newer than the declared version."""
    edits = {"deviceNodes": [{"path": "/dev/onload", "hostPath": "/dev/onload"}]}
    spec = {"cdiVersion": "0.5.0", "kind": "amd.com/onload", "devices": [{"name": "onload", "containerEdits": edits}]}
    assert cdi_spec_problems(spec) == []
    assert cdi_spec_problems({**spec, "cdiVersion": "0.4.0"}) == [
        "devices[0].containerEdits.deviceNodes[0]: hostPath needs cdiVersion 0.5.0, the spec declares 0.4.0"
    ]
    assert cdi_spec_problems({**spec, "annotations": {"a": "b"}}) == [
        "spec: annotations needs cdiVersion 0.6.0, the spec declares 0.5.0"
    ]
    assert cdi_spec_problems({**spec, "kind": "onload"}) == ["spec: kind 'onload' is not vendor/class"]
    bad_env = {"name": "onload", "containerEdits": {"env": ["LD_PRELOAD"], "mounts": [{"hostPath": "/a"}]}}
    assert cdi_spec_problems({**spec, "devices": [bad_env]}) == [
        "devices[0].containerEdits.env[0]: not NAME=value",
        "devices[0].containerEdits.mounts[0]: containerPath is required",
    ]


async def test_cdi_spec_carries_preload(host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    stub = await _plugin_stub(kubelet, start_plugin, cdi=True)
    container = (await _allocate(stub, ["sfc-0"])).container_responses[0]
    assert dict(container.envs) == {"LD_PRELOAD": "/opt/onload/usr/lib64/libonload.so"}
    spec = read_json(os.path.join(host.cdi, CDI_SPEC_FILE))
    assert cdi_spec_problems(spec) == []
    edits = spec["devices"][0]["containerEdits"]
    assert edits["env"] == ["LD_PRELOAD=/opt/onload/usr/lib64/libonload.so"]
    assert edits["deviceNodes"] == []


async def test_preferred_allocation_and_prestart(
    host: HostTree, kubelet: FakeKubelet, start_plugin: StartPlugin
) -> None:
    host.load_module()
    stub = await _plugin_stub(kubelet, start_plugin)
    response = await stub.GetPreferredAllocation(
        pb.PreferredAllocationRequest(
            container_requests=[
                pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=["sfc-3", "sfc-1", "sfc-0"], must_include_deviceIDs=["sfc-1"], allocation_size=2
                )
            ]
        )
    )
    assert [list(r.deviceIDs) for r in response.container_responses] == [["sfc-1", "sfc-3"]]
    assert await stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=["sfc-0"])) == (
        pb.PreStartContainerResponse()
    )


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("/opt/onload/", "usr/lib64"), "/opt/onload/usr/lib64"),
        (("/opt/onload", "/usr/lib64/", "libonload.so"), "/opt/onload/usr/lib64/libonload.so"),
        (("/", "/usr/bin", "onload"), "/usr/bin/onload"),
        (("/a//b/", "../c"), "/a/c"),
    ],
)
def test_go_join(parts: tuple[str, ...], joined: str) -> None:
    assert go_join(*parts) == joined
