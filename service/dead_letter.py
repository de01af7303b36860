"""Dead-letter records: the original key and value, with why and where in the headers."""

from __future__ import annotations

import time

from aiokafka import ConsumerRecord

# Kafka header values are bytes; long error texts are cut so a header stays small.
MAX_ERROR_BYTES = 1024


def dead_letter_headers(record: ConsumerRecord, reason: str, message: str, fmt: str) -> list[tuple[str, bytes]]:
    """Return the headers that let an operator find, understand and replay a rejected record."""
    return [
        ("yokoten.reason", reason.encode("utf-8")),
        ("yokoten.error", message.encode("utf-8", errors="replace")[:MAX_ERROR_BYTES]),
        ("yokoten.source.topic", record.topic.encode("utf-8")),
        ("yokoten.source.partition", str(record.partition).encode("ascii")),
        ("yokoten.source.offset", str(record.offset).encode("ascii")),
        ("yokoten.source.timestamp", str(record.timestamp).encode("ascii")),
        ("yokoten.format", fmt.encode("utf-8")),
        ("yokoten.rejected_at", str(int(time.time() * 1000)).encode("ascii")),
    ]
