"""MISP events: ``{"Event": {...}}`` files, REST search responses and feeds with a ``manifest.json``.

An event's ``Attribute`` list and the ``Attribute`` lists of its ``Object``
entries are read alike. The functions take text or parsed JSON and never
open files, so a caller that loads a MISP feed directory reads
``manifest.json`` and the ``<uuid>.json`` files and passes their text to
``parse_misp_feed``.

Which attributes load
---------------------
* ``to_ids``: MISP's flag for "fit for automatic detection". An attribute
  without it is context (a report link, a comment, the address of a public
  resolver the malware also contacted), so it is skipped and counted in
  ``skipped``. Pass ``include_non_ids=True`` to load those attributes too.
* Deleted attributes, attributes of deleted objects and ``uri`` attributes
  (a path without a host, which the index cannot match) are skipped.
* Any other type that ``ATTRIBUTE_TYPES`` and ``COMPOSITE_TYPES`` do not
  map is an ``unsupported_type`` error when the attribute has ``to_ids``,
  because the producer meant it for detection. Without ``to_ids``, such an
  attribute is skipped.
* A composite type (``domain|ip``, ``ip-dst|port``, ``filename|sha256``,
  ...) is split at its one pipe. Each observable part becomes its own typed
  IOC. A port or file name part goes into ``context["port"]`` or
  ``context["filename"]``, so no IOC value contains a pipe.

Metadata: the event ``info`` is the IOC description and its ``uuid`` is
``context["misp_event_uuid"]``. Event and attribute tags become IOC tags,
and a ``tlp:<level>`` tag sets the TLP (the attribute's tag wins over the
event's). ``threat_level_id`` maps 1 to high, 2 to medium, 3 to low and 4
(undefined) to medium. The attribute ``timestamp`` is ``modified``, and
``comment`` goes into the context.

``FeedRecordError.line`` is the 1-based position of the attribute in the
input, counting each event's ``Attribute`` list and then its objects'
attributes, event by event. It is 0 for an error about a whole event or input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.exceptions import FeedError
from detectors.feeds import (
    MAX_VALUE_LENGTH,
    FeedRecordError,
    FeedResult,
    build_result,
    load_json,
    record_error,
    shorten,
)
from detectors.ioc import Ioc, ioc_from_record
from detectors.observables import ObservableType
from detectors.timestamps import parse_timestamp

# MISP attribute types that hold one observable, mapped to detectors.ioc.TYPE_ALIASES names.
ATTRIBUTE_TYPES: dict[str, str] = {
    "md5": ObservableType.MD5.value,
    "sha1": ObservableType.SHA1.value,
    "sha256": ObservableType.SHA256.value,
    "sha512": ObservableType.SHA512.value,
    "imphash": ObservableType.IMPHASH.value,
    "ip-src": "ip",
    "ip-dst": "ip",
    "domain": ObservableType.DOMAIN.value,
    "hostname": ObservableType.DOMAIN.value,
    "url": ObservableType.URL.value,
    "email": ObservableType.EMAIL.value,
    "email-src": ObservableType.EMAIL.value,
    "email-dst": ObservableType.EMAIL.value,
    "filename": ObservableType.FILE_NAME.value,
}
# Context parts of composite types: they describe the observable next to them.
PORT = "port"
FILENAME = "filename"
# Composite types: the role of the part before and after the pipe. A role is
# an IOC type name, or PORT / FILENAME for a part kept in the context.
COMPOSITE_TYPES: dict[str, tuple[str, str]] = {
    "ip-dst|port": ("ip", PORT),
    "ip-src|port": ("ip", PORT),
    "hostname|port": (ObservableType.DOMAIN.value, PORT),
    "domain|ip": (ObservableType.DOMAIN.value, "ip"),
    "filename|md5": (FILENAME, ObservableType.MD5.value),
    "filename|sha1": (FILENAME, ObservableType.SHA1.value),
    "filename|sha256": (FILENAME, ObservableType.SHA256.value),
    "filename|sha512": (FILENAME, ObservableType.SHA512.value),
    "filename|imphash": (FILENAME, ObservableType.IMPHASH.value),
}
# Types skipped even with to_ids: a MISP "uri" is a path without a host.
SKIPPED_TYPES = frozenset({"uri"})
THREAT_LEVELS = {"1": "high", "2": "medium", "3": "low", "4": "medium"}
TLP_LEVELS = frozenset({"clear", "white", "green", "amber", "amber+strict", "red"})
# A manifest key is an event UUID: 36 characters with hyphens.
UUID_LENGTH = 36


@dataclass(slots=True)
class _EventMetadata:
    """The fields of one event that every IOC of it carries."""

    uuid: str
    info: str | None
    severity: str
    tags: list[str]
    tlp: str | None
    org: str | None


@dataclass(slots=True)
class _Collector:
    """The IOCs, errors and skip count of one parse, and the running attribute position."""

    source: str
    include_non_ids: bool
    iocs: list[Ioc] = field(default_factory=list)
    errors: list[FeedRecordError] = field(default_factory=list)
    skipped: int = 0
    position: int = 0

    def result(self) -> FeedResult:
        return build_result(self.iocs, self.errors, self.skipped)


def looks_like_misp(document: object) -> bool:
    """Return True for a parsed MISP event, search response, event list or feed manifest."""
    if isinstance(document, dict):
        if isinstance(document.get("Event"), dict):
            return True
        response = document.get("response")
        if isinstance(response, list) and response and all(_has_event(item) for item in response):
            return True
        return is_manifest(document)
    return isinstance(document, list) and bool(document) and all(_has_event(item) for item in document)


def _has_event(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("Event"), dict)


def is_manifest(document: object) -> bool:
    """Return True for a MISP feed manifest: event UUIDs mapped to objects with an ``info``."""
    if not isinstance(document, dict) or not document:
        return False
    return all(
        isinstance(key, str) and len(key) == UUID_LENGTH and key.count("-") == 4
        and isinstance(value, dict) and "info" in value
        for key, value in document.items()
    )


def parse_misp(
    data: str | Mapping[str, Any] | list[Any],
    *,
    source: str | None = None,
    name: str = "<feed>",
    include_non_ids: bool = False,
) -> FeedResult:
    """Parse one MISP event file, a REST search response or a list of events.

    ``source`` names the feed on every IOC and defaults to ``name``. Errors
    are returned, not raised. A manifest is an error here, because its events
    are separate files: pass them to ``parse_misp_feed``.
    """
    collector = _Collector(str(source or name), include_non_ids)
    document, error = load_json(data, name)
    if error is not None:
        collector.errors.append(error)
        return collector.result()
    try:
        events = _events(document, name)
    except FeedError as failure:
        collector.errors.append(record_error(0, failure.reason, str(failure)))
        return collector.result()
    for event in events:
        _read_event(event, collector)
    return collector.result()


def parse_misp_feed(
    manifest: str | Mapping[str, Any],
    events: Mapping[str, str | Mapping[str, Any]],
    *,
    source: str | None = None,
    name: str = "manifest.json",
    include_non_ids: bool = False,
) -> FeedResult:
    """Parse a MISP feed: its ``manifest.json`` and a mapping of event UUID to event text.

    Events are read in manifest order. An event listed in the manifest but
    missing from ``events`` is one ``missing_event`` error, and an event
    file that is not a MISP event is one error naming its UUID. Entries of
    ``events`` that the manifest does not list are ignored, as MISP does.
    """
    collector = _Collector(str(source or name), include_non_ids)
    document, error = load_json(manifest, name)
    if error is not None:
        collector.errors.append(error)
        return collector.result()
    if not isinstance(document, dict) or not is_manifest(document):
        message = (
            f"{name} is not a MISP feed manifest: expected a JSON object of event UUIDs mapped to objects with 'info'"
        )
        collector.errors.append(record_error(0, "input", message))
        return collector.result()
    for uuid, entry in document.items():
        _read_feed_event(uuid, entry, events.get(uuid), name, collector)
    return collector.result()


def _read_feed_event(uuid: str, entry: dict[str, Any], text: object, name: str, collector: _Collector) -> None:
    """Read the event file of one manifest entry into ``collector``, or record why it cannot be read."""
    if text is None:
        info = shorten(str(entry.get("info")))
        message = f"event {uuid} ({info}) is listed in {name} but its event file was not given"
        collector.errors.append(record_error(0, "missing_event", message))
        return
    event_document, error = load_json(text, f"event {uuid}")
    if error is not None:
        collector.errors.append(record_error(0, error.reason, error.message))
        return
    try:
        event_list = _events(event_document, f"event file {uuid}.json")
    except FeedError as failure:
        collector.errors.append(record_error(0, failure.reason, str(failure)))
        return
    for event in event_list:
        _read_event(event, collector)




def _events(document: object, name: str) -> list[dict[str, Any]]:
    """Return the event objects of an event file, a search response or a list, or raise FeedError."""
    if isinstance(document, dict):
        if isinstance(document.get("Event"), dict):
            return [document["Event"]]
        if isinstance(document.get("response"), list):
            return [_event_of(item, name) for item in document["response"]]
        if is_manifest(document):
            raise FeedError(
                f"{name} is a MISP feed manifest; read its event files and call parse_misp_feed", reason="input"
            )
        if isinstance(document.get("Attribute"), list) or isinstance(document.get("Object"), list):
            return [document]
    if isinstance(document, list):
        return [_event_of(item, name) for item in document]
    raise FeedError(f"{name} is not a MISP event: expected a JSON object with an 'Event' object", reason="input")


def _event_of(item: object, name: str) -> dict[str, Any]:
    if isinstance(item, dict) and isinstance(item.get("Event"), dict):
        return item["Event"]
    raise FeedError(f"an entry of {name} is {shorten(str(item), 60)}, not an object with an 'Event'", reason="input")


def _read_event(event: dict[str, Any], collector: _Collector) -> None:
    metadata = _event_metadata(event)
    for attribute in _list(event.get("Attribute")):
        collector.position += 1
        _read_attribute(attribute, metadata, None, collector)
    for obj in _list(event.get("Object")):
        obj_deleted = isinstance(obj, dict) and _flag(obj.get("deleted"))
        for attribute in _list(obj.get("Attribute") if isinstance(obj, dict) else None):
            collector.position += 1
            if obj_deleted:
                collector.skipped += 1
                continue
            _read_attribute(attribute, metadata, obj, collector)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _flag(value: object) -> bool:
    """Read a MISP boolean, which older exports write as "1" or "0"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return value is True or (isinstance(value, int) and value == 1)


