"""The device plugin's ``/metrics`` endpoint, served from the event loop, over real TCP connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from device_plugin.metrics import PluginMetrics


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[PluginMetrics, int]]:
    metrics = PluginMetrics()
    server = await metrics.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield metrics, port
    server.close()
    await server.wait_closed()


async def exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes, split the answer into status line, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body


async def test_get_metrics_returns_the_registry_in_text_format(endpoint: tuple[PluginMetrics, int]) -> None:
    metrics, port = endpoint
    metrics.registrations.labels("ok").inc()
    metrics.healthy_devices.set(7)
    status, headers, body = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert int(headers["Content-Length"]) == len(body)
    text = body.decode()
    assert 'onload_device_plugin_registrations_total{result="ok"} 1.0' in text
    assert "onload_device_plugin_healthy_devices 7.0" in text
    assert "process_resident_memory_bytes " in text


async def test_prometheus_gets_openmetrics_when_it_asks(endpoint: tuple[PluginMetrics, int]) -> None:
    _, port = endpoint
    accept = b"Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
    status, headers, body = await exchange(port, b"GET /metrics HTTP/1.1\r\n" + accept + b"\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_both_formats_parse_with_the_prometheus_parsers(
    endpoint: tuple[PluginMetrics, int], openmetrics: bool
) -> None:
    """The plugin renders the exposition itself; the reference client library's parsers must read it back."""
    metrics, port = endpoint
    metrics.registrations.labels("ok").inc(3)
    metrics.version_mismatch.labels('9.0"1\\x', "8.1\n2").set(1)
    metrics.healthy_devices.set(4)
    accept = b"Accept: application/openmetrics-text;version=1.0.0\r\n" if openmetrics else b""
    _, _, body = await exchange(port, b"GET /metrics HTTP/1.1\r\n" + accept + b"\r\n")
    parse = openmetrics_families if openmetrics else text_families
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parse(body.decode())
        for sample in family.samples
    }
    assert samples[("onload_device_plugin_registrations_total", (("result", "ok"),))] == 3
    mismatch = (("expected", '9.0"1\\x'), ("loaded", "8.1\n2"))
    assert samples[("onload_device_plugin_onload_version_mismatch", mismatch)] == 1
    assert samples[("onload_device_plugin_healthy_devices", ())] == 4
    assert samples[("process_resident_memory_bytes", ())] > 1e6
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert metrics.registry.get_sample_value("onload_device_plugin_registrations_total", {"result": "ok"}) == 3


async def test_head_has_the_headers_of_get_and_no_body(endpoint: tuple[PluginMetrics, int]) -> None:
    _, port = endpoint
    status, headers, body = await exchange(port, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert body == b""
    # The process metrics change between two scrapes, so only the presence of the length is comparable.
    assert int(headers["Content-Length"]) > 0
    assert headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
        (b"hello\r\n\r\n", "400 Bad Request"),
        (b"GET /metrics SPDY/3\r\n\r\n", "400 Bad Request"),
    ],
)
async def test_other_requests_get_a_clear_status(
    endpoint: tuple[PluginMetrics, int], request_bytes: bytes, expected: str
) -> None:
    _, port = endpoint
    status, headers, body = await exchange(port, request_bytes)
    assert status == f"HTTP/1.1 {expected}"
    assert int(headers["Content-Length"]) == len(body) > 0


async def test_a_client_that_sends_nothing_does_not_block_others(endpoint: tuple[PluginMetrics, int]) -> None:
    _, port = endpoint
    _, silent = await asyncio.open_connection("127.0.0.1", port)
    try:
        status, _, _ = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 200 OK"
    finally:
        silent.close()
        await silent.wait_closed()


async def test_method_not_allowed_names_the_allowed_ones(endpoint: tuple[PluginMetrics, int]) -> None:
    _, port = endpoint
    status, headers, _ = await exchange(port, b"DELETE /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD"


async def test_a_client_too_slow_to_send_its_request_is_disconnected() -> None:
    metrics = PluginMetrics()
    server = await metrics.serve("127.0.0.1", 0, request_timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the blank line
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b"", "closed without an answer"
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
