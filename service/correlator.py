"""The correlator: a faust-streaming app that turns sightings into spread alerts.

Sightings are keyed by IOC, so all sightings of one IOC reach the same
partition and the same ``spread`` table partition, whose changelog topic
restores the state after a restart or a rebalance. An alert is produced and
acknowledged before the sighting's offset can be committed; a failed
produce is retried in place, never skipped. A sighting that fails the checks
or the detectors goes to the dead-letter topic and changes no state.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import faust
import orjson
from aiokafka.errors import KafkaError

from detectors.observables import ObservableType
from detectors.observation import Stage
from detectors.spread import apply_sighting, build_alert, new_state
from detectors.stix_sighting import build_sighting_bundle
from detectors.timestamps import MAX_EPOCH_MS
from service import metrics
from service.config import Settings
from service.http import start_http_server

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 30.0
_IOC_TYPES = frozenset(kind.value for kind in ObservableType)
_REQUIRED = ("ioc", "event", "hosts", "users")
_STAGES = frozenset(stage.value for stage in Stage)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def validate_sighting(value: bytes | None) -> dict[str, Any]:
    """Decode a sighting record; raise ValueError naming what is wrong with it.

    Every field the spread state reads is checked for presence and JSON type,
    so a hand-produced or corrupted record is dead-lettered, never half-applied.
    """
    _require(value is not None, "sighting has no value")
    sighting = orjson.loads(value)  # type: ignore[arg-type]
    _require(isinstance(sighting, dict), f"sighting is {type(sighting).__name__}, expected an object")
    missing = [name for name in _REQUIRED if name not in sighting]
    _require(not missing, f"sighting lacks {', '.join(missing)}")
    ioc, event = sighting["ioc"], sighting["event"]
    _require(isinstance(ioc, dict), f"sighting ioc is {type(ioc).__name__}, expected an object")
    _require(isinstance(event, dict), f"sighting event is {type(event).__name__}, expected an object")
    for name in ("key", "type", "stix_type", "value", "source", "severity"):
        _require(isinstance(ioc.get(name), str), f"sighting ioc.{name} is missing or not a string")
    _require(ioc["type"] in _IOC_TYPES, f"sighting ioc.type {ioc['type']!r} is not a known IOC type")
    for name in ("topic", "source", "stage", "field"):
        _require(isinstance(event.get(name), str), f"sighting event.{name} is missing or not a string")
    for name in ("partition", "offset"):
        number = event.get(name)
        _require(
            isinstance(number, int) and not isinstance(number, bool) and number >= 0,
            f"sighting event.{name} is not a non-negative integer",
        )
    timestamp = event.get("timestamp_ms")
    _require(
        timestamp is None or (isinstance(timestamp, int) and 0 <= timestamp <= MAX_EPOCH_MS),
        "sighting event.timestamp_ms is not an epoch time in milliseconds",
    )
    _require(
        event["stage"] in _STAGES, f"sighting event stage {event['stage']!r} is not one of {', '.join(sorted(_STAGES))}"
    )
    for name in ("hosts", "users"):
        _require(
            isinstance(sighting[name], list) and all(isinstance(item, str) for item in sighting[name]),
            f"sighting {name} is not a list of strings",
        )
    return sighting


def create_app(settings: Settings) -> faust.App:
    """Build the faust app with its table, topics and agent."""
    options = settings.kafka_options()
    broker = ";".join(f"kafka://{server.strip()}" for server in str(options["bootstrap_servers"]).split(","))
    app = faust.App(
        settings.correlator_id,
        broker=broker,
        # The same SASL and TLS settings as the aiokafka clients of the other workers.
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_enabled=False,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
    )
    sightings_topic = app.topic(
        settings.sightings_topic, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
    )
    alerts_topic = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="raw")
    stix_topic = (
        app.topic(settings.stix_sightings_topic, key_serializer="raw", value_serializer="raw")
        if settings.stix_sightings_topic
        else None
    )
    policy = settings.spread_policy()
    dead_letter_topic = app.topic(settings.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    spread = app.Table("spread", default=None, partitions=settings.partitions)
    state_ready = {"recovered": False}

    async def send_acknowledged(
        topic: faust.TopicT, key: bytes | None, value: bytes, headers: dict[str, bytes] | None = None
    ) -> None:
        backoff = 0.5
        while True:
            try:
                future = await topic.send(key=key, value=value, headers=headers)
                await future
                return
            except KafkaError as error:
                metrics.BATCH_RETRIES.inc()
                log.warning("Producing to %s failed (%s); retrying in %.1f s", topic.get_topic_name(), error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def dead_letter(event: faust.EventT, error: Exception) -> None:
        message = event.message
        metrics.RECORDS_REJECTED.labels(source="sightings", reason="sighting").inc()
        log.warning("Dead-lettering sighting %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)
        headers = {
            "yokoten.reason": b"sighting",
            "yokoten.error": str(error).encode("utf-8")[:1024],
            "yokoten.source.topic": message.topic.encode("utf-8"),
            "yokoten.source.partition": str(message.partition).encode("ascii"),
            "yokoten.source.offset": str(message.offset).encode("ascii"),
        }
        await send_acknowledged(dead_letter_topic, event.key, event.value or b"", headers)

    @app.agent(sightings_topic)
    async def correlate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                sighting = validate_sighting(event.value)
            except (ValueError, TypeError, orjson.JSONDecodeError) as error:
                await dead_letter(event, error)
                continue
            key = sighting["ioc"]["key"]
            stored = spread.get(key)
            # The memory store returns the stored object itself. Working on a
            # copy leaves it as it was when a sighting fails half-way.
            state = orjson.loads(orjson.dumps(stored)) if stored else new_state()
            now_ms = int(time.time() * 1000)
            bundle = None
            try:
                due = apply_sighting(state, sighting, now_ms, policy=policy)
                alert = build_alert(state, now_ms, policy.org_wide_hosts) if due else None
                if stix_topic is not None and (due or state["sightings"] == 1):
                    bundle = build_sighting_bundle(state, now_ms)
            except Exception as error:  # noqa: BLE001 - a sighting the detectors reject must not crash the agent
                log.exception("Sighting %s could not be applied", sighting["event"])
                await dead_letter(event, error)
                continue
            if stix_topic is not None and bundle is not None:
                await send_acknowledged(stix_topic, key.encode("utf-8"), orjson.dumps(bundle))
            if alert is not None:
                await send_acknowledged(alerts_topic, alert["yokoten"]["alert_id"].encode("ascii"), orjson.dumps(alert))
                metrics.ALERTS.labels(severity=alert["yokoten"]["severity"]).inc()
                log.info(
                    "Alert %s #%d: %s %s on %d hosts and %d users",
                    alert["yokoten"]["alert_id"],
                    alert["yokoten"]["sequence"],
                    alert["threat"]["indicator"]["type"],
                    alert["yokoten"]["ioc_key"],
                    len(alert["related"]["hosts"]),
                    len(alert["related"]["user"]),
                )
            spread[key] = state

    @app.task
    async def serve_http() -> None:
        if settings.metrics_port:
            await start_http_server(settings.metrics_host, settings.metrics_port, lambda: state_ready["recovered"])

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        log.info("Correlator assigned %d partitions", len(assigned))

    @app.on_rebalance_complete.connect
    async def on_rebalance_complete(sender: Any, **_: Any) -> None:
        state_ready["recovered"] = True
        metrics.READY.set(1)

    return app


def _check_port_free(host: str, port: int) -> None:
    """Fail before faust starts, which would otherwise report a busy port as a crash."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"YOKOTEN_METRICS_PORT {port} on {host} is not free: {error.strerror}") from None


def run_correlator(settings: Settings) -> int:
    """Run the correlator worker in the foreground until SIGTERM or SIGINT."""
    if settings.metrics_port:
        _check_port_free(settings.metrics_host, settings.metrics_port)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0
