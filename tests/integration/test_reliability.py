"""Delivery under failure, against a real broker: kill -9 of either worker,
a broker restart while the matcher runs, and matchers joining and leaving the
consumer group mid-stream.

The matcher tests build input whose right final alerts do not depend on the
order in which partitions are read: every IOC is seen once per host, with no
user. They compute that reference in this process with the parsers and
detectors the workers run, which is what a run without failures publishes.
The correlator test produces sightings itself, so their order per IOC, and
with it every alert, is fixed. Whatever happened to the service, a test then
checks that

- every input record that matches an IOC has a sighting with its event
  reference (topic, partition, offset), no other record has one, every
  malformed record is on the dead-letter topic (source offset in its
  headers), and the matcher group committed every input partition to its
  end, so matched, clean and dead-lettered records together cover every
  input offset;
- the correlator committed the sightings topic to its end, and its final
  alert per IOC equals the reference; sequences of one alert id never go
  backwards and a repeated (alert id, sequence) carries the same content.

Repeated sightings and alerts are allowed (delivery is at least once); a
missing one, or a count inflated by a redelivery, fails the test. The
guarantees are written up in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.feeds import parse_feed
from detectors.index import IocIndex
from detectors.matcher import sightings_of
from detectors.spread import alert_id, apply_sighting, build_alert, new_state
from service.config import load_settings
from service.feed_producer import push_feed
from service.topics import create_topics
from tests.integration.conftest import YOKOTEN, Stack, _load_broker_module, run

pytestmark = pytest.mark.integration

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
IOC_DOMAINS = [f"c2-{number}.spread.example.net" for number in range(6)]
# faust waits one session timeout for a killed member before it hands its
# partitions to a restarted correlator, and its default of 60 s is too long here.
CORRELATOR_ENV = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


# ---------------------------------------------------------------------------
# Input and reference
# ---------------------------------------------------------------------------


def _web_event(number: int, host: str, url: str) -> bytes:
    stamp = (BASE_TIME + timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps(
        {"@timestamp": stamp, "event": {"category": ["web"]}, "host": {"name": host}, "url": {"full": url}}
    )


@dataclass
class Stream:
    """Input records of one proxy topic, in production order, and where they landed."""

    topic: str
    records: list[tuple[int, bytes]]  # (partition, value)
    positions: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset), filled by produce

    def end_offsets(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for partition, offset in self.positions:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends


def _build_stream(topic: str, total: int, partitions: int, hosts_per_ioc: int, seed: int) -> Stream:
    """Clean events, ~1 % malformed ones, and one event per (IOC, host) at random places."""
    rng = random.Random(seed)
    pairs = [(ioc, host) for ioc in range(len(IOC_DOMAINS)) for host in range(hosts_per_ioc)]
    places = rng.sample(range(total), len(pairs) + total // 100)
    spread_at = dict(zip(places, pairs, strict=False))
    malformed_at = set(places[len(pairs) :])
    records = []
    for number in range(total):
        if number in spread_at:
            ioc, host = spread_at[number]
            value = _web_event(number, f"ws{host:02d}.corp.example", f"http://{IOC_DOMAINS[ioc]}/dl/{number}")
        elif number in malformed_at:
            value = b"not json %d" % number
        else:
            value = _web_event(number, f"ws{number % 97:02d}.corp.example", f"http://www{number}.clean.example.org/")
        records.append((rng.randrange(partitions), value))
    return Stream(topic, records)


def _push_iocs(stack: Stack) -> IocIndex:
    """Produce the IOC feed to the stack's IOC topic and return the same IOCs as an in-process index."""
    path = stack.tmp_path / "iocs.txt"
    path.write_text("".join(f"{domain.replace('.', '[.]')}\n" for domain in IOC_DOMAINS))
    assert run(push_feed(stack.settings, path, "auto", None)) == 0
    index = IocIndex(subdomains=stack.settings.subdomains)
    for ioc in parse_feed(path.read_text(), "auto", source=path.stem, name=path.name).iocs:
        index.apply(ioc)
    index.rebuild()
    return index


@dataclass
class Reference:
    """What a run without failures yields for a stream."""

    matched: set[tuple[int, int]]  # (partition, offset) of records with at least one sighting
    dead: set[tuple[int, int]]  # (partition, offset) of malformed records
    alerts: dict[str, dict[str, Any]]  # final alert per IOC key


