"""The matcher worker: input topics in, sightings out, in batches.

Delivery is at least once. Input offsets are committed only after every
sighting and dead-letter record of the batch is acknowledged by the broker,
and never past a record that a join still buffers. When a produce or commit
fails, the worker reads every partition the batch touched again from its
last committed offset, after a backoff, so no record is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.index import IocIndex
from detectors.matcher import sightings_of
from detectors.prefilter import RecordFilter
from detectors.observation import Observation
from service import metrics
from service.config import InputBinding, Settings
from service.dead_letter import dead_letter_headers
from service.http import start_http_server
from service.ioc_feed import IocFeed
from service.logs import RateLimitedLog

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 30.0
# Kafka's default max.request.size is 1 MiB; dead-letter values are cut below it, leaving room for headers.
MAX_DEAD_LETTER_BYTES = 1024 * 1024 - 16 * 1024
# The worker is not ready when no fetch response arrived, or one batch has
# waited for the broker, for this long. A healthy consumer gets a fetch
# response at least every fetch_max_wait_ms (500 ms in aiokafka 0.14), even when idle.
STALL_SECONDS = 10.0


class OutgoingRecord(NamedTuple):
    """A sighting or dead-letter record to produce once the record that caused it is matched."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    is_sighting: bool = False


class MatcherWorker:
    """One member of the matcher consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules = settings.identity_rules()
        self.bindings: dict[str, InputBinding] = {binding.topic: binding for binding in settings.input_bindings}
        self.index = IocIndex(subdomains=settings.subdomains, min_confidence=settings.min_confidence)
        self.allowlist = settings.allowlist()
        self.feed = IocFeed(settings, self.index)
        self.parsers: dict[TopicPartition, StreamParser] = {}
        self.consumer = AIOKafkaConsumer(
            group_id=settings.matcher_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            **settings.kafka_options(),  # type: ignore[arg-type]
        )
        self.producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_options())  # type: ignore[arg-type]
        self._stopping = asyncio.Event()
        self._rejections = RateLimitedLog(log)
        self._batch_started: float | None = None
        self._batch_failing = False
        # Per partition, the offset last committed by this worker, or the one
        # it started reading from. A failed batch is read again from here.
        self._committed: dict[TopicPartition, int] = {}
        self._revocations = 0
        self._counters: dict[str, metrics.SourceCounters] = {}
        self.record_filter = RecordFilter(self.index) if settings.prefilter else None

    def is_ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the worker is not ready, or None when it is.

        Ready means: the IOC set is loaded and followed, partitions are
        assigned, the last batch did not fail, no batch has waited for the
        broker longer than STALL_SECONDS, and a fetch response arrived within
        STALL_SECONDS.
        """
        if not self.feed.loaded:
            return "IOC set not loaded"
        if not self.feed.following:
            return "reading the IOC topic failed"
        if self._batch_failing:
            return "batches fail"
        assignment = self.consumer.assignment()
        if not assignment:
            return "no partitions assigned"
        if self._batch_started is not None and time.monotonic() - self._batch_started > STALL_SECONDS:
            return f"a batch has waited for the broker over {STALL_SECONDS:.0f} s"
        polled = [stamp for tp in assignment if (stamp := self.consumer.last_poll_timestamp(tp)) is not None]
        if not polled or time.time() * 1000 - max(polled) > STALL_SECONDS * 1000:
            return f"no fetch response for over {STALL_SECONDS:.0f} s"
        return None

    async def _watch_readiness(self) -> None:
        """Publish readiness every second and log when it changes, also while a batch is stuck."""
        reason: str | None = "starting"
        while True:
            try:
                current = self.not_ready_reason()
            except Exception as error:  # noqa: BLE001 - the watcher must outlive a consumer mid-rebalance
                current = f"readiness check failed: {error!r}"
            metrics.READY.set(0 if current else 1)
            if current != reason:
                if current is None:
                    log.info("Ready")
                else:
                    log.warning("Not ready: %s", current)
                reason = current
            await asyncio.sleep(1.0)

    def request_stop(self) -> None:
        log.info("Stop requested; finishing the current batch")
        self._stopping.set()

    async def run(self) -> None:
        """Load the IOC set, then match batches until ``request_stop``."""
        follower: asyncio.Task[None] | None = None
        watcher = asyncio.create_task(self._watch_readiness(), name="readiness")
        try:
            await self.producer.start()
            await self.feed.start()
            await self.feed.load()
            follower = asyncio.create_task(self.feed.follow(), name="ioc-feed")
            await self.consumer.start()
            self.consumer.subscribe(list(self.bindings), listener=_PartitionListener(self))
            log.info("Matcher started: group %s, topics %s", self.settings.matcher_group, ", ".join(self.bindings))
            backoff = 0.5
            while not self._stopping.is_set():
                batches = await self.consumer.getmany(
                    timeout_ms=self.settings.batch_timeout_ms, max_records=self.settings.batch_max_records
                )
                if not batches:
                    await self._expire_idle_joins()
                    continue
                try:
                    await self.process_batch(batches)
                    backoff = 0.5
                    self._batch_failing = False
                except KafkaError as error:
                    self._batch_failing = True
                    metrics.BATCH_RETRIES.inc()
                    log.warning("Batch failed (%s); re-reading it in %.1f s", error, backoff)
                    self._rewind(batches)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            watcher.cancel()
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            metrics.READY.set(0)
            await self.consumer.stop()
            await self.feed.stop()
            await self.producer.stop()
            log.info("Matcher stopped")

    async def process_batch(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Match one batch, wait for every produce to be acknowledged, then commit."""
        self._batch_started = time.monotonic()
        try:
            await self._process_batch(batches)
        finally:
            self._batch_started = None

    async def _process_batch(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        started = time.perf_counter()
        revocations = self._revocations
        for tp, records in batches.items():
            self._committed.setdefault(tp, records[0].offset)

        self.index.prepare()
        now_ms = int(time.time() * 1000)
        pending: list[Awaitable[Any]] = []
        for tp, records in batches.items():
            binding = self.bindings[tp.topic]
            parser = self._parser(tp, binding)
            counters = self._source_counters(binding)
            for record in records:
                outgoing = self._process_record(record, binding, parser, counters, now_ms)
                if outgoing:
                    pending.extend(await self._send(outgoing))
        for tp, parser in self.parsers.items():
            counters = self._source_counters(self.bindings[tp.topic])
            pending.extend(await self._send(self._sightings(parser.expire(now_ms), counters, now_ms)))
        metrics.JOIN_PENDING.set(sum(parser.pending for parser in self.parsers.values()))
        if pending:
            await asyncio.gather(*pending)

        if self._revocations != revocations:
            # A rebalance dropped the parsers this batch fed, and the consumer
            # reads reassigned partitions again from their committed offsets.
            log.info("Partitions were revoked during the batch; it is read again instead of committed")
            self._rewind(batches)
            return

        offsets = {tp: self._commit_offset(tp, records[-1].offset + 1) for tp, records in batches.items()}
        await self.consumer.commit(offsets)
        self._committed.update(offsets)

        finished = time.perf_counter()
        metrics.BATCH_SECONDS.observe(finished - started)
        newest = max(records[-1].timestamp for records in batches.values())
        metrics.EVENT_DELAY_SECONDS.observe(max(0.0, time.time() - newest / 1000))
        self._publish_lag(batches)

    async def _expire_idle_joins(self) -> None:
        """Match joined messages whose window passed while their partition stayed quiet.

        Without this, a partial Postfix or Defender message would wait for the
        next record of its partition, however long that takes.
        """
        waiting = {tp: parser for tp, parser in self.parsers.items() if parser.pending}
        if not waiting:
            return
        now_ms = int(time.time() * 1000)
        try:
            futures: list[Awaitable[Any]] = []
            for tp, parser in waiting.items():
                counters = self._source_counters(self.bindings[tp.topic])
                futures.extend(await self._send(self._sightings(parser.expire(now_ms), counters, now_ms)))
            if not futures:
                return
            await asyncio.gather(*futures)
            assigned = self.consumer.assignment()
            offsets = {
                tp: self._commit_offset(tp, await self.consumer.position(tp)) for tp in waiting if tp in assigned
            }
            if offsets:
                await self.consumer.commit(offsets)
                self._committed.update(offsets)
        except KafkaError as error:
            # The expired messages are read again from the committed offset after a restart.
            log.warning(
                "Producing expired joined messages failed (%s); they are matched again on the next start", error
            )
        metrics.JOIN_PENDING.set(sum(parser.pending for parser in self.parsers.values()))

    def _parser(self, tp: TopicPartition, binding: InputBinding) -> StreamParser:
        parser = self.parsers.get(tp)
        if parser is None:
            parser = self.parsers[tp] = StreamParser(
                binding.format,
                self.rules,
                binding.source,
                join_window_ms=int(self.settings.join_window_seconds * 1000),
                prefilter=self.record_filter.may_match if self.record_filter else None,
                verify_every=self.settings.prefilter_verify_every,
            )
        return parser

    def _source_counters(self, binding: InputBinding) -> metrics.SourceCounters:
        source = binding.source.value
        counters = self._counters.get(source)
        if counters is None:
            counters = self._counters[source] = metrics.SourceCounters(source)
        return counters

    def _commit_offset(self, tp: TopicPartition, next_offset: int) -> int:
        """Never commit past a record still buffered by a join, so a restart reads it again."""
        oldest = self.parsers[tp].oldest_offset() if tp in self.parsers else None
        return next_offset if oldest is None else min(oldest, next_offset)

    def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Read again, from the last committed offset, every partition the unfinished batch touched.

        Joins may have completed or expired in that batch, so every parser
        starts over (keeping its header context) and is rebuilt by reading
        from the committed offsets, which never pass a record a join buffers.
        A partition no longer assigned is left to its new owner: seeking it
        would raise and stop this worker.
        """
        assigned = self.consumer.assignment()
        for tp in set(batches) | set(self.parsers):
            parser = self.parsers.pop(tp, None)
            if tp not in assigned:
                continue
            if parser is not None:
                self.parsers[tp] = StreamParser(
                    parser.fmt,
                    parser.rules,
                    parser.source,
                    parser.join_window_ms,
                    parser.max_pending,
                    parser.context,
                    prefilter=parser.prefilter,
                    verify_every=parser.verify_every,
                )
            offset = self._committed.get(tp)
            if offset is not None:
                self.consumer.seek(tp, offset)

    def forget_partitions(self, revoked: set[TopicPartition]) -> None:
        """Drop per-partition state of partitions another worker now owns."""
        if revoked:
            self._revocations += 1
        for tp in revoked:
            self.parsers.pop(tp, None)
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))

    def _publish_lag(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batches.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - (records[-1].offset + 1))
                metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def _process_record(
        self,
        record: ConsumerRecord,
        binding: InputBinding,
        parser: StreamParser,
        counters: metrics.SourceCounters,
        now_ms: int,
    ) -> list[OutgoingRecord]:
        """Parse and match one record; return its sightings, or its dead letter when it cannot be parsed.

        Runs without awaiting anything, so a record that yields nothing to
        send costs no coroutine.
        """
        counters.consumed.inc()
        ref = RecordRef(record.topic, record.partition, record.offset)
        skipped = parser.skipped
        try:
            observations = parser.parse(record.value, ref, now_ms)
        except MalformedRecordError as error:
            return [self._dead_letter(record, binding, counters, error.reason, str(error))]
        except Exception as error:  # noqa: BLE001 - a bug on one record must not stop the stream
            log.exception(
                "Internal error on %s[%d]@%d; sending it to the dead letter",
                record.topic,
                record.partition,
                record.offset,
            )
            return [self._dead_letter(record, binding, counters, "internal_error", repr(error))]
        if parser.skipped != skipped:
            counters.prefiltered.inc()
        outgoing = self._sightings(observations, counters, now_ms)
        if parser.verifying and outgoing:
            metrics.PREFILTER_MISSES.inc()
            log.error(
                "The pre-filter skipped %s[%d]@%d, but it yields %d sightings (produced all the same); "
                "set YOKOTEN_PREFILTER=false and report the record",
                record.topic,
                record.partition,
                record.offset,
                len(outgoing),
            )
        return outgoing

    def _sightings(
        self, observations: list[tuple[Observation, RecordRef]], counters: metrics.SourceCounters, now_ms: int
    ) -> list[OutgoingRecord]:
        """Match observations and return one sightings-topic record per sighting, counting matches."""
        outgoing = []
        for observation, ref in observations:
            for sighting in sightings_of(observation, ref, self.index, now_ms, self.allowlist):
                counters.matches(sighting["ioc"]["type"]).inc()
                if "suppressed_by" in sighting:
                    metrics.sightings_suppressed(sighting["suppressed_by"]).inc()
                outgoing.append(
                    OutgoingRecord(
                        self.settings.sightings_topic,
                        sighting["ioc"]["key"].encode("utf-8"),
                        orjson.dumps(sighting),
                        is_sighting=True,
                    )
                )
        return outgoing

    async def _send(self, outgoing: list[OutgoingRecord]) -> list[Awaitable[Any]]:
        """Hand records to the producer in order; return the futures of their acknowledgements."""
        futures = []
        for item in outgoing:
            futures.append(await self.producer.send(item.topic, key=item.key, value=item.value, headers=item.headers))
            if item.is_sighting:
                metrics.SIGHTINGS_PRODUCED.inc()
        return futures

    def _dead_letter(
        self,
        record: ConsumerRecord,
        binding: InputBinding,
        counters: metrics.SourceCounters,
        reason: str,
        message: str,
    ) -> OutgoingRecord:
        counters.rejected(reason).inc()
        self._rejections.warning(
            reason,
            "Dead-lettering %s[%d]@%d (%s): %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            message[:300],
        )
        headers = dead_letter_headers(record, reason, message, binding.format)
        value = record.value
        if value is not None and len(value) > MAX_DEAD_LETTER_BYTES:
            # The original no longer fits one produce request next to its headers; the headers
            # still point at it in the input topic, where it stays until retention removes it.
            headers.append(("yokoten.truncated_from", str(len(value)).encode("ascii")))
            value = value[:MAX_DEAD_LETTER_BYTES]
        return OutgoingRecord(self.settings.dead_letter_topic, record.key, value, headers)


class _PartitionListener(ConsumerRebalanceListener):
    """Drops per-partition join state and lag series when partitions move to another worker."""

    def __init__(self, worker: MatcherWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("Partitions revoked: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(revoked)) or "none")
        self.worker.forget_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "Partitions assigned: %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none"
        )


async def run_matcher(settings: Settings) -> int:
    """Run one matcher worker until SIGTERM or SIGINT.

    A stop request lets the current batch finish and commit; after
    ``shutdown_timeout_s`` the batch is abandoned uncommitted, so its records
    are matched again by the next owner of the partitions.
    """
    worker = MatcherWorker(settings)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(worker.run())

    def stop() -> None:
        worker.request_stop()
        loop.call_later(settings.shutdown_timeout_s, task.cancel)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    runner = None
    if settings.metrics_port:
        runner = await start_http_server(settings.metrics_host, settings.metrics_port, worker.is_ready)
    try:
        await task
    except asyncio.CancelledError:
        log.warning("Matcher did not stop within %.0f s; the last batch stays uncommitted", settings.shutdown_timeout_s)
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0
