"""Command-line producers and readers: push an IOC feed, produce log lines, print alerts."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.exceptions import FeedError
from detectors.ioc import resolve_type
from service.config import Settings
from service.feed_files import read_feed

log = logging.getLogger(__name__)


async def push_feed(settings: Settings, path: Path, fmt: str, source: str | None) -> int:
    """Parse a feed file and produce one record per IOC, keyed ``type:value``.

    Returns 0 when every IOC was acknowledged, 1 when the feed had rejected
    lines (the good ones are still produced), 2 when the file is unreadable.
    """
    try:
        result = read_feed(path, fmt, source)
    except OSError as error:
        print(f"yokoten ioc push: cannot read {path}: {error}", file=sys.stderr)
        return 2
    for error in result.errors:
        print(f"yokoten ioc push: {path}:{error.line}: rejected ({error.reason}): {error.message}", file=sys.stderr)
    producer = AIOKafkaProducer(acks="all", **settings.kafka_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        futures = [
            await producer.send(settings.ioc_topic, key=ioc.key.encode("utf-8"), value=orjson.dumps(ioc.to_record()))
            for ioc in result.iocs
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    print(
        f"yokoten ioc push: {len(result.iocs)} IOCs produced to {settings.ioc_topic}, {len(result.errors)} lines rejected",
        file=sys.stderr,
    )
    return 1 if result.errors else 0


async def remove_iocs(settings: Settings, values: list[str], type_name: str | None) -> int:
    """Produce a tombstone for each IOC value; return 2 when a value cannot be typed."""
    keys = []
    for value in values:
        try:
            kind, canonical = resolve_type(type_name, value)
        except FeedError as error:
            print(f"yokoten ioc remove: {error}", file=sys.stderr)
            return 2
        keys.append(f"{kind.value}:{canonical}")
    producer = AIOKafkaProducer(acks="all", **settings.kafka_options())  # type: ignore[arg-type]
    await producer.start()
    try:
        await asyncio.gather(
            *[await producer.send(settings.ioc_topic, key=key.encode("utf-8"), value=None) for key in keys]
        )
    finally:
        await producer.stop()
    for key in keys:
        print(f"yokoten ioc remove: tombstone for {key} produced to {settings.ioc_topic}", file=sys.stderr)
    return 0


async def produce_lines(settings: Settings, topic: str, paths: list[Path], key: str | None = None) -> int:
    """Produce every non-blank line of ``paths`` to ``topic`` as one record each.

    Returns 1 when the broker rejected a record (for example a record without
    a key on a compacted topic), after naming the error.
    """
    producer = AIOKafkaProducer(acks="all", linger_ms=10, **settings.kafka_options())  # type: ignore[arg-type]
    await producer.start()
    futures = []
    try:
        for path in paths:
            with path.open("rb") as handle:
                for line in handle:
                    value = line.rstrip(b"\r\n")
                    if value.strip():
                        futures.append(
                            await producer.send(topic, value=value, key=key.encode("utf-8") if key else None)
                        )
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        print(
            f"yokoten produce: {len(failures)} of {len(futures)} records rejected by {topic}: {failures[0]!r}; "
            "a compacted topic needs --key",
            file=sys.stderr,
        )
        return 1
    print(f"yokoten produce: {len(futures)} records produced to {topic}", file=sys.stderr)
    return 0


async def print_alerts(settings: Settings, idle_timeout: float, expect: int) -> int:
    """Print alerts from the start of the alerts topic as JSON lines until idle or ``expect`` reached."""
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings.kafka_options(),  # type: ignore[arg-type]
    )
    await consumer.start()
    printed = 0
    last_alert = time.monotonic()
    try:
        while time.monotonic() - last_alert < idle_timeout and not (expect and printed >= expect):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    sys.stdout.buffer.write(record.value + b"\n")
                    printed += 1
                    last_alert = time.monotonic()
            sys.stdout.flush()
    finally:
        await consumer.stop()
    return 0
