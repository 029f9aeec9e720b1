"""Fault injection: error rates by verb and resource, added latency, and cut watch streams."""

import json
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client

from kubesim.simulator import Simulator
from tests.kubesim.contract_support import Cluster, read_events


def _sim(cluster: Cluster) -> Simulator:
    return cluster.require_sim()


def test_error_rate_limited_to_a_verb_and_resource(cluster: Cluster, namespace: str) -> None:
    sim = _sim(cluster)
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})
    sim.faults.update({"errorRate": 1.0, "errorCodes": [429], "verbs": ["list"], "resources": ["configmaps"]})
    status, body = cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert (status, body["reason"], body["details"]["retryAfterSeconds"]) == (429, "TooManyRequests", 1)
    assert cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/x")[0] == 200
    assert cluster.http("GET", f"/api/v1/namespaces/{namespace}/secrets")[0] == 200
    sim.faults.update({"errorRate": 0.0})
    assert cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps")[0] == 200


@pytest.mark.parametrize(("code", "reason"), [(500, "InternalError"), (409, "Conflict")])
def test_injected_codes_are_status_objects(cluster: Cluster, namespace: str, code: int, reason: str) -> None:
    sim = _sim(cluster)
    sim.faults.update({"errorRate": 1.0, "errorCodes": [code], "verbs": ["create"]})
    with pytest.raises(client.ApiException) as raised:
        cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "y"}})
    assert raised.value.status == code
    assert json.loads(raised.value.body or "{}")["reason"] == reason
    sim.faults.update({"errorRate": 0.0})
    assert cluster.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/y")[0] == 404


def test_partial_error_rate_fails_some_requests(cluster: Cluster, namespace: str) -> None:
    sim = _sim(cluster)
    sim.faults.update({"errorRate": 0.5, "errorCodes": [500], "verbs": ["get"]})
    codes = [cluster.http("GET", f"/api/v1/namespaces/{namespace}")[0] for _ in range(60)]
    assert 0 < codes.count(500) < 60
    assert set(codes) == {200, 500}


def test_added_latency(cluster: Cluster, namespace: str) -> None:
    sim = _sim(cluster)
    sim.faults.update({"latencySeconds": 0.3, "verbs": ["get"]})
    started = time.monotonic()
    assert cluster.http("GET", f"/api/v1/namespaces/{namespace}")[0] == 200
    assert time.monotonic() - started >= 0.3


def test_faults_are_configurable_over_http(cluster: Cluster) -> None:
    sim = _sim(cluster)
    status, settings = cluster.http("PUT", "/kubesim/v1/faults", {"errorRate": 0.25, "latencySeconds": 0.01})
    assert status == 200
    assert (settings["errorRate"], settings["latencySeconds"]) == (0.25, 0.01)
    assert sim.faults.error_rate == 0.25
    assert cluster.http("GET", "/kubesim/v1/faults")[1]["errorRate"] == 0.25


def _open_watch(cluster: Cluster, namespace: str) -> Any:
    return cluster.watch_lines(f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=30")


def test_drop_watches_cuts_open_streams(cluster: Cluster, namespace: str) -> None:
    sim = _sim(cluster)
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    response = _open_watch(cluster, namespace)
    events = read_events(response)
    assert next(events)["object"]["metadata"]["name"] == "before"
    sim.drop_watches()
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        list(events)
    assert time.monotonic() - started < 10


def test_watch_drop_rate_cuts_a_stream_before_an_event(cluster: Cluster, namespace: str) -> None:
    sim = _sim(cluster)
    response = _open_watch(cluster, namespace)
    sim.faults.update({"watchDropRate": 1.0})
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "never-seen"}})
    with pytest.raises(urllib3.exceptions.HTTPError):
        list(read_events(response))
