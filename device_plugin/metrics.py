"""Prometheus metrics of the device plugin, kept in their own registry and served from the event loop.

``/metrics`` is answered by the same asyncio loop that serves the kubelet's gRPC calls, so a scrape that times
out shows that loop stuck; serving it there also avoids a thread that wakes up while the plugin is idle. The
registry is a small one of its own, with counters, gauges and the standard ``process_*`` metrics in the text
format 0.0.4 or OpenMetrics 1.0, whichever the scraper asks for: the client library would cost every node about
5 MB of memory (with the HTTP and e-mail modules it imports) for what these few lines do.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import TypeVar

REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request line and headers."""
MAX_HEADER_LINES = 100
"""Header lines read at most; a request with more is answered as if it had ended there."""
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Sample = tuple[str, dict[str, str], float]
"""(sample name, labels, value)."""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


class Metric:
    """One metric family: its samples by label values (an empty tuple when it has no labels)."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def labels(self, *values: str) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}")
        self._values.setdefault(values, 0.0)
        return _Child(self, values)

    def samples(self) -> Iterator[Sample]:
        suffix = "_total" if self.kind == "counter" else ""
        for values, value in self._values.items():
            yield self.name + suffix, dict(zip(self.labelnames, values, strict=True)), value


class _Child:
    def __init__(self, metric: Metric, values: tuple[str, ...]) -> None:
        self._metric = metric
        self._values = values

    def inc(self, amount: float = 1.0) -> None:
        self._metric._values[self._values] += amount

    def set(self, value: float) -> None:
        if self._metric.kind == "counter":
            raise TypeError("a counter only goes up")
        self._metric._values[self._values] = value


class Counter(Metric):
    kind = "counter"


class Gauge(Metric):
    def set(self, value: float) -> None:
        self.labels().set(value)

    def clear(self) -> None:
        self._values.clear()


class ProcessMetrics:
    """The ``process_*`` metrics of Prometheus client libraries, read from /proc/self when scraped."""

    _TICKS = os.sysconf("SC_CLK_TCK")
    _PAGE = os.sysconf("SC_PAGE_SIZE")

    def __init__(self) -> None:
        with open("/proc/stat", encoding="ascii") as handle:
            self._boot = next((float(line.split()[1]) for line in handle if line.startswith("btime")), 0.0)

    def families(self) -> Iterator[tuple[str, str, str, list[Sample]]]:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        values = [
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", float(fields[20])),
            ("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", int(fields[21]) * self._PAGE),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                self._boot + int(fields[19]) / self._TICKS,
            ),
            (
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                "counter",
                (int(fields[11]) + int(fields[12])) / self._TICKS,
            ),
            ("process_open_fds", "Number of open file descriptors.", "gauge", float(len(os.listdir("/proc/self/fd")))),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
            ),
        ]
        for name, documentation, kind, value in values:
            sample_name = name + "_total" if kind == "counter" else name
            yield name, documentation, kind, [(sample_name, {}, value)]


MetricT = TypeVar("MetricT", bound=Metric)


class Registry:
    """The plugin's metric families, rendered in either exposition format."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []
        self._process = ProcessMetrics()

    def register(self, metric: MetricT) -> MetricT:
        self._metrics.append(metric)
        return metric

    def _families(self) -> Iterator[tuple[str, str, str, list[Sample]]]:
        for metric in self._metrics:
            yield metric.name, metric.documentation, metric.kind, list(metric.samples())
        yield from self._process.families()

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample, or None if there is no such sample (as prometheus_client's registry)."""
        wanted = dict(labels or {})
        for _, _, _, samples in self._families():
            for sample_name, sample_labels, value in samples:
                if sample_name == name and sample_labels == wanted:
                    return value
        return None

    def render(self, openmetrics: bool) -> bytes:
        lines = []
        for name, documentation, kind, samples in self._families():
            family = name if openmetrics or kind != "counter" else name + "_total"
            lines.append(f"# HELP {family} {_escape_help(documentation)}")
            lines.append(f"# TYPE {family} {kind}")
            for sample_name, labels, value in samples:
                rendered = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
                lines.append(
                    f"{sample_name}{{{rendered}}} {_number(value)}" if rendered else f"{sample_name} {_number(value)}"
                )
        if openmetrics:
            lines.append("# EOF")
        return ("\n".join(lines) + "\n").encode()


class PluginMetrics:
    def __init__(self) -> None:
        self.registry = Registry()
        self.registrations = self.registry.register(
            Counter("onload_device_plugin_registrations", "Register calls to the kubelet, by result", ["result"])
        )
        self.allocations = self.registry.register(
            Counter("onload_device_plugin_allocations", "Containers handled by Allocate, by result", ["result"])
        )
        self.health_changes = self.registry.register(
            Counter(
                "onload_device_plugin_health_changes",
                "Changes of the advertised device health, by new health",
                ["health"],
            )
        )
        self.healthy_devices = self.registry.register(
            Gauge("onload_device_plugin_healthy_devices", "Devices currently advertised Healthy")
        )
        self.version_mismatch = self.registry.register(
            Gauge(
                "onload_device_plugin_onload_version_mismatch",
                "1 while the loaded onload module reports another version than the one this plugin serves "
                "(every device is then Unhealthy), labelled with both versions",
                ["expected", "loaded"],
            )
        )
        self.nics = self.registry.register(Gauge("onload_device_plugin_nics", "Onload-capable NICs currently found"))

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
        """The whole HTTP response: OpenMetrics when the Accept header names it, else the text format 0.0.4."""
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
            openmetrics = "application/openmetrics-text" in accept
            content_type = OPENMETRICS_FORMAT if openmetrics else TEXT_FORMAT
            status, body = "200 OK", self.registry.render(openmetrics)
        head = (
            f"HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("latin-1") + (b"" if method == "HEAD" else body)
