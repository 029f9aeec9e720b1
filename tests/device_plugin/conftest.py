"""Fixtures for the device-plugin tests: temporary host trees, a fake kubelet and an in-process plugin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from device_plugin.lifecycle import DevicePluginService
from device_plugin.metrics import PluginMetrics
from tests.device_plugin.dp_helpers import HostTree, StartPlugin
from tests.device_plugin.fake_kubelet import FakeKubelet


@pytest.fixture
def host() -> Iterator[HostTree]:
    # Short paths: a unix socket path must fit in 108 bytes.
    root = tempfile.mkdtemp(prefix="dp-")
    tree = HostTree(
        plugin_dir=os.path.join(root, "dp"),
        dev=os.path.join(root, "dev"),
        sysfs=os.path.join(root, "sys"),
        onload=os.path.join(root, "onload"),
        cdi=os.path.join(root, "cdi"),
    )
    for path in (tree.plugin_dir, tree.dev, tree.sysfs, tree.onload):
        os.makedirs(path)
    yield tree
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def kubelet(host: HostTree) -> AsyncIterator[FakeKubelet]:
    fake = FakeKubelet(host.plugin_dir)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def start_plugin(host: HostTree) -> AsyncIterator[StartPlugin]:
    """Start an in-process plugin with config overrides; stopped (cancelled) at teardown."""
    running: list[asyncio.Task[None]] = []

    async def start(**overrides: Any) -> DevicePluginService:
        service = DevicePluginService(host.config(**overrides), PluginMetrics())
        running.append(asyncio.create_task(service.run()))
        return service

    yield start
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