def _reference(stack: Stack, stream: Stream, index: IocIndex) -> Reference:
    now_ms = int(time.time() * 1000)
    rules = stack.settings.identity_rules()
    policy = stack.settings.spread_policy()
    binding = next(binding for binding in stack.settings.input_bindings if binding.topic == stream.topic)
    # One parser per partition, as the matcher keeps them.
    parsers: dict[int, StreamParser] = {}
    states: dict[str, dict[str, Any]] = {}
    reference = Reference(set(), set(), {})
    for (_, value), (partition, offset) in sorted(
        zip(stream.records, stream.positions, strict=True), key=lambda r: r[1]
    ):
        parser = parsers.setdefault(partition, StreamParser(binding.format, rules, binding.source))
        ref = RecordRef(stream.topic, partition, offset)
        try:
            observations = parser.parse(value, ref, now_ms)
        except MalformedRecordError:
            reference.dead.add((partition, offset))
            continue
        sightings = [s for observation, at in observations for s in sightings_of(observation, at, index, now_ms)]
        if sightings:
            reference.matched.add((partition, offset))
        for sighting in sightings:
            state = states.setdefault(sighting["ioc"]["key"], new_state())
            if apply_sighting(state, sighting, now_ms, policy=policy):
                reference.alerts[sighting["ioc"]["key"]] = build_alert(state, now_ms, policy.org_wide_hosts)
    assert len(reference.alerts) == len(IOC_DOMAINS)
    return reference


