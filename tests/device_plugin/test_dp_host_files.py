"""Host files outlive no workload: versions installed aside and swapped by rename, removed when the plugin
stops only if no container on the node may need them, and only when the plugin wrote them. The workload is a
real process in a mount namespace of its own, where the host files are bind-mounted at the container paths as a
runtime does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from device_plugin.allocation import container_edits
from device_plugin.hostfiles import MANIFEST_NAME, InstallError, install, read_manifest, remove_unused
from device_plugin.v1beta1 import api_pb2 as pb
from tests.device_plugin.dp_helpers import HostTree, start_plugin_process, stop_process, wait_for
from tests.device_plugin.fake_kubelet import FakeKubelet

# A workload container: map every library it was given (as LD_PRELOAD does), say so, run until stdin closes.
_WORKLOAD = """
import mmap, sys
maps = []
for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        maps.append(mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ))
print("running", flush=True)
sys.stdin.read()
"""


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def _user_image(root: str, version: str) -> str:
    """The Onload user image's /opt/onload as the init container stages it."""
    staging = os.path.join(root, f"staging-{version}")
    for name in ("libonload.so", "libonload_ext.so"):
        _write(os.path.join(staging, "usr", "lib64", name), f"{name} {version}\n")
    _write(os.path.join(staging, "usr", "bin", "onload"), f"#!/bin/sh\n# {version}\n")
    _write(os.path.join(staging, "sbin", "onload_cp_server"), f"cp server {version}\n")
    return staging


@pytest.fixture
def images(host: HostTree) -> dict[str, str]:
    root = os.path.dirname(host.onload)
    return {version: _user_image(root, version) for version in ("8.1.2.26", "9.0.1.86")}


def _host_files(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``onload-host-files`` command as the DaemonSet's init container and preStop run it."""
    return subprocess.run(
        [sys.executable, "-m", "device_plugin.hostfiles", *args], capture_output=True, text=True, check=False
    )


class Workload:
    """A container of a pod: a process in its own mount namespace with the answer's mounts bind-mounted."""

    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs
        self.process: subprocess.Popen[str] | None = None

    def start(self, answer: pb.ContainerAllocateResponse) -> None:
        binds = []
        libraries = []
        for mount in answer.mounts:
            inside = os.path.join(self.rootfs, mount.container_path.lstrip("/"))
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            open(inside, "a").close()
            binds.append(f"mount --bind {mount.host_path} {inside} && mount -o remount,bind,ro {inside}")
            if "/lib" in mount.container_path:
                libraries.append(inside)
        script = " && ".join([*binds, f'exec {sys.executable} -c "$0" "$@"'])
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, _WORKLOAD, *libraries],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line != "running\n":
            self.process.kill()
            _, stderr = self.process.communicate()
            raise AssertionError(f"the workload container did not start: {stderr}")

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.communicate()
            self.process = None


@pytest.fixture
def workload(host: HostTree) -> Iterator[Workload]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the kernel refused a mount namespace: {probe.stderr.strip()}")
    container = Workload(os.path.join(os.path.dirname(host.onload), "rootfs"))
    yield container
    container.crash()


@contextlib.asynccontextmanager
async def plugin_pod(host: HostTree, image: str, kubelet: FakeKubelet) -> AsyncIterator[None]:
    """A device-plugin pod's life on the node: the init container installs, the plugin process runs, and on
    SIGTERM stops serving and removes what no container needs, as the DaemonSet configures it."""
    installed = _host_files("--checkpoint", kubelet.checkpoint_path, "install", image, host.onload)
    assert installed.returncode == 0, installed.stderr
    registrations = len(kubelet.registrations)
    plugin = await start_plugin_process(
        host, "-needNic=false", "-maxPods=4", "-metricsPort=0", env={"ONLOAD_DP_REMOVE_UNUSED_HOST_FILES": "true"}
    )
    try:
        await wait_for(lambda: len(kubelet.registrations) > registrations, deadline=10.0, message="plugin up")
        yield
    finally:
        code, log = await stop_process(plugin)
        assert code == 0, log
        assert "Traceback" not in log


def _missing(answer: pb.ContainerAllocateResponse) -> list[str]:
    return [mount.host_path for mount in answer.mounts if not os.path.isfile(mount.host_path)]


def _versions(answer: pb.ContainerAllocateResponse, host: HostTree) -> set[str]:
    """The version directories an answer's mounts come from."""
    return {os.path.relpath(mount.host_path, host.onload).split("/")[0] for mount in answer.mounts}


def _contents(answer: pb.ContainerAllocateResponse) -> list[str]:
    contents = []
    for mount in answer.mounts:
        with open(mount.host_path) as handle:
            contents.append(handle.read())
    return contents


