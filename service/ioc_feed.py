"""Follows the compacted IOC topic into an in-memory IocIndex.

Every worker reads every partition of the topic from the beginning, without
a consumer group, so each holds the full IOC set whatever partitions of the
input topics it owns. ``load`` returns once the end offsets seen at start-up
are reached; ``follow`` then applies new records as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from detectors.exceptions import FeedError
from detectors.index import Change, IocIndex
from detectors.ioc import ioc_from_record
from service import metrics
from service.config import Settings

log = logging.getLogger(__name__)
LOG_EVERY_ERRORS = 100
IOC_FETCH_BYTES = 8 * 1024 * 1024


class IocFeed:
    """The IOC topic reader that keeps ``index`` up to date."""

    def __init__(self, settings: Settings, index: IocIndex) -> None:
        self.settings = settings
        self.index = index
        self.loaded = False
        self._errors = 0
        self._newest_ms = 0
        self.following = True
        # The first load reads the whole compacted topic (1M records are about
        # 130 MB), so fetches are larger than aiokafka's 1 MiB per partition.
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=IOC_FETCH_BYTES,
            fetch_max_bytes=4 * IOC_FETCH_BYTES,
            **settings.kafka_options(),  # type: ignore[arg-type]
        )
        self._updates = {change: metrics.IOC_UPDATES.labels(change=change.value) for change in Change}

    async def start(self, timeout_s: float = 60.0) -> None:
        """Subscribe to every partition of the IOC topic; fail if it does not exist."""
        await self._consumer.start()
        if self.settings.ioc_topic not in await self._consumer.topics():
            await self._consumer.stop()
            raise RuntimeError(
                f"IOC topic {self.settings.ioc_topic!r} does not exist; create it with 'yokoten topics create'"
            )
        # Without a group_id, subscribe() assigns every partition and, having no
        # committed offsets, reading starts at the earliest offset.
        self._consumer.subscribe([self.settings.ioc_topic])
        deadline = time.monotonic() + timeout_s
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                await self._consumer.stop()
                raise RuntimeError(
                    f"no partitions of IOC topic {self.settings.ioc_topic!r} assigned after {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def load(self) -> int:
        """Read the topic up to the end offsets seen now; return the number of records applied."""
        started = time.monotonic()
        assignment = list(self._consumer.assignment())
        end_offsets = await self._consumer.end_offsets(assignment)
        self.index.begin_bulk_load()
        applied = 0
        while await self._behind(end_offsets):
            applied += await self._poll(timeout_ms=500)
        self.index.rebuild()
        self.loaded = True
        metrics.publish_ioc_counts(self.index.count_by_type())
        log.info(
            "Loaded %d IOCs from %d records of %s in %.1f s",
            len(self.index),
            applied,
            self.settings.ioc_topic,
            time.monotonic() - started,
        )
        return applied

    async def _behind(self, end_offsets: dict[TopicPartition, int]) -> bool:
        for tp, end in end_offsets.items():
            if await self._consumer.position(tp) < end:
                return True
        return False

    async def follow(self) -> None:
        """Apply new IOC records until cancelled; expired IOCs are dropped once a minute.

        A failure of the consumer itself marks the feed as not following, which
        makes the worker not ready, and is retried after a pause.
        """
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep following; readiness reports the outage
                self.following = False
                log.exception("Reading the IOC topic %s failed; retrying in 5 s", self.settings.ioc_topic)
                await asyncio.sleep(5)

    async def _follow(self) -> None:
        last_expiry = time.monotonic()
        while True:
            polled = await self._poll(timeout_ms=200)
            self.following = True
            if polled:
                metrics.publish_ioc_counts(self.index.count_by_type())
            if time.monotonic() - last_expiry > 60:
                expired = self.index.expire()
                last_expiry = time.monotonic()
                if expired:
                    log.info("Dropped %d expired IOCs", len(expired))
                    metrics.publish_ioc_counts(self.index.count_by_type())
            await asyncio.sleep(0)

    async def _poll(self, timeout_ms: int) -> int:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        applied = 0
        for records in batches.values():
            for record in records:
                self.apply_record(record)
                applied += 1
        if applied:
            metrics.IOC_NEWEST_SECONDS.set(self._newest_ms / 1000)
        return applied

    def apply_record(self, record: ConsumerRecord) -> Change:
        """Apply one topic record: a value adds or updates, a tombstone removes."""
        self._newest_ms = max(self._newest_ms, record.timestamp)
        if record.value is None:
            key = record.key.decode("utf-8", errors="replace") if record.key else ""
            change = self.index.remove(key)
        else:
            try:
                ioc = ioc_from_record(orjson.loads(record.value))
            except (FeedError, orjson.JSONDecodeError) as error:
                self._count_error(record, error)
                return Change.IGNORED
            except Exception as error:  # noqa: BLE001 - one bad IOC record must not stop IOC updates
                log.exception("Unexpected error on IOC record %s[%d]@%d", record.topic, record.partition, record.offset)
                self._count_error(record, error, reason="internal_error")
                return Change.IGNORED
            change = self.index.apply(ioc)
        self._updates[change].inc()
        return change

    def _count_error(self, record: ConsumerRecord, error: Exception, reason: str | None = None) -> None:
        reason = reason or getattr(error, "reason", "json")
        metrics.IOC_FEED_ERRORS.labels(reason=reason).inc()
        self._errors += 1
        if self._errors <= 10 or self._errors % LOG_EVERY_ERRORS == 0:
            log.warning(
                "Ignored IOC record %s[%d]@%d (%d so far): %s",
                record.topic,
                record.partition,
                record.offset,
                self._errors,
                error,
            )
