"""Fixtures for tests against a real Apache Kafka broker.

One broker (deploy/kafka_broker.py, Kafka 4.x in KRaft mode) serves the whole
session; each test gets topics and consumer groups of its own, so tests do not
see each other's records. Workers run as ``yokoten`` subprocesses, exactly as
an operator starts them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.config import Settings, load_settings
from service.topics import create_topics

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "real"
YOKOTEN = str(Path(sys.executable).with_name("yokoten"))


def _load_broker_module() -> Any:
    spec = importlib.util.spec_from_file_location("kafka_broker", REPO / "deploy" / "kafka_broker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kafka_broker"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the session's broker; YOKOTEN_TEST_BOOTSTRAP reuses a running one."""
    existing = os.environ.get("YOKOTEN_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    broker_module = _load_broker_module()
    broker = broker_module.KafkaBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


class Stack:
    """Topics, settings and worker processes of one test."""

    def __init__(self, bootstrap: str, tmp_path: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.run = run
        self.tmp_path = tmp_path
        self.env = {
            "YOKOTEN_BOOTSTRAP_SERVERS": bootstrap,
            "YOKOTEN_INPUTS": f"t{run}.mail:mail:auto,t{run}.proxy:proxy:auto,t{run}.edr:edr:auto",
            "YOKOTEN_IOC_TOPIC": f"t{run}.iocs",
            "YOKOTEN_SIGHTINGS_TOPIC": f"t{run}.sightings",
            "YOKOTEN_ALERTS_TOPIC": f"t{run}.alerts",
            "YOKOTEN_DEAD_LETTER_TOPIC": f"t{run}.dead-letter",
            "YOKOTEN_STIX_SIGHTINGS_TOPIC": f"t{run}.stix-sightings",
            "YOKOTEN_MATCHER_GROUP": f"matcher-{run}",
            "YOKOTEN_CORRELATOR_ID": f"correlator-{run}",
            "YOKOTEN_PARTITIONS": "2",
            "YOKOTEN_METRICS_PORT": "0",
        }
        self.settings: Settings = load_settings(**{key[8:].lower(): value for key, value in self.env.items()})
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def topic(self, source: str) -> str:
        return f"t{self.run}.{source}"

    def yokoten(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one ``yokoten`` command to completion with this stack's settings."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        result = subprocess.run([YOKOTEN, *args], env=env, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(
                f"yokoten {' '.join(args)} exited {result.returncode}: {result.stderr.decode()[-3000:]}"
            )
        return result

    def start(self, command: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running worker (``matcher`` or ``correlator``); its log goes to tmp_path."""
        log_path = self.tmp_path / f"{command}-{len(self.processes)}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        handle = log_path.open("wb")
        process = subprocess.Popen(
            [YOKOTEN, command], env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append((process, log_path))
        return process

    def stop_all(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, log_path in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                print(f"{log_path} did not stop in 30 s after SIGTERM", file=sys.stderr)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}" for _, path in self.processes)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def produce(
    bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for position, value in enumerate(values):
            key = keys[position] if keys else None
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0) -> list[Any]:
    """Read ``topic`` from the start until ``until(records)`` holds or ``timeout`` passes."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def alerts_of(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in records]


def final_alerts(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the alert with the highest sequence per IOC key."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        key = alert["yokoten"]["ioc_key"]
        if key not in latest or alert["yokoten"]["sequence"] > latest[key]["yokoten"]["sequence"]:
            latest[key] = alert
    return latest


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A fresh set of topics with no workers started yet."""
    current = Stack(kafka_bootstrap, tmp_path)
    run(create_topics(current.settings))
    try:
        yield current
    finally:
        current.stop_all()
