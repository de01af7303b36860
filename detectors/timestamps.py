"""Event time parsing: every adapter turns its clock into epoch milliseconds (UTC)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

# Year 9999 in epoch milliseconds: larger numbers are not times.
MAX_EPOCH_MS = 253_402_300_799_999


def parse_timestamp(value: object) -> int | None:
    """Return epoch milliseconds for an ISO-8601 string or an epoch number.

    Strings without a zone are read as UTC: Sysmon's ``UtcTime`` and EVTX
    ``SystemTime`` are UTC, and local collector clocks (NXLog ``EventTime``)
    are never passed here. Numbers above 10^11 are taken as milliseconds,
    smaller ones as seconds. Unparseable values return None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        if not math.isfinite(number) or abs(number) > MAX_EPOCH_MS:
            return None
        return int(number if number > 1e11 else number * 1000)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.replace(".", "", 1).isdigit():
        try:
            return parse_timestamp(float(text))
        except (OverflowError, ValueError):
            return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def format_timestamp(epoch_ms: int) -> str:
    """Return the ISO-8601 UTC form with milliseconds and a ``Z`` suffix."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
