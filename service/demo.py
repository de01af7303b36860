"""The end-to-end demo: a local broker, both workers, the sample feed and logs, alerts printed.

Run from a checkout (it uses deploy/kafka_broker.py and samples/):
``python -m service.demo``. Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from service.config import load_settings
from service.topics import create_topics

log = logging.getLogger("yokoten.demo")
REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
# IOCs of the sample feed that spread in the sample logs. How many updates each
# alert gets depends on the order partitions are read in. The final scope does
# not, because a known entity that gets further also updates the alert.
EXPECTED_IOCS = {
    "sha256:a165653b28874d4a306e15164e6805f4c4184fb23655241a704e9ae02a7a0df2",
    "email-addr:billing@bad.example.net",
    "url:login-bad.example.net/auth",
    "domain-name:bad.example.net",
    "ipv4-addr:203.0.113.50",
}
IDLE_SECONDS = 5.0
SAMPLE_TOPICS = {"mail": "mail.jsonl", "proxy": "proxy.log", "edr": "edr.jsonl"}


def _broker_class() -> Any:
    spec = importlib.util.spec_from_file_location("kafka_broker", REPO / "deploy" / "kafka_broker.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {REPO / 'deploy' / 'kafka_broker.py'}; run the demo from a yokoten checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KafkaBroker


def _summary(alert: dict[str, Any]) -> str:
    scope = alert["yokoten"]["scope"]
    entities = ", ".join(f"{entity['name']} ({entity['stage']})" for entity in scope["hosts"] + scope["users"])
    indicator = alert["threat"]["indicator"]
    return f"ALERT #{alert['yokoten']['sequence']} {indicator['type']} {indicator['value']}: {entities}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _print_alerts(
    bootstrap: str, topic: str, timeout: float, as_json: bool, workers: list[subprocess.Popen[bytes]]
) -> dict[str, dict[str, Any]]:
    """Print alerts as they arrive; return the latest alert per IOC once all expected IOCs alerted and
    no update came for IDLE_SECONDS, or when ``timeout`` passes."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    last_alert = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if any(worker.poll() is not None for worker in workers):
                log.error("A worker exited early")
                break
            if EXPECTED_IOCS <= latest.keys() and time.monotonic() - last_alert > IDLE_SECONDS:
                break
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    alert = orjson.loads(record.value)
                    latest[alert["yokoten"]["ioc_key"]] = alert
                    last_alert = time.monotonic()
                    print(record.value.decode() if as_json else _summary(alert), flush=True)
    finally:
        await consumer.stop()
    return latest


def _yokoten(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, check=True, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run yokoten end to end on the sample data with a local Kafka broker.")
    parser.add_argument("--json", action="store_true", help="print whole alert documents instead of one line each")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the alerts (default 120)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    broker = _broker_class()()
    workers: list[subprocess.Popen[bytes]] = []
    logs_dir = Path(tempfile.mkdtemp(prefix="yokoten-demo-"))
    try:
        log.info("Starting a local Kafka broker")
        broker.start()
        env = {
            **os.environ,
            "YOKOTEN_BOOTSTRAP_SERVERS": broker.bootstrap,
            "YOKOTEN_DEFAULT_DOMAIN": "corp.example",
            "YOKOTEN_DOMAIN_MAP": "CORP=corp.example",
            # The DHCP leases of the sample network: proxy clients are these workstations.
            "YOKOTEN_HOST_ALIASES": "10.20.0.11=ws01,10.20.0.12=ws02,10.20.0.13=ws03",
            "YOKOTEN_PARTITIONS": "2",
            "PYTHONPATH": str(REPO),
        }
        settings = load_settings(bootstrap_servers=broker.bootstrap, partitions=2)
        asyncio.run(create_topics(settings))
        for command in ("correlator", "matcher"):
            port = _free_port()
            log_file = (logs_dir / f"{command}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service.cli", command],
                    env={**env, "YOKOTEN_METRICS_PORT": str(port)},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
            log.info("Started the %s; metrics on http://127.0.0.1:%d/metrics", command, port)
        log.info("Worker logs are in %s", logs_dir)
        _yokoten(env, "ioc", "push", str(SAMPLES / "iocs.txt"))
        for source, file_name in SAMPLE_TOPICS.items():
            _yokoten(env, "produce", "--topic", f"yokoten.{source}", str(SAMPLES / file_name))
        latest = asyncio.run(_print_alerts(broker.bootstrap, settings.alerts_topic, args.timeout, args.json, workers))
        missing = EXPECTED_IOCS - latest.keys()
        if missing:
            log.error(
                "No alert for %s within %.0f s; see the worker logs in %s",
                ", ".join(sorted(missing)),
                args.timeout,
                logs_dir,
            )
            return 1
        print("\nFinal scope per IOC:")
        for alert in sorted(latest.values(), key=lambda alert: alert["yokoten"]["ioc_key"]):
            print(f"  {alert['message']} (severity {alert['yokoten']['severity']})")
        log.info("The 3 malformed sample records are on the yokoten.dead-letter topic")
        return 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        broker.stop()
        log.info("Stopped the workers and the broker")


if __name__ == "__main__":
    sys.exit(main())