def _event_metadata(event: dict[str, Any]) -> _EventMetadata:
    tags = tag_names(event.get("Tag"))
    org = event.get("Orgc")
    return _EventMetadata(
        uuid=str(event.get("uuid") or "<no uuid>"),
        info=event.get("info") if isinstance(event.get("info"), str) else None,
        severity=THREAT_LEVELS.get(str(event.get("threat_level_id")).strip(), "medium"),
        tags=tags,
        tlp=tlp_of(tags),
        org=org.get("name") if isinstance(org, dict) and isinstance(org.get("name"), str) else None,
    )


def tag_names(tags: object) -> list[str]:
    """Return the names of a MISP ``Tag`` list, ignoring entries without a string name."""
    names = [tag.get("name") for tag in _list(tags) if isinstance(tag, dict)]
    return [name.strip() for name in names if isinstance(name, str) and name.strip()]


def tlp_of(tags: list[str]) -> str | None:
    """Return the level of the last ``tlp:<level>`` tag, or None."""
    levels = [tag.split(":", 1)[1].strip().lower() for tag in tags if tag.lower().startswith("tlp:")]
    known = [level for level in levels if level in TLP_LEVELS]
    return known[-1] if known else None


def _read_attribute(
    attribute: object, metadata: _EventMetadata, obj: dict[str, Any] | None, collector: _Collector
) -> None:
    """Append the IOCs of one attribute, count it as skipped, or append an error naming it."""
    position = collector.position
    if not isinstance(attribute, dict):
        message = f"attribute {position} of event {metadata.uuid} is {type(attribute).__name__}, not a JSON object"
        collector.errors.append(record_error(position, "input", message))
        return
    label = f"event {metadata.uuid} attribute {attribute.get('uuid') or position}"
    try:
        iocs = attribute_iocs(attribute, metadata, obj, collector.source, collector.include_non_ids)
    except FeedError as error:
        collector.errors.append(record_error(position, error.reason, f"{label}: {error}"))
        return
    except Exception as error:  # A normaliser bug costs one attribute, and the message names it.
        message = f"{label} failed with {type(error).__name__}: {error}; report this as a bug"
        collector.errors.append(record_error(position, "internal", message))
        return
    if iocs is None:
        collector.skipped += 1
    else:
        collector.iocs.extend(iocs)


