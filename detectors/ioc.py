"""The IOC record: one indicator with its metadata, as carried on the IOC topic.

The topic key is ``type:value`` with the normalised value, so compaction
keeps the latest record per indicator and a tombstone (null value) removes it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from detectors.exceptions import FeedError
from detectors.observables import (
    HASH_TYPES,
    ObservableType,
    detect_type,
    is_canonical,
    is_refanged,
    normalize,
    refang,
    threat_indicator_type,
)
from detectors.timestamps import format_timestamp, parse_timestamp

SEVERITIES = ("low", "medium", "high", "critical")
# A /8 contains 16.7 million IPv4 addresses, so anything broader is a feed error, not an indicator.
MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 16

# Feed type names in common use, mapped to the internal observable type.
# None means "infer from the value" (plain "ip" or "hash" columns).
TYPE_ALIASES: dict[str, ObservableType | None] = {
    **{kind.value: kind for kind in ObservableType},
    "domain": ObservableType.DOMAIN,
    "hostname": ObservableType.DOMAIN,
    "fqdn": ObservableType.DOMAIN,
    "ip": None,
    "ip-dst": None,
    "ip-src": None,
    "ipv4": ObservableType.IPV4,
    "ipv6": ObservableType.IPV6,
    "cidr": None,
    "hash": None,
    "file": None,
    "sha-1": ObservableType.SHA1,
    "sha-256": ObservableType.SHA256,
    "sha-512": ObservableType.SHA512,
    "email": ObservableType.EMAIL,
    "email-src": ObservableType.EMAIL,
    "email-dst": ObservableType.EMAIL,
    "user": ObservableType.USER,
    "account": ObservableType.USER,
    "filename": ObservableType.FILE_NAME,
    "uri": ObservableType.URL,
    "link": ObservableType.URL,
}
# Type names exactly as Ioc.to_record writes them, which resolve_type checks first.
_OWN_TYPE_NAMES = {kind.value: kind for kind in ObservableType}
_SEVERITY_BY_NAME = {name: name for name in SEVERITIES}


class _ReadOnlyEmptyList(list):  # type: ignore[type-arg]
    """The empty ``tags`` list shared by IOCs whose record has no tags."""

    __slots__ = ()

    def _reject(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the empty tags list is shared by many IOCs and is read-only, so assign a new list to ioc.tags")

    append = extend = insert = remove = pop = clear = sort = reverse = _reject  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _reject  # type: ignore[assignment]


class _ReadOnlyEmptyDict(dict):  # type: ignore[type-arg]
    """The empty ``context`` dict shared by IOCs whose record has no context."""

    __slots__ = ()

    def _reject(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the empty context dict is shared by many IOCs and is read-only, so assign a new dict to ioc.context")

    update = setdefault = pop = popitem = clear = _reject  # type: ignore[assignment]
    __setitem__ = __delitem__ = __ior__ = _reject  # type: ignore[assignment]


_NO_TAGS: list[str] = _ReadOnlyEmptyList()
_NO_CONTEXT: dict[str, Any] = _ReadOnlyEmptyDict()


@dataclass(slots=True)
class Ioc:
    """One indicator of compromise.

    Times are epoch milliseconds. ``modified`` orders updates of the same
    indicator: an update older than the stored one is ignored.

    ``ioc_from_record`` gives an IOC whose record has no tags or no context
    one shared, read-only empty ``tags`` list or ``context`` dict, because a
    million IOCs would otherwise hold a million empty containers. Changing
    either raises TypeError, so assign a new list or dict instead.
    """

    type: ObservableType
    value: str
    source: str = "unknown"
    confidence: int | None = None
    severity: str = "medium"
    tags: list[str] = field(default_factory=list)
    tlp: str | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    modified: int | None = None
    revoked: bool = False
    description: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The topic key, ``type:value``."""
        return f"{self.type.value}:{self.value}"

    @property
    def stix_type(self) -> str:
        return threat_indicator_type(self.type)

    def is_active(self, now_ms: int) -> bool:
        """Return False once the IOC is revoked or past ``valid_until``."""
        return not self.revoked and (self.valid_until is None or now_ms < self.valid_until)

    def to_record(self) -> dict[str, Any]:
        """Return the JSON object published on the IOC topic."""
        record: dict[str, Any] = {"type": self.type.value, "value": self.value, "source": self.source, "severity": self.severity}
        optional = {
            "confidence": self.confidence,
            "tags": self.tags or None,
            "tlp": self.tlp,
            "valid_from": format_timestamp(self.valid_from) if self.valid_from is not None else None,
            "valid_until": format_timestamp(self.valid_until) if self.valid_until is not None else None,
            "modified": format_timestamp(self.modified) if self.modified is not None else None,
            "revoked": self.revoked or None,
            "description": self.description,
            "context": self.context or None,
        }
        record.update({name: value for name, value in optional.items() if value is not None})
        return record


