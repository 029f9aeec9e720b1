"""Prometheus metrics of the device plugin, kept in their own registry."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


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
        self.nics = Gauge("onload_device_plugin_nics", "Onload-capable NICs currently found", registry=self.registry)

    def serve(self, address: str, port: int) -> WSGIServer:
        """Serve /metrics from a background thread (prometheus_client's own HTTP server)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