def attribute_iocs(
    attribute: dict[str, Any],
    metadata: _EventMetadata,
    obj: dict[str, Any] | None,
    source: str,
    include_non_ids: bool,
) -> list[Ioc] | None:
    """Return the IOCs of one attribute, or None when it is skipped. Raise FeedError when it is unusable."""
    to_ids = _flag(attribute.get("to_ids"))
    kind = attribute.get("type")
    kind = kind.strip().lower() if isinstance(kind, str) else ""
    if _flag(attribute.get("deleted")) or kind in SKIPPED_TYPES or not (to_ids or include_non_ids):
        return None
    if kind not in ATTRIBUTE_TYPES and kind not in COMPOSITE_TYPES:
        if not to_ids:
            return None
        written = shorten(kind or str(attribute.get("type")))
        raise FeedError(f"type {written} has no matching IOC type", reason="unsupported_type")
    value = attribute.get("value")
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"{kind} attribute has no value", reason="missing_value")
    if len(value) > MAX_VALUE_LENGTH:
        raise FeedError(f"value {shorten(value)} is longer than {MAX_VALUE_LENGTH} characters", reason="too_long")
    record = _record(attribute, metadata, obj, source)
    if kind in ATTRIBUTE_TYPES:
        return [_ioc(record, ATTRIBUTE_TYPES[kind], value.strip(), {})]
    return _composite_iocs(record, kind, value)


