"""Errors raised by detectors.

DetectorError
 ├── MalformedRecordError   an input record cannot be turned into an observation
 └── FeedError              an IOC feed record or file cannot be used
"""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error raised by detectors/.

    ``reason`` is a short, stable, low-cardinality class of the failure (used
    as a metric label and a dead-letter header); the message is for humans.
    """

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None, source: str | None = None) -> None:
        self.reason = reason or self.reason
        self.source = source
        super().__init__(f"{message} ({source})" if source else message)


class MalformedRecordError(DetectorError):
    """An input record is not valid for the format it was read as."""

    reason = "malformed"


class FeedError(DetectorError):
    """An IOC feed file or record cannot be used."""

    reason = "feed"
