"""Source adapters: raw record bytes in, one normalised observation out.

``parse_record`` is the single entry point used by the Kafka matcher and by
the offline replay, so both read a record the same way. Formats:

========  ==========================================  ===========
name      records                                     source kind
========  ==========================================  ===========
ecs       ECS JSON documents                          from event.category or the binding
sysmon    Windows event JSON (Sysmon, Security, ...)  edr
squid     Squid access.log lines                      proxy
auto      any of the above, recognised per record     as above
========  ==========================================  ===========
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.adapters import ecs, squid, windows
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observation import Observation, SourceKind

FORMATS = ("auto", ecs.FORMAT, windows.FORMAT, squid.FORMAT)
MAX_RECORD_BYTES = 4 * 1024 * 1024


def _decode_json(raw: bytes) -> dict[str, Any]:
    """Decode one JSON object.

    The error reason is ``encoding`` for bytes that are not UTF-8, ``truncated``
    for a record that ends inside the document and ``json`` for other syntax errors.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            raise MalformedRecordError(f"record is not UTF-8 text: {decode_error}", reason="encoding") from None
        if error.pos >= len(raw.rstrip()):
            raise MalformedRecordError(
                f"JSON record of {len(raw)} bytes ends before the document is complete: {error}", reason="truncated"
            ) from None
        raise MalformedRecordError(f"invalid JSON: {error}", reason="json") from None
    if not isinstance(document, dict):
        raise MalformedRecordError(
            f"JSON value is {type(document).__name__}, expected an object", reason="field_type"
        )
    return document


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise MalformedRecordError(f"record is not UTF-8 text: {error}", reason="encoding") from None


def _adapt_json(document: dict[str, Any], fmt: str, rules: IdentityRules, source: SourceKind | None) -> Observation:
    if fmt == windows.FORMAT or (fmt == "auto" and windows.is_windows_event(document)):
        return windows.adapt(document, rules)
    if fmt == ecs.FORMAT or (fmt == "auto" and ecs.is_ecs_document(document)):
        return ecs.adapt(document, rules, source)
    raise MalformedRecordError(
        "JSON record matches no known format (tried sysmon, ecs); set the format of the topic or file explicitly",
        reason="unknown_format",
    )


def parse_record(raw: bytes, fmt: str, rules: IdentityRules, source: SourceKind | None = None) -> Observation:
    """Parse one record read as ``fmt``; raise MalformedRecordError naming why it failed.

    ``source`` is the source kind bound to the topic or file; adapters whose
    format fixes the kind ignore it.
    """
    if raw is None:
        raise MalformedRecordError("record has no value (null)", reason="empty")
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecordError(
            f"record of {len(raw)} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes", reason="too_large"
        )
    if fmt not in FORMATS:
        raise MalformedRecordError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", reason="unknown_format")
    stripped = raw.lstrip()
    if not stripped:
        raise MalformedRecordError("record is empty", reason="empty")
    if fmt == squid.FORMAT or (fmt == "auto" and not stripped.startswith((b"{", b"["))):
        text = _decode_text(raw)
        if fmt == "auto" and not squid.is_squid_line(text):
            raise MalformedRecordError(
                f"text record matches no known format (tried squid): {text[:120]!r}", reason="unknown_format"
            )
        return squid.adapt(text, rules)
    try:
        return _adapt_json(_decode_json(raw), fmt, rules, source)
    except RecursionError:
        raise MalformedRecordError("JSON nested too deeply", reason="too_deep") from None