def resolve_type(type_name: str | None, raw_value: str) -> tuple[ObservableType, str]:
    """Normalise ``raw_value`` as the named type, or detect the type when unnamed.

    Raises FeedError naming the value and type when it cannot be used.
    """
    kind = _OWN_TYPE_NAMES.get(type_name) if type(type_name) is str else None
    if kind is not None and type(raw_value) is str:
        # Records written by Ioc.to_record name an ObservableType and are
        # canonical already. Both shortcuts return what the general path
        # returns: a canonical value is unchanged by refang and normalize,
        # and is_refanged proves that refang would return raw_value itself.
        if is_canonical(kind, raw_value):
            return kind, raw_value
        if is_refanged(raw_value):
            return _normalize_as(kind, raw_value, raw_value)
    return resolve_any_type(type_name, raw_value)


def resolve_any_type(type_name: str | None, raw_value: str) -> tuple[ObservableType, str]:
    """Resolve like ``resolve_type`` but always refang and normalise, with no shortcut for canonical values."""
    value = refang(raw_value)
    alias = type_name.strip().lower() if isinstance(type_name, str) and type_name.strip() else None
    if alias is not None and alias not in TYPE_ALIASES:
        raise FeedError(f"unknown IOC type {type_name!r} for value {raw_value[:200]!r}; use one of {', '.join(t.value for t in ObservableType)}", reason="type")
    kind = TYPE_ALIASES.get(alias) if alias else None
    if kind is None:
        detected = detect_type(value)
        if detected is None:
            raise FeedError(f"cannot recognise the type of IOC value {raw_value[:200]!r}", reason="value")
        if alias in ("hash", "file") and detected[0] not in HASH_TYPES:
            raise FeedError(f"IOC value {raw_value[:200]!r} of type {alias!r} is not a hex digest", reason="value")
        if alias in ("ip", "ip-dst", "ip-src", "cidr") and detected[0] not in (ObservableType.IPV4, ObservableType.IPV6):
            raise FeedError(f"IOC value {raw_value[:200]!r} of type {alias!r} is not an IP address or CIDR", reason="value")
        _check_prefix(detected)
        return detected
    return _normalize_as(kind, value, raw_value)


def _normalize_as(kind: ObservableType, value: str, raw_value: str) -> tuple[ObservableType, str]:
    """Normalise the refanged ``value`` as ``kind``, quoting ``raw_value`` (the value as written) in a FeedError."""
    canonical = normalize(kind, value)
    if canonical is None:
        raise FeedError(f"IOC value {raw_value[:200]!r} is not a valid {kind.value}", reason="value")
    _check_prefix((kind, canonical))
    return kind, canonical


def _check_prefix(resolved: tuple[ObservableType, str]) -> None:
    """Reject CIDR IOCs so broad that they would match a large part of all traffic."""
    kind, value = resolved
    if kind not in (ObservableType.IPV4, ObservableType.IPV6) or "/" not in value:
        return
    prefix = int(value.rsplit("/", 1)[1])
    minimum = MIN_IPV4_PREFIX if kind is ObservableType.IPV4 else MIN_IPV6_PREFIX
    if prefix < minimum:
        raise FeedError(f"CIDR IOC {value} is broader than /{minimum}; list narrower ranges", reason="value")


