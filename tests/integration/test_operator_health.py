"""/healthz tells whether the watches still hear from the API server, fails only for a stuck watch, and is not
logged; an API outage is logged once per retry round."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubesim.polling import wait_for
from onload_operator.handlers import RETRY_LOGGERS
from onload_operator.render import names
from tests.integration.operator_harness import Cluster, onload_body, simulated_cluster

NS = "onload"
DS = names.device_plugin_revision_name("onload", "8.1.2.26")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def healthz(port: int) -> tuple[int, Any]:
    """The status and body of /healthz; (0, reason) while it does not listen yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError as error:
        return 0, str(error.reason)


def start_with_health(cluster: Cluster, bookmark_seconds: float, **settings: Any) -> int:
    cluster.sim.server.watches.bookmark_interval = bookmark_seconds
    port = free_port()
    cluster.start_operator(liveness_endpoint=f"http://127.0.0.1:{port}/healthz", **settings)
    return port


def test_healthz_tells_when_each_watch_last_heard_and_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with simulated_cluster(tmp_path) as cluster:
        started = time.time()
        port = start_with_health(cluster, 0.1, watch_stuck_seconds=5.0)
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")

        def answered() -> tuple[int, Any] | None:
            answer = healthz(port)
            return answer if answer[0] else None

        status, body = wait_for(answered, message="/healthz answers")
        assert status == 200
        api = body["api"]
        assert {"onloads", "nodes", "daemonsets", "modules"} <= set(api["watches"])
        assert api["apiUnavailableSince"] is None
        assert cluster.operator is not None
        health = cluster.operator.context.health

        def heard_after_the_threshold() -> bool:
            watches = health.report()["watches"]
            threshold = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 6))
            return all(watch["lastHeard"] > threshold for watch in watches.values())

        # Idle watches keep hearing bookmarks past the threshold: a quiet cluster is not a stuck watch.
        wait_for(heard_after_the_threshold, timeout=30, message="bookmarks after the threshold")
        assert health.stuck() == []
        metrics_port = cluster.operator.metrics_port
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'onload_operator_watch_last_heard_timestamp_seconds{resource="nodes"}' in metrics
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]
    assert not [r for r in caplog.records if r.name.startswith("kopf.activities.probe") and r.levelno < logging.WARNING]


def test_liveness_fails_when_a_watch_is_stuck(tmp_path: Path) -> None:
    with simulated_cluster(tmp_path) as cluster:
        port = start_with_health(cluster, 3600.0, watch_stuck_seconds=1.0)  # no bookmark: idle watches go silent

        def failed() -> str | None:
            status, body = healthz(port)
            return str(body) if status == 500 else None

        wait_for(failed, timeout=30, message="the liveness probe failing")


def test_an_api_outage_is_logged_once_per_retry_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with simulated_cluster(tmp_path) as cluster:
        cluster.start_operator()
        cluster.create_onload(onload_body())
        cluster.wait_ready(NS, "onload")
        caplog.clear()
        before = len(cluster.requests)
        # Every watch is cut and every read refused: each watch retries on its own.
        faults = {"errorRate": 1.0, "errorCodes": [503], "watchDropRate": 1.0, "verbs": ["get", "list", "watch"]}
        cluster.sim.faults.update(faults)
        # Events on three watches, so that their streams are cut.
        cluster.label_node("worker-0", {"wake": "up"})
        cluster.patch_onload(NS, "onload", {"metadata": {"labels": {"wake": "up"}}})
        cluster.apps.patch_namespaced_daemon_set(DS, NS, {"metadata": {"labels": {"wake": "up"}}})

        def retry_lines() -> list[logging.LogRecord] | None:
            lines = [r for r in caplog.records if r.name in RETRY_LOGGERS]
            return lines if len(lines) >= 3 else None

        lines = wait_for(retry_lines, timeout=30, message="three retry rounds logged")
        retried = {r.path for r in cluster.requests[before:] if r.agent.startswith("kopf/") and r.query.get("watch")}
        assert len(retried) >= 2  # several watches retried at once, and said so in one line a round
        cluster.sim.faults.update({"errorRate": 0.0, "watchDropRate": 0.0})
    messages = [r.getMessage() for r in lines]
    assert all(m.startswith("the API server is unavailable since ") for m in messages), messages
    rounds = [int(m.split("retry round ")[1].split(";")[0]) for m in messages]
    assert rounds == sorted(set(rounds)), messages  # one line per round
