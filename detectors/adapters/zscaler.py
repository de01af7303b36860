"""Zscaler Internet Access (ZIA) web logs sent by an NSS or Cloud NSS feed as JSON.

The feed output format wraps the fields in an envelope:
``{"sourcetype": "zscalernss-web", "event": {...}}``. Field names differ between
feed output versions, so each value is read from the first field present:

- client address: ``cltintip`` (internal IP), ``cltip``, ``cip``;
- user: ``login``;
- URL: ``eurl`` or ``url`` as text, ``b64url`` in base64 (output format v11);
- host: ``host``, ``ehost``, ``hostname``; server address: ``serverip``, ``sip``;
- files: ``bamd5``, ``filemd5``, ``dlpmd5``, ``sha256``, ``filename``, ``efilename``, ``upload_filename``;
- time: ``epochtime``, else ``time`` (``Fri Dec 31 07:07:07 2021``, read as UTC because
  the feed writes no zone in it).

The client address and the login are the entities. ``devicehostname`` is the host
entity only when no client address is given: Zeek and Squid name hosts by address,
and one event with two host entities would count one machine twice. The public
address (``cltpubip``) is the site's NAT address and is never an entity.
Other NSS log types (``zscalernss-dns``, ``-fw``, ...) are rejected with reason
``unsupported_log``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder
from detectors.observation import Observation, SourceKind, Stage

FORMAT = "zscaler"
WEB_SOURCETYPE = "zscalernss-web"

_CLIENT_FIELDS = ("cltintip", "cltip", "cip")
_URL_FIELDS = ("eurl", "url")
_HOST_FIELDS = ("host", "ehost", "hostname")
_SERVER_FIELDS = ("serverip", "sip")
_HASH_FIELDS = (
    ("bamd5", ObservableType.MD5, "file.hash.md5"),
    ("filemd5", ObservableType.MD5, "file.hash.md5"),
    ("dlpmd5", ObservableType.MD5, "file.hash.md5"),
    ("sha256", ObservableType.SHA256, "file.hash.sha256"),
)
_FILE_NAME_FIELDS = ("filename", "efilename", "upload_filename")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})$")
_EPOCH = re.compile(r"^\d{1,11}$")
_MAX_B64URL_CHARS = 65536


def is_zscaler_document(record: dict[str, Any]) -> bool:
    """Return True for an NSS feed record: a ``zscalernss-*`` sourcetype."""
    sourcetype = record.get("sourcetype")
    return isinstance(sourcetype, str) and sourcetype.strip().lower().startswith("zscalernss-")


def has_encoded_url(record: dict[str, Any]) -> bool:
    """Return True when the record has a ``b64url`` field, whose URL its raw text does not show."""
    event = record.get("event")
    return "b64url" in (event if isinstance(event, dict) else {}) or "event.b64url" in record


def check_record(record: dict[str, Any]) -> None:
    """Raise for a record that is not a web log or has no event fields, as ``adapt`` would."""
    _event(record)


def _event(record: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of a web record. A record without ``sourcetype`` is taken as a web record."""
    sourcetype = record.get("sourcetype")
    if sourcetype is not None and not isinstance(sourcetype, str):
        raise MalformedRecordError(
            f"Zscaler sourcetype is {type(sourcetype).__name__}, expected text", reason="field_type"
        )
    if sourcetype is not None and sourcetype.strip().lower() != WEB_SOURCETYPE:
        raise MalformedRecordError(
            f"Zscaler NSS log type {sourcetype!r} is not read; only {WEB_SOURCETYPE!r} web logs are",
            reason="unsupported_log",
        )
    event = record.get("event")
    if isinstance(event, dict):
        return event
    if event is not None:
        raise MalformedRecordError(f"Zscaler event is {type(event).__name__}, expected an object", reason="field_type")
    dotted = {key[len("event.") :]: value for key, value in record.items() if key.startswith("event.")}
    if not dotted:
        raise MalformedRecordError(
            'Zscaler record has no "event" object; the NSS feed output format must wrap the fields '
            'as {"sourcetype": "zscalernss-web", "event": {...}}',
            reason="missing_field",
        )
    return dotted


def _text(event: dict[str, Any], name: str) -> str | None:
    """Return a text field, or None when it is absent or a placeholder such as ``None``. Another type raises."""
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedRecordError(
            f"Zscaler field {name} is {type(value).__name__}, expected text", reason="field_type"
        )
    return None if is_placeholder(value) else value


def _first_text(event: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = _text(event, name)
        if value is not None:
            return name, value
    return None


def _feed_time(text: str) -> int | None:
    """Parse ``Fri Dec 31 07:07:07 2021`` as UTC and ignore the weekday. Other text gives None."""
    parts = text.split()
    if len(parts) != 5:
        return None
    month = _MONTHS.get(parts[1][:3].lower())
    clock = _CLOCK.match(parts[3])
    if month is None or clock is None or not parts[2].isdecimal() or not parts[4].isdecimal():
        return None
    hour, minute, second = (int(group) for group in clock.groups())
    try:
        moment = datetime(int(parts[4]), month, int(parts[2]), hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


def _timestamp(event: dict[str, Any]) -> int | None:
    epoch = event.get("epochtime")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch < 10**11:
        return epoch * 1000
    if isinstance(epoch, str) and _EPOCH.match(epoch.strip()):
        return int(epoch.strip()) * 1000
    text = _text(event, "time")
    return _feed_time(text) if text is not None else None


def _decoded_url(event: dict[str, Any]) -> str | None:
    """Decode ``b64url``, or return None when the value is not base64 of UTF-8 text."""
    encoded = _text(event, "b64url")
    if encoded is None or len(encoded) > _MAX_B64URL_CHARS:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _add_entities(event: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    client = _first_text(event, _CLIENT_FIELDS)
    host = rules.host(client[1]) if client else None
    if host is None:
        host = rules.host(_text(event, "devicehostname"))
    if host is not None:
        observation.hosts.append(host)
    user = rules.user(_text(event, "login"))
    if user is not None:
        observation.users.append(user)
        emit(observation, ObservableType.USER, user, "user.name")


def adapt(record: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one Zscaler NSS web record into an observation (stage contacted, blocked or not)."""
    event = _event(record)
    observation = Observation(
        source=SourceKind.PROXY,
        timestamp_ms=_timestamp(event),
        stage=Stage.CONTACTED,
        event_code=_text(event, "action"),
        format=FORMAT,
    )
    _add_entities(event, rules, observation)
    url = _first_text(event, _URL_FIELDS)
    emit(observation, ObservableType.URL, url[1] if url else _decoded_url(event), "url.original")
    host = _first_text(event, _HOST_FIELDS)
    if host is not None:
        emit(observation, ObservableType.DOMAIN, host[1], "url.domain")
    server = _first_text(event, _SERVER_FIELDS)
    if server is not None:
        emit(observation, None, server[1], "destination.ip", ip_only=True)
    for name, kind, field in _HASH_FIELDS:
        emit(observation, kind, _text(event, name), field)
    for name in _FILE_NAME_FIELDS:
        emit(observation, ObservableType.FILE_NAME, _text(event, name), "file.name")
    return observation