def _comparable(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert without its publication time, with its event references in a fixed order."""
    result = copy.deepcopy(alert)
    del result["@timestamp"]
    result["yokoten"]["sightings"].sort(key=lambda ref: (ref["topic"], ref["partition"], ref["offset"]))
    # A host linked to no user says nothing, and whether its entry is kept
    # depends on which sighting came last.
    scope = result["yokoten"].get("scope", {})
    if "links" in scope:
        scope["links"] = [link for link in scope["links"] if link["users"]]
    return result


# ---------------------------------------------------------------------------
# Kafka helpers
# ---------------------------------------------------------------------------


class Producer:
    """A producer that records where each record of a Stream landed."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def stream(self, stream: Stream, start: int, stop: int, chunk: int = 500, pause: float = 0.0) -> None:
        """Produce records ``start:stop`` of ``stream`` in acknowledged chunks, ``pause`` seconds apart."""
        assert len(stream.positions) == start, "produce a stream in order"
        for begin in range(start, stop, chunk):
            futures = [
                await self._producer.send(stream.topic, value=value, partition=partition)
                for partition, value in stream.records[begin : min(begin + chunk, stop)]
            ]
            stream.positions.extend((meta.partition, meta.offset) for meta in await asyncio.gather(*futures))
            if pause:
                await asyncio.sleep(pause)

    async def send(self, topic: str, items: list[tuple[bytes, bytes]]) -> None:
        futures = [await self._producer.send(topic, key=key, value=value) for key, value in items]
        await asyncio.gather(*futures)


async def _reader(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A started consumer without a group, assigned every partition of ``topic`` from the start."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        if time.monotonic() > deadline:
            await consumer.stop()
            raise AssertionError(f"no partitions of {topic} assigned")
        await asyncio.sleep(0.05)
    return consumer


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to the end offsets seen at the start of the read."""
    consumer = await _reader(bootstrap, topic)
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(
                    record for record in batch if record.offset < ends[TopicPartition(topic, record.partition)]
                )
        return records
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


async def _wait_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout: float, logs: Callable[[], str]
) -> None:
    """Wait until ``group`` committed every partition of ``topic`` to ``ends``."""
    deadline = time.monotonic() + timeout
    committed: dict[int, int] = {}
    while time.monotonic() < deadline:
        committed = await _committed(bootstrap, group, topic)
        if all(committed.get(partition, 0) >= end for partition, end in ends.items()):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{group} committed {committed} of {topic}, expected {ends}\n{logs()}")


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = await _reader(bootstrap, topic)
    try:
        return {tp.partition: end for tp, end in (await consumer.end_offsets(list(consumer.assignment()))).items()}
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(stack: Stack, command: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a worker like Stack.start, but in tmp_path so faust's data folder lands there."""
    log_path = stack.tmp_path / f"{command}-{len(stack.processes)}.log"
    env = {**os.environ, **stack.env, **(extra_env or {})}
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [YOKOTEN, command],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=stack.tmp_path,
            start_new_session=True,
        )
    stack.processes.append((process, log_path))
    return process


def _kill9(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _log_of(stack: Stack, process: subprocess.Popen[bytes]) -> str:
    return next(path for handle, path in stack.processes if handle is process).read_text(errors="replace")


def _ready(port: int) -> bool | None:
    """True or False from /readyz, None when the endpoint does not respond."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        return False if error.code == 503 else None
    except OSError:
        return None


def _metric(port: int, name: str) -> float:
    """Sum of every series of metric ``name``, or 0 when the endpoint does not respond."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith((f"{name}{{", f"{name} "))
    )


async def _until(
    predicate: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str], interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


async def _check_matcher_output(
    stack: Stack, stream: Stream, reference: Reference, timeout: float = 60
) -> Counter[tuple[int, int]]:
    """Assert that every input record is accounted for, and return how often each matched record was sighted."""
    bootstrap = stack.settings.bootstrap_servers
    ends = stream.end_offsets()
    await _wait_committed(bootstrap, stack.settings.matcher_group, stream.topic, ends, timeout, stack.logs)
    # Offsets are committed only after the batch's sightings and dead letters
    # are acknowledged, so both topics are complete now.
    sighted: Counter[tuple[int, int]] = Counter()
    for record in await _read_all(bootstrap, stack.settings.sightings_topic):
        event = orjson.loads(record.value)["event"]
        assert event["topic"] == stream.topic
        sighted[(event["partition"], event["offset"])] += 1
    dead: set[tuple[int, int]] = set()
    for record in await _read_all(bootstrap, stack.settings.dead_letter_topic):
        headers = dict(record.headers)
        assert headers["yokoten.source.topic"] == stream.topic.encode()
        dead.add((int(headers["yokoten.source.partition"]), int(headers["yokoten.source.offset"])))

    missing = reference.matched - set(sighted)
    assert not missing, f"{len(missing)} matching records have no sighting, e.g. {sorted(missing)[:5]}\n{stack.logs()}"
    assert set(sighted) == reference.matched, (
        f"sightings for records that match nothing: {sorted(set(sighted) - reference.matched)[:5]}"
    )
    assert dead == reference.dead, (
        f"dead letters missing {sorted(reference.dead - dead)[:5]}, unexpected {sorted(dead - reference.dead)[:5]}"
    )
    clean = set(stream.positions) - reference.matched - reference.dead
    every = {(partition, offset) for partition, end in ends.items() for offset in range(end)}
    assert reference.matched | clean | dead == every
    return sighted


async def _check_alerts(stack: Stack, reference: Reference, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until the correlator consumed every sighting, then compare the alerts with the reference."""
    bootstrap = stack.settings.bootstrap_servers
    sighting_ends = await _end_offsets(bootstrap, stack.settings.sightings_topic)
    await _wait_committed(
        bootstrap, stack.settings.correlator_id, stack.settings.sightings_topic, sighting_ends, timeout, stack.logs
    )
    alerts = [orjson.loads(record.value) for record in await _read_all(bootstrap, stack.settings.alerts_topic)]
    _check_sequences(alerts)
    final: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        final[alert["yokoten"]["ioc_key"]] = alert
    assert sorted(final) == sorted(reference.alerts), stack.logs()
    for key, expected in reference.alerts.items():
        differences = _differences(_comparable(final[key]), _comparable(expected))
        assert not differences, f"final alert of {key} differs from the run without failures: {differences[:10]}"
    return alerts


def _differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Paths at which two JSON values differ, with both values, for assertion messages."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        return [
            line
            for key in sorted(set(actual) | set(expected))
            for line in _differences(actual.get(key, "<absent>"), expected.get(key, "<absent>"), f"{path}.{key}")
        ]
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        return [
            line
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for line in _differences(a, e, f"{path}[{i}]")
        ]
    return [] if actual == expected else [f"{path}: {str(actual)[:200]} != {str(expected)[:200]}"]


def _check_sequences(alerts: list[dict[str, Any]]) -> None:
    """Per alert id, in topic order: sequences never go back, and a repeat is the same update."""
    last: dict[str, int] = {}
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for alert in alerts:
        identifier, sequence = alert["yokoten"]["alert_id"], alert["yokoten"]["sequence"]
        assert identifier == alert_id(alert["yokoten"]["ioc_key"])
        assert sequence >= last.get(identifier, 0), (
            f"alert {identifier} went from #{last[identifier]} back to #{sequence}"
        )
        last[identifier] = sequence
        if (identifier, sequence) in seen:
            assert _comparable(alert) == seen[(identifier, sequence)], (
                f"alert {identifier} #{sequence} repeated with other content"
            )
        seen[(identifier, sequence)] = _comparable(alert)
    for identifier, final in last.items():
        sequences = {sequence for ident, sequence in seen if ident == identifier}
        assert sequences == set(range(1, final + 1)), f"alert {identifier} skipped sequences: {sorted(sequences)}"


async def _uncommitted_sightings(stack: Stack, topic: str) -> int:
    """Sightings on the broker whose input record is at or past the matcher group's committed offset."""
    bootstrap = stack.settings.bootstrap_servers
    committed = await _committed(bootstrap, stack.settings.matcher_group, topic)
    events = [
        orjson.loads(record.value)["event"] for record in await _read_all(bootstrap, stack.settings.sightings_topic)
    ]
    return sum(1 for event in events if event["offset"] >= committed.get(event["partition"], 0))


async def _kill_inside_a_batch(
    stack: Stack, process: subprocess.Popen[bytes], port: int, producer: Producer, stream: Stream, stop: int
) -> int:
    """SIGKILL the matcher while sightings of a batch are on the broker but the batch is not committed.

    The matcher is frozen (SIGSTOP) while a chunk is produced, so that it has
    a backlog when it resumes. Its metrics endpoint responds only while the
    worker awaits, mostly the produce acknowledgements or the commit of a
    batch. Right after a response the matcher is frozen again and inspected,
    until it is caught with uncommitted sightings. Returns their number.
    """
    while len(stream.positions) < stop:
        os.killpg(process.pid, signal.SIGSTOP)
        await producer.stream(stream, len(stream.positions), min(len(stream.positions) + 1000, stop))
        os.killpg(process.pid, signal.SIGCONT)
        for _ in range(8):
            _metric(port, "yokoten_events_consumed_total")
            os.killpg(process.pid, signal.SIGSTOP)
            await asyncio.sleep(0.05)  # a commit already sent reaches the broker
            uncommitted = await _uncommitted_sightings(stack, stream.topic)
            if uncommitted:
                _kill9(process)
                await producer.stream(stream, len(stream.positions), stop)
                return uncommitted
            os.killpg(process.pid, signal.SIGCONT)
    raise AssertionError(f"never caught the matcher between producing and committing a batch\n{stack.logs()}")


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def _make_stack(bootstrap: str, tmp_path: Path, partitions: int) -> Stack:
    current = Stack(bootstrap, tmp_path)
    current.env["YOKOTEN_PARTITIONS"] = str(partitions)
    current.settings = load_settings(**{key[8:].lower(): value for key, value in current.env.items()})
    run(create_topics(current.settings))
    return current


@pytest.fixture
def stack4(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """Like the stack fixture, with 4 partitions per topic."""
    current = _make_stack(kafka_bootstrap, tmp_path, 4)
    try:
        yield current
    finally:
        current.stop_all()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Any]:
    """A broker of this test alone, on a data dir and ports that survive a restart."""
    module = _load_broker_module()
    port, controller_port = module.pick_free_ports(2)
    broker = module.KafkaBroker(tmp_path / "kafka", port, controller_port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_matcher_kill9_loses_nothing(stack: Stack) -> None:
    index = _push_iocs(stack)
    stream = _build_stream(stack.topic("proxy"), total=6000, partitions=2, hosts_per_ioc=25, seed=1)
    bootstrap = stack.settings.bootstrap_servers
    port = _free_port()
    _start(stack, "correlator", CORRELATOR_ENV)
    matcher = _start(stack, "matcher", {"YOKOTEN_METRICS_PORT": str(port)})

    async def scenario() -> int:
        await _until(lambda: _ready(port) is True, 60, "the matcher to be ready", stack.logs)
        async with Producer(bootstrap) as producer:
            await producer.stream(stream, 0, 2000)
            uncommitted = await _kill_inside_a_batch(stack, matcher, port, producer, stream, 4500)
            _start(stack, "matcher")
            await producer.stream(stream, 4500, len(stream.records), chunk=250, pause=0.05)
        return uncommitted

    uncommitted = run(scenario())
    reference = _reference(stack, stream, index)
    sighted = run(_check_matcher_output(stack, stream, reference))
    # The restarted matcher matched the uncommitted batch again.
    redelivered = sum(count - 1 for count in sighted.values())
    assert uncommitted > 0
    assert redelivered >= uncommitted
    alerts = run(_check_alerts(stack, reference))
    print(f"{uncommitted} sightings uncommitted at the kill, {redelivered} redelivered; {len(alerts)} alerts")


@pytest.mark.timeout(150)
def test_correlator_kill9_recovers_table(stack: Stack) -> None:
    """Sightings are produced directly, so their order per IOC, and every alert, is fixed."""
    rng = random.Random(7)
    bootstrap = stack.settings.bootstrap_servers
    stages = {"edr": "executed", "mail": "delivered", "proxy": "contacted"}
    sightings: list[dict[str, Any]] = []
    for position in range(1500):
        ioc = position % len(IOC_DOMAINS)
        source = rng.choice(sorted(stages))
        # New hosts and users keep arriving until the end, so alerts do too.
        pool = 6 + position // 30
        sightings.append(
            {
                "ioc": {
                    "key": f"domain-name:{IOC_DOMAINS[ioc]}",
                    "type": "domain-name",
                    "stix_type": "domain-name",
                    "value": IOC_DOMAINS[ioc],
                    "source": "reliability",
                    "severity": "high",
                    "confidence": None,
                    "tags": [],
                },
                "event": {
                    "source": source,
                    "format": "ecs",
                    "code": None,
                    "timestamp_ms": int(BASE_TIME.timestamp() * 1000) + position * 1000,
                    "field": "url.full",
                    "stage": stages[source],
                    "topic": stack.topic(source),
                    "partition": 0,
                    "offset": position,
                },
                "hosts": [f"ws{rng.randrange(pool):03d}.corp.example"],
                "users": [f"user{rng.randrange(pool):03d}@corp.example"] if rng.random() < 0.5 else [],
                "retro": False,
            }
        )
    # A matcher redelivers after a crash, so some sightings repeat a little later.
    for position in rng.sample(range(len(sightings) - 60), 80):
        sightings.insert(position + rng.randrange(1, 60), sightings[position])
    # Sightings the detectors cannot apply go to the dead letter and change no
    # state. One has a stage this version does not know, one a source that is no string.
    poison = []
    for number, (position, change) in enumerate([(300, {"stage": "exploded"}), (1400, {"source": ["proxy"]})]):
        bad = copy.deepcopy(sightings[position - 50])
        bad["event"].update(change, offset=100_000 + number)
        sightings.insert(position, bad)
        poison.append(orjson.dumps(bad))

    now_ms = int(time.time() * 1000)
    policy = stack.settings.spread_policy()
    states: dict[str, dict[str, Any]] = {}
    expected: dict[tuple[str, int], dict[str, Any]] = {}
    for sighting in sightings:
        if orjson.dumps(sighting) in poison:
            continue
        state = states.setdefault(sighting["ioc"]["key"], new_state())
        if apply_sighting(state, sighting, now_ms, policy=policy):
            alert = build_alert(state, now_ms, policy.org_wide_hosts)
            expected[(alert["yokoten"]["alert_id"], alert["yokoten"]["sequence"])] = _comparable(alert)
    reference = Reference(set(), set(), {})
    for identifier, sequence in expected:
        key = next(key for key in states if alert_id(key) == identifier)
        if sequence == states[key]["seq"]:
            reference.alerts[key] = {"@timestamp": "", **copy.deepcopy(expected[(identifier, sequence)])}
    encoded = [(s["ioc"]["key"].encode(), orjson.dumps(s)) for s in sightings]
    first_part = len(encoded) * 2 // 3

    async def scenario() -> int:
        async with Producer(bootstrap) as producer:
            await producer.send(stack.settings.sightings_topic, encoded[:first_part])
            correlator = _start(stack, "correlator", CORRELATOR_ENV)
            alerts_seen = 0
            deadline = time.monotonic() + 60
            while alerts_seen < len(expected) // 4:
                assert time.monotonic() < deadline, f"only {alerts_seen} alerts after 60 s\n{stack.logs()}"
                alerts_seen = sum((await _end_offsets(bootstrap, stack.settings.alerts_topic)).values())
                await asyncio.sleep(0.05)
            _kill9(correlator)
            await producer.send(stack.settings.sightings_topic, encoded[first_part:])
            _start(stack, "correlator", CORRELATOR_ENV)
        return alerts_seen

    at_kill = run(scenario())
    alerts = run(_check_alerts(stack, reference, timeout=90))
    for alert in alerts:
        key = (alert["yokoten"]["alert_id"], alert["yokoten"]["sequence"])
        assert _comparable(alert) == expected[key], f"alert {key} differs from the run without a crash"
    assert {(a["yokoten"]["alert_id"], a["yokoten"]["sequence"]) for a in alerts} == set(expected)
    dead = run(_read_all(bootstrap, stack.settings.dead_letter_topic))
    assert {record.value for record in dead} == set(poison), stack.logs()
    assert {dict(record.headers)["yokoten.reason"] for record in dead} == {b"sighting"}
    assert "Restoring state from changelog" in _log_of(stack, stack.processes[-1][0]), (
        "the restarted correlator read no changelog"
    )
    print(f"correlator killed after {at_kill} of {len(expected)} alerts; {len(alerts)} alerts published")


@pytest.mark.timeout(150)
def test_broker_restart_skips_nothing(own_broker: Any, tmp_path: Path) -> None:
    stack = _make_stack(own_broker.bootstrap, tmp_path, 2)
    try:
        _broker_restart_scenario(stack, own_broker)
    finally:
        stack.stop_all()


def _broker_restart_scenario(stack: Stack, broker: Any) -> None:
    index = _push_iocs(stack)
    stream = _build_stream(stack.topic("proxy"), total=3000, partitions=2, hosts_per_ioc=6, seed=2)
    bootstrap = stack.settings.bootstrap_servers
    port = _free_port()
    matcher = _start(stack, "matcher", {"YOKOTEN_METRICS_PORT": str(port)})

    async def scenario() -> dict[str, float]:
        await _until(lambda: _ready(port) is True, 60, "the matcher to be ready", stack.logs)
        async with Producer(bootstrap) as producer:
            await producer.stream(stream, 0, 1000)
            await _wait_committed(
                bootstrap, stack.settings.matcher_group, stream.topic, stream.end_offsets(), 30, stack.logs
            )
            # The matcher is still busy with these when the broker goes away.
            await producer.stream(stream, 1000, 2000)
        began = time.monotonic()
        await asyncio.to_thread(broker.stop)
        stopped = time.monotonic()
        await _until(lambda: _ready(port) is False, 30, "/readyz to report the outage", stack.logs)
        not_ready = time.monotonic()
        await asyncio.sleep(3)
        await asyncio.to_thread(broker.start)
        started = time.monotonic()
        await _until(lambda: _ready(port) is True, 60, "/readyz to recover after the broker restart", stack.logs)
        ready = time.monotonic()
        async with Producer(bootstrap) as producer:
            await producer.stream(stream, 2000, len(stream.records), chunk=250, pause=0.05)
        return {
            "stop": stopped - began,
            "not ready after": not_ready - stopped,
            "down": started - stopped,
            "ready after": ready - started,
        }

    timings = run(scenario())
    reference = _reference(stack, stream, index)
    run(_check_matcher_output(stack, stream, reference))
    assert matcher.poll() is None, f"the matcher exited during the outage\n{stack.logs()}"
    def outage_log() -> str:
        log = _log_of(stack, matcher)
        after_start = log[log.index("service.matcher_worker: Ready") + 1 :]
        return after_start[after_start.index("service.matcher_worker: Not ready: ") :]

    # The readiness watcher logs a change within a second, and the output
    # check above can finish sooner than that after the broker is back.
    run(_until(lambda: "service.matcher_worker: Ready" in outage_log(), 10, "'Ready' in the log", outage_log))
    log = _log_of(stack, matcher)
    # aiokafka reconnects by itself every retry_backoff_ms, and a batch whose
    # produce or commit fails is read again after the worker's own backoff.
    assert "Unable connect to node" in log or "Batch failed" in log, log[-4000:]
    print("broker restart: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


@pytest.mark.timeout(150)
def test_matchers_join_and_leave(stack4: Stack) -> None:
    stack = stack4
    index = _push_iocs(stack)
    stream = _build_stream(stack.topic("proxy"), total=8000, partitions=4, hosts_per_ioc=12, seed=3)
    bootstrap = stack.settings.bootstrap_servers
    ports = [_free_port() for _ in range(3)]
    _start(stack, "correlator", CORRELATOR_ENV)
    first = _start(stack, "matcher", {"YOKOTEN_METRICS_PORT": str(ports[0])})
    _start(stack, "matcher", {"YOKOTEN_METRICS_PORT": str(ports[1])})

    async def produce_while(producer: Producer, start: int, condition: Callable[[], bool], limit: int) -> int:
        """Produce paced chunks from ``start`` until ``condition`` is true, and return the next position."""
        position = start
        while not condition():
            assert position < limit, f"stream used up before the group changed\n{stack.logs()}"
            await producer.stream(stream, position, position + 100, chunk=100, pause=0.1)
            position += 100
        return position

    async def scenario() -> None:
        await _until(
            lambda: _ready(ports[0]) is True and _ready(ports[1]) is True, 60, "two ready matchers", stack.logs
        )
        async with Producer(bootstrap) as producer:
            await producer.stream(stream, 0, 1500, chunk=100, pause=0.1)
            third = _start(stack, "matcher", {"YOKOTEN_METRICS_PORT": str(ports[2])})
            position = await produce_while(producer, 1500, lambda: _ready(ports[2]) is True, 5000)
            position = await produce_while(
                producer, position, lambda: _metric(ports[2], "yokoten_events_consumed_total") > 0, 5500
            )
            os.killpg(first.pid, signal.SIGTERM)
            position = await produce_while(producer, position, lambda: first.poll() is not None, 6500)
            await producer.stream(stream, position, len(stream.records), chunk=100, pause=0.05)
            assert third.poll() is None

    run(scenario())
    assert first.wait(timeout=10) == 0, _log_of(stack, first)
    reference = _reference(stack, stream, index)
    sighted = run(_check_matcher_output(stack, stream, reference))
    run(_check_alerts(stack, reference))
    for process, _ in stack.processes:
        if process is not first:
            assert process.poll() is None, f"a matcher exited\n{stack.logs()}"
    print(f"{sum(count - 1 for count in sighted.values())} sightings redelivered across the rebalances")


@pytest.mark.timeout(90)
def test_rebalance_mid_batch_rereads_batch(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Partitions revoked while a batch is in flight: the worker must not commit it, and must keep running.

    The worker runs in this process and keeps its first batch, which covers
    both input partitions, waiting until a second group member has taken half of them.
    """
    from service.matcher_worker import MatcherWorker

    index = _push_iocs(stack)
    stream = _build_stream(stack.topic("proxy"), total=400, partitions=2, hosts_per_ioc=3, seed=4)
    bootstrap = stack.settings.bootstrap_servers

    async def scenario() -> None:
        worker = MatcherWorker(stack.settings)
        other = AIOKafkaConsumer(
            *(binding.topic for binding in stack.settings.input_bindings),
            bootstrap_servers=bootstrap,
            group_id=stack.settings.matcher_group,
            enable_auto_commit=False,
        )
        send = worker._send
        held = asyncio.Event()
        released = asyncio.Event()

        async def held_send(outgoing: Any) -> Any:
            # The first send of the first batch waits, so that batch is in flight during the rebalance.
            if not held.is_set():
                held.set()
                await _until(lambda: bool(other.assignment()), 30, "the second member's assignment", lambda: "")
                released.set()
            return await send(outgoing)

        async with Producer(bootstrap) as producer:
            await producer.stream(stream, 0, len(stream.records))
        worker._send = held_send  # type: ignore[method-assign]
        task = asyncio.ensure_future(worker.run())
        try:
            await asyncio.wait_for(held.wait(), 30)
            await other.start()  # joins the group while the first batch is held
            await asyncio.wait_for(released.wait(), 30)
            await asyncio.sleep(1)
            assert not task.done(), f"the worker stopped: {task.exception()!r}"
            await other.stop()  # leaves: the worker takes every partition back and reads what it gave up
            await _wait_committed(
                bootstrap, stack.settings.matcher_group, stream.topic, stream.end_offsets(), 30, lambda: ""
            )
            assert not task.done(), f"the worker stopped: {task.exception()!r}"
        finally:
            worker.request_stop()
            if not other._closed:
                await other.stop()
            await asyncio.wait_for(task, 30)

    with caplog.at_level("INFO", logger="service.matcher_worker"):
        run(scenario())
    assert "revoked during the batch" in caplog.text or "Batch failed" in caplog.text
    run(_check_matcher_output(stack, stream, _reference(stack, stream, index)))


@pytest.mark.timeout(90)
def test_failed_batch_rereads_joined_lines(stack: Stack) -> None:
    """A produce that fails as a join completes: the message's earlier lines must be read again.

    Four Postfix lines describe one message from an IOC sender; the fifth
    ("removed") completes it. The first sighting produce after it fails once.
    Reading again from the fifth line alone would find nothing to complete.
    """
    from aiokafka.errors import KafkaTimeoutError

    from service.matcher_worker import MatcherWorker

    feed = stack.tmp_path / "mail-iocs.txt"
    feed.write_text("bad@evil[.]example\n")
    assert run(push_feed(stack.settings, feed, "auto", None)) == 0
    lines = [
        "Jan  1 10:00:00 mx1 postfix/smtpd[123]: 4ABC123DEF: client=unknown[203.0.113.5]",
        "Jan  1 10:00:00 mx1 postfix/cleanup[126]: 4ABC123DEF: message-id=<x1@evil.example>",
        "Jan  1 10:00:00 mx1 postfix/qmgr[124]: 4ABC123DEF: from=<bad@evil.example>, size=1234, nrcpt=1 (queue active)",
        "Jan  1 10:00:01 mx1 postfix/local[125]: 4ABC123DEF: to=<alice@corp.example>, relay=local, status=sent (ok)",
        "Jan  1 10:00:01 mx1 postfix/qmgr[124]: 4ABC123DEF: removed",
    ]
    stream = Stream(stack.topic("mail"), [(0, line.encode()) for line in lines])
    bootstrap = stack.settings.bootstrap_servers
    failures: list[str] = []

    async def scenario() -> None:
        worker = MatcherWorker(stack.settings)
        send = worker.producer.send
        armed = asyncio.Event()

        async def failing_send(topic: str, *args: Any, **kwargs: Any) -> Any:
            if armed.is_set() and topic == stack.settings.sightings_topic:
                armed.clear()
                failures.append(topic)
                raise KafkaTimeoutError("injected by the test")
            return await send(topic, *args, **kwargs)

        worker.producer.send = failing_send  # type: ignore[method-assign]
        task = asyncio.ensure_future(worker.run())
        try:
            async with Producer(bootstrap) as producer:
                await producer.stream(stream, 0, 4)
                tp = TopicPartition(stream.topic, 0)
                await _until(
                    lambda: tp in worker.parsers and worker.parsers[tp].pending == 1, 30, "4 lines", lambda: ""
                )
                armed.set()
                await producer.stream(stream, 4, 5)
            await _wait_committed(bootstrap, stack.settings.matcher_group, stream.topic, {0: 5}, 30, lambda: "")
        finally:
            worker.request_stop()
            await asyncio.wait_for(task, 30)

    run(scenario())
    assert failures, "the injected failure did not happen"
    sightings = [orjson.loads(record.value) for record in run(_read_all(bootstrap, stack.settings.sightings_topic))]
    assert sightings, "the joined message lost its sighting when its batch failed"
    assert {(s["ioc"]["key"], s["event"]["offset"], tuple(s["users"])) for s in sightings} == {
        ("email-addr:bad@evil.example", 4, ("alice@corp.example",))
    }
