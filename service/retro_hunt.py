"""The retro-hunter: matches newly added IOCs against the input topics' history.

An IOC is usually confirmed after the events happened. The retro-hunter
reads the IOC topic in its own consumer group; IOCs added after its
committed offset are collected for ``retro_batch_seconds`` so that IOCs
pushed together are hunted in one pass. A pass re-reads every input
partition from ``now - retro_lookback_hours`` (offsets found by timestamp)
up to the end offsets seen when it started, matches only the new IOCs, and
produces sightings marked ``retro`` to the sightings topic. The IOC topic
offset is committed after the pass, so a crash repeats the pass (the
correlator ignores sightings of events it already counted). Metadata-only
updates of a known IOC start no pass. Live matching runs in the matchers
and is never blocked by a pass.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import FeedError, MalformedRecordError
from detectors.index import Change, IocIndex
from detectors.ioc import Ioc, ioc_from_record
from detectors.matcher import sightings_of
from detectors.prefilter import RecordFilter
from service import metrics
from service.config import InputBinding, Settings
from service.http import start_http_server

log = logging.getLogger(__name__)


class RetroHunter:
    """Single-instance service that hunts new IOCs through the input topics' history."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules = settings.identity_rules()
        self.bindings: dict[str, InputBinding] = {binding.topic: binding for binding in settings.input_bindings}
        self.known = IocIndex(subdomains=settings.subdomains, min_confidence=settings.min_confidence)
        self.allowlist = settings.allowlist()
        self.ioc_consumer = AIOKafkaConsumer(
            settings.ioc_topic,
            group_id=settings.retro_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **settings.kafka_options(),  # type: ignore[arg-type]
        )
        self.producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_options())  # type: ignore[arg-type]
        self._stopping = asyncio.Event()
        self.ready = False

    def request_stop(self) -> None:
        log.info("Stop requested; a running pass is abandoned and repeated after restart")
        self._stopping.set()

    async def run(self) -> None:
        await self.producer.start()
        await self.ioc_consumer.start()
        try:
            await self._load_known()
            pending: dict[str, Ioc] = {}
            first_pending = 0.0
            while not self._stopping.is_set():
                batches = await self.ioc_consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        ioc = self._apply(record)
                        if ioc is not None:
                            first_pending = first_pending or time.monotonic()
                            pending[ioc.key] = ioc
                quiet = not batches
                waited = time.monotonic() - first_pending if pending else 0.0
                if (
                    pending
                    and (quiet or waited >= self.settings.retro_batch_seconds)
                    and waited >= min(1.0, self.settings.retro_batch_seconds)
                ):
                    await self.hunt(list(pending.values()))
                    await self.ioc_consumer.commit()
                    pending.clear()
                    first_pending = 0.0
                elif not pending and batches:
                    await self.ioc_consumer.commit()
        finally:
            await self.ioc_consumer.stop()
            await self.producer.stop()
            log.info("Retro-hunter stopped")

    async def _load_known(self) -> None:
        """Apply IOC records up to the committed offset without hunting them: they were hunted before."""
        assignment: set[TopicPartition] = set()
        while not assignment:
            await self.ioc_consumer.getmany(timeout_ms=200, max_records=1)
            assignment = self.ioc_consumer.assignment()
        committed = {tp: await self.ioc_consumer.committed(tp) for tp in assignment}
        for tp in assignment:
            self.ioc_consumer.seek(tp, 0)
        loaded = 0
        while True:
            behind = [tp for tp in assignment if (committed[tp] or 0) > await self.ioc_consumer.position(tp)]
            if not behind:
                break
            batches = await self.ioc_consumer.getmany(*behind, timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < (committed[tp] or 0):
                        self._apply(record)
                        loaded += 1
                    else:
                        self.ioc_consumer.seek(tp, record.offset)
                        break
        self.ready = True
        log.info("Retro-hunter knows %d IOCs from %d records; new ones are hunted", len(self.known), loaded)

    def _apply(self, record: Any) -> Ioc | None:
        """Apply one IOC record to the known set; return the IOC when it is newly added."""
        if record.value is None:
            self.known.remove(record.key.decode("utf-8", errors="replace") if record.key else "")
            return None
        try:
            ioc = ioc_from_record(orjson.loads(record.value))
        except (FeedError, orjson.JSONDecodeError, AttributeError, TypeError) as error:
            log.debug("Ignored IOC record %s[%d]@%d: %s", record.topic, record.partition, record.offset, error)
            return None
        return ioc if self.known.apply(ioc) is Change.ADDED else None

    async def hunt(self, iocs: list[Ioc]) -> int:
        """Run one pass for ``iocs``; return the number of sightings produced."""
        started = time.monotonic()
        index = IocIndex(subdomains=self.settings.subdomains, min_confidence=self.settings.min_confidence)
        for ioc in iocs:
            index.apply(ioc)
        index.rebuild()
        since_ms = int(time.time() * 1000) - int(self.settings.retro_lookback_hours * 3600 * 1000)
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.settings.kafka_options())  # type: ignore[arg-type]
        await consumer.start()
        produced = scanned = 0
        try:
            partitions = await _partitions(self.settings, list(self.bindings))
            consumer.assign(partitions)
            starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
            ends = await consumer.end_offsets(partitions)
            todo = {}
            for tp in partitions:
                found = starts.get(tp)
                if found is not None and found.offset < ends[tp]:
                    consumer.seek(tp, found.offset)
                    todo[tp] = ends[tp]
            # The pass index holds only the new IOCs, so the pre-filter skips the parse of nearly every record.
            prefilter = RecordFilter(index).may_match if self.settings.prefilter else None
            parsers = {
                tp: StreamParser(
                    self.bindings[tp.topic].format, self.rules, self.bindings[tp.topic].source, prefilter=prefilter
                )
                for tp in todo
            }
            log.info("Retro-hunt pass for %d IOCs over %d partitions since %s ms", len(iocs), len(todo), since_ms)
            while todo and not self._stopping.is_set():
                batches = await consumer.getmany(*todo, timeout_ms=500, max_records=5000)
                futures = []
                now_ms = int(time.time() * 1000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset >= todo.get(tp, 0):
                            break
                        scanned += 1
                        futures.extend(await self._match(parsers[tp], record, index, now_ms))
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                produced += len(futures)
                if futures:
                    await asyncio.gather(*futures)
        finally:
            await consumer.stop()
        elapsed = time.monotonic() - started
        metrics.RETRO_RECORDS.inc(scanned)
        metrics.RETRO_PASSES.inc()
        log.info("Retro-hunt pass done: %d records scanned, %d sightings, %.1f s", scanned, produced, elapsed)
        return produced

    async def _match(self, parser: StreamParser, record: Any, index: IocIndex, now_ms: int) -> list[Any]:
        try:
            observations = parser.parse(record.value, RecordRef(record.topic, record.partition, record.offset), now_ms)
        except MalformedRecordError:
            return []
        futures = []
        for observation, ref in observations:
            for sighting in sightings_of(observation, ref, index, now_ms, self.allowlist):
                sighting["retro"] = True
                futures.append(
                    await self.producer.send(
                        self.settings.sightings_topic,
                        key=sighting["ioc"]["key"].encode("utf-8"),
                        value=orjson.dumps(sighting),
                    )
                )
        return futures


async def _partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """Return every partition of ``topics``; a missing topic has none."""
    admin = AIOKafkaAdminClient(**settings.kafka_options())  # type: ignore[arg-type]
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if not topic.get("error_code")
        for partition in topic["partitions"]
    ]


async def run_retro_hunter(settings: Settings) -> int:
    """Run the retro-hunter until SIGTERM or SIGINT."""
    hunter = RetroHunter(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, hunter.request_stop)
    runner = None
    if settings.metrics_port:
        runner = await start_http_server(settings.metrics_host, settings.metrics_port, lambda: hunter.ready)
    try:
        await hunter.run()
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0