def _record(
    attribute: dict[str, Any], metadata: _EventMetadata, obj: dict[str, Any] | None, source: str
) -> dict[str, Any]:
    """Return the IOC record fields of one attribute, without type and value."""
    attribute_tags = tag_names(attribute.get("Tag"))
    context: dict[str, Any] = {"misp_event_uuid": metadata.uuid}
    if isinstance(attribute.get("uuid"), str):
        context["misp_attribute_uuid"] = attribute["uuid"]
    for key, name in (("category", "misp_category"), ("comment", "comment")):
        text = attribute.get(key)
        if isinstance(text, str) and text.strip():
            context[name] = text.strip()
    if obj is not None and isinstance(obj.get("name"), str):
        context["misp_object"] = obj["name"]
    if metadata.org:
        context["misp_org"] = metadata.org
    return {
        "source": source,
        "severity": metadata.severity,
        "tags": list(dict.fromkeys(metadata.tags + attribute_tags)),
        "tlp": tlp_of(attribute_tags) or metadata.tlp,
        "modified": _timestamp(attribute.get("timestamp")),
        "description": metadata.info,
        "context": context,
    }


def _timestamp(value: object) -> str | int | None:
    """Return the attribute timestamp (epoch seconds, as MISP writes it) or raise FeedError naming it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FeedError(f"timestamp {shorten(repr(value))} is not epoch seconds", reason="field_type")
    parsed = parse_timestamp(value)
    if parsed is None:
        raise FeedError(f"timestamp {shorten(str(value))} is not epoch seconds or ISO-8601", reason="field_type")
    return value


def _composite_iocs(record: dict[str, Any], kind: str, value: str) -> list[Ioc]:
    """Split a composite value at its pipe into typed IOCs, with port and file name parts as context."""
    parts = [part.strip() for part in value.split("|")]
    if len(parts) != 2 or not all(parts):
        raise FeedError(f"{kind} value {shorten(value)} is not two parts joined by one '|'", reason="value")
    roles = COMPOSITE_TYPES[kind]
    extra: dict[str, Any] = {}
    for role, part in zip(roles, parts, strict=True):
        if role == PORT:
            extra[PORT] = _port(part, kind)
        elif role == FILENAME:
            extra[FILENAME] = part
    observables = [(role, part) for role, part in zip(roles, parts, strict=True) if role not in (PORT, FILENAME)]
    iocs = [_ioc(record, role, part, extra) for role, part in observables]
    if len(iocs) == 2:  # domain|ip: each IOC names the other in its context.
        iocs[0].context["ip"] = iocs[1].value
        iocs[1].context["domain"] = iocs[0].value
    return iocs


def _port(text: str, kind: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= 65535:
        raise FeedError(f"{kind} port {shorten(text)} is not a number from 1 to 65535", reason="value")
    return int(text)


def _ioc(record: dict[str, Any], type_name: str, value: str, extra: dict[str, Any]) -> Ioc:
    ioc = ioc_from_record({**record, "type": type_name, "value": value, "context": {**record["context"], **extra}})
    if value != ioc.value:
        ioc.context["raw_value"] = value
    return ioc