async def test_a_workload_restarting_after_the_plugin_pod_was_recreated_finds_its_files(
    host: HostTree, kubelet: FakeKubelet, images: dict[str, str], workload: Workload
) -> None:
    host.load_module()
    _write(os.path.join(host.onload, "README.admin"), "not the plugin's\n")
    async with plugin_pod(host, images["8.1.2.26"], kubelet):
        answer = await kubelet.admit("pod-a", "app", "sfc-0")
        assert len(answer.mounts) == 2
        workload.start(answer)
    # The plugin pod was deleted (its preStop ran) while the workload runs: nothing of the workload's went.
    assert _missing(answer) == []
    workload.crash()
    async with plugin_pod(host, images["8.1.2.26"], kubelet):
        # The container restarts with the kubelet's cached answer, without asking the plugin.
        restarted = kubelet.cached_answer("pod-a", "app")
        assert _missing(restarted) == []
        workload.start(restarted)
        workload.crash()
    # The plugin pod went again while the pod still exists (its container stopped): still kept for a restart.
    assert _missing(restarted) == []
    # Once the pod is gone, the next preStop removes what the plugin wrote, and nothing else.
    kubelet.forget_pod("pod-a")
    async with plugin_pod(host, images["8.1.2.26"], kubelet):
        pass
    assert sorted(os.listdir(host.onload)) == ["README.admin"]


async def test_a_new_version_replaces_the_old_one_only_for_new_containers(
    host: HostTree, kubelet: FakeKubelet, images: dict[str, str]
) -> None:
    async with plugin_pod(host, images["8.1.2.26"], kubelet):
        old = await kubelet.admit("pod-a", "app", "sfc-0")
    async with plugin_pod(host, images["9.0.1.86"], kubelet):
        new = await kubelet.admit("pod-b", "app", "sfc-1")
        assert len(_versions(old, host)) == len(_versions(new, host)) == 1
        assert _versions(old, host) != _versions(new, host)
        assert all("9.0.1.86" in text for text in _contents(new))
        # The old pod still exists, so its version stays beside the new one.
        assert _missing(old) == []
        kubelet.forget_pod("pod-a")
    # The preStop removed the version that only the gone pod-a used, and kept the one pod-b uses.
    assert _missing(new) == []
    assert len(_missing(old)) == len(old.mounts)
    manifest = read_manifest(host.onload)
    assert manifest is not None
    assert manifest.versions == sorted(_versions(new, host))


def test_one_answer_names_one_whole_version_while_versions_are_swapped(host: HostTree, images: dict[str, str]) -> None:
    checkpoint = os.path.join(host.plugin_dir, "kubelet_internal_checkpoint")
    install(images["8.1.2.26"], host.onload, checkpoint, "/proc")
    config = host.config(mount_onload=True, set_preload=False)
    done = threading.Event()

    def swap_versions() -> None:
        try:
            for round_ in range(40):
                install(images["9.0.1.86" if round_ % 2 == 0 else "8.1.2.26"], host.onload, checkpoint, "/proc")
        finally:
            done.set()

    swapper = threading.Thread(target=swap_versions)
    swapper.start()
    answers = 0
    while not done.is_set() or answers == 0:
        mounts = container_edits(config).mounts
        versions = {os.path.relpath(mount.host_path, host.onload).split("/")[0] for mount in mounts}
        assert len(versions) == 1, versions
        assert len(mounts) == 3
        answers += 1
    swapper.join()


def test_only_files_the_plugin_wrote_are_removed(host: HostTree, images: dict[str, str]) -> None:
    checkpoint = os.path.join(host.plugin_dir, "kubelet_internal_checkpoint")
    assert remove_unused(host.onload, checkpoint, "/proc") == []  # no manifest: nothing is ours
    os.makedirs(os.path.join(host.onload, "usr"))
    _write(os.path.join(host.onload, "usr", "lib64", "libonload.so"), "copied by an older operator\n")
    with pytest.raises(InstallError, match="not written by the device plugin"):
        install(images["8.1.2.26"], host.onload, checkpoint, "/proc")
    assert os.listdir(host.onload) == ["usr"]
    shutil.rmtree(os.path.join(host.onload, "usr"))
    install(images["8.1.2.26"], host.onload, checkpoint, "/proc")
    _write(os.path.join(host.onload, "notes.txt"), "an admin's file\n")
    # A checkpoint that cannot be read keeps everything: the files may be needed.
    _write(checkpoint, "{not json")
    assert remove_unused(host.onload, checkpoint, "/proc") == []
    os.unlink(checkpoint)
    removed = remove_unused(host.onload, checkpoint, "/proc")
    assert {"sbin", "usr"} < set(removed)
    assert os.listdir(host.onload) == ["notes.txt"]
    assert not os.path.exists(os.path.join(host.onload, MANIFEST_NAME))


def test_a_process_that_maps_a_library_keeps_its_version(host: HostTree, images: dict[str, str]) -> None:
    """Belt and braces for a process with no kubelet checkpoint entry (started outside Kubernetes)."""
    checkpoint = os.path.join(host.plugin_dir, "kubelet_internal_checkpoint")
    version = install(images["8.1.2.26"], host.onload, checkpoint, "/proc")
    library = os.path.join(host.onload, version, "usr", "lib64", "libonload.so")
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKLOAD, library], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "running\n"
        assert remove_unused(host.onload, checkpoint, "/proc") == []
    finally:
        process.kill()
        process.communicate()
    assert "usr" in remove_unused(host.onload, checkpoint, "/proc")
    assert json.dumps(os.listdir(host.onload)) == "[]"
