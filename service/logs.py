"""Logging set-up: plain text by default, JSON lines on request, and rate-limited repeats."""

from __future__ import annotations

import logging
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.pid": record.process,
        }
        if record.exc_info:
            entry["error.stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class RepeatFilter(logging.Filter):
    """Passes a library message template at most once per ``interval_s``, with a count of the dropped repeats.

    aiokafka logs every failed reconnect, many times a second while a broker
    is down; one line per template and interval says the same.
    """

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), interval_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} similar messages suppressed)"
        return True


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send logs to standard error as text or JSON lines (``fmt`` is ``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimitedLog:
    """Logs the first ``burst`` messages of a kind per ``interval_s``, then one summary of the rest.

    Used for errors that one bad producer can repeat millions of times, such
    as malformed records: every record is still counted in metrics.
    """

    def __init__(self, logger: logging.Logger, burst: int = 10, interval_s: float = 60.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval_s = interval_s
        self._window_start: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        start = self._window_start.get(kind)
        if start is None or now - start >= self.interval_s:
            suppressed = self._counts.get(kind, 0) - self.burst
            if suppressed > 0:
                self.logger.warning(
                    "%d more %s messages suppressed in the last %.0f s", suppressed, kind, now - (start or now)
                )
            self._window_start[kind] = now
            self._counts[kind] = 0
        self._counts[kind] += 1
        if self._counts[kind] <= self.burst:
            self.logger.warning(message, *args)
