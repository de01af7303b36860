"""A real Prometheus server scrapes a running matcher; values are read back through its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import Stack, produce, run

pytestmark = pytest.mark.integration
PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _query(port: int, expression: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expression)}"
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(port: int, expression: str) -> float | None:
    result = _query(port, expression)
    return float(result[0]["value"][1]) if result else None


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed; Debian package 'prometheus' provides it")
def test_prometheus_scrapes_matcher(stack: Stack, tmp_path: Path) -> None:
    feed = tmp_path / "iocs.txt"
    feed.write_text("bad.example.net\n198.51.100.7\n")
    stack.yokoten("ioc", "push", str(feed))
    metrics_port = _free_port()
    stack.start("matcher", {"YOKOTEN_METRICS_PORT": str(metrics_port)})
    good = orjson.dumps(
        {
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"category": ["web"]},
            "host": {"name": "ws1.example.com"},
            "url": {"full": "http://bad.example.net/x"},
        }
    )
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [good, good, b"not json"]))

    prometheus_port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: yokoten-matcher\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            PROMETHEUS or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        consumed = None
        while time.monotonic() < deadline:
            try:
                consumed = _value(prometheus_port, 'yokoten_events_consumed_total{source="proxy"}')
            except OSError:
                consumed = None
            if consumed == 3.0:
                break
            time.sleep(0.5)
        assert consumed == 3.0, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert _value(prometheus_port, 'yokoten_matches_total{ioc_type="domain-name",source="proxy"}') == 2.0
        assert _value(prometheus_port, 'yokoten_records_rejected_total{reason="unknown_format",source="proxy"}') == 1.0
        assert _value(prometheus_port, 'yokoten_iocs_loaded{type="ipv4-addr"}') == 1.0
        assert _value(prometheus_port, "yokoten_ready") == 1.0
        assert _value(prometheus_port, 'up{job="yokoten-matcher"}') == 1.0
        assert _value(prometheus_port, "sum(yokoten_batch_duration_seconds_count)") >= 1.0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
