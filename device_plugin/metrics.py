"""Prometheus metrics of the device plugin, kept in their own registry and served from the event loop.

``/metrics`` is answered by the same asyncio loop that serves the kubelet's gRPC calls, so a scrape that times
out shows that loop stuck. Serving it there also avoids prometheus_client's threaded HTTP server, whose loop
wakes up twice a second while the plugin is otherwise idle.
"""

from __future__ import annotations

import asyncio
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import choose_encoder

REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request line and headers."""
MAX_HEADER_LINES = 100
"""Header lines read at most; a request with more is answered as if it had ended there."""


class PluginMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registrations = Counter(
            "onload_device_plugin_registrations",
            "Register calls to the kubelet, by result",
            ["result"],
            registry=self.registry,
        )
        self.allocations = Counter(
            "onload_device_plugin_allocations",
            "Containers handled by Allocate, by result",
            ["result"],
            registry=self.registry,
        )
        self.health_changes = Counter(
            "onload_device_plugin_health_changes",
            "Changes of the advertised device health, by new health",
            ["health"],
            registry=self.registry,
        )
        self.healthy_devices = Gauge(
            "onload_device_plugin_healthy_devices", "Devices currently advertised Healthy", registry=self.registry
        )
        self.version_mismatch = Gauge(
            "onload_device_plugin_onload_version_mismatch",
            "1 while the loaded onload module reports another version than the one this plugin serves "
            "(every device is then Unhealthy), labelled with both versions",
            ["expected", "loaded"],
            registry=self.registry,
        )
        self.nics = Gauge("onload_device_plugin_nics", "Onload-capable NICs currently found", registry=self.registry)
        # process_resident_memory_bytes and friends: the plugin runs on every node, so its footprint is watched.
        ProcessCollector(registry=self.registry)

    async def serve(self, address: str, port: int, request_timeout: float = REQUEST_TIMEOUT) -> asyncio.Server:
        """Listen for HTTP/1.x ``GET /metrics``; every response closes its connection."""
        return await asyncio.start_server(partial(self._answer, request_timeout), address, port)

    async def _answer(self, request_timeout: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            headers: dict[str, str] = {}
            async with asyncio.timeout(request_timeout):
                request_line = await reader.readline()
                for _ in range(MAX_HEADER_LINES):
                    name, colon, value = (await reader.readline()).decode("latin-1").partition(":")
                    if not colon:
                        break  # the blank line that ends the headers, or the end of the stream
                    headers[name.strip().lower()] = value.strip()
            writer.write(self._response(request_line, headers.get("accept", "")))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a client that went away, was too slow or sent garbage gets no answer
        except asyncio.CancelledError:
            pass  # the plugin is stopping: the connection is dropped, which is all a scraper needs to know
        finally:
            writer.close()  # sends what is buffered, then closes

    def _response(self, request_line: bytes, accept: str) -> bytes:
        """The whole HTTP response; the exposition format is negotiated as prometheus_client does."""
        parts = request_line.decode("latin-1").split()
        method = parts[0] if parts else ""
        extra, content_type = "", "text/plain"
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, body = "400 Bad Request", b"bad request\n"
        elif parts[1].split("?", 1)[0] != "/metrics":
            status, body = "404 Not Found", b"only /metrics is served here\n"
        elif method not in ("GET", "HEAD"):
            status, body, extra = "405 Method Not Allowed", b"use GET\n", "Allow: GET, HEAD\r\n"
        else:
            encode, content_type = choose_encoder(accept)
            status, body = "200 OK", encode(self.registry)
        head = (
            f"HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("latin-1") + (b"" if method == "HEAD" else body)