def _confidence(value: object) -> int | None:
    if type(value) is int and 0 <= value <= 100:
        return value
    if value is None or value == "":
        return None
    try:
        number = int(float(str(value)))
    except (ValueError, OverflowError):
        raise FeedError(f"confidence {value!r} is not a number from 0 to 100", reason="field_type") from None
    if not 0 <= number <= 100:
        raise FeedError(f"confidence {value!r} is outside 0 to 100", reason="field_type")
    return number


def _time(record: dict[str, Any], name: str) -> int | None:
    raw = record.get(name)
    if raw is None or raw == "":
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise FeedError(f"{name} {raw!r} is not an ISO-8601 time", reason="field_type")
    return parsed


def _shared(text: str) -> str:
    """Return the interned copy of a string that many IOCs repeat (source, tag, TLP).

    On CPython 3.11 an interned string is freed once no IOC refers to it.
    NOTE: early CPython 3.12 releases and free-threaded builds never free
    interned strings (python/cpython#113993), so there every distinct tag
    stays in memory for the life of the process.
    """
    return sys.intern(text) if type(text) is str else text


def _severity(record: dict[str, Any]) -> str:
    raw = record.get("severity") or "medium"
    severity = _SEVERITY_BY_NAME.get(raw) if type(raw) is str else None
    if severity is None:
        severity = _SEVERITY_BY_NAME.get(str(raw).lower())
    if severity is None:
        raise FeedError(f"severity {record.get('severity')!r} is not one of {', '.join(SEVERITIES)}", reason="field_type")
    return severity


def _tags(record: dict[str, Any]) -> list[str]:
    tags = record.get("tags") or []
    if isinstance(tags, str):
        tags = [tag.strip() for tag in tags.split(",") if tag.strip()]
    if not isinstance(tags, list):
        raise FeedError(f"tags {tags!r} must be a list of strings", reason="field_type")
    if not tags:
        return _NO_TAGS
    return [_shared(str(tag)) for tag in tags]


def _context(record: dict[str, Any]) -> dict[str, Any]:
    context = record.get("context")
    if isinstance(context, dict):
        # Feed parsers pass a dict of their own and add to ioc.context
        # afterwards, so an empty one must become a new mutable dict too.
        return context if context else {}
    return _NO_CONTEXT


def _revoked(record: dict[str, Any]) -> bool:
    revoked = record.get("revoked")
    return revoked is True or (revoked is not None and str(revoked).lower() in ("true", "1"))


def ioc_from_record(record: dict[str, Any]) -> Ioc:
    """Build an Ioc from a topic or feed record; raise FeedError on a bad field."""
    if not isinstance(record, dict):
        raise FeedError(f"IOC record is a JSON {type(record).__name__}, expected an object", reason="field_type")
    raw_value = record.get("value")
    if not isinstance(raw_value, str) or not raw_value.strip():
        raise FeedError(f"IOC record has no string value: {str(record)[:200]}", reason="missing_field")
    kind, value = resolve_type(record.get("type"), raw_value)
    severity = _severity(record)
    tags = _tags(record)
    tlp = record.get("tlp")
    description = record.get("description")
    return Ioc(
        type=kind,
        value=value,
        source=_shared(str(record.get("source") or "unknown")),
        confidence=_confidence(record.get("confidence")),
        severity=severity,
        tags=tags,
        tlp=_shared(str(tlp).lower()) if tlp else None,
        valid_from=_time(record, "valid_from"),
        valid_until=_time(record, "valid_until"),
        modified=_time(record, "modified"),
        revoked=_revoked(record),
        description=description if isinstance(description, str) else None,
        context=_context(record),
    )
